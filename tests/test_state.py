"""The pure state machine: transitions, trigger rules, retry delays, run outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core._state import (
    FINISHED_STATES,
    TASK_TRANSITIONS,
    RunState,
    TaskEvent,
    TaskState,
    TriggerRule,
    UpstreamCounts,
    Verdict,
    apply,
    decide_run_state,
    evaluate_trigger_rule,
    retry_delay,
)
from orchestrator.errors import IllegalTransition

S, F, K, U = "success", "failed", "skipped", "upstream_failed"
DONE_STATES = [TaskState(x) for x in (S, F, K, U)]


def verdict(rule: str, *states: str, pending: int = 0) -> Verdict:
    counts = UpstreamCounts.of(TaskState(s) for s in states)
    counts = UpstreamCounts(
        counts.total + pending,
        counts.success,
        counts.skipped,
        counts.failed,
        counts.upstream_failed,
    )
    return evaluate_trigger_rule(TriggerRule(rule), counts)


def test_every_state_has_a_row_in_the_table() -> None:
    """The transition table covers every task state."""
    assert set(TASK_TRANSITIONS) == set(TaskState)


def test_happy_path_transitions() -> None:
    """none -> scheduled -> queued -> running -> success."""
    state = TaskState.NONE
    for event in (TaskEvent.SCHEDULE, TaskEvent.QUEUE, TaskEvent.START, TaskEvent.SUCCEED):
        state = apply(state, event, "k")
    assert state is TaskState.SUCCESS


def test_illegal_transition_names_event_state_and_key() -> None:
    """An illegal transition raises with the event, the state and the instance."""
    with pytest.raises(
        IllegalTransition, match=r"cannot succeed in state none for \('d', 'r', 't'\)"
    ):
        apply(TaskState.NONE, TaskEvent.SUCCEED, ("d", "r", "t"))


def test_finished_states_can_only_be_cleared_removed_or_marked() -> None:
    """A finished instance changes only through clear (or remove), or a user's mark."""
    marks = {TaskEvent.MARK_SUCCESS, TaskEvent.MARK_FAILED}
    for state in FINISHED_STATES:
        assert set(TASK_TRANSITIONS[state]) <= {TaskEvent.CLEAR, TaskEvent.REMOVE, *marks}
    for state in set(TaskState) - FINISHED_STATES:
        assert not set(TASK_TRANSITIONS[state]) & marks


def test_retry_goes_back_through_scheduled() -> None:
    """running -> up_for_retry -> scheduled."""
    state = apply(TaskState.RUNNING, TaskEvent.RETRY, "k")
    assert apply(state, TaskEvent.SCHEDULE, "k") is TaskState.SCHEDULED


@pytest.mark.parametrize(
    ("rule", "states", "pending", "expected"),
    [
        # all_success: waits, runs, flags skipped or upstream_failed early
        ("all_success", (S, S), 0, Verdict.RUN),
        ("all_success", (S,), 1, Verdict.WAIT),
        ("all_success", (F,), 1, Verdict.UPSTREAM_FAILED),
        ("all_success", (U,), 1, Verdict.UPSTREAM_FAILED),
        ("all_success", (K,), 1, Verdict.SKIP),
        ("all_success", (K, F), 0, Verdict.UPSTREAM_FAILED),
        # all_failed
        ("all_failed", (F, U), 0, Verdict.RUN),
        ("all_failed", (F,), 1, Verdict.WAIT),
        ("all_failed", (S,), 1, Verdict.SKIP),
        ("all_failed", (K,), 1, Verdict.SKIP),
        # all_done
        ("all_done", (S, F, K, U), 0, Verdict.RUN),
        ("all_done", (F,), 1, Verdict.WAIT),
        # all_skipped
        ("all_skipped", (K, K), 0, Verdict.RUN),
        ("all_skipped", (K,), 1, Verdict.WAIT),
        ("all_skipped", (S,), 1, Verdict.SKIP),
        ("all_skipped", (U,), 1, Verdict.SKIP),
        # one_success: does not wait for the others
        ("one_success", (S,), 2, Verdict.RUN),
        ("one_success", (F,), 1, Verdict.WAIT),
        ("one_success", (F, K), 0, Verdict.UPSTREAM_FAILED),
        ("one_success", (K, K), 0, Verdict.SKIP),
        # one_failed
        ("one_failed", (F,), 2, Verdict.RUN),
        ("one_failed", (U,), 1, Verdict.RUN),
        ("one_failed", (S, K), 0, Verdict.SKIP),
        ("one_failed", (S,), 1, Verdict.WAIT),
        # one_done
        ("one_done", (S,), 1, Verdict.RUN),
        ("one_done", (F,), 1, Verdict.RUN),
        ("one_done", (K, U), 0, Verdict.SKIP),
        ("one_done", (K,), 1, Verdict.WAIT),
        # none_failed
        ("none_failed", (S, K), 0, Verdict.RUN),
        ("none_failed", (K, K), 0, Verdict.RUN),
        ("none_failed", (F,), 1, Verdict.UPSTREAM_FAILED),
        ("none_failed", (S,), 1, Verdict.WAIT),
        # none_failed_min_one_success
        ("none_failed_min_one_success", (S, K), 0, Verdict.RUN),
        ("none_failed_min_one_success", (K, K), 0, Verdict.SKIP),
        ("none_failed_min_one_success", (U,), 1, Verdict.UPSTREAM_FAILED),
        # none_skipped
        ("none_skipped", (S, F, U), 0, Verdict.RUN),
        ("none_skipped", (K,), 1, Verdict.SKIP),
        ("none_skipped", (S,), 1, Verdict.WAIT),
        # always
        ("always", (), 3, Verdict.RUN),
        ("always", (F, U), 0, Verdict.RUN),
    ],
)
def test_trigger_rule_table(
    rule: str, states: tuple[str, ...], pending: int, expected: Verdict
) -> None:
    """Each trigger rule gives Airflow's verdict for the upstream states."""
    assert verdict(rule, *states, pending=pending) is expected


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_task_without_upstream_always_runs(rule: TriggerRule) -> None:
    """No upstream tasks: every rule lets the task run."""
    assert evaluate_trigger_rule(rule, UpstreamCounts(0)) is Verdict.RUN


