"""A sink still in a call when a stopped run's stuck bound passes, read through what the sink and
``wait()`` show, not through the naming of stuck calls (which a mutation run's renamed functions
defeat: scripts/mutation.py, ``DESELECT_WHEN_MUTATED``): the sink gets that bound again to finish
its call and is closed only after it; one that does not finish within it is left, and ``wait()``
returns; a shutdown with every thread done waits no bound at all; a sink whose activation is stepped
after the halt (calling nothing) is not waited for. Written against the survivors of a mutation run of pipeline/scheduler.py
(``Scheduler.finish_sink_calls``, ``Scheduler.join``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from pipeline import Graph, NodeStuckError
from tests.pipeline.calcs import Gate
from tests.pipeline.interleave import PausePoint, functions_on
from tests.pipeline.test_scheduling import TestSlowSink  # noqa: F401 - registers it

WAIT_S = 10.0  # a bound for what must happen at once: reaching it is the failure
BOUND = 1.0  # the cancel's stuck bound, in s
SHORT = 0.25  # a shorter one, for a sink that never returns

SINK = """
inputs: [in]
side_packets: {sink: null, log: null}
nodes:
  - calculator: TestSlowSink
    name: writer
    inputs: [in]
    side_inputs: {GATE: sink, LOG: log}
"""


def _waits_in_finish_sink_calls(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked in ``Scheduler.finish_sink_calls``'s wait (not passing it)."""
    names = functions_on(thread)
    return "wait" in names and "wait_until" in names and "finish_sink_calls" in names


@pytest.mark.parametrize("path", ["fast path", "general path", "max_in_flight 2"])
def test_a_sink_in_a_call_when_the_stuck_bound_passes_finishes_it_before_it_is_closed(path, no_thread_leak):
    # the sink's call outlasts the stuck bound; it is let go once the shutdown waits for it (past
    # that bound), or once it was closed (a shutdown that did not wait): it must be the first. On
    # each way through a step (node.py): the sink counted as in a call (is_active) on each.
    sink, log = Gate(), []
    g = Graph.from_yaml(SINK + {"fast path": "", "general path": "    policy: {latest: 5}\n",
                                "max_in_flight 2": "    max_in_flight: 2\n"}[path])
    g.start({"sink": sink, "log": log})
    waiter = threading.current_thread()

    def release_the_sink():
        deadline = time.monotonic() + 3 * WAIT_S
        while time.monotonic() < deadline and not _waits_in_finish_sink_calls(waiter) and "closed" not in log:
            time.sleep(0.002)
        sink.release()

    helper = threading.Thread(target=release_the_sink)
    try:
        g.add_packet("in", "frame", 0)
        assert sink.entered.wait(WAIT_S), "the sink's call never began"
        helper.start()
        g.cancel(stuck_timeout=BOUND)
        g.wait(3 * WAIT_S)  # nothing is stuck in the end: no error
    finally:
        sink.release()
        if helper.ident is not None:
            helper.join(3 * WAIT_S)
    assert log == ["frame", "closed"], "the sink was closed before its call ended"


def test_a_sink_stuck_past_both_bounds_is_left_and_wait_returns(no_thread_leak):
    sink, log = Gate(), []
    g = Graph.from_yaml(SINK)
    g.start({"sink": sink, "log": log})
    try:
        g.add_packet("in", "frame", 0)
        assert sink.entered.wait(WAIT_S), "the sink's call never began"
        start = time.monotonic()
        g.cancel(stuck_timeout=SHORT)
        try:
            g.wait(3 * WAIT_S)
        except NodeStuckError:  # naming it is test_scheduling.py's (it names it "writer")
            pass
        took = time.monotonic() - start
        written = list(log)  # before the sink is let go
    finally:
        sink.release()
        for t in threading.enumerate():
            if t.name.startswith("vpipe-"):
                t.join(WAIT_S)
    assert "frame" not in written, "the shutdown waited for the stuck call"
    # one bound for the threads, one for the sink in its call, then no more (each waited for no
    # longer than the bound)
    assert took < 2 * SHORT + 0.5, f"the shutdown took {took:.2f} s for a stuck bound of {SHORT} s"


