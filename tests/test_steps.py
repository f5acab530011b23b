"""The run driver's vocabulary: every input has a handler, and commands are plain data."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

from orchestrator import DAG
from orchestrator.core import (
    Input,
    Resumption,
    RunDriver,
    RunRecord,
    RunState,
    Step,
    Timer,
    TryOutcome,
)
from orchestrator.operators import EmptyOperator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_driver_handles_every_input_of_the_union() -> None:
    """Adding an input to the union without a handler in the driver fails here."""
    with DAG("d") as dag:
        EmptyOperator(task_id="a")
    driver = RunDriver(dag, RunRecord("d", "r", RunState.QUEUED, "manual", T0, T0))
    assert set(typing.get_args(Input)) == set(driver._handlers)


def test_a_step_starts_empty() -> None:
    """A step commands nothing until the driver adds to it."""
    step = Step()
    lists = [step.writes, step.ready, step.unready, step.cancel, step.timers]
    lists += [step.cancel_timers, step.defer, step.withdraw, step.alerts]
    assert lists == [[]] * 9
    assert step.ended is None


def test_a_timer_is_keyed_by_kind_and_task() -> None:
    """Arming a timer of the same key replaces the earlier one (the shell keys them so)."""
    assert Timer("retry", "t", T0).key == ("retry", "t")
    assert Timer("run_timeout", None, T0).key == ("run_timeout", None)


def test_a_resumption_that_ends_the_try_is_a_try_outcome() -> None:
    """Every resumption but "run" names the outcome the try ends with."""
    ending = {r.value for r in Resumption} - {Resumption.RUN.value}
    assert ending <= {o.value for o in TryOutcome}
