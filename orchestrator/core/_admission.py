"""Admission: which stored runs start now, and how many more each DAG may have.

Pure bookkeeping the daemon asks; it holds no store and no clock.

Rules:
1. A DAG's queued runs start in order: runs already ``running`` (left by a stopped
   process) first, then by logical date (or queue time), while the DAG has fewer
   than ``max_active_runs`` active runs and is not paused. A running run is taken
   back whatever the limit: it was admitted before.
2. Room, what the trigger engine may still fire for a DAG, is ``max_active_runs``
   less its active and queued runs.
3. A run is known from the moment it is added until it ends, so a run read again
   from the store is not added twice.
4. Runs another daemon drives (several daemons on one store) count as active.
"""

from __future__ import annotations

from orchestrator.core._records import RunRecord
from orchestrator.core._state import RunState

__all__ = ["Admission"]


class Admission:
    def __init__(self) -> None:
        self._queued: dict[str, list[RunRecord]] = {}  # per DAG, waiting for room
        self._queued_ids: set[tuple[str, str]] = set()
        self._active: dict[str, set[str]] = {}  # per DAG, run ids being driven
        self._paused: dict[str, bool] = {}
        self._elsewhere: dict[str, frozenset[str]] = {}  # per DAG, driven by another daemon

    @property
    def queued_count(self) -> int:
        return sum(len(queue) for queue in self._queued.values())

    def knows(self, dag_id: str, run_id: str) -> bool:
        """Whether the run is queued or active here (rule 3)."""
        return (dag_id, run_id) in self._queued_ids or run_id in self._active.get(dag_id, ())

    def add(self, run: RunRecord) -> None:
        """A stored run to start when its DAG has room."""
        self._queued.setdefault(run.dag_id, []).append(run)
        self._queued_ids.add((run.dag_id, run.run_id))

    def is_paused(self, dag_id: str) -> bool:
        return self._paused.get(dag_id, False)

    def knows_paused(self, dag_id: str) -> bool:
        """Whether the DAG's paused flag is known (read from the store or set)."""
        return dag_id in self._paused

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._paused[dag_id] = paused

    def room(self, dag_id: str, max_active_runs: int) -> int:
        """How many more runs the DAG may have (rule 2)."""
        busy = len(self._active.get(dag_id, ())) + len(self._queued.get(dag_id, ()))
        return max(0, max_active_runs - busy - len(self._elsewhere.get(dag_id, ())))

    def admit(self, dag_id: str, max_active_runs: int) -> list[RunRecord]:
        """The runs of ``dag_id`` to start now, taken from its queue (rule 1)."""
        queue = self._queued.get(dag_id)
        if not queue or self.is_paused(dag_id):
            return []
        queue.sort(key=lambda r: (r.state != RunState.RUNNING, r.logical_date or r.queued_at))
        active = self._active.setdefault(dag_id, set())
        limit = max_active_runs - len(self._elsewhere.get(dag_id, ()))
        started = []
        while queue and (len(active) < limit or queue[0].state == RunState.RUNNING):
            run = queue.pop(0)
            self._queued_ids.discard((dag_id, run.run_id))
            active.add(run.run_id)
            started.append(run)
        return started

    def set_elsewhere(self, runs: dict[str, set[str]]) -> None:
        """The runs each DAG has that another daemon drives (rule 4), all DAGs at once."""
        self._elsewhere = {dag_id: frozenset(ids) for dag_id, ids in runs.items() if ids}

    def forget_queued(self, dag_id: str) -> None:
        """Drop the DAG's queued runs: another daemon admits them now."""
        for run in self._queued.pop(dag_id, []):
            self._queued_ids.discard((dag_id, run.run_id))

    def ended(self, dag_id: str, run_id: str) -> None:
        """The run ended, or could not start: its place is free."""
        self._active.get(dag_id, set()).discard(run_id)
