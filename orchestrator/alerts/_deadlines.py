"""Deadline alerts: a timer per deadline of each unfinished run, on the one timer heap.

Rules:
1. A run's deadline is its DAG's ``DeadlineAlert`` reference time (queued at, logical
   date, a fixed time) plus the interval: derived from the stored run, so a restart
   arms again what it had armed, from the unfinished runs it reads.
2. When a deadline passes and its run has not finished, the miss and its alert are
   written as one unit, once per (DAG, run, deadline), and the alert goes to the outbox.
   The run goes on.
3. A run that finishes, or a DAG whose deadlines change, disarms or rearms its timers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from orchestrator._clock import Clock, iso
from orchestrator.alerts._outbox import Outbox
from orchestrator.alerts._plan import DEADLINE_MISSED, alert_id
from orchestrator.authoring._dag import DAG
from orchestrator.core import AlertRecord, RunRecord
from orchestrator.store import Store

__all__ = ["DeadlineWatch"]

log = structlog.get_logger("orchestrator.alerts")

_Key = tuple[str, str, int]  # dag_id, run_id, the deadline's place in the DAG's list


class DeadlineWatch:
    """The deadlines of the runs this process drives (see the module's rules)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        schedule: Callable[[datetime, Callable[[], None]], Any],
        outbox: Outbox,
        *,
        dags: Callable[[str], DAG | None],
        on_missed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.schedule = schedule
        self.outbox = outbox
        self.dags = dags
        self.on_missed = on_missed
        self._runs: dict[tuple[str, str], RunRecord] = {}
        self._timers: dict[_Key, Any] = {}
        self._missed: set[_Key] = set()
        self._due: list[_Key] = []
        self._wake = anyio.Event()

    async def open(self, unfinished: Iterable[RunRecord]) -> None:
        """The unfinished runs read on start, and which of their deadlines were missed."""
        runs = [r for r in unfinished if not r.by_cli]
        self._missed |= await self.store.missed_deadlines([(r.dag_id, r.run_id) for r in runs])
        for run in runs:
            self.watch(run)

    def watch(self, run: RunRecord) -> None:
        """Arm the deadlines of a new or loaded run (rule 1)."""
        if run.by_cli:
            return
        self._runs[(run.dag_id, run.run_id)] = run
        dag = self.dags(run.dag_id)
        if dag is None:
            return  # armed when its DAG loads
        for position, deadline in enumerate(dag.deadlines):
            key = (run.dag_id, run.run_id, position)
            at = deadline.deadline(run.queued_at, run.logical_date)
            if at is None or key in self._missed or key in self._timers:
                continue
            self._timers[key] = self.schedule(at, functools.partial(self._fire, key))

    def ended(self, dag_id: str, run_id: str) -> None:
        """The run finished: its deadlines are met (rule 3)."""
        if self._runs.pop((dag_id, run_id), None) is None:
            return
        for key in [k for k in self._timers if k[:2] == (dag_id, run_id)]:
            self._timers.pop(key).cancel()

    def forget(self, dag_ids: Iterable[str]) -> None:
        """Stop watching these DAGs' runs (another daemon watches them now)."""
        ids = set(dag_ids)
        for dag_id, run_id in [k for k in self._runs if k[0] in ids]:
            self.ended(dag_id, run_id)

    def dags_changed(self, dags: Iterable[DAG]) -> None:
        """Rearm the runs of DAGs whose definition (re)loaded (rule 3)."""
        ids = {d.dag_id for d in dags}
        for key in [k for k in self._timers if k[0] in ids]:
            self._timers.pop(key).cancel()
        for (dag_id, _), run in list(self._runs.items()):
            if dag_id in ids:
                self.watch(run)

    def _fire(self, key: _Key) -> None:
        self._timers.pop(key, None)
        self._due.append(key)
        self._wake.set()

    async def serve(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            due, self._due = self._due, []
            for key in due:
                try:
                    await self._missed_deadline(key)
                except Exception:
                    log.exception("deadline miss not recorded", dag_id=key[0], run_id=key[1])
                    self._timers[key] = self.schedule(  # tried again shortly
                        self.clock.now() + timedelta(seconds=5), functools.partial(self._fire, key)
                    )

    async def _missed_deadline(self, key: _Key) -> None:
        dag_id, run_id, position = key
        run = self._runs.get((dag_id, run_id))
        dag = self.dags(dag_id)
        if run is None or dag is None or key in self._missed or position >= len(dag.deadlines):
            return
        deadline = dag.deadlines[position]
        at = deadline.deadline(run.queued_at, run.logical_date)
        assert at is not None
        target = f"deadline:{position}"
        facts = {
            "reference": str(deadline.reference),
            "interval_s": deadline.interval.total_seconds(),
            "deadline_at": iso(at),
        }
        alert = AlertRecord(
            id=alert_id(at, dag_id, run_id, None, position, DEADLINE_MISSED, target),
            kind="callback",
            event=DEADLINE_MISSED,
            dag_id=dag_id,
            run_id=run_id,
            task_id=None,
            try_number=0,
            target=target,
            payload={"state": "not finished", "error": None, "deadline": facts},
            created_at=self.clock.now(),
        )
        await self.store.record_deadline_miss(
            dag_id, run_id, position, at, str(deadline.reference), alert
        )
        self._missed.add(key)
        log.warning("run missed its deadline", dag_id=dag_id, run_id=run_id, deadline=iso(at))
        if self.on_missed is not None:
            self.on_missed()
        self.outbox.submit([alert])
