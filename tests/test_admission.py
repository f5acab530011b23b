"""Admission: which queued runs start, in what order, and how much room each DAG has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.core import RunRecord, RunState
from orchestrator.core._admission import Admission

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(run_id: str, day: int, state: RunState = RunState.QUEUED, dag_id: str = "d") -> RunRecord:
    logical = T0 + timedelta(days=day)
    return RunRecord(dag_id, run_id, state, "scheduled", logical, T0)


def test_queued_runs_start_oldest_first_up_to_max_active_runs() -> None:
    """Rule 1: by logical date, no more than max_active_runs at once."""
    admission = Admission()
    for run_id, day in (("c", 3), ("a", 1), ("b", 2)):
        admission.add(run(run_id, day))
    assert [r.run_id for r in admission.admit("d", 2)] == ["a", "b"]
    assert admission.admit("d", 2) == []
    admission.ended("d", "a")
    assert [r.run_id for r in admission.admit("d", 2)] == ["c"]


def test_a_run_left_running_is_taken_back_first_whatever_the_limit() -> None:
    """A run a stopped process left running starts again before queued ones, even at the limit."""
    admission = Admission()
    admission.add(run("new", 1))
    admission.add(run("left", 5, RunState.RUNNING))
    admission.add(run("left2", 6, RunState.RUNNING))
    assert [r.run_id for r in admission.admit("d", 1)] == ["left", "left2"]


def test_a_paused_dag_starts_nothing_until_unpaused() -> None:
    """Paused: its runs stay queued."""
    admission = Admission()
    admission.set_paused("d", True)
    admission.add(run("a", 1))
    assert admission.admit("d", 5) == []
    assert admission.queued_count == 1
    admission.set_paused("d", False)
    assert [r.run_id for r in admission.admit("d", 5)] == ["a"]


def test_room_counts_active_and_queued_runs() -> None:
    """Rule 2: what the engine may still fire is max_active_runs less active and queued."""
    admission = Admission()
    admission.add(run("a", 1))
    admission.add(run("b", 2))
    admission.admit("d", 1)
    assert admission.room("d", 3) == 1
    assert admission.room("d", 1) == 0
    assert admission.room("other", 3) == 3


def test_a_run_is_known_from_added_until_it_ends() -> None:
    """Rule 3: queued or active runs are known, so reading the store again adds nothing twice."""
    admission = Admission()
    admission.add(run("a", 1))
    assert admission.knows("d", "a")
    admission.admit("d", 1)
    assert admission.knows("d", "a")
    admission.ended("d", "a")
    assert not admission.knows("d", "a")


def test_dags_are_admitted_independently() -> None:
    """One DAG at its limit does not hold back another."""
    admission = Admission()
    admission.add(run("a1", 1, dag_id="a"))
    admission.add(run("a2", 2, dag_id="a"))
    admission.add(run("b1", 1, dag_id="b"))
    assert [r.run_id for r in admission.admit("a", 1)] == ["a1"]
    assert [r.run_id for r in admission.admit("b", 1)] == ["b1"]


def test_paused_flags_are_known_once_read_or_set() -> None:
    """A DAG's paused flag is unknown until the store or a user says; unknown means not paused."""
    admission = Admission()
    assert not admission.knows_paused("d")
    assert not admission.is_paused("d")
    admission.set_paused("d", False)
    assert admission.knows_paused("d")
