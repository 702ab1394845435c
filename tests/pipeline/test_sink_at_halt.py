"""A sink still in a call when a stopped run's stuck bound passes, read through what the sink and
``wait()`` show, not through the naming of stuck calls (which a mutation run's renamed functions
defeat: scripts/mutation.py, ``DESELECT_WHEN_MUTATED``): the sink gets that bound again to finish
its call and is closed only after it; one that does not finish within it is left, and ``wait()``
returns; a shutdown with every thread done waits no bound at all. Written against the survivors of a mutation run of pipeline/scheduler.py
(``Scheduler.finish_sink_calls``, ``Scheduler.join``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from pipeline import Graph, NodeStuckError
from tests.pipeline.calcs import Gate
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
    frame = sys._current_frames().get(thread.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    # (under mutmut, finish_sink_calls is xǁSchedulerǁfinish_sink_calls__mutmut_orig, _1, ...)
    return "wait" in names and "wait_until" in names and any(
        n == "finish_sink_calls" or "ǁfinish_sink_calls__mutmut_" in n for n in names)


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
