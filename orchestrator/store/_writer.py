"""Group commit: many concurrent writers, one transaction per batch.

Rule 1: a unit (the statements of one logical write) is committed whole or not at
all, and ``submit`` returns only after its commit: what is acknowledged is durable.
Rule 2: units commit in submission order, so a caller that has submitted A may act
as soon as a later unit B is acknowledged.
Rule 3: while one batch commits, the next fills; a failing batch is retried unit by
unit, so one bad write never fails the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import structlog

from orchestrator.errors import StoreError
from orchestrator.store._backend import Backend, Statement, plan_groups

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
    def __init__(self, backend: Backend, *, max_batch: int = 5000) -> None:
        self._backend = backend
        self._max_batch = max_batch
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
        """Commit batches until closed; pending units are committed before returning."""
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
            with anyio.CancelScope(shield=True):
                await self._commit(batch)

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def _commit(self, batch: list[tuple[Sequence[Statement], Ack]]) -> None:
        statements = [st for unit, _ in batch for st in unit]
        try:
            await self._backend.execute_batch(plan_groups(statements))
        except Exception as raw:
            exc = raw if isinstance(raw, StoreError) else StoreError(f"write failed: {raw!r}")
            if len(batch) == 1:
                batch[0][1]._resolve(exc)
                return
            log.warning("batch failed, retrying unit by unit", units=len(batch), error=str(exc))
            for unit, ack in batch:
                try:
                    await self._backend.execute_batch(plan_groups(unit))
                except Exception as unit_exc:
                    ack._resolve(
                        unit_exc
                        if isinstance(unit_exc, StoreError)
                        else StoreError(f"write failed: {unit_exc!r}")
                    )
                else:
                    ack._resolve()
            return
        self.batches += 1
        self.units += len(batch)
        for _, ack in batch:
            ack._resolve()
