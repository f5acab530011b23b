"""The ready queue: task instances waiting to start, and the limits on starting them.

Pure: the scheduler's shell pushes instances the run driver made ready, and asks
"what starts next?" while it has room; the queue answers and counts what it
handed out until the shell gives the room back.

Rules:
1. Limits: ``parallelism`` (tries running at once in this process), each DAG's
   ``max_active_tasks``, each pool's slots (a task takes ``pool_slots`` of them), and a
   task's own ``max_active_tis_per_dag`` (its instances across all runs) and
   ``max_active_tis_per_dagrun`` (within one run).
2. Lanes: one heap per (DAG, pool), and one of its own for each task with a limit of
   its own (per run, for a limit per run), ordered by ``priority_weight`` (higher
   first), then by when the instance became ready. ``pop`` takes the best head among
   the lanes that are not at a limit, so a full DAG or pool costs nothing however much
   work waits behind it.
3. An instance that stops being ready (skipped by a branch, its run stopped) is
   withdrawn with ``discard``; its heap entry goes stale and is dropped when it
   surfaces. Pushing an instance again supersedes its earlier entry.
4. An instance whose pool does not exist is handed out with the reason, without
   taking room, so that it can be failed saying why.
5. Beside other daemons, ``pools`` holds this daemon's limits rather than the pools'
   sizes (``core._slots``): ``on_starved`` is told of a pool in which a waiting
   instance found no room, ``on_release`` of one in which room was given back, and
   ``demand`` tells what the tries hold and want of each pool.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["ReadyItem", "ReadyQueue"]

RunKey = tuple[str, str]  # (dag_id, run_id)


@dataclass(frozen=True, slots=True)
class ReadyItem:
    """One task instance ready to start, with what the limits need to know of it."""

    run: RunKey
    task_id: str  # the instance's key
    pool: str = "default_pool"
    slots: int = 1
    priority: int = 1
    max_active_tasks: int = 16
    task: str = ""  # the task's id, when it has a limit of its own
    per_dag: int | None = None  # max_active_tis_per_dag
    per_run: int | None = None  # max_active_tis_per_dagrun

    @property
    def dag_id(self) -> str:
        return self.run[0]

    @property
    def lane(self) -> tuple[str, str, str, str]:
        """Its heap: the DAG's and pool's; a limited task's own; per run if limited per run."""
        return (self.run[0], self.pool, self.task, self.run[1] if self.per_run else "")


_Entry = tuple[int, int, ReadyItem]  # (-priority, sequence, item)


class ReadyQueue:
    def __init__(self, parallelism: int, pools: Mapping[str, int] | None = None) -> None:
        self.parallelism = parallelism
        self.pools: dict[str, int] = dict(pools or {"default_pool": 128})
        self._lanes: dict[tuple[str, str, str, str], list[_Entry]] = {}
        self._live: dict[tuple[RunKey, str], int] = {}  # (run, task) -> its current entry
        self._seq = itertools.count()
        self._running = 0
        self._per_dag: dict[str, int] = {}
        self._per_pool: dict[str, int] = {}
        self._per_task: dict[tuple[str, str], int] = {}  # (dag, task) -> running
        self._per_task_run: dict[tuple[RunKey, str], int] = {}  # (run, task) -> running
        self.on_starved: Callable[[str], None] | None = None  # rule 5
        self.on_release: Callable[[str], None] | None = None

    @property
    def running(self) -> int:
        """Instances handed out and not given back."""
        return self._running

    @property
    def waiting(self) -> int:
        """Instances waiting to start."""
        return len(self._live)

    def push(self, item: ReadyItem) -> None:
        seq = next(self._seq)
        self._live[(item.run, item.task_id)] = seq
        lane = self._lanes.setdefault(item.lane, [])
        heapq.heappush(lane, (-item.priority, seq, item))

    def discard(self, run: RunKey, task_id: str) -> None:
        """Withdraw an instance (rule 3); a no-op when it is not waiting."""
        self._live.pop((run, task_id), None)

    def pop(self) -> tuple[ReadyItem, str | None] | None:
        """The next instance to start and None, or one that cannot start and why; None if
        nothing can start now."""
        if self._running >= self.parallelism:
            return None
        best: tuple[int, int] | None = None
        best_lane: list[_Entry] | None = None
        empty = []
        for name, lane in self._lanes.items():
            head = self._head(lane)
            if head is None:
                empty.append(name)
            elif self._open(head) and (best is None or lane[0][:2] < best):
                best, best_lane = lane[0][:2], lane
        for name in empty:
            del self._lanes[name]
        if best_lane is None:
            return None
        item = heapq.heappop(best_lane)[2]
        del self._live[(item.run, item.task_id)]
        if item.pool not in self.pools:
            return item, f"pool {item.pool!r} does not exist"
        self.occupy(item)
        return item, None

    def occupy(self, item: ReadyItem) -> None:
        """Count an instance as started without taking it from the queue: a try that
        was already running when its run was loaded (it runs on, on a worker)."""
        self._running += 1
        self._per_dag[item.dag_id] = self._per_dag.get(item.dag_id, 0) + 1
        self._per_pool[item.pool] = self._per_pool.get(item.pool, 0) + item.slots
        if item.task:
            at = (item.dag_id, item.task)
            self._per_task[at] = self._per_task.get(at, 0) + 1
            in_run = (item.run, item.task)
            self._per_task_run[in_run] = self._per_task_run.get(in_run, 0) + 1

    def release(self, item: ReadyItem) -> None:
        """Give back the room of an instance ``pop`` handed out to start."""
        self._running -= 1
        self._per_dag[item.dag_id] -= 1
        self._per_pool[item.pool] -= item.slots
        if self.on_release is not None:
            self.on_release(item.pool)
        if item.task:
            self._per_task[(item.dag_id, item.task)] -= 1
            in_run = (item.run, item.task)
            if self._per_task_run[in_run] == 1:
                del self._per_task_run[in_run]
            else:
                self._per_task_run[in_run] -= 1

    def demand(self) -> dict[str, tuple[int, int]]:
        """Each pool's slots held by the instances handed out, and those plus the slots
        the waiting ones would take, as many of them as parallelism leaves room for."""
        held = dict(self._per_pool)
        wanted = dict(held)
        room = self.parallelism - self._running
        for lane in self._lanes.values():
            for _, seq, item in lane:
                if room <= 0:
                    break
                if self._live.get((item.run, item.task_id)) == seq:
                    wanted[item.pool] = wanted.get(item.pool, 0) + item.slots
                    room -= 1
        return {pool: (held.get(pool, 0), n) for pool, n in wanted.items()}

    def _head(self, lane: list[_Entry]) -> ReadyItem | None:
        """The lane's first entry still live, dropping stale ones."""
        while lane:
            _, seq, item = lane[0]
            if self._live.get((item.run, item.task_id)) == seq:
                return item
            heapq.heappop(lane)
        return None

    def _open(self, item: ReadyItem) -> bool:
        if self._per_dag.get(item.dag_id, 0) >= item.max_active_tasks:
            return False
        if item.task:
            if item.per_dag is not None and (
                self._per_task.get((item.dag_id, item.task), 0) >= item.per_dag
            ):
                return False
            if item.per_run is not None and (
                self._per_task_run.get((item.run, item.task), 0) >= item.per_run
            ):
                return False
        size = self.pools.get(item.pool)
        if size is None:
            return True  # handed out only to be failed with the reason (rule 4)
        if self._per_pool.get(item.pool, 0) + item.slots <= size:
            return True
        if self.on_starved is not None:
            self.on_starved(item.pool)
        return False
