"""The authoring API: DAG and task arguments, dependencies, TaskFlow, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import DAG, Dataset, TriggerRule, chain, cross_downstream, dag, task
from orchestrator.errors import CycleError, DagDefinitionError, DuplicateTaskError
from orchestrator.operators import BashOperator, EmptyOperator, PythonOperator
from triggers import Cron, DatasetAndTime, DatasetOrTime

START = datetime(2024, 1, 1)


def ids(tasks: set[str]) -> list[str]:
    return sorted(tasks)


def test_with_block_assigns_tasks_to_the_dag() -> None:
    """Operators created inside `with DAG(...)` belong to it, no `dag=` needed."""
    with DAG("d") as d:
        EmptyOperator(task_id="a")
    assert d.task_ids == ["a"]


def test_rshift_lshift_and_lists() -> None:
    """>>, << and lists on either side set upstream/downstream."""
    with DAG("d") as d:
        a, b, c, e = (EmptyOperator(task_id=x) for x in "abce")
        [a, b] >> c
        e << c
    assert ids(d.task_dict["c"].upstream_task_ids) == ["a", "b"]
    assert ids(d.task_dict["e"].upstream_task_ids) == ["c"]


def test_spec_example_dependencies() -> None:
    """`[a >> c, b] >> d >> e` gives the graph of SPEC section 1."""
    with DAG("d") as g:
        a, b, c, d, e = (EmptyOperator(task_id=x) for x in "abcde")
        [a >> c, b] >> d >> e
    assert ids(g.task_dict["d"].upstream_task_ids) == ["b", "c"]
    assert ids(g.task_dict["c"].upstream_task_ids) == ["a"]
    assert g.leaves == ["e"]


def test_chain_links_in_sequence_and_pairs_lists() -> None:
    """chain(a, [b, c], [d, e], f) links a to both, then pairwise, then both to f."""
    with DAG("d") as g:
        a, b, c, d, e, f = (EmptyOperator(task_id=x) for x in "abcdef")
        chain(a, [b, c], [d, e], f)
    assert ids(g.task_dict["a"].downstream_task_ids) == ["b", "c"]
    assert ids(g.task_dict["d"].upstream_task_ids) == ["b"]
    assert ids(g.task_dict["e"].upstream_task_ids) == ["c"]
    assert ids(g.task_dict["f"].upstream_task_ids) == ["d", "e"]


def test_chain_rejects_lists_of_different_length() -> None:
    """Adjacent lists in chain() must pair up."""
    with DAG("d"):
        a, b, c = (EmptyOperator(task_id=x) for x in "abc")
        with pytest.raises(DagDefinitionError, match="same length"):
            chain([a, b], [c])


def test_cross_downstream() -> None:
    """cross_downstream links every task of one list to every task of the other."""
    with DAG("d") as g:
        a, b, c, d = (EmptyOperator(task_id=x) for x in "abcd")
        cross_downstream([a, b], [c, d])
    assert ids(g.task_dict["d"].upstream_task_ids) == ["a", "b"]


def test_cycle_is_rejected_naming_the_tasks() -> None:
    """A cycle raises CycleError naming the DAG and the tasks in it."""
    with DAG("loop") as g:
        a, b, c = (EmptyOperator(task_id=x) for x in "abc")
        a >> b >> c >> a
    with pytest.raises(CycleError, match=r"DAG 'loop': cycle between tasks a -> b -> c -> a"):
        g.validate()


def test_cycle_behind_a_downstream_task_is_found() -> None:
    """The cycle is reported even when other blocked tasks hang below it."""
    with DAG("d") as g:
        x, a, b, z = (EmptyOperator(task_id=t) for t in ("x", "a", "b", "z"))
        x >> a >> b >> a
        b >> z
    with pytest.raises(CycleError, match="a -> b -> a"):
        g.validate()


def test_duplicate_task_id_is_rejected() -> None:
    """Two tasks with one id raise DuplicateTaskError naming both."""
    with DAG("d"):
        EmptyOperator(task_id="t")
        with pytest.raises(DuplicateTaskError, match=r"DAG 'd': duplicate task id 't'"):
            EmptyOperator(task_id="t")


def test_unknown_task_argument_names_dag_task_and_argument() -> None:
    """A misspelt argument is an error naming the DAG, the task and the argument."""
    with DAG("d"), pytest.raises(DagDefinitionError, match=r"DAG 'd', task 't'.*retires"):
        EmptyOperator(task_id="t", retires=3)


def test_unknown_dag_argument() -> None:
    """A misspelt DAG argument is an error naming it."""
    with pytest.raises(DagDefinitionError, match=r"DAG 'd'.*schedule_intervall"):
        DAG("d", schedule_intervall="@daily")


def test_unknown_trigger_rule_lists_the_valid_ones() -> None:
    """An unknown trigger rule names the task and lists the valid rules."""
    with DAG("d"), pytest.raises(DagDefinitionError, match=r"task 't'.*'all_sucess'.*all_success"):
        EmptyOperator(task_id="t", trigger_rule="all_sucess")


def test_invalid_cron_names_the_dag() -> None:
    """A bad cron string is rejected with the DAG named."""
    with pytest.raises(DagDefinitionError, match=r"DAG 'd': schedule: invalid cron expression"):
        DAG("d", schedule="61 * * * *", start_date=START)


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        ("@daily", "@daily"),
        ("0 2 * * *", "0 2 * * *"),
        (timedelta(hours=1), "1:00:00"),
        (None, "None"),
        ("@once", "@once"),
        (Cron("0 2 * * *", timezone="Europe/Paris"), "0 2 * * * (Europe/Paris)"),
    ],
)
def test_time_schedules_parse(schedule: object, text: str) -> None:
    """Every time schedule form of SPEC section 2 is accepted."""
    assert DAG("d", schedule=schedule, start_date=START).schedule.text == text


def test_dataset_schedules_parse() -> None:
    """Datasets, & / | expressions and the time combinators are accepted."""
    a, b, c = Dataset("s3://b/a"), Dataset("s3://b/b"), Dataset("s3://b/c")
    assert DAG("d1", schedule=[a, b]).schedule.datasets is not None
    cond = DAG("d2", schedule=(a | b) & c).schedule.datasets
    assert cond is not None
    assert cond.evaluate({"s3://b/a", "s3://b/c"})
    assert not cond.evaluate({"s3://b/a"})
    assert (
        DAG(
            "d3", schedule=DatasetOrTime(cron="0 0 * * *", datasets=[a]), start_date=START
        ).schedule.combine
        == "or"
    )
    assert (
        DAG(
            "d4", schedule=DatasetAndTime(cron="0 0 * * *", datasets=a), start_date=START
        ).schedule.combine
        == "and"
    )


def test_a_list_mixing_datasets_and_cron_is_an_error() -> None:
    """Mixing kinds in a list points to the combinators."""
    with pytest.raises(DagDefinitionError, match="DatasetOrTime"):
        DAG("d", schedule=[Dataset("a"), "@daily"], start_date=START)


def test_time_schedule_needs_start_date() -> None:
    """A cron schedule without start_date is an error."""
    with pytest.raises(DagDefinitionError, match="start_date"):
        DAG("d", schedule="@daily")


def test_dag_arguments_are_validated() -> None:
    """max_active_runs, catchup and dataset_events are checked."""
    with pytest.raises(DagDefinitionError, match="max_active_runs"):
        DAG("d", max_active_runs=0)
    with pytest.raises(DagDefinitionError, match="catchup"):
        DAG("d", catchup="yes")  # type: ignore[arg-type]  # the wrong type is the point
    with pytest.raises(DagDefinitionError, match="dataset_events"):
        DAG("d", dataset_events="some")


def test_naive_start_date_is_utc() -> None:
    """A naive start_date is taken as UTC."""
    d = DAG("d", schedule="@daily", start_date=datetime(2024, 1, 1))
    assert d.start_date == datetime(2024, 1, 1, tzinfo=UTC)


def test_default_args_fill_unset_task_arguments() -> None:
    """default_args apply to arguments a task does not set; explicit values win."""
    with DAG("d", default_args={"retries": 2, "retry_delay": timedelta(seconds=5), "pool": "p"}):
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", retries=0)
        c = BashOperator(task_id="c", bash_command="true")
    assert (a.retries, a.retry_delay, a.pool) == (2, timedelta(seconds=5), "p")
    assert b.retries == 0
    assert c.retries == 2


def test_task_arguments_are_stored() -> None:
    """Every SPEC task argument is accepted and kept."""
    with DAG("d"):
        t = EmptyOperator(
            task_id="t",
            retries=1,
            retry_delay=3,
            retry_exponential_backoff=True,
            max_retry_delay=timedelta(minutes=1),
            execution_timeout=timedelta(seconds=10),
            trigger_rule=TriggerRule.ALL_DONE,
            depends_on_past=True,
            pool="p",
            priority_weight=5,
            outlets=[Dataset("s3://x/y")],
            email="a@example.com",
            email_on_failure=False,
            email_on_retry=False,
            on_failure_callback=print,
            on_success_callback=print,
            on_retry_callback=print,
            alert_webhooks=["https://example.com/hook"],
            params={"x": 1},
        )
    assert t.retry_delay == timedelta(seconds=3)
    assert t.email == ["a@example.com"]
    assert t.trigger_rule is TriggerRule.ALL_DONE


def test_taskflow_passing_results_sets_dependencies() -> None:
    """Calling a @task with another's result adds the dependency."""

    @dag(schedule=None)
    def flow():
        @task
        def extract():
            return {"rows": 3}

        @task
        async def load(data: dict[str, int]):
            return data

        load(extract())

    built = flow()
    assert built.dag_id == "flow"
    assert ids(built.task_dict["load"].upstream_task_ids) == ["extract"]
    assert built.task_dict["load"].runs_on_loop()
    assert not built.task_dict["extract"].runs_on_loop()


