"""A run's task graph in motion: upstream counts and the trigger-rule cascade.

Part of the run driver (``_driver``), kept apart because it is the one piece that
walks the graph. Each task keeps counts of its upstream states, so finishing a task
costs O(its downstream), not O(the DAG). Evaluating a waiting instance schedules
it, flags it (``skipped``, ``upstream_failed``) and carries the flag on down, or
leaves it waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
from orchestrator.core._steps import DagSpec, Step

__all__ = ["Cascade", "clear_instance", "with_downstream"]

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

    ``blocked`` (shared too) holds the instances that must not run, with why.
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
        self._counts: dict[str, list[int]] = {}

    def recount(self) -> None:
        """Count from the instances' states (on start, and after a clear)."""
        self._counts = {tid: [0, 0, 0, 0] for tid in self.dag.task_dict}
        self.unfinished = 0
        for task_id, task in self.dag.task_dict.items():
            state = self.tis[task_id].state
            if state not in FINISHED_STATES:
                self.unfinished += 1
            index = _COUNTED.get(state)
            if index is not None:
                for down in task.downstream_task_ids:
                    self._counts[down][index] += 1

    def finished(self, ti: TaskInstanceRecord) -> None:
        """Count an instance that has just reached a finished state."""
        self.unfinished -= 1
        index = _COUNTED.get(ti.state)
        if index is not None:
            for down in self.dag.task_dict[ti.task_id].downstream_task_ids:
                self._counts[down][index] += 1

    def evaluate(self, task_ids: Sequence[str], now: datetime, step: Step) -> None:
        """Apply trigger rules to the waiting instances among ``task_ids``, cascading."""
        work = list(reversed(task_ids))
        while work:
            task_id = work.pop()
            ti = self.tis[task_id]
            if ti.state != TaskState.NONE or task_id in self.blocked:
                continue
            task = self.dag.task_dict[task_id]
            c = self._counts[task_id]
            upstream = UpstreamCounts(len(task.upstream_task_ids), c[0], c[1], c[2], c[3])
            verdict = evaluate_trigger_rule(task.trigger_rule, upstream)
            if verdict is Verdict.WAIT:
                continue
            if verdict is Verdict.RUN:
                ti.state = apply(ti.state, TaskEvent.SCHEDULE, self.where(task_id))
                step.ready.append(task_id)
            else:
                move = TaskEvent.SKIP if verdict is Verdict.SKIP else TaskEvent.FLAG_UPSTREAM_FAILED
                ti.state = apply(ti.state, move, self.where(task_id))
                ti.end_date = now
                self.finished(ti)
                work.extend(sorted(task.downstream_task_ids, reverse=True))
            step.writes.append(ti)

    def skip(self, task_ids: Iterable[str], now: datetime, step: Step) -> set[str]:
        """Skip those of ``task_ids`` still waiting (a branch did not follow them).

        Returns the tasks downstream of them, for the caller to evaluate.
        """
        downstream: set[str] = set()
        for task_id in sorted(task_ids):
            ti = self.tis.get(task_id)
            if ti is None or ti.state not in _WAITING:
                continue
            if ti.state == TaskState.SCHEDULED:
                step.unready.append(task_id)
            ti.state = apply(ti.state, TaskEvent.SKIP, self.where(task_id))
            ti.end_date = now
            self.finished(ti)
            step.writes.append(ti)
            downstream |= self.dag.task_dict[task_id].downstream_task_ids
        return downstream

    def has_pending(self) -> bool:
        """Whether any instance is on its way (scheduled, retrying, in flight, deferred)."""
        return any(self.tis[tid].state in _PENDING for tid in self.dag.task_dict)

    def deadlock_reason(self) -> str:
        waiting = [tid for tid in self.dag.task_dict if self.tis[tid].state == TaskState.NONE]
        reasons = [f"{tid}: {self.blocked[tid]}" for tid in waiting if tid in self.blocked]
        return "no task can make progress; " + ("; ".join(reasons) or ", ".join(waiting))

    def where(self, task_id: str) -> tuple[str, str, str]:
        """The instance's key, for errors."""
        return (*self.run_key, task_id)


def clear_instance(ti: TaskInstanceRecord, where: object) -> None:
    """Reset an instance to run again; its try count and try history stay."""
    ti.state = apply(ti.state, TaskEvent.CLEAR, where)
    ti.end_date = None
    ti.duration = None
    ti.next_retry_at = None


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
