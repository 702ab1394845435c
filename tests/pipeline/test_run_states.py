"""The run state machine (pipeline/run_state.py) as its docstring states it: the moves, what each
state sets (``stopping``, ``stop_event``, ``ended``), the first error, the drain and stuck bounds,
and the one condition every wait of the framework uses (woken by every change, bounded waits)."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import GraphRunError
from pipeline.run_state import RunState, State

WAKE_S = 5.0  # a waiter woken by a change returns well within this (its own timeout is 30 s)


def _err(n: int) -> GraphRunError:
    return GraphRunError(f"n{n}", "Calc", "process", n, ValueError(str(n)))


def _flags(rs: RunState) -> tuple:
    return rs.state, rs.stopping, rs.ended, rs.is_set(), rs.running, rs.stop_event.is_set()


def test_a_new_run_is_running():
    rs = RunState()
    assert _flags(rs) == (State.RUNNING, False, False, False, True, False)
    assert (rs.error, rs.errors, rs.drain_timeout, rs.drain_deadline, rs.stuck_deadline) == (None, [], 10.0, None, None)
    assert (rs.drain_expired, rs.halted, rs.threads, rs.stuck_bound) == (False, False, 0, 0.0)


def test_it_is_done_when_the_last_node_finished():
    rs = RunState()
    rs.start(2)
    rs.node_finished()
    assert rs.state is State.RUNNING
    rs.node_finished()
    # DONE is ended but not stopping, and does not set the stop event (nothing was asked to stop)
    assert _flags(rs) == (State.DONE, False, True, True, False, False)


def test_a_run_of_no_node_is_done_at_start():
    rs = RunState()
    rs.start(0)
    assert rs.state is State.DONE and not rs.stop_event.is_set()
    rs = RunState()
    rs.start(1)
    assert rs.state is State.RUNNING


def test_drain_moves_running_to_draining_once():
    rs = RunState(drain_timeout=3.0)
    before = time.monotonic()
    assert rs.drain() is True
    assert _flags(rs) == (State.DRAINING, False, False, False, False, True)
    assert before + 3.0 <= rs.drain_deadline <= time.monotonic() + 3.0
    assert rs.drain() is False  # a second one is told it is the second
    rs.start(1)
    rs.node_finished()
    assert rs.state is State.DONE  # the drain ends when the last node has closed


def test_cancel_from_running_or_draining_and_not_after_the_end():
    for first in (None, "drain"):
        rs = RunState()
        if first:
            rs.drain()
        assert rs.cancel() is True
        assert _flags(rs) == (State.CANCELLED, True, True, True, False, True)
        assert rs.cancel() is False
        rs.node_finished()
        assert rs.state is State.CANCELLED  # a node finishing after a cancel does not make it DONE
    rs = RunState()
    rs.start(0)
    assert rs.cancel() is False and rs.state is State.DONE


def test_expire_drain_cancels_only_a_drain():
    rs = RunState()
    assert rs.expire_drain() is False and rs.state is State.RUNNING and not rs.drain_expired
    rs.drain()
    assert rs.expire_drain() is True
    assert rs.state is State.CANCELLED and rs.stopping and rs.drain_expired
    assert rs.expire_drain() is False


def test_the_first_error_is_the_runs_error_from_any_state():
    rs = RunState()
    rs.start(1)
    rs.node_finished()
    first, second = _err(1), _err(2)
    rs.fail(first)  # an error while closing after DONE still fails the run
    assert _flags(rs) == (State.FAILED, True, True, True, False, True)
    rs.fail(second)
    assert rs.error is first and rs.errors == [first, second] and rs.state is State.FAILED
    assert rs.drain() is False and rs.cancel() is False
    rs = RunState()
    rs.cancel()
    rs.fail(first)
    assert rs.state is State.FAILED and rs.error is first


def test_the_stuck_deadline_is_only_brought_forward():
    rs = RunState()
    assert rs.past_stuck_deadline() is False  # no deadline yet
    before = time.monotonic()
    rs.stop_calls_by(20.0)
    assert before + 20.0 <= rs.stuck_deadline <= time.monotonic() + 20.0 and rs.stuck_bound == 20.0
    deadline = rs.stuck_deadline
    rs.stop_calls_by(30.0)  # later: ignored
    assert (rs.stuck_deadline, rs.stuck_bound) == (deadline, 20.0)
    assert rs.past_stuck_deadline() is False
    assert rs.cancel(stuck_timeout=5.0) is True  # a second Ctrl-C brings it forward
    assert rs.stuck_deadline < deadline and rs.stuck_bound == 5.0
    assert rs.cancel(stuck_timeout=0.0) is False  # already ended, but the bound still moves
    assert rs.stuck_bound == 0.0 and rs.past_stuck_deadline() is True


def test_a_cancel_without_a_bound_leaves_the_deadline_alone():
    rs = RunState()
    rs.cancel()
    assert rs.stuck_deadline is None and rs.stuck_bound == 0.0


def test_halt_stops_every_call_without_changing_the_state():
    rs = RunState()
    rs.drain()
    rs.halt()
    assert rs.halted and rs.stopping and rs.state is State.DRAINING


def test_threads_are_counted():
    rs = RunState()
    rs.threads_started(3)
    rs.threads_started(2)
    rs.thread_ended()
    assert rs.threads == 4


def test_wait_until_returns_the_predicate_and_times_out():
    rs = RunState()
    assert rs.wait_until(lambda: True, 0) is True
    assert rs.wait_until(lambda: True) is True
    t0 = time.monotonic()
    assert rs.wait_until(lambda: False, 0.05) is False
    assert time.monotonic() - t0 >= 0.05
    assert rs.wait_until(lambda: False, 0) is False
    assert rs.wait_until(lambda: False, -1) is False


def _woken_by(change, predicate_of, timeout=30.0, before=None) -> float:
    """Seconds a waiter on ``predicate_of(rs)`` takes to return True after ``change(rs)`` runs in
    another thread (each change must notify the condition)."""
    rs = RunState()
    rs.start(1)
    rs.threads_started(1)
    if before is not None:
        before(rs)
    waiting = threading.Event()
    result = {}

    def predicate():
        waiting.set()
        return predicate_of(rs)

    def wait():
        result["ok"] = rs.wait_until(predicate, timeout)
        result["t"] = time.monotonic()

    t = threading.Thread(target=wait, name="test-waiter")
    t.start()
    assert waiting.wait(10), "the waiter never read its predicate"
    with rs.cond:  # the waiter is inside cond.wait once it released the lock
        pass
    t0 = time.monotonic()
    change(rs)
    t.join(40)
    assert result.get("ok") is True
    return result["t"] - t0


@pytest.mark.parametrize("change, predicate", [
    (lambda rs: rs.drain(), lambda rs: rs.state is State.DRAINING),
    (lambda rs: rs.cancel(), lambda rs: rs.ended),
    (lambda rs: rs.expire_drain() if rs.drain() else None, lambda rs: rs.drain_expired),
    (lambda rs: rs.fail(_err(0)), lambda rs: rs.error is not None),
    (lambda rs: rs.node_finished(), lambda rs: rs.state is State.DONE),
    (lambda rs: rs.halt(), lambda rs: rs.halted),
    (lambda rs: rs.thread_ended(), lambda rs: rs.threads == 0),
    (lambda rs: (setattr(rs, "threads", 0), rs.notify()), lambda rs: rs.threads == 0),
], ids=["drain", "cancel", "expire_drain", "fail", "node_finished", "halt", "thread_ended", "notify"])
def test_every_change_wakes_the_waiters(change, predicate):
    assert _woken_by(change, predicate) < WAKE_S


def test_a_bound_given_after_the_end_wakes_the_waiters():
    """A second Ctrl-C after the run ended: the shutdown waiting for threads re-reads its deadline."""
    assert _woken_by(lambda rs: rs.cancel(stuck_timeout=0.0), lambda rs: rs.stuck_deadline is not None,
                     before=RunState.cancel) < WAKE_S


def test_a_wait_without_timeout_wakes_on_a_change():
    assert _woken_by(lambda rs: rs.cancel(), lambda rs: rs.ended, timeout=None) < WAKE_S


def test_the_stop_event_is_set_when_the_run_stops():
    """For calculators pacing themselves with ``ctx.stop_event.wait(delay)``."""
    for stop in (RunState.drain, RunState.cancel, lambda rs: rs.fail(_err(1))):
        rs = RunState()
        stop(rs)
        assert rs.stop_event.wait(0)