def test_taskflow_reused_function_gets_numbered_ids() -> None:
    """Calling one @task twice gives ids t and t__1."""
    with DAG("d") as g:

        @task
        def t():
            return 1

        t()
        t()
    assert g.task_ids == ["t", "t__1"]


def test_dag_decorator_turns_defaults_into_params() -> None:
    """@dag function defaults become DAG params."""

    @dag(dag_id="with_params")
    def flow(limit=10):
        EmptyOperator(task_id="e")

    assert flow().params == {"limit": 10}


def test_task_called_outside_a_dag_is_an_error() -> None:
    """A @task call outside any DAG names the task."""

    @task
    def lonely():
        return 1

    with pytest.raises(DagDefinitionError, match="'lonely' was called outside a DAG"):
        lonely()


def test_python_operator_needs_a_callable() -> None:
    """python_callable is checked."""
    with DAG("d"), pytest.raises(DagDefinitionError, match="python_callable"):
        PythonOperator(task_id="p", python_callable="not callable")  # type: ignore[arg-type]


def test_linking_tasks_of_two_dags_is_an_error() -> None:
    """Tasks of different DAGs cannot be linked."""
    with DAG("one"):
        a = EmptyOperator(task_id="a")
    with DAG("two"):
        b = EmptyOperator(task_id="b")
    with pytest.raises(DagDefinitionError, match=r"DAG 'one'.*DAG 'two'"):
        a >> b


def test_plain_cron_runs_in_the_start_dates_time_zone() -> None:
    """``schedule="0 2 * * *"`` with a Paris start_date is Paris 02:00, as in Airflow."""
    from zoneinfo import ZoneInfo

    from triggers import Cron

    start = datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
    dag = DAG("zoned", schedule="0 2 * * *", start_date=start)
    assert dag.schedule.time == Cron("0 2 * * *", "Europe/Paris")
    assert dag.start_date == start
