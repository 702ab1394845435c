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
class TestFailsOnceHeld(Calculator):
    """A sink: its call waits until the GATE's call has begun (a ``Gate``), then raises."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"GATE": SideInput(Gate)}

    def process(self, ctx):
        if not ctx.side["GATE"].entered.wait(WAIT_S):
            raise TimeoutError("the other call never began")
        raise ValueError("the sink fails")


@pytest.mark.parametrize("sink_policy", [{"latest": 5}, "sync"])
def test_a_sink_whose_call_failed_is_not_waited_for_at_the_shutdown(sink_policy, no_thread_leak):
    # the sink failed (on the general path, or the fast path): it is in no call, so past the stuck
    # bound of the call still running the shutdown has nothing to wait for
    gate, closed = Gate(), []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "closed": None}, "nodes": [
        _node("first", "in", "a"),
        _node("hang", "a", "b", options={"phase": "process"}, side_inputs={"GATE": "gate", "CLOSED": "closed"}),
        _node("sink", "b"),
        {"calculator": "TestFailsOnceHeld", "name": "failing", "inputs": ["a"], "side_inputs": {"GATE": "gate"},
         "policy": sink_policy},
    ]}, threads=2, stuck_timeout=BOUND)
    g.start({"gate": gate, "closed": closed})
    g.add_packet("in", "x", 7)
    assert gate.entered.wait(WAIT_S), "the call never began"
    start = time.monotonic()
    with pytest.raises(GraphRunError, match="^node 'failing' .*the sink fails"):
        g.wait(WAIT_S)
    took = time.monotonic() - start
    gate.release()
    _join_run_threads()
    assert took < 1.5 * BOUND, f"the shutdown took {took:.2f} s for a stuck bound of {BOUND} s"
