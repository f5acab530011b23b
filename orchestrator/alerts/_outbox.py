"""The outbox's delivery loop: every stored alert delivered at least once, beside the work.

Rules:
1. An alert is in the store before it is delivered: the process that raised it hands it
   over once the unit that wrote it is committed (``submit``), with the try's context;
   on start, and then every few seconds, pending alerts whose time has come are taken
   from the store (``recover``): a restart delivers what was pending, and what another
   process left behind is not lost.
2. Deliveries run in this loop's own tasks, at most ``alert_concurrency`` at once, each
   bounded by ``alert_timeout``: a slow receiver never holds a try or the scheduler.
3. Each attempt's outcome is written: delivered; pending again after a backoff
   (``RetryPolicy``), armed on the one timer heap; or failed, a dead letter once the
   attempts or the age run out, or at once when it can never succeed (no SMTP server
   configured, a callback the DAG no longer defines).
4. A run's own callback is called after every task callback of the run handed over
   before it has returned, as when callbacks were called in line.
5. A callback gets the try's context (rebuilt from the store after a restart) with
   ``alert``; email and webhooks get the alert's facts. Nothing a notifier raises
   reaches the caller: it is logged and counted.
6. Email and webhooks are background work: while tries are running they wait for the
   running ones to end, up to a second (``HOLD``), so a burst of failures is worked
   through before its alerts are sent, and an alert is never held longer.
"""

from __future__ import annotations

import inspect
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskGroup

from orchestrator._clock import Clock, iso
from orchestrator._logging import read_excerpt, task_log_path
from orchestrator.alerts._notifiers import BaseNotifier, EmailNotifier, WebhookNotifier
from orchestrator.alerts._plan import RetryPolicy, callback_of
from orchestrator.alerts._sender import Sender, SendFailed
from orchestrator.authoring._dag import DAG
from orchestrator.core import AlertRecord
from orchestrator.errors import ConfigError
from orchestrator.resources._secrets import Cipher, cipher_for
from orchestrator.resources._services import Services, services_context, worker_thread

__all__ = ["ContextSource", "Outbox"]

log = structlog.get_logger("orchestrator.alerts")

ContextSource = Callable[[AlertRecord], Awaitable[dict[str, Any] | None]]
_RUN_EVENTS = ("run_success", "run_failure")
HOLD = 1.0  # seconds email and webhooks wait for the tries running to end (rule 6)


class _Permanent(Exception):
    """A delivery that can never succeed: dead-lettered at once."""


