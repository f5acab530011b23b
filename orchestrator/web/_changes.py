"""The changes the daemon publishes for the UI: a run's and a task instance's state."""

from __future__ import annotations

from typing import Any

from orchestrator._clock import iso
from orchestrator.core import RunRecord, TaskInstanceRecord
from orchestrator.web._hub import ChangeHub

__all__ = ["run_changed", "state_changed"]


def run_changed(hub: ChangeHub, run: RunRecord, **more: Any) -> None:
    """A run was made or changed state (``more``: e.g. the instances a clear reset)."""
    if hub.watched:
        hub.publish(
            "run",
            dag_id=run.dag_id,
            run_id=run.run_id,
            state=str(run.state),
            run_type=run.run_type,
            logical_date=iso(run.logical_date),
            start_date=iso(run.start_date),
            end_date=iso(run.end_date),
            **more,
        )


def state_changed(hub: ChangeHub, run: RunRecord, ti: TaskInstanceRecord | None) -> None:
    """The scheduler's change listener's part for the UI: ``ti`` None is the run."""
    if not hub.watched:
        return
    if ti is None:
        run_changed(hub, run)
        return
    hub.publish(
        "ti",
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        state=str(ti.state),
        try_number=ti.try_number,
        start_date=iso(ti.start_date),
        end_date=iso(ti.end_date),
        duration=ti.duration,
    )
