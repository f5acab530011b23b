"""The ready queue: what starts next under parallelism, max_active_tasks, pools and priority."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core import ReadyItem, ReadyQueue

RUN_A = ("a", "r1")
RUN_B = ("b", "r1")


def item(task_id: str, run: tuple[str, str] = RUN_A, **kw: object) -> ReadyItem:
    return ReadyItem(run, task_id, **kw)  # type: ignore[arg-type]


def drain(queue: ReadyQueue) -> list[str]:
    """Pop until nothing can start; the task ids in the order they came."""
    out = []
    while (popped := queue.pop()) is not None:
        out.append(popped[0].task_id)
    return out


def test_parallelism_bounds_what_is_handed_out() -> None:
    """No more than ``parallelism`` at once; releasing one lets the next start."""
    queue = ReadyQueue(2)
    for name in "xyz":
        queue.push(item(name))
    first = [queue.pop(), queue.pop()]
    assert queue.pop() is None
    assert queue.running == 2
    assert first[0] is not None
    queue.release(first[0][0])
    assert drain(queue) == ["z"]


def test_higher_priority_first_then_arrival_order() -> None:
    """priority_weight orders the waiting instances; ties go first come, first served."""
    queue = ReadyQueue(10)
    for name, weight in (("low", 1), ("high", 10), ("mid", 5), ("mid2", 5)):
        queue.push(item(name, priority=weight))
    assert drain(queue) == ["high", "mid", "mid2", "low"]


def test_priority_holds_across_dags_and_pools() -> None:
    """The best head among all lanes starts first."""
    queue = ReadyQueue(10, {"default_pool": 10, "p": 10})
    queue.push(item("a1", RUN_A, priority=1))
    queue.push(item("b9", RUN_B, priority=9))
    queue.push(item("a5", RUN_A, pool="p", priority=5))
    assert drain(queue) == ["b9", "a5", "a1"]


def test_a_full_dag_does_not_block_another() -> None:
    """At its max_active_tasks a DAG's lane is closed; other DAGs' work still starts."""
    queue = ReadyQueue(10)
    for name in ("a1", "a2", "a3"):
        queue.push(item(name, RUN_A, max_active_tasks=1, priority=9))
    queue.push(item("b1", RUN_B, priority=1))
    assert drain(queue) == ["a1", "b1"]
    assert queue.waiting == 2


def test_pool_slots_are_counted_per_task() -> None:
    """A pool of 3 slots runs one 2-slot task and one 1-slot task, not a second 2-slot one."""
    queue = ReadyQueue(10, {"p": 3})
    queue.push(item("big1", pool="p", slots=2, priority=3))
    queue.push(item("big2", pool="p", slots=2, priority=2))
    queue.push(item("small", pool="p", slots=1, priority=1))
    assert drain(queue) == ["big1"]  # the best head, big2, does not fit: the lane waits


def test_an_unknown_pool_is_handed_out_with_the_reason_and_takes_no_room() -> None:
    """Rule 4: the instance comes out to be failed, saying why."""
    queue = ReadyQueue(1)
    queue.push(item("lost", pool="nope"))
    popped = queue.pop()
    assert popped is not None
    assert popped[1] == "pool 'nope' does not exist"
    assert queue.running == 0


def test_a_discarded_instance_never_starts() -> None:
    """discard withdraws an instance; its stale entry is dropped when it surfaces."""
    queue = ReadyQueue(10)
    queue.push(item("skipped", priority=9))
    queue.push(item("kept"))
    queue.discard(RUN_A, "skipped")
    assert queue.waiting == 1
    assert drain(queue) == ["kept"]


def test_pushing_again_supersedes_the_earlier_entry() -> None:
    """An instance pushed twice starts once, with its latest entry."""
    queue = ReadyQueue(10)
    queue.push(item("t", priority=1))
    queue.push(item("other", priority=5))
    queue.push(item("t", priority=9))
    assert drain(queue) == ["t", "other"]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["push", "pop", "release", "discard"]),
        st.integers(0, 5),  # task
        st.sampled_from([RUN_A, RUN_B]),
        st.sampled_from(["default_pool", "p"]),
    ),
    max_size=60,
)


@given(OPS)
def test_limits_always_hold(ops: list[tuple[str, int, tuple[str, str], str]]) -> None:
    """Whatever the order of pushes, pops, releases and discards, no limit is ever passed
    and nothing starts twice while it runs."""
    queue = ReadyQueue(3, {"default_pool": 4, "p": 2})
    running: list[ReadyItem] = []
    waiting: set[tuple[tuple[str, str], str]] = set()
    for op, n, run, pool in ops:
        task_id = f"t{n}"
        if op == "push" and (run, task_id) not in {(i.run, i.task_id) for i in running}:
            queue.push(item(task_id, run, pool=pool, max_active_tasks=2))
            waiting.add((run, task_id))
        elif op == "pop":
            popped = queue.pop()
            if popped is not None:
                assert (popped[0].run, popped[0].task_id) in waiting
                waiting.discard((popped[0].run, popped[0].task_id))
                running.append(popped[0])
        elif op == "release" and running:
            queue.release(running.pop(n % len(running)))
        elif op == "discard":
            queue.discard(run, task_id)
            waiting.discard((run, task_id))
        assert queue.running == len(running) <= 3
        for dag in ("a", "b"):
            assert sum(1 for i in running if i.dag_id == dag) <= 2
        assert sum(i.slots for i in running if i.pool == "p") <= 2


def test_a_task_limit_holds_across_runs_and_within_a_run_without_blocking_others() -> None:
    """max_active_tis_per_dag counts a task's instances in every run of its DAG;
    max_active_tis_per_dagrun those in one run; other tasks of the DAG go past them."""
    queue = ReadyQueue(32)
    run_c = ("a", "r2")
    for i in range(3):
        queue.push(item(f"m[{i}]", task="m", per_dag=2))
        queue.push(item(f"m[{i}]", run_c, task="m", per_dag=2))
    queue.push(item("other"))
    got = drain(queue)
    assert sorted(got) == ["m[0]", "m[0]", "other"]  # one of each run, then the limit
    per_run = ReadyQueue(32)
    for run in (RUN_A, run_c):
        for i in range(3):
            per_run.push(item(f"p[{i}]", run, task="p", per_run=1))
    handed = []
    while (popped := per_run.pop()) is not None:
        handed.append(popped[0])
    assert sorted((h.run, h.task_id) for h in handed) == [(RUN_A, "p[0]"), (run_c, "p[0]")]
    per_run.release(handed[0])
    nxt = per_run.pop()
    assert nxt is not None
    assert (nxt[0].run, nxt[0].task_id) == (handed[0].run, "p[1]")


def test_an_occupied_slot_counts_against_parallelism_and_pools_until_released() -> None:
    """A try already running when its run was loaded holds its room like a popped one."""
    queue = ReadyQueue(2, {"p": 1, "default_pool": 8})
    adopted = item("running", pool="p")
    queue.occupy(adopted)
    queue.push(item("same_pool", pool="p"))
    queue.push(item("other"))
    assert drain(queue) == ["other"]
    assert queue.running == 2
    queue.release(adopted)
    assert queue.running == 1
    queue.parallelism = 3
    assert drain(queue) == ["same_pool"]


def test_pools_with_no_room_are_told_and_demand_counts_what_parallelism_leaves_room_for() -> None:
    """Beside other daemons the pools are this daemon's limits: a pool that kept a
    waiting instance back is told to ``on_starved``, one given room back to
    ``on_release``; ``demand`` is each pool's slots held, and held plus wanted by as
    many waiting instances as parallelism could start."""
    queue = ReadyQueue(3, {"default_pool": 1, "db": 5})
    starved: list[str] = []
    released: list[str] = []
    queue.on_starved, queue.on_release = starved.append, released.append
    for name in "xyz":
        queue.push(item(name))
    queue.push(item("big", pool="db", slots=2))
    started = [queue.pop(), queue.pop()]
    assert queue.pop() is None
    assert sorted(p[0].task_id for p in started if p) == ["big", "x"]
    assert set(starved) == {"default_pool"}
    assert queue.demand() == {"default_pool": (1, 2), "db": (2, 2)}
    queue.pools = {"default_pool": 2, "db": 5}  # a balance raised the limit
    assert len(drain(queue)) == 1
    assert queue.demand() == {"default_pool": (2, 2), "db": (2, 2)}
    assert started[1] is not None
    queue.release(started[1][0])
    assert released == [started[1][0].pool]
