"""The process-wide deadline heap: order, cancellation, waking on an earlier deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

from orchestrator._clock import ManualClock, SystemClock
from orchestrator.runtime._timers import Timers

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_due_callbacks_run_in_deadline_order() -> None:
    """fire_due calls every due callback, earliest first, and leaves later ones."""
    clock = ManualClock(T0)
    timers = Timers(clock)
    calls: list[str] = []
    timers.call_at(T0 + timedelta(seconds=2), lambda: calls.append("b"))
    timers.call_at(T0 + timedelta(seconds=1), lambda: calls.append("a"))
    timers.call_at(T0 + timedelta(seconds=9), lambda: calls.append("late"))
    clock.advance(5)
    assert timers.fire_due() == 2
    assert calls == ["a", "b"]
    assert timers.next_deadline() == T0 + timedelta(seconds=9)


def test_cancelled_handle_never_fires() -> None:
    """A cancelled entry is dropped when it surfaces."""
    clock = ManualClock(T0)
    timers = Timers(clock)
    fired: list[int] = []
    handle = timers.call_at(T0, lambda: fired.append(1))
    handle.cancel()
    assert timers.fire_due() == 0
    assert fired == []
    assert timers.next_deadline() is None


def test_failing_callback_does_not_stop_the_others() -> None:
    """An exception in one callback is logged; the next callbacks still run."""
    clock = ManualClock(T0)
    timers = Timers(clock)
    calls: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.call_at(T0, boom)
    timers.call_at(T0, lambda: calls.append(1))
    assert timers.fire_due() == 2
    assert calls == [1]


async def test_an_earlier_deadline_wakes_the_waiter() -> None:
    """A deadline added while the waiter sleeps towards a later one fires on time."""
    timers = Timers(SystemClock())
    fired = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(timers.run)
        timers.call_at(datetime.now(UTC) + timedelta(hours=1), lambda: None)
        await anyio.sleep(0.01)
        started = anyio.current_time()
        timers.call_at(datetime.now(UTC) + timedelta(milliseconds=20), fired.set)
        with anyio.fail_after(5):
            await fired.wait()
        assert anyio.current_time() - started < 2
        tg.cancel_scope.cancel()
