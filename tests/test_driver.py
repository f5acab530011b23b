"""The run driver, as tables: inputs and the time in, state and commands out; no store, no loop."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.authoring._dag import DAG
from orchestrator.core import (
    LOST_TRY,
    Alert,
    AlertEvent,
    Clear,
    Deferred,
    NotStarted,
    PastRun,
    Queued,
    Resumed,
    Resumption,
    RetryDue,
    RunDriver,
    RunRecord,
    RunState,
    Start,
    Step,
    Stop,
    TaskInstanceRecord,
    TaskState,
    TimedOut,
    Timer,
    TryEnded,
    TryOutcome,
    TryRecord,
    TryStarted,
    XComRecord,
    XComsCleared,
)
from orchestrator.operators import EmptyOperator

T0 = datetime(2024, 1, 1, tzinfo=UTC)
OK, FAIL, SKIP, LOST = (
    TryOutcome.SUCCESS,
    TryOutcome.FAILED,
    TryOutcome.SKIPPED,
    TryOutcome.LOST,
)


def chain_dag(*ids: str, dag_id: str = "d", **task_args: Any) -> DAG:
    with DAG(dag_id, **{k: v for k, v in task_args.items() if k == "dagrun_timeout"}) as dag:
        tasks = [
            EmptyOperator(
                task_id=t, **{k: v for k, v in task_args.items() if k != "dagrun_timeout"}
            )
            for t in ids
        ]
        for up, down in itertools.pairwise(tasks):
            up >> down
    return dag


def driver_for(dag: DAG, *tis: TaskInstanceRecord, logical: datetime | None = T0) -> RunDriver:
    run = RunRecord(
        dag_id=dag.dag_id,
        run_id="r1",
        state=RunState.QUEUED,
        run_type="manual",
        logical_date=logical,
        queued_at=T0,
    )
    return RunDriver(dag, run, tis)


def started(dag: DAG, **start: Any) -> tuple[RunDriver, Step]:
    driver = driver_for(dag)
    return driver, driver.feed(Start(**start), T0)


def run_try(
    driver: RunDriver, task_id: str, outcome: TryOutcome = OK, now: datetime = T0, **kw: Any
) -> Step:
    """Take the instance from the ready queue, start it and end it as ``outcome``."""
    driver.feed(Queued(task_id), now)
    driver.feed(TryStarted(task_id, "host", f"/logs/{task_id}"), now)
    return driver.feed(TryEnded(task_id, outcome, **kw), now)


def states(driver: RunDriver) -> dict[str, str]:
    return {tid: str(ti.state) for tid, ti in driver.tis.items()}


def ti(task_id: str, state: TaskState, try_number: int = 0, **kw: Any) -> TaskInstanceRecord:
    return TaskInstanceRecord("d", "r1", task_id, state=state, try_number=try_number, **kw)


# -- starting a run --------------------------------------------------------------------------


def test_start_creates_the_instances_and_readies_the_roots() -> None:
    """A new run: one instance per task written, the run running, the roots ready."""
    with DAG("d") as dag:
        a, b, c = (EmptyOperator(task_id=t) for t in "abc")
        [a, b] >> c
    driver, step = started(dag)
    assert sorted(step.ready) == ["a", "b"]
    assert states(driver) == {"a": "scheduled", "b": "scheduled", "c": "none"}
    written = {w.task_id for w in step.writes if isinstance(w, TaskInstanceRecord)}
    assert written == {"a", "b", "c"}
    assert driver.run in step.writes
    assert (driver.run.state, driver.run.start_date) == (RunState.RUNNING, T0)
    assert step.ended is None


def test_start_again_requeues_queued_and_counts_running_tries_as_lost() -> None:
    """After a stop: queued goes back to scheduled, a running try is lost and retried at once."""
    with DAG("d") as dag:
        EmptyOperator(task_id="q")
        EmptyOperator(task_id="r", retries=1, retry_delay=timedelta(minutes=5))
    open_try = TryRecord("d", "r1", "r", 1, TaskState.RUNNING, start_date=T0, log_path="/l")
    driver = driver_for(dag, ti("q", TaskState.QUEUED), ti("r", TaskState.RUNNING, 1))
    now = T0 + timedelta(hours=1)
    step = driver.feed(Start(open_tries={"r": open_try}), now)
    assert states(driver) == {"q": "scheduled", "r": "up_for_retry"}
    assert step.ready == ["q"]
    assert Timer("retry", "r", now) in step.timers  # no retry_delay for a lost try
    assert (open_try.state, open_try.error, open_try.end_date) == (TaskState.FAILED, LOST_TRY, now)
    assert open_try in step.writes
    assert driver.errors["r"] == LOST_TRY
    # rule 6: the lost try is alerted (its process was killed), as a retry here
    assert step.alerts == [Alert(AlertEvent.TASK_RETRY, "r", 1, LOST_TRY)]


def test_start_again_waits_for_an_adopted_try_instead_of_counting_it_lost() -> None:
    """A running try that runs on elsewhere (a worker) stays running and in flight: the
    shell waits for it, and its end is fed as any try's."""
    dag = chain_dag("a", "b", retries=1)
    open_try = TryRecord("d", "r1", "a", 1, TaskState.RUNNING, start_date=T0, log_path="/l")
    driver = driver_for(dag, ti("a", TaskState.RUNNING, 1))
    step = driver.feed(Start(open_tries={"a": open_try}, adopted=frozenset({"a"})), T0)
    assert step.adopt == ["a"]
    assert states(driver) == {"a": "running", "b": "none"}
    assert (open_try.state, step.timers, step.alerts, step.ended) == (
        TaskState.RUNNING,
        [],
        [],
        None,
    )
    end = driver.feed(TryEnded("a", OK), T0 + timedelta(seconds=1))
    assert states(driver) == {"a": "success", "b": "scheduled"}
    assert driver.tis["a"].try_number == 1
    assert end.ready == ["b"]


