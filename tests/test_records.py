"""The records of a run: the shapes the CLI's --json and the API show (SPEC section 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from orchestrator.core import RunRecord, RunState, TaskInstanceRecord, TaskState

T0 = datetime(2026, 4, 1, 6, 0, tzinfo=UTC)


def test_a_run_shows_the_spec_fields_with_utc_offsets() -> None:
    """dag_id, run_id, state, run_type, dates (ISO 8601 with an offset) and conf."""
    paris = timezone(timedelta(hours=2))
    run = RunRecord(
        "d",
        "r",
        RunState.SUCCESS,
        "scheduled",
        logical_date=T0.astimezone(paris),
        queued_at=T0,
        start_date=T0,
        end_date=None,
        conf={"x": [1]},
        trigger_key="k",
        driver="cli:h:1",
    )
    assert run.to_json() == {
        "dag_id": "d",
        "run_id": "r",
        "state": "success",
        "run_type": "scheduled",
        "logical_date": "2026-04-01T06:00:00.000000+00:00",
        "start_date": "2026-04-01T06:00:00.000000+00:00",
        "end_date": None,
        "conf": {"x": [1]},
    }


def test_a_task_instance_shows_its_state_tries_and_duration() -> None:
    """task_id, state, try_number, start and end dates, duration in seconds."""
    ti = TaskInstanceRecord(
        "d",
        "r",
        "t",
        state=TaskState.UP_FOR_RETRY,
        try_number=2,
        start_date=T0,
        end_date=T0 + timedelta(seconds=1.5),
        duration=1.5,
    )
    assert ti.to_json() == {
        "task_id": "t",
        "map_index": -1,
        "rendered_map_index": None,
        "state": "up_for_retry",
        "try_number": 2,
        "start_date": "2026-04-01T06:00:00.000000+00:00",
        "end_date": "2026-04-01T06:00:01.500000+00:00",
        "duration": 1.5,
    }


def test_a_new_task_instance_waits_in_the_default_pool() -> None:
    """Defaults: state none, no try yet, the default pool, weight 1."""
    ti = TaskInstanceRecord("d", "r", "t")
    assert (ti.state, ti.try_number, ti.pool, ti.priority_weight) == (
        TaskState.NONE,
        0,
        "default_pool",
        1,
    )