states_lists = st.lists(st.sampled_from(DONE_STATES), min_size=1, max_size=8)


@given(rule=st.sampled_from(list(TriggerRule)), states=states_lists)
def test_all_upstream_done_never_waits(rule: TriggerRule, states: list[TaskState]) -> None:
    """Once every upstream task has finished, the verdict is final: no run can deadlock."""
    assert evaluate_trigger_rule(rule, UpstreamCounts.of(states)) is not Verdict.WAIT


@given(
    rule=st.sampled_from(list(TriggerRule)),
    done=st.lists(st.sampled_from(DONE_STATES), max_size=5),
    rest=st.lists(st.sampled_from(DONE_STATES), min_size=1, max_size=5),
)
def test_an_early_flag_never_preempts_a_run(
    rule: TriggerRule, done: list[TaskState], rest: list[TaskState]
) -> None:
    """A task flagged before its upstream finished would not have run whatever came next."""
    partial = UpstreamCounts.of(done)
    partial = UpstreamCounts(
        len(done) + len(rest),
        partial.success,
        partial.skipped,
        partial.failed,
        partial.upstream_failed,
    )
    early = evaluate_trigger_rule(rule, partial)
    final = evaluate_trigger_rule(rule, UpstreamCounts.of(done + rest))
    if early in (Verdict.SKIP, Verdict.UPSTREAM_FAILED):
        assert final is not Verdict.RUN
    if early is Verdict.RUN and rule is not TriggerRule.ALWAYS:
        # A rule that fired early stays satisfied, or its outcome is a flag it raises later.
        assert final in (Verdict.RUN, Verdict.SKIP, Verdict.UPSTREAM_FAILED)


def test_retry_delay_is_fixed_without_backoff() -> None:
    """Without backoff every retry waits retry_delay."""
    delay = timedelta(seconds=30)
    assert [retry_delay(n, delay) for n in (1, 2, 5)] == [delay] * 3


def test_retry_delay_doubles_with_backoff() -> None:
    """With backoff the wait after try n lies in [d*2^(n-1), d*2^n)."""
    delay = timedelta(seconds=10)
    for n in range(1, 8):
        wait = retry_delay(n, delay, exponential=True, seed="d.t")
        assert delay * 2 ** (n - 1) <= wait < delay * 2**n


@given(
    seconds=st.integers(min_value=1, max_value=3600),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=10**6)),
    seed=st.text(max_size=10),
)
def test_backoff_is_monotonic_and_capped(seconds: int, cap: int | None, seed: str) -> None:
    """Backoff never shrinks from one try to the next and never exceeds max_retry_delay."""
    delay = timedelta(seconds=seconds)
    max_delay = timedelta(seconds=cap) if cap is not None else None
    waits = [
        retry_delay(n, delay, exponential=True, max_delay=max_delay, seed=seed)
        for n in range(1, 80)
    ]
    assert waits == sorted(waits)
    if max_delay is not None:
        assert max(waits) <= max_delay


def test_retry_delay_is_deterministic() -> None:
    """The same instance and try always waits the same."""
    d = timedelta(seconds=7)
    assert retry_delay(3, d, exponential=True, seed="x") == retry_delay(
        3, d, exponential=True, seed="x"
    )


def test_retry_delay_rejects_try_zero() -> None:
    """Tries are counted from 1."""
    with pytest.raises(ValueError, match="failed_try"):
        retry_delay(0, timedelta(seconds=1))


def test_run_is_unfinished_while_a_task_is_not() -> None:
    """No run state while a task instance has not finished."""
    assert decide_run_state({"a": TaskState.SUCCESS, "b": TaskState.RUNNING}, ["b"]) is None


def test_run_fails_when_a_leaf_fails() -> None:
    """A failed or upstream_failed leaf fails the run."""
    states = {"a": TaskState.FAILED, "b": TaskState.UPSTREAM_FAILED}
    assert decide_run_state(states, ["b"]) is RunState.FAILED


def test_run_succeeds_when_a_failure_is_handled_upstream() -> None:
    """A failed task whose downstream leaf ran anyway (all_done) leaves the run successful."""
    states = {"a": TaskState.FAILED, "cleanup": TaskState.SUCCESS}
    assert decide_run_state(states, ["cleanup"]) is RunState.SUCCESS


def test_run_succeeds_with_skipped_leaves() -> None:
    """Skipped leaves count as success."""
    assert decide_run_state({"a": TaskState.SKIPPED}, ["a"]) is RunState.SUCCESS
