"""A pool's slots shared by several daemons: fair shares, and grants that never add up
to more than the pool, whatever order the daemons balance, start and end tries in."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core._slots import Claim, fair_shares, limit_of


def test_wants_are_water_filled_and_what_nobody_wants_is_shared_equally() -> None:
    assert fair_shares(10, {1: 3, 2: 20}) == {1: 3, 2: 7}
    assert fair_shares(128, {1: 1000, 2: 10}) == {1: 118, 2: 10}
    assert fair_shares(3, {1: 5, 2: 5, 3: 5}) == {1: 1, 2: 1, 3: 1}
    assert fair_shares(2, {3: 5, 1: 5, 2: 5}) == {1: 1, 2: 1, 3: 0}  # first epochs first
    assert fair_shares(10, {1: 0, 2: 0, 3: 0}) == {1: 4, 2: 3, 3: 3}
    assert fair_shares(10, {1: 2, 2: 0}) == {1: 6, 2: 4}  # 2 wanted, then 8 shared out
    assert fair_shares(0, {1: 5}) == {1: 0}


def test_a_daemon_alone_holds_the_whole_pool_and_one_over_its_share_shrinks_as_tries_end() -> None:
    assert limit_of(128, 1, 0, 0, {}) == (128, 128)
    # Another daemon wants 10 while this one holds all 128 running: nothing is stopped,
    # its limit falls to its share and its grant stays at what it holds.
    assert limit_of(128, 1, 128, 1000, {2: (0, 10)}) == (118, 128)
    assert limit_of(128, 1, 120, 1000, {2: (0, 10)}) == (118, 120)
    # The other gets only the room the first one's grant leaves.
    assert limit_of(128, 2, 0, 10, {1: (120, 1000)}) == (8, 8)
    assert limit_of(128, 2, 0, 10, {1: (118, 1000)}) == (10, 10)


@dataclass
class Sim:
    """One daemon as the balance sees it: what it runs, waits for, may start, and has
    stored."""

    epoch: int
    waiting: int
    running: int = 0
    limit: int = 0
    stored: Claim = (0, 0)
    most: int = 0  # the most it ever ran at once


@settings(max_examples=300, deadline=None)
@given(
    slots=st.integers(1, 12),
    backlogs=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    moves=st.lists(st.tuples(st.sampled_from("bse"), st.integers(0, 3)), max_size=300),
)
def test_grants_never_add_up_to_more_than_the_pool_and_every_backlog_drains(
    slots: int, backlogs: list[int], moves: list[tuple[str, int]]
) -> None:
    daemons = [Sim(epoch=i + 1, waiting=n) for i, n in enumerate(backlogs)]

    def balance(d: Sim) -> None:  # the store's transaction: one at a time
        others = {o.epoch: o.stored for o in daemons if o is not d}
        d.limit, granted = limit_of(slots, d.epoch, d.running, d.running + d.waiting, others)
        d.stored = (granted, d.running + d.waiting)

    def start(d: Sim) -> None:  # the ready queue starts up to the limit
        n = max(0, min(d.waiting, d.limit - d.running))
        d.waiting -= n
        d.running += n
        d.most = max(d.most, d.running)

    def check() -> None:
        assert sum(d.stored[0] for d in daemons) <= slots
        assert sum(d.running for d in daemons) <= slots
        for d in daemons:
            assert d.running <= d.stored[0]

    for d in daemons:
        balance(d)
        check()
    for kind, which in moves:
        d = daemons[which % len(daemons)]
        if kind == "b":
            balance(d)
        elif kind == "s":
            start(d)
        elif d.running:
            d.running -= 1
        check()
    # Then each daemon in turn balances, starts and ends what it runs: all work drains,
    # and every daemon with work got slots.
    for _ in range(sum(backlogs) + 2 * len(daemons) + 2):
        for d in daemons:
            balance(d)
            start(d)
            check()
        for d in daemons:
            d.running = 0
    assert all(d.waiting == 0 for d in daemons), daemons
    assert all(d.most > 0 for d, n in zip(daemons, backlogs, strict=True) if n), daemons


def test_two_daemons_with_long_backlogs_converge_to_equal_halves() -> None:
    a, b = Sim(1, waiting=1000), Sim(2, waiting=1000)

    def step(d: Sim, other: Sim) -> None:
        d.limit, granted = limit_of(
            8, d.epoch, d.running, d.running + d.waiting, {other.epoch: other.stored}
        )
        d.stored = (granted, d.running + d.waiting)
        n = min(d.waiting, max(0, d.limit - d.running))
        d.waiting, d.running = d.waiting - n, d.running + n

    step(a, b)
    assert a.running == 8  # b wanted nothing yet
    for _ in range(3):
        step(b, a)
        a.running -= 2  # a's tries end; it starts no more than its share
        step(a, b)
    step(b, a)
    assert (a.running, b.running) == (4, 4)