def test_a_lost_try_without_retries_fails_and_its_downstream_is_flagged() -> None:
    """A lost try with no retry left fails; an all_success downstream is upstream_failed."""
    dag = chain_dag("a", "b")
    driver = driver_for(dag, ti("a", TaskState.RUNNING, 1))
    step = driver.feed(Start(), T0)
    assert states(driver) == {"a": "failed", "b": "upstream_failed"}
    assert step.ended is RunState.FAILED


def test_start_again_never_reruns_a_finished_task() -> None:
    """A succeeded instance stays as it was; only what follows it is scheduled."""
    dag = chain_dag("a", "b")
    driver = driver_for(dag, ti("a", TaskState.SUCCESS, 1))
    step = driver.feed(Start(), T0)
    assert step.ready == ["b"]
    assert driver.tis["a"].try_number == 1


def test_a_stored_deferred_instance_waits_on_and_keeps_the_run_alive() -> None:
    """Start: a deferred instance is not a lost try; its wait goes back to the engine."""
    dag = chain_dag("sense", "after")
    waiting = TryRecord("d", "r1", "sense", 1, TaskState.DEFERRED, start_date=T0)
    driver = driver_for(dag, ti("sense", TaskState.DEFERRED, 1))
    step = driver.feed(Start(open_tries={"sense": waiting}), T0)
    assert states(driver) == {"sense": "deferred", "after": "none"}
    assert [d.task_id for d in step.defer] == ["sense"]
    assert step.ended is None
    assert waiting.state == TaskState.DEFERRED


def test_an_instance_of_a_task_no_longer_in_the_dag_is_removed() -> None:
    """A stored instance whose task left the DAG file is marked removed."""
    dag = chain_dag("a")
    driver = driver_for(dag, ti("gone", TaskState.SCHEDULED))
    driver.feed(Start(), T0)
    assert driver.tis["gone"].state == TaskState.REMOVED


