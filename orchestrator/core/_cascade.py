"""A run's task graph in motion: upstream counts and the trigger-rule cascade.

Part of the run driver (``_driver``), kept apart because it is the one piece that
walks the graph. Each task keeps counts of its upstream instances' states, so
finishing an instance costs O(its task's downstream), not O(the DAG). Evaluating a
waiting task schedules its instances, flags them (``skipped``, ``upstream_failed``)
and carries the flag on down, or leaves them waiting.

Mapped tasks (Airflow's dynamic task mapping): a mapped task has one placeholder
instance (map index -1) until it is ready to run; then the driver asks the shell how
many instances it expands to, and they replace the placeholder. A downstream task
counts each instance of a mapped upstream, as Airflow's trigger rules do: its total
is the sum of its upstream tasks' instance counts (a placeholder counts as one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from orchestrator.core._records import TaskInstanceRecord
from orchestrator.core._state import (
    FINISHED_STATES,
    TaskEvent,
    TaskState,
    UpstreamCounts,
    Verdict,
    apply,
    evaluate_trigger_rule,
)
from orchestrator.core._steps import DagSpec, Step, TaskSpec

__all__ = ["Cascade", "clear_instance", "with_downstream", "with_setups_and_teardowns"]

_COUNTED = {
    TaskState.SUCCESS: 0,
    TaskState.SKIPPED: 1,
    TaskState.FAILED: 2,
    TaskState.UPSTREAM_FAILED: 3,
}
_PENDING = frozenset(
    {
        TaskState.SCHEDULED,
        TaskState.UP_FOR_RETRY,
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.DEFERRED,
    }
)
_WAITING = frozenset({TaskState.NONE, TaskState.SCHEDULED})


class Cascade:
    """The counts over ``tis`` (shared with the driver) and the moves they allow.

    ``blocked`` (shared too) holds the tasks that must not run, with why. ``expanding``
    holds the mapped tasks whose expansion was asked for and not yet answered.
    """

    def __init__(
        self,
        dag: DagSpec,
        run_key: tuple[str, str],
        tis: dict[str, TaskInstanceRecord],
        blocked: Mapping[str, str],
    ) -> None:
        self.dag = dag
        self.run_key = run_key
        self.tis = tis
        self.blocked = blocked
        self.unfinished = 0
        self.expanding: set[str] = set()
        self._instances: dict[str, list[str]] = {}  # task id -> its instances' keys
        self._counts: dict[str, list[int]] = {}  # success, skipped, failed, upstream_failed
        self._totals: dict[str, int] = {}
        self._setups: dict[str, list[int]] = {}  # of a task's upstream setups: total,
        # succeeded, skipped (for a teardown's rule)

    # -- instances ---------------------------------------------------------------------

    def index(self) -> None:
        """Index the instances of each task of the DAG (on start, after an expansion).

        A mapped task's instances are its expanded ones that were not removed, else its
        placeholder."""
        by_task: dict[str, list[tuple[int, str]]] = {tid: [] for tid in self.dag.task_dict}
        for key, ti in self.tis.items():
            listed = by_task.get(ti.task_id)
            if listed is not None and not (ti.map_index >= 0 and ti.state == TaskState.REMOVED):
                listed.append((ti.map_index, key))
        self._instances = {}
        for task_id, listed in by_task.items():
            listed.sort()
            if len(listed) > 1 and listed[0][0] < 0:
                listed.pop(0)  # a placeholder left beside its expansion is not an instance
            self._instances[task_id] = [key for _, key in listed]

    def instances(self, task_id: str) -> list[TaskInstanceRecord]:
        return [self.tis[key] for key in self._instances.get(task_id, ())]

    def keys(self, task_id: str) -> list[str]:
        return list(self._instances.get(task_id, ()))

    def all(self) -> Iterator[TaskInstanceRecord]:
        """Every instance of the DAG's tasks, task by task."""
        for keys in self._instances.values():
            for key in keys:
                yield self.tis[key]

    # -- counts ------------------------------------------------------------------------

    def recount(self) -> None:
        """Index and count the instances (on start, after a clear or an expansion)."""
        self.index()
        self._counts = {tid: [0, 0, 0, 0] for tid in self.dag.task_dict}
        self._totals = dict.fromkeys(self.dag.task_dict, 0)
        self._setups = {tid: [0, 0, 0] for tid in self.dag.task_dict}
        self.unfinished = 0
        for task_id, task in self.dag.task_dict.items():
            keys = self._instances[task_id]
            for down in task.downstream_task_ids:
                self._totals[down] += len(keys)
                if task.is_setup:
                    self._setups[down][0] += len(keys)
            for key in keys:
                ti = self.tis[key]
                if ti.state not in FINISHED_STATES:
                    self.unfinished += 1
                self._count(task, ti.state)

    def finished(self, ti: TaskInstanceRecord) -> None:
        """Count an instance that has just reached a finished state."""
        self.unfinished -= 1
        self._count(self.dag.task_dict[ti.task_id], ti.state)

    def _count(self, task: TaskSpec, state: TaskState) -> None:
        index = _COUNTED.get(state)
        if index is not None:
            for down in task.downstream_task_ids:
                self._counts[down][index] += 1
            if task.is_setup and index < 2:  # a setup's success or skip, for teardowns
                for down in task.downstream_task_ids:
                    self._setups[down][index + 1] += 1

    # -- moves -------------------------------------------------------------------------

    def evaluate(self, task_ids: Sequence[str], now: datetime, step: Step) -> None:
        """Apply trigger rules to the waiting instances of ``task_ids``, cascading."""
        work = list(reversed(task_ids))
        while work:
            task_id = work.pop()
            if task_id in self.blocked or task_id in self.expanding:
                continue
            keys = self._instances[task_id]
            waiting = [self.tis[k] for k in keys if self.tis[k].state == TaskState.NONE]
            if not waiting:
                continue
            task = self.dag.task_dict[task_id]
            c, s = self._counts[task_id], self._setups[task_id]
            upstream = UpstreamCounts(self._totals[task_id], *c, *s)
            verdict = evaluate_trigger_rule(task.trigger_rule, upstream)
            if verdict is Verdict.WAIT:
                continue
            if verdict is Verdict.RUN:
                if task.is_mapped and len(waiting) == len(keys):
                    self.expanding.add(task_id)  # how many instances: the shell answers
                    step.expand.append(task_id)
                    continue
                for ti in waiting:
                    ti.state = apply(ti.state, TaskEvent.SCHEDULE, self.where(ti.key))
                    step.ready.append(ti.key)
                    step.writes.append(ti)
                continue
            move = TaskEvent.SKIP if verdict is Verdict.SKIP else TaskEvent.FLAG_UPSTREAM_FAILED
            for ti in waiting:
                ti.state = apply(ti.state, move, self.where(ti.key))
                ti.end_date = now
                self.finished(ti)
                step.writes.append(ti)
            work.extend(sorted(task.downstream_task_ids, reverse=True))

    def skip(self, task_ids: Iterable[str], now: datetime, step: Step) -> set[str]:
        """Skip the waiting instances of ``task_ids`` (a branch did not follow them).

        Returns the tasks downstream of them, for the caller to evaluate.
        """
        downstream: set[str] = set()
        for task_id in sorted(task_ids):
            for ti in self.instances(task_id):
                if ti.state not in _WAITING:
                    continue
                if ti.state == TaskState.SCHEDULED:
                    step.unready.append(ti.key)
                ti.state = apply(ti.state, TaskEvent.SKIP, self.where(ti.key))
                ti.end_date = now
                self.finished(ti)
                step.writes.append(ti)
                downstream |= self.dag.task_dict[task_id].downstream_task_ids
        return downstream

    def has_pending(self) -> bool:
        """Whether any instance is on its way (scheduled, retrying, in flight, deferred)."""
        return bool(self.expanding) or any(ti.state in _PENDING for ti in self.all())

    def deadlock_reason(self) -> str:
        waiting = [ti for ti in self.all() if ti.state == TaskState.NONE]
        reasons = [
            f"{ti.key}: {self.blocked[ti.task_id]}" for ti in waiting if ti.task_id in self.blocked
        ]
        return "no task can make progress; " + (
            "; ".join(reasons) or ", ".join(ti.key for ti in waiting)
        )

    def where(self, key: str) -> tuple[str, str, str]:
        """The instance's key, for errors."""
        return (*self.run_key, key)


def clear_instance(ti: TaskInstanceRecord, where: object) -> None:
    """Reset an instance to run again; its try count and try history stay."""
    ti.state = apply(ti.state, TaskEvent.CLEAR, where)
    ti.end_date = None
    ti.duration = None
    ti.next_retry_at = None


def with_setups_and_teardowns(dag: DagSpec, task_ids: Iterable[str]) -> set[str]:
    """``task_ids`` with the setups of each and those setups' teardowns: what clearing a
    work task clears, as in Airflow."""
    chosen = set(task_ids)
    for task_id in list(chosen):
        for up in dag.task_dict[task_id].upstream_task_ids:
            setup = dag.task_dict[up]
            if setup.is_setup:
                chosen.add(up)
                chosen |= {d for d in setup.downstream_task_ids if dag.task_dict[d].is_teardown}
    return chosen


def with_downstream(dag: DagSpec, task_ids: Iterable[str]) -> set[str]:
    """``task_ids`` and every task downstream of them."""
    chosen = set(task_ids)
    stack = list(chosen)
    while stack:
        for down in dag.task_dict[stack.pop()].downstream_task_ids:
            if down not in chosen:
                chosen.add(down)
                stack.append(down)
    return chosen