def test_a_shutdown_with_every_thread_done_waits_no_bound(no_thread_leak):
    # the run ends by itself; its threads end at once: wait() does not sit out the stuck bound
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "inputs": ["in"], "outputs": ["o"]}]}, stuck_timeout=WAIT_S)
    got = []
    g.observe("o", got.append)
    g.start()
    g.add_packet("in", "x", 0)
    g.close_all_inputs()
    start = time.monotonic()
    g.wait(3 * WAIT_S)
    took = time.monotonic() - start
    assert len(got) == 1
    assert took < WAIT_S / 2, f"the shutdown took {took:.2f} s with nothing left running"


def test_a_sink_stepped_after_the_halt_is_not_waited_for(no_thread_leak):
    # Both workers are held in calls (x: for good; y: until the test lets it go) while the sink
    # (the general path) gets a packet: its activation waits on the executor's queue. The run is
    # cancelled; past the stuck bound it is halted, and the shutdown is held as it comes to the
    # sinks' calls. y is let go: its worker takes the sink, whose step, halted, calls nothing and
    # ends, and the worker ends. The shutdown then has no sink in a call to wait for.
    x, y, sink, log = Gate(), Gate(), Gate(), []
    sink.release()  # (the sink is never called here)
    g = Graph.from_dict({"inputs": ["x", "y", "s"], "side_packets": {"x": None, "y": None, "sink": None, "log": None},
                         "nodes": [
        {"calculator": "TestBlocker", "name": "hx", "inputs": ["x"], "outputs": ["xx"], "side_inputs": {"GATE": "x"}},
        {"calculator": "TestBlocker", "name": "hy", "inputs": ["y"], "outputs": ["yy"], "side_inputs": {"GATE": "y"}},
        {"calculator": "TestSlowSink", "name": "writer", "inputs": ["s"], "policy": {"latest": 5},
         "side_inputs": {"GATE": "sink", "LOG": "log"}},
    ]}, threads=2)
    for s in ("xx", "yy"):
        g.observe(s, lambda p: None)
    errors, took = [], []
    with PausePoint("finish_sink_calls", "run = self.run", 1, file="pipeline/scheduler.py") as sinks_calls:
        g.start({"x": x, "y": y, "sink": sink, "log": log})
        waiter = None
        try:
            g.add_packet("x", 0, 0)
            g.add_packet("y", 0, 0)
            assert x.entered.wait(WAIT_S) and y.entered.wait(WAIT_S), "the held calls never began"
            g.add_packet("s", "frame", 0)
            worker_b = next(th for th in g._sched.executors["default"].threads if _in_call_of(th, y))
            g.cancel(stuck_timeout=2 * BOUND)

            def wait():
                try:
                    g.wait(3 * WAIT_S)
                except NodeStuckError:  # hx, if its call is named (not under node.py's mutants)
                    pass
                except BaseException as e:  # noqa: BLE001 - reported by the test
                    errors.append(e)

            waiter = threading.Thread(target=wait, name="test-waiter")
            waiter.start()
            assert sinks_calls.wait_reached(3 * WAIT_S), "the shutdown never came to the sinks' calls"
            y.release()
            worker_b.join(WAIT_S)
            assert not worker_b.is_alive(), "y's worker did not end once let go"
            start = time.monotonic()
            sinks_calls.go()
            waiter.join(3 * WAIT_S)
            took.append(time.monotonic() - start)
        finally:
            sinks_calls.go()
            for gate in (x, y):
                gate.release()
            if waiter is not None:
                waiter.join(3 * WAIT_S)
            for t in threading.enumerate():
                if t.name.startswith("vpipe-"):
                    t.join(WAIT_S)
    assert errors == [] and log == ["closed"]
    # (were the sink counted in a call, the shutdown would wait the whole bound, 2 * BOUND, for it)
    assert took[0] < BOUND, f"the shutdown waited {took[0]:.2f} s for a sink in no call (bound {2 * BOUND} s)"


def _in_call_of(thread: threading.Thread, gate: Gate) -> bool:
    """Whether ``thread`` waits on ``gate`` (in a TestBlocker's call)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "process" and getattr(frame.f_locals.get("self"), "gate", None) is gate:
            return True
        frame = frame.f_back
    return False