# -- tries and the cascade -------------------------------------------------------------------


def test_a_chain_runs_in_order_and_the_last_end_ends_the_run() -> None:
    """Each success readies the next; the last one's step ends the run, in the same writes."""
    driver, step = started(chain_dag("a", "b", "c"))
    assert step.ready == ["a"]
    assert run_try(driver, "a").ready == ["b"]
    assert run_try(driver, "b").ready == ["c"]
    last = run_try(driver, "c")
    assert last.ended is RunState.SUCCESS
    assert driver.run in last.writes
    assert driver.run.end_date == T0
    assert last.alerts == [Alert(AlertEvent.TASK_SUCCESS, "c", 1), Alert(AlertEvent.RUN_SUCCESS)]


def test_queued_and_started_write_the_instance_and_its_new_try() -> None:
    """Queued takes a slot; TryStarted counts a try and writes its record."""
    driver, _ = started(chain_dag("a"))
    queued = driver.feed(Queued("a"), T0)
    assert queued.writes == [driver.tis["a"]]
    assert driver.in_flight == 1
    step = driver.feed(TryStarted("a", "host", "/logs/a"), T0)
    attempt = step.writes[1]
    assert isinstance(attempt, TryRecord)
    assert (attempt.try_number, attempt.state, attempt.hostname, attempt.log_path) == (
        1,
        TaskState.RUNNING,
        "host",
        "/logs/a",
    )
    assert driver.tis["a"].state == TaskState.RUNNING


def test_a_try_run_by_a_worker_ends_with_the_workers_host() -> None:
    """Started by the daemon (its host), run by a worker: the ended try names the worker's."""
    driver, _ = started(chain_dag("a", "b"))
    end = run_try(driver, "a", hostname="worker-7")
    (attempt,) = [w for w in end.writes if isinstance(w, TryRecord)]
    assert (attempt.state, attempt.hostname) == (TaskState.SUCCESS, "worker-7")
    end = run_try(driver, "b")
    (attempt,) = [w for w in end.writes if isinstance(w, TryRecord)]
    assert attempt.hostname == "host"


def test_a_failure_flags_everything_downstream_in_one_step() -> None:
    """A failed task's all_success descendants are upstream_failed at once; the run fails."""
    driver, _ = started(chain_dag("a", "b", "c"))
    step = run_try(driver, "a", FAIL, error="ValueError: bad")
    assert states(driver) == {"a": "failed", "b": "upstream_failed", "c": "upstream_failed"}
    assert step.ended is RunState.FAILED
    assert Alert(AlertEvent.TASK_FAILURE, "a", 1, "ValueError: bad") in step.alerts
    assert driver.errors["a"] == "ValueError: bad"


@pytest.mark.parametrize(
    ("rule", "outcomes", "expected"),
    [
        ("all_success", (OK, OK), "scheduled"),
        ("all_success", (OK, SKIP), "skipped"),
        ("all_done", (FAIL, SKIP), "scheduled"),
        ("one_failed", (OK, OK), "skipped"),
        ("one_failed", (FAIL, OK), "scheduled"),
        ("one_success", (FAIL, FAIL), "upstream_failed"),
        ("none_failed", (OK, SKIP), "scheduled"),
        ("none_failed_min_one_success", (SKIP, SKIP), "skipped"),
        ("all_failed", (FAIL, FAIL), "scheduled"),
        ("none_skipped", (OK, SKIP), "skipped"),
    ],
)
def test_trigger_rules_decide_the_join(
    rule: str, outcomes: tuple[TryOutcome, TryOutcome], expected: str
) -> None:
    """The join's state once both upstream tries ended, per trigger rule."""
    with DAG("d") as dag:
        a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
        [a, b] >> EmptyOperator(task_id="join", trigger_rule=rule)
    driver, _ = started(dag)
    run_try(driver, "a", outcomes[0])
    run_try(driver, "b", outcomes[1])
    assert states(driver)["join"] == expected


