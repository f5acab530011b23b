"""Group commit: many concurrent writers, one transaction per batch.

Rule 1: a unit (the statements of one logical write) is committed whole or not at
all, and ``submit`` returns only after its commit: what is acknowledged is durable.
Rule 2: units commit in submission order, so a caller that has submitted A may act
as soon as a later unit B is acknowledged.
Rule 3: while one batch commits, the next fills; a failing batch is retried unit by
unit, so one bad write never fails the others.
Rule 4: while the store is unavailable (a lost connection), the units wait and are
tried again with backoff, in order, for as long as the writer is open; every write
is idempotent (an upsert on its natural key), so repeating one whose commit was
lost with the connection is harmless. After ``close``, they are tried for
``drain_for`` seconds more and then failed, so a shutdown cannot hang on them.
Rule 5: ``ClaimLost`` (another daemon took the store meanwhile) ends ``run`` with
that error: the daemon that owns the store must stop, not write on.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import structlog

from orchestrator.errors import StoreError, StoreUnavailable
from orchestrator.store._backend import Backend, ClaimLost, Statement, plan_groups

__all__ = ["Ack", "GroupCommitWriter"]

log = structlog.get_logger("orchestrator.store")


class Ack:
    """The acknowledgement of one submitted unit; await ``wait()`` for its commit."""

    __slots__ = ("_done", "_error")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._error: BaseException | None = None

    def _resolve(self, error: BaseException | None = None) -> None:
        self._error = error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> None:
        await self._done.wait()
        if self._error is not None:
            raise self._error


class GroupCommitWriter:
    def __init__(self, backend: Backend, *, max_batch: int = 5000, drain_for: float = 10.0) -> None:
        self._backend = backend
        self._max_batch = max_batch
        self._drain_for = drain_for
        self._pending: list[tuple[Sequence[Statement], Ack]] = []
        self._wake = anyio.Event()
        self._closed = False
        self.batches = 0
        self.units = 0

    def submit_nowait(self, statements: Sequence[Statement]) -> Ack:
        """Queue a unit and return its Ack at once (see rule 2)."""
        if self._closed:
            raise StoreError("the store is closed")
        ack = Ack()
        if not statements:
            ack._resolve()
            return ack
        self._pending.append((statements, ack))
        self._wake.set()
        return ack

    async def submit(self, statements: Sequence[Statement]) -> None:
        await self.submit_nowait(statements).wait()

    async def run(self) -> None:
        """Commit batches until closed; pending units are committed before returning.

        If it ends any other way (cancelled, or ``ClaimLost``), every unit not yet
        committed is failed, so no caller waits for an ack that cannot come.
        """
        batch: list[tuple[Sequence[Statement], Ack]] = []
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        return
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                # Let the tasks that are ready this turn add their writes to the batch.
                await anyio.lowlevel.checkpoint()
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
                await self._commit_until_done(batch)
        except BaseException as exc:
            self._closed = True
            error = StoreError(f"the store's writer stopped: {exc!r}")
            for _, ack in [*batch, *self._pending]:
                if not ack.done:
                    ack._resolve(error)
            self._pending.clear()
            raise

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def _commit_until_done(self, batch: list[tuple[Sequence[Statement], Ack]]) -> None:
        """Commit the batch, waiting out an unavailable store (rule 4)."""
        delay, waited, waited_closed = 0.05, 0.0, 0.0
        while True:
            with anyio.CancelScope(shield=True):
                unavailable = await self._commit(batch)
            if unavailable is None:
                if waited:
                    log.info("store reachable again", waited_s=round(waited, 2))
                return
            batch = [(unit, ack) for unit, ack in batch if not ack.done]
            if waited_closed >= self._drain_for:
                log.error("store unavailable at close: writes dropped", units=len(batch))
                for _, ack in batch:
                    ack._resolve(unavailable)
                return
            if not waited:
                log.warning(
                    "store unavailable: writes wait", units=len(batch), error=str(unavailable)
                )
            try:
                await anyio.sleep(delay)
            except BaseException:
                for _, ack in batch:  # cancelled: nobody may wait for these any more
                    ack._resolve(unavailable)
                raise
            waited += delay
            waited_closed += delay if self._closed else 0.0
            delay = min(delay * 2, 2.0)

    async def _commit(
        self, batch: list[tuple[Sequence[Statement], Ack]]
    ) -> StoreUnavailable | None:
        """One try at the batch; resolves the acks it settles, returns an unavailable store."""
        statements = [st for unit, _ in batch for st in unit]
        try:
            await self._backend.execute_batch(plan_groups(statements))
        except StoreUnavailable as lost:
            return lost
        except ClaimLost:
            raise  # ends the writer, and with it the store's owner
        except Exception as raw:
            exc = raw if isinstance(raw, StoreError) else StoreError(f"write failed: {raw!r}")
            if len(batch) == 1:
                batch[0][1]._resolve(exc)
                return None
            log.warning("batch failed, retrying unit by unit", units=len(batch), error=str(exc))
            for unit, ack in batch:
                try:
                    await self._backend.execute_batch(plan_groups(unit))
                except StoreUnavailable as unit_exc:
                    return unit_exc  # this unit and the rest are tried again, in order
                except ClaimLost:
                    raise
                except Exception as unit_exc:
                    ack._resolve(
                        unit_exc
                        if isinstance(unit_exc, StoreError)
                        else StoreError(f"write failed: {unit_exc!r}")
                    )
                else:
                    ack._resolve()
            return None
        self.batches += 1
        self.units += len(batch)
        for _, ack in batch:
            ack._resolve()
        return None