class Outbox:
    """Delivers the alert outbox (see the module's rules)."""

    def __init__(
        self,
        services: Services,
        clock: Clock,
        schedule: Callable[[datetime, Callable[[], None]], object],
        *,
        logs_dir: Path,
        dags: Callable[[str], DAG | None],
        contexts: ContextSource | None = None,
        api_url: Callable[[], str] = str,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        settings = services.settings
        self.services = services
        self.store = services.store
        self.clock = clock
        self.schedule = schedule
        self.logs_dir = logs_dir
        self.dags = dags
        self.contexts = contexts
        self.api_url = api_url
        self._cipher: Cipher | None = None
        self.sender: Sender | None = None  # email and webhooks out of process when set
        self.quiet: Callable[[], Awaitable[None]] | None = None  # returns when no try runs
        self.on_outcome = on_outcome
        # With several daemons on the store: whether this one takes over the alerts of a
        # DAG that no live daemon delivers (its DAG's daemon does).
        self.orphans: Callable[[str], bool] | None = None
        self.policy = RetryPolicy(
            settings.alert_max_attempts,
            settings.alert_retry_delay,
            settings.alert_max_retry_delay,
            settings.alert_max_age,
        )
        self.timeout = settings.alert_timeout
        self._limiter = anyio.CapacityLimiter(settings.alert_concurrency)
        self._due: deque[tuple[AlertRecord, dict[str, Any] | None, int]] = deque()
        self._held: list[tuple[AlertRecord, dict[str, Any] | None, int]] = []  # rule 6
        self._releasing = False
        self._known: set[str] = set()  # due, in flight, or waiting to be tried again
        self._excerpts: dict[str, str] = {}  # alert id -> its try's last log lines
        self._drained = anyio.Event()
        self._drained.set()
        self._active = 0  # due or in flight
        self._task_callbacks: Counter[tuple[str, str]] = Counter()  # rule 4
        self._callbacks_done = anyio.Event()
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._tg: TaskGroup | None = None

    def seal(self, secret: str) -> str:
        """A webhook's own secret, encrypted for the store (with the store's key)."""
        return self._cipher_().encrypt(secret) if secret else ""

    def unseal(self, sealed: str) -> str:
        return self._cipher_().decrypt(sealed) if sealed else ""

    def _cipher_(self) -> Cipher:
        if self._cipher is None:
            self._cipher = cipher_for(self.services.settings)
        return self._cipher

    # -- intake --------------------------------------------------------------------------

    def submit(
        self,
        records: list[AlertRecord],
        contexts: dict[str, dict[str, Any]] | None = None,
        *,
        log_excerpt: str | None = None,
    ) -> None:
        """Deliver these alerts, stored and committed (rule 1), with their contexts (and
        the last lines of the log of the try they are about, when the try ended here)."""
        for record in records:
            if record.id in self._known:  # handed over twice: delivered once
                continue
            if log_excerpt is not None and record.task_id is not None:
                self._excerpts[record.id] = log_excerpt
            self._push(record, (contexts or {}).get(record.id), 0)

    async def recover(self) -> int:
        """Take the pending alerts whose time has come from the store (rule 1)."""
        taken = 0
        due = await self.store.due_alerts(self.clock.now(), orphans=self.orphans)
        for record, attempts in due:
            if record.id not in self._known:
                self._push(record, None, attempts)
                taken += 1
        if taken:
            log.info("pending alerts taken from the store", alerts=taken)
        return taken

    def retry(self, record: AlertRecord) -> None:
        """Deliver a dead letter made pending again (``alerts retry``)."""
        if record.id not in self._known:
            self._push(record, None, 0)

    def _push(self, record: AlertRecord, context: dict[str, Any] | None, attempts: int) -> None:
        self._known.add(record.id)
        self._drained = anyio.Event() if self._drained.is_set() else self._drained
        self._active += 1
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        if record.kind == "callback" and record.task_id is not None:
            self._task_callbacks[(record.dag_id, record.run_id)] += 1
        if record.kind != "callback" and self.quiet is not None:  # rule 6
            self._held.append((record, context, attempts))
            if len(self._held) > 1:
                return  # the release is on its way: no need to wake the loop
        else:
            self._due.append((record, context, attempts))
        self._wake.set()

    async def drained(self) -> None:
        """Return once every alert known here is delivered or dead-lettered."""
        await self._drained.wait()

    def _forget(self, alert_id: str) -> None:
        self._known.discard(alert_id)
        if not self._known:
            self._drained.set()

    async def settled(self) -> None:
        """Return once nothing is due or in flight (retries armed for later may remain)."""
        await self._idle.wait()

    # -- the loop ------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if self._held and not self._releasing:
                    self._releasing = True
                    tg.start_soon(self._release_held)
                while self._due:
                    tg.start_soon(self._attempt, *self._due.popleft())

    async def _release_held(self) -> None:
        """Rule 6: once no try runs, or a second after the first was held, send them."""
        assert self.quiet is not None
        assert self._tg is not None
        with anyio.move_on_after(HOLD):
            await self.quiet()
        held, self._held = self._held, []
        self._releasing = False
        for item in held:
            self._tg.start_soon(self._attempt, *item)

    async def _attempt(
        self, record: AlertRecord, context: dict[str, Any] | None, attempts: int
    ) -> None:
        run = (record.dag_id, record.run_id)
        if record.kind == "callback" and record.task_id is None and record.event in _RUN_EVENTS:
            while self._task_callbacks[run]:  # rule 4
                await self._callbacks_done.wait()
        try:
            async with self._limiter:
                error = await self._try(record, context)
            await self._outcome(record, attempts + 1, error)
        finally:
            if record.kind == "callback" and record.task_id is not None:
                self._task_callbacks[run] -= 1
                if not self._task_callbacks[run]:
                    del self._task_callbacks[run]
                    self._callbacks_done.set()
                    self._callbacks_done = anyio.Event()
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _try(self, record: AlertRecord, context: dict[str, Any] | None) -> Exception | None:
        try:
            # Email and webhooks time out on their own first, saying where; this bounds
            # callbacks, and anything that would hang past that.
            bound = self.timeout if record.kind == "callback" else self.timeout + 1.0
            with services_context(self.services), anyio.fail_after(bound):
                await self._deliver(record, context)
        except TimeoutError as exc:  # the bound's own has no message
            return exc if str(exc) else TimeoutError(f"no answer within {self.timeout:g} s")
        except Exception as exc:
            return exc
        return None

    async def _deliver(self, record: AlertRecord, context: dict[str, Any] | None) -> None:
        facts = await self.facts(record)
        if record.kind in ("email", "webhook") and self.sender is not None:
            sealed = record.payload.get("secret")
            secret = None if sealed is None else self.unseal(sealed)
            try:
                await self.sender.deliver(record.kind, record.target, facts, secret)
            except SendFailed as exc:
                raise (_Permanent(str(exc)) if exc.permanent else exc) from None
            return
        if record.kind == "email":
            try:
                await EmailNotifier([a for a in record.target.split(", ") if a]).notify(
                    {"alert": facts}
                )
            except (ConfigError, ValueError) as exc:
                raise _Permanent(str(exc)) from None
            return
        if record.kind == "webhook":
            sealed = record.payload.get("secret")
            secret = None if sealed is None else self.unseal(sealed)
            await WebhookNotifier(record.target, secret=secret).notify({"alert": facts})
            return
        dag = self.dags(record.dag_id)
        callback = callback_of(dag, record.target) if dag is not None else None
        if callback is None:
            raise _Permanent(f"DAG {record.dag_id!r} no longer defines {record.target}")
        if context is None and self.contexts is not None:
            context = await self.contexts(record)
        full = {**(context or {}), "alert": facts}
        if isinstance(callback, BaseNotifier):
            await callback.deliver(full)
        elif inspect.iscoroutinefunction(callback):
            await callback(full)
        else:
            result = await anyio.to_thread.run_sync(
                worker_thread(callback), full, abandon_on_cancel=True
            )
            if inspect.isawaitable(result):
                await result

    async def _outcome(self, record: AlertRecord, attempts: int, error: Exception | None) -> None:
        now = self.clock.now()
        fields = {
            "alert_id": record.id,
            "kind": record.kind,
            "alert_event": record.event,
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "task_id": record.task_id,
            "target": record.target,
            "attempt": attempts,
        }
        retry_at = None
        if error is None:
            state, text = "delivered", None
        else:
            # the sender process's errors are already "Type: message"
            told = isinstance(error, _Permanent | SendFailed)
            text = str(error) if told else f"{type(error).__name__}: {error}"
            if not isinstance(error, _Permanent):
                retry_at = self.policy.next_attempt(attempts, record.created_at, now)
            state = "pending" if retry_at is not None else "failed"
        statement = self.store.alert_attempted(
            record.id, attempts=attempts, state=state, at=now, next_attempt_at=retry_at, error=text
        )
        try:
            await self.store.write_nowait([statement]).wait()
        except Exception as exc:  # the store is down: it stays pending there, taken again
            log.warning("alert outcome not stored", error=repr(exc), **fields)
        if state == "delivered":
            self._forget(record.id)
            log.debug("alert delivered", **fields)
        elif retry_at is not None:
            log.warning(
                "alert delivery failed; trying again", error=text, retry_at=iso(retry_at), **fields
            )
            self.schedule(retry_at, lambda: self._push(record, None, attempts))
        else:
            self._forget(record.id)
            log.error("alert delivery failed for good: dead-lettered", error=text, **fields)
        if self.on_outcome is not None:
            self.on_outcome(record.kind, "retried" if state == "pending" else state)

    # -- what notifiers are told -----------------------------------------------------------

    async def facts(self, record: AlertRecord) -> dict[str, Any]:
        """The alert as notifiers see it (``context["alert"]``, a webhook's document)."""
        facts: dict[str, Any] = {
            "id": record.id,
            "event": record.event,
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "task_id": record.task_id,
            "try_number": record.try_number,
            "state": record.payload.get("state"),
            "error": record.payload.get("error"),
            "created_at": iso(record.created_at),
            "log_excerpt": None,
            "log_url": None,
        }
        for key in ("deadline", "reason"):
            if key in record.payload:
                facts[key] = record.payload[key]
        map_index = int(record.payload.get("map_index", -1))
        if map_index >= 0:
            facts["map_index"] = map_index
        if record.task_id is not None and record.try_number > 0:
            path = task_log_path(
                self.logs_dir,
                record.dag_id,
                record.run_id,
                record.task_id,
                record.try_number,
                map_index,
            )
            excerpt = self._excerpts.pop(record.id, None)
            if excerpt is None:  # not given (a restart, a retry): read, off the loop
                excerpt = await anyio.to_thread.run_sync(read_excerpt, path)
            facts["log_excerpt"] = excerpt
            base = self.api_url()
            if base:
                query = urlencode(
                    {"dag_id": record.dag_id, "try": record.try_number}
                    | ({"map_index": map_index} if map_index >= 0 else {})
                )
                facts["log_url"] = (
                    f"{base}/api/v1/runs/{quote(record.run_id, safe='')}/tasks/"
                    f"{quote(record.task_id, safe='')}/logs?{query}"
                )
        return facts