def test_a_branch_skips_what_it_did_not_follow_and_the_cascade_follows() -> None:
    """TryEnded with skip: the other path is skipped; a none_failed join still runs."""
    with DAG("d") as dag:
        pick = EmptyOperator(task_id="pick")
        left, right, after = (EmptyOperator(task_id=t) for t in ("left", "right", "after"))
        join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
        pick >> [left, right]
        right >> after
        [left, after] >> join
    driver, _ = started(dag)
    step = run_try(driver, "pick", skip=frozenset({"right"}))
    assert step.ready == ["left"]
    assert states(driver)["right"] == states(driver)["after"] == "skipped"
    run_try(driver, "left")
    assert states(driver)["join"] == "scheduled"


def test_a_branch_withdraws_an_instance_already_ready() -> None:
    """Skipping a scheduled instance takes it out of the ready queue (unready)."""
    with DAG("d") as dag:
        EmptyOperator(task_id="pick")
        EmptyOperator(task_id="other")
    driver, _ = started(dag)
    step = run_try(driver, "pick", skip=frozenset({"other"}))
    assert step.unready == ["other"]
    assert states(driver)["other"] == "skipped"


def test_xcoms_are_written_with_the_result() -> None:
    """What a try pushed is in the same writes as its end."""
    driver, _ = started(chain_dag("a"))
    step = run_try(driver, "a", xcoms={"return_value": "3"})
    assert XComRecord("d", "r1", "a", "return_value", "3") in step.writes


def test_an_instance_that_cannot_start_fails_without_a_try() -> None:
    """NotStarted (a missing pool): failed with the reason, try count unchanged."""
    driver, _ = started(chain_dag("a", "b"))
    step = driver.feed(NotStarted("a", "pool 'nope' does not exist"), T0)
    assert states(driver) == {"a": "failed", "b": "upstream_failed"}
    assert driver.tis["a"].try_number == 0
    assert driver.errors["a"] == "pool 'nope' does not exist"
    assert step.ended is RunState.FAILED
    assert not any(isinstance(w, TryRecord) for w in step.writes)


# -- retries ---------------------------------------------------------------------------------


def test_a_failed_try_with_retries_left_waits_for_its_timer() -> None:
    """up_for_retry, a timer at now + retry_delay, the try recorded failed, a retry alert."""
    driver, _ = started(chain_dag("a", retries=2, retry_delay=timedelta(seconds=30)))
    step = run_try(driver, "a", FAIL, error="boom")
    assert states(driver) == {"a": "up_for_retry"}
    assert step.timers == [Timer("retry", "a", T0 + timedelta(seconds=30))]
    attempt = next(w for w in step.writes if isinstance(w, TryRecord))
    assert (attempt.state, attempt.error) == (TaskState.FAILED, "boom")
    assert step.alerts == [Alert(AlertEvent.TASK_RETRY, "a", 1, "boom")]
    assert step.ended is None


def test_retries_run_out_after_retries_plus_one_tries() -> None:
    """RetryDue readies the instance; the third failure of retries=2 fails it."""
    driver, _ = started(chain_dag("a", retries=2, retry_delay=timedelta(seconds=30)))
    now = T0
    for expected_try in (1, 2):
        run_try(driver, "a", FAIL, now=now)
        assert driver.tis["a"].try_number == expected_try
        now += timedelta(seconds=30)
        assert driver.feed(RetryDue("a"), now).ready == ["a"]
    step = run_try(driver, "a", FAIL, now=now)
    assert (driver.tis["a"].state, driver.tis["a"].try_number) == (TaskState.FAILED, 3)
    assert step.ended is RunState.FAILED


