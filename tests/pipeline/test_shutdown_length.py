"""How long the shutdown of a stopped run takes when a call is stuck: it waits the stuck bound for
the run's threads, and a second bound only for a sink still in a call (to finish the frame it
writes): with no sink in a call, ``wait()`` returns once the first bound has passed, not after
two; a sink whose call failed is in no call. Written against the survivors of a mutation run of
pipeline/scheduler.py and node.py (``Scheduler.finish_sink_calls``, ``active`` after a failed
call; docs/testing.md); every wait bounded."""

from __future__ import annotations

import time

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, SideInput, register
from pipeline.errors import NodeStuckError
from tests.pipeline.calcs import Gate
from tests.pipeline.test_stuck_calls import WAIT_S, _join_run_threads, _node

BOUND = 2.0  # the stuck bound of the cancel, in s


@pytest.mark.parametrize("sink", ["a sink after it", "no sink"])
def test_a_stuck_call_with_no_sink_in_a_call_ends_the_shutdown_after_one_bound(sink, no_thread_leak):
    gate, closed = Gate(), []
    nodes = [_node("first", "in", "a"), _node("hang", "a", "b", options={"phase": "process"},
                                            side_inputs={"GATE": "gate", "CLOSED": "closed"})]
    if sink == "a sink after it":
        nodes.append(_node("sink", "b"))
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "closed": None}, "nodes": nodes},
                        stuck_timeout=60)
    g.start({"gate": gate, "closed": closed})
    g.add_packet("in", "x", 7)
    assert gate.entered.wait(WAIT_S), "the call never began"
    start = time.monotonic()
    g.cancel(stuck_timeout=BOUND)
    with pytest.raises(NodeStuckError):
        g.wait(WAIT_S)
    took = time.monotonic() - start
    gate.release()
    _join_run_threads()
    # one bound (the threads'), then no second one: nothing is left to finish
    assert BOUND <= took < 1.5 * BOUND, f"the shutdown took {took:.2f} s for a stuck bound of {BOUND} s"


@register
class TestFailsAt(Calculator):
    """A sink: logs each call's timestamp to LOG; its call number AT raises."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"AT": SideInput(int), "LOG": SideInput(list)}

    def process(self, ctx):
        log = ctx.side["LOG"]
        log.append(ctx.timestamp)
        if len(log) == ctx.side["AT"]:
            raise ValueError("the sink fails")


@pytest.mark.parametrize("at", [1, 2], ids=["its first call", "its second call"])
@pytest.mark.parametrize("sink_policy", [{"latest": 5}, "sync"])
def test_a_sink_whose_call_failed_is_not_waited_for_at_the_shutdown(sink_policy, at, no_thread_leak):
    # the sink failed (on the general path, or the fast path; in a measured call, its first, or one
    # left out of the sample): it is called no more, and it is in no call, so past the stuck bound
    # of the call still running the shutdown has nothing to wait for. Both workers are held while
    # its packets are fed, so they are all queued when it runs.
    gate, hold, closed, log = Gate(), Gate(), [], []
    g = Graph.from_dict({"inputs": ["in", "in2", "in3"], "side_packets": {
        "gate": None, "hold": None, "closed": None, "at": None, "log": None}, "nodes": [
        _node("hang", "in", "b", options={"phase": "process"}, side_inputs={"GATE": "gate", "CLOSED": "closed"}),
        _node("sink", "b"),
        {"calculator": "TestBlocker", "name": "hold", "inputs": ["in3"], "outputs": ["h"],
         "side_inputs": {"GATE": "hold"}},
        {"calculator": "TestFailsAt", "name": "failing", "inputs": ["in2"], "policy": sink_policy,
         "side_inputs": {"AT": "at", "LOG": "log"}},
    ]}, threads=2, stuck_timeout=BOUND)
    g.observe("h", lambda p: None)
    g.start({"gate": gate, "hold": hold, "closed": closed, "at": at, "log": log})
    g.add_packet("in", "x", 7)
    g.add_packet("in3", "x", 0)
    assert gate.entered.wait(WAIT_S) and hold.entered.wait(WAIT_S), "the held calls never began"
    for t in range(4):
        g.add_packet("in2", "y", t)
    start = time.monotonic()
    hold.release()
    with pytest.raises(GraphRunError, match=f"^node 'failing' .* at timestamp {at - 1}: ValueError: the sink fails"):
        g.wait(WAIT_S)
    took = time.monotonic() - start
    gate.release()
    _join_run_threads()
    assert log == list(range(at)), "called after its failure"
    assert took < 1.5 * BOUND, f"the shutdown took {took:.2f} s for a stuck bound of {BOUND} s"
