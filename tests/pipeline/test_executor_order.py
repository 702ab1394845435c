"""Which ready node a free worker takes first: the deepest (downstream first, so what is in flight
drains before more comes in; scheduler.py). Written against the survivors of a mutation run of
pipeline/scheduler.py (``Executor.submit``'s heap order, docs/testing.md); one worker, held by a
gate while the nodes are made ready, so the order is decided by the heap alone."""

from __future__ import annotations

from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register
from tests.pipeline.calcs import Gate

WAIT_S = 30


@register
class TestLogCalls(Calculator):
    """Logs ``(node, timestamp)`` of each call to LOG; passes A on (OUT, optional)."""

    inputs = {"A": Input(Any, optional=True), "B": Input(Any, optional=True)}
    outputs = {"OUT": Output(Any, optional=True)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        ctx.side["LOG"].append((ctx.node, ctx.timestamp))
        if ctx.get("A") is not None:
            ctx.outputs["OUT"].add(ctx.get("A"))


def test_a_free_worker_takes_the_deepest_ready_node_first(no_thread_leak):
    gate, log = Gate(), []
    g = Graph.from_dict({"inputs": ["in_h", "in_x", "in_d"], "side_packets": {"gate": None, "log": None}, "nodes": [
        {"calculator": "TestBlocker", "name": "hold", "inputs": ["in_h"], "outputs": ["h"],
         "side_inputs": {"GATE": "gate"}},
        {"calculator": "TestLogCalls", "name": "x", "inputs": {"A": "in_x"}, "outputs": ["xo"],
         "side_inputs": {"LOG": "log"}},
        {"calculator": "TestLogCalls", "name": "d", "inputs": {"A": "xo", "B": "in_d"}, "policy": "immediate",
         "side_inputs": {"LOG": "log"}}]}, threads=1)
    g.observe("h", lambda p: None)
    g.start({"gate": gate, "log": log})
    g.add_packet("in_h", "h", 0)
    assert gate.entered.wait(WAIT_S), "the held call never began"
    g.add_packet("in_x", "x", 1)  # x (depth 0) and d (depth 1) made ready while the worker is held
    g.add_packet("in_d", "d", 2)
    gate.release()
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert log[0] == ("d", 2), log
    assert sorted(log) == [("d", 1), ("d", 2), ("x", 1)]