def test_a_retry_after_success_retries_nothing() -> None:
    """A retry timer that fires after the instance moved on is ignored."""
    driver, _ = started(chain_dag("a"))
    run_try(driver, "a")
    step = driver.feed(RetryDue("a"), T0)
    assert (step.ready, step.writes) == ([], [])


def test_exponential_backoff_timer_lies_in_its_window() -> None:
    """With backoff, the wait after try n lies in [delay*2^(n-1), delay*2^n)."""
    driver, _ = started(
        chain_dag("a", retries=3, retry_delay=timedelta(seconds=10), retry_exponential_backoff=True)
    )
    now = T0
    for n in (1, 2, 3):
        timer = run_try(driver, "a", FAIL, now=now).timers[0]
        wait = (timer.at - now).total_seconds()
        assert 10 * 2 ** (n - 1) <= wait < 10 * 2**n
        now = timer.at
        driver.feed(RetryDue("a"), now)


def test_a_try_that_must_not_be_retried_fails_at_once() -> None:
    """retryable=False (FailTask) fails whatever retries are left."""
    driver, _ = started(chain_dag("a", retries=5))
    run_try(driver, "a", FAIL, retryable=False)
    assert (driver.tis["a"].state, driver.tis["a"].try_number) == (TaskState.FAILED, 1)


# -- stop and timeout ------------------------------------------------------------------------


def test_a_stop_skips_waiting_stops_running_and_ends_when_nothing_is_in_flight() -> None:
    """Stop: scheduled and retrying are skipped, running cancelled; the run ends after it."""
    with DAG("d") as dag:
        EmptyOperator(task_id="busy")
        EmptyOperator(task_id="retrying", retries=1)
        EmptyOperator(task_id="ready")
        EmptyOperator(task_id="later") << EmptyOperator(task_id="first")
    driver, _ = started(dag)
    run_try(driver, "retrying", FAIL)
    driver.feed(Queued("busy"), T0)
    driver.feed(TryStarted("busy"), T0)
    step = driver.feed(Stop("stopped by hand"), T0)
    assert step.cancel == ["busy"]
    assert sorted(step.unready) == ["first", "ready"]
    assert ("retry", "retrying") in step.cancel_timers
    assert {t: s for t, s in states(driver).items() if t != "busy"} == dict.fromkeys(
        ["retrying", "ready", "later", "first"], "skipped"
    )
    assert step.ended is None  # busy is still in flight
    end = driver.feed(TryEnded("busy", FAIL), T0 + timedelta(seconds=1))
    assert driver.tis["busy"].state == TaskState.FAILED
    assert driver.errors["busy"] == "stopped by hand"
    assert end.ended is RunState.FAILED
    assert driver.errors["<run>"] == "stopped by hand"


def test_a_try_ending_after_a_stop_is_not_retried() -> None:
    """Rule 5: after a stop a failing try fails for good, even with retries left."""
    driver, _ = started(chain_dag("a", retries=3))
    driver.feed(Queued("a"), T0)
    driver.feed(TryStarted("a"), T0)
    driver.feed(Stop("timeout"), T0)
    driver.feed(TryEnded("a", FAIL, error="Cancelled"), T0)
    assert driver.tis["a"].state == TaskState.FAILED


def test_a_stop_fails_a_deferred_instance_and_withdraws_its_wait() -> None:
    """Stop ends a deferred try as failed (it holds no slot, so the run ends at once)."""
    driver, _ = started(chain_dag("sense"))
    driver.feed(Queued("sense"), T0)
    driver.feed(TryStarted("sense"), T0)
    driver.feed(Deferred("sense", {"key": "k"}), T0)
    step = driver.feed(Stop("stopped"), T0)
    assert (step.cancel, step.withdraw) == ([], ["sense"])
    assert driver.tis["sense"].state == TaskState.FAILED
    assert step.ended is RunState.FAILED


