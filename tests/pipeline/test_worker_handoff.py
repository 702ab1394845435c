"""The hand-off of a node with long calls (scheduler.py, ``HANDOFF_NS``): a lone worker never hands
such a node back to its executor's queue (nobody else could take it), it keeps it and steps it
again once the node its call made ready is done, before a deeper node queued meanwhile. Read off
the trace's call order (one worker: the order is the schedule). Written against the survivors of
a mutation run of pipeline/scheduler.py (``Executor._work``: the idle count, the hand-off test;
docs/testing.md); every wait bounded."""

from __future__ import annotations

from pipeline import Graph
from tests.pipeline.calcs import Gate
from tests.pipeline.test_direct_hop import TestSlowInside, clock  # noqa: F401 - registers it; the fixture

WAIT_S = 10.0


def test_a_lone_worker_keeps_a_node_with_long_calls_and_steps_it_before_the_queue(clock):  # noqa: F811
    # hold keeps the one worker while slow gets two packets; then slow's call at 0 (long on the
    # fake clock) makes b1 and b2 ready: b1 runs inline, b2 is queued; slow, with a packet left,
    # stays with the worker: its call at 1 comes before b2's at 0 (b2 is deeper: the queue would
    # give it first)
    hold = Gate()
    g = Graph.from_dict({
        "inputs": ["h", "in"], "side_packets": {"hold": None, "clock": None},
        "nodes": [
            {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
             "side_inputs": {"GATE": "hold"}},
            {"calculator": "TestSlowInside", "name": "slow", "inputs": ["in"], "outputs": ["x"],
             "side_inputs": {"CLOCK": "clock"}},
            {"calculator": "PassThrough", "name": "b1", "inputs": ["x"], "outputs": ["y1"]},
            {"calculator": "PassThrough", "name": "b2", "inputs": ["x"], "outputs": ["y2"]},
        ]}, threads=1)
    for s in ("hh", "y1", "y2"):
        g.observe(s, lambda p: None)
    g.start({"hold": hold, "clock": clock}, trace=True)
    try:
        g.add_packet("h", "x", 0)
        assert hold.entered.wait(WAIT_S), "hold's call never began"
        g.add_packet("in", "a", 0)
        g.add_packet("in", "b", 1)
        hold.release()
        g.close_all_inputs()
        g.wait(WAIT_S)
    finally:
        hold.release()
        if not g.done:
            g.cancel()
            g.wait(WAIT_S)
    calls = [(node, t) for node, _thread, t, _start, _end in g.trace_events() if node != "hold"]
    assert calls == [("slow", 0), ("b1", 0), ("slow", 1), ("b1", 1), ("b2", 0), ("b2", 1)], calls
