"""The run intake: the one way a run is made, whoever asks for it.

Scheduled and other fired runs (the trigger engine), manual runs (API, CLI,
``TriggerDagRunOperator``, ``dags test``) and backfill runs all come here. What a
run is (id, type, data interval, trigger key) is ``core._intake``'s rule; this
shell stores it and hands it on.

Rules:
1. Insert if absent on both keys, (dag_id, run_id) and (dag_id, trigger_key): a
   repeated firing makes no second run and raises nothing; a manual run whose id is
   taken is a Conflict.
2. One intake at a time per process: its check and its insert are one step, so two
   requests for the same run here never both create it. The insert itself never
   overwrites a run another process made meanwhile.
3. A run is handed to ``on_created`` (the daemon's admission) only once it is stored.
4. A run that consumes dataset events is stored in one unit with their consumption:
   after a crash, either the run exists and its events are consumed, or neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio

from orchestrator._clock import Clock
from orchestrator.authoring._dag import DAG
from orchestrator.authoring._param import resolve_params
from orchestrator.core import RunRecord, RunState
from orchestrator.core._intake import fired_run, interval_run, manual_run
from orchestrator.errors import Conflict
from orchestrator.store import Store
from orchestrator.store._rows import consumed_statement
from triggers._dataset import DatasetEvent
from triggers._engine import CreateRun
from triggers._timetable import RunInfo

__all__ = ["RunIntake"]


class RunIntake:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        dags: Callable[[str], DAG | None] | None = None,
        driver: str | None = None,
        on_created: Callable[[RunRecord], None] | None = None,
    ) -> None:
        """``dags`` finds a DAG by id (for its timetable); ``driver`` marks the runs this
        intake makes as driven by that process (None: by the daemon)."""
        self.store = store
        self.clock = clock
        self.dags = dags or (lambda dag_id: None)
        self.driver = driver
        self.on_created = on_created
        self._lock = anyio.Lock()

    async def submit(
        self,
        runs: Sequence[RunRecord],
        consumes: Mapping[tuple[str, str], Sequence[DatasetEvent]] | None = None,
    ) -> list[RunRecord]:
        """Store each run unless one of its keys is taken (rule 1); the ones stored.

        ``consumes`` names, by (dag_id, run_id), the dataset events a run takes: their
        consumption is written in the same unit as the run (rule 4).
        """
        async with self._lock:
            taken = await self.store.taken_runs(runs)
            fresh: list[RunRecord] = []
            ids: set[tuple[str, str]] = set()  # the keys of the runs taken in this batch
            keys: set[tuple[str, str]] = set()
            for run in runs:
                run_key = (run.dag_id, run.run_id)
                trigger = (run.dag_id, run.trigger_key) if run.trigger_key else None
                if run_key in taken or run_key in ids or (trigger is not None and trigger in keys):
                    continue
                ids.add(run_key)
                if trigger is not None:
                    keys.add(trigger)
                run.driver = self.driver
                fresh.append(run)
            consumed = [
                consumed_statement(run.dag_id, run.run_id, event)
                for run in fresh
                for event in (consumes or {}).get((run.dag_id, run.run_id), ())
            ]
            await self.store.insert_runs(fresh, consumed)
        if self.on_created is not None:
            for run in fresh:
                self.on_created(run)
        return fresh

    async def manual(
        self,
        dag_id: str,
        *,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        logical_date: datetime | None = None,
    ) -> RunRecord:
        """A manual run of ``dag_id``, stored; Conflict if its run id is taken."""
        dag = self.dags(dag_id)
        if dag is not None and dag.params:
            resolve_params(dag.params, conf or {})  # a bad conf makes no run
        run = manual_run(
            dag_id,
            dag.timetable if dag is not None else None,
            self.clock.now(),
            conf=dict(conf or {}),
            logical_date=logical_date,
            run_id=run_id,
        )
        if not await self.submit([run]):
            raise Conflict(f"DAG {dag_id!r} already has a run {run.run_id!r}")
        return run

    async def fired(self, firings: Sequence[CreateRun]) -> list[RunRecord]:
        """The runs the trigger engine fired, stored in one read and one write."""
        now = self.clock.now()
        runs = [fired_run(f, now) for f in firings]
        consumes = {
            (run.dag_id, run.run_id): firing.consumes
            for run, firing in zip(runs, firings, strict=True)
            if firing.consumes
        }
        return await self.submit(runs, consumes)

    async def backfill(self, dag: DAG, info: RunInfo) -> RunRecord:
        """The backfill run of an interval: the stored one (this process now drives it unless
        it succeeded), else a new one."""
        run = interval_run(dag.dag_id, "backfill", info, self.clock.now())
        if not await self.submit([run]):
            run = await self.store.get_run(dag.dag_id, run.run_id)
            if run.state != RunState.SUCCESS:
                run.driver = self.driver
        return run

    # -- RunRequests, for task code (resources.Services.runs) ---------------------------------

    request_run = manual

    async def run_state(self, dag_id: str, run_id: str) -> RunState:
        return (await self.store.get_run(dag_id, run_id)).state