def test_dagrun_timeout_arms_a_timer_and_timing_out_stops_the_run() -> None:
    """Start arms the run timeout at start + dagrun_timeout; TimedOut stops with the reason."""
    driver, step = started(chain_dag("a", dagrun_timeout=timedelta(minutes=10)))
    assert Timer("run_timeout", None, T0 + timedelta(minutes=10)) in step.timers
    end = driver.feed(TimedOut(), T0 + timedelta(minutes=10))
    assert end.ended is RunState.FAILED
    assert driver.errors["<run>"].startswith("dagrun_timeout: the run took longer than 0:10:00")


def test_the_end_of_a_run_cancels_its_timeout() -> None:
    """A run that ends in time cancels its run-timeout timer."""
    driver, _ = started(chain_dag("a", dagrun_timeout=timedelta(minutes=10)))
    assert ("run_timeout", None) in run_try(driver, "a").cancel_timers


# -- deferral ----------------------------------------------------------------------------------


def test_a_deferred_try_frees_its_slot_and_the_run_is_not_stuck() -> None:
    """Deferred: slot given back, the wait handed to the engine, no deadlock failure."""
    driver, _ = started(chain_dag("sense", "after"))
    driver.feed(Queued("sense"), T0)
    driver.feed(TryStarted("sense"), T0)
    step = driver.feed(Deferred("sense", {"poke": 60}), T0)
    assert driver.in_flight == 0
    assert [(d.task_id, d.trigger) for d in step.defer] == [("sense", {"poke": 60})]
    assert step.ended is None
    assert driver.tis["sense"].state == TaskState.DEFERRED


def test_a_resumed_success_ends_the_try_and_the_cascade_follows() -> None:
    """Resumed(success): the deferred try succeeds with its XCom; downstream is ready."""
    driver, _ = started(chain_dag("sense", "after"))
    driver.feed(Queued("sense"), T0)
    driver.feed(TryStarted("sense"), T0)
    driver.feed(Deferred("sense"), T0)
    step = driver.feed(Resumed("sense", Resumption.SUCCESS, xcoms={"return_value": "1"}), T0)
    assert states(driver) == {"sense": "success", "after": "scheduled"}
    assert step.ready == ["after"]
    assert XComRecord("d", "r1", "sense", "return_value", "1") in step.writes
    assert Alert(AlertEvent.TASK_SUCCESS, "sense", 1) in step.alerts


def test_a_resumed_run_continues_the_same_try() -> None:
    """Resumed(run): scheduled again; starting it continues the try, not a new one."""
    driver, _ = started(chain_dag("sense"))
    driver.feed(Queued("sense"), T0)
    driver.feed(TryStarted("sense"), T0)
    driver.feed(Deferred("sense"), T0)
    assert driver.feed(Resumed("sense", Resumption.RUN), T0).ready == ["sense"]
    driver.feed(Queued("sense"), T0)
    driver.feed(TryStarted("sense"), T0)
    assert driver.tis["sense"].try_number == 1
    end = driver.feed(TryEnded("sense", OK), T0)
    assert end.ended is RunState.SUCCESS


def test_a_resumption_after_a_stop_is_ignored() -> None:
    """A late resumption of an instance no longer deferred changes nothing."""
    driver, _ = started(chain_dag("sense"))
    driver.feed(Stop("stopped"), T0)
    assert driver.feed(Resumed("sense", Resumption.SUCCESS), T0).writes == []


# -- depends_on_past, the deadlock rule, clear --------------------------------------------------


def test_depends_on_past_blocks_after_a_failed_previous_run() -> None:
    """The task waits forever, so the run fails naming why (the deadlock rule)."""
    with DAG("d") as dag:
        EmptyOperator(task_id="t", depends_on_past=True)
    driver = driver_for(dag)
    assert driver.wants_past
    step = driver.feed(Start(past=PastRun("r0", {"t": TaskState.FAILED})), T0)
    assert step.ended is RunState.FAILED
    assert states(driver) == {"t": "none"}
    assert driver.errors["<run>"] == (
        "no task can make progress; t: depends_on_past: in run 'r0' it ended failed"
    )


def test_depends_on_past_after_a_success_runs() -> None:
    """A previous success (or skip) lets the task run."""
    with DAG("d") as dag:
        EmptyOperator(task_id="t", depends_on_past=True)
    driver = driver_for(dag)
    step = driver.feed(Start(past=PastRun("r0", {"t": TaskState.SUCCESS})), T0)
    assert step.ready == ["t"]


def test_a_run_without_a_logical_date_needs_no_past() -> None:
    """wants_past is False when nothing depends on the past or there is no logical date."""
    assert not driver_for(chain_dag("a")).wants_past
    with DAG("d") as dag:
        EmptyOperator(task_id="t", depends_on_past=True)
    assert not driver_for(dag, logical=None).wants_past


def test_clear_reruns_a_finished_task_as_its_next_try() -> None:
    """Clear after the run ended: running again, XComs dropped, the task's try 2 ends it."""
    driver, _ = started(chain_dag("a", "b"))
    run_try(driver, "a")
    run_try(driver, "b")
    assert driver.ended
    step = driver.feed(Clear(frozenset({"b"})), T0 + timedelta(hours=1))
    assert step.ready == ["b"]
    assert XComsCleared("d", "r1", "b") in step.writes
    assert (driver.run.state, driver.run.end_date, driver.ended) == (RunState.RUNNING, None, False)
    again = run_try(driver, "b")
    assert (driver.tis["a"].try_number, driver.tis["b"].try_number) == (1, 2)
    assert again.ended is RunState.SUCCESS


def test_clear_leaves_tries_in_flight_alone() -> None:
    """A running instance is not cleared (it must end first)."""
    driver, _ = started(chain_dag("a"))
    driver.feed(Queued("a"), T0)
    driver.feed(TryStarted("a"), T0)
    assert driver.feed(Clear(frozenset({"a"})), T0).writes == []


# -- a property over random DAGs ----------------------------------------------------------------

RULES = ["all_success", "all_done", "one_success", "one_failed", "none_failed", "always"]


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[DAG, dict[str, TryOutcome], list[int]]:
    n = draw(st.integers(1, 8))
    with DAG("p") as dag:
        tasks = [
            EmptyOperator(task_id=f"t{i}", trigger_rule=draw(st.sampled_from(RULES)))
            for i in range(n)
        ]
        for i in range(n):
            for j in range(i + 1, n):
                if draw(st.booleans()):
                    tasks[i] >> tasks[j]
    outcomes = {f"t{i}": draw(st.sampled_from([OK, FAIL, SKIP])) for i in range(n)}
    picks = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    return dag, outcomes, picks


@settings(max_examples=200)
@given(random_runs())
def test_every_run_ends_once_with_every_instance_finished(
    case: tuple[DAG, dict[str, TryOutcome], list[int]],
) -> None:
    """Whatever the graph, rules and outcomes: the run ends exactly once, nothing left waiting,
    and its state is the outcome of its leaves."""
    dag, outcomes, picks = case
    driver = driver_for(dag)
    step = driver.feed(Start(), T0)
    ready = list(step.ready)
    ends = [step.ended] if step.ended else []
    for pick in picks:
        if not ready:
            break
        task_id = ready.pop(pick % len(ready))
        step = run_try(driver, task_id, outcomes[task_id])
        ready = [t for t in ready if t not in step.unready] + step.ready
        ends += [step.ended] if step.ended else []
    assert not ready
    assert len(ends) == 1
    assert all(
        ti.state in {"success", "failed", "skipped", "upstream_failed"}
        for ti in driver.tis.values()
    )
    leaves_failed = any(
        driver.tis[leaf].state in ("failed", "upstream_failed") for leaf in dag.leaves
    )
    assert ends[0] is (RunState.FAILED if leaves_failed else RunState.SUCCESS)
