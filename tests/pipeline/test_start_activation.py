"""A node whose only inputs are back edges has no forward input to wait for: the start activates
it, once, and it closes at once (every forward input of it is done: it has none), emitting what
its close emits and closing its outputs, so the run ends by itself. Written against the survivors
of a mutation run of pipeline/scheduler.py (``Scheduler.start``'s activation of such nodes;
docs/testing.md); every wait bounded."""

from __future__ import annotations

from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register

WAIT_S = 10.0


@register
class TestEmitsOnClose(Calculator):
    """Logs each call's timestamp and its close to LOG; its close emits "closed" at 0."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        ctx.side["LOG"].append(ctx.timestamp)

    def close(self, ctx):
        ctx.side["LOG"].append("closed")
        ctx.outputs["OUT"].add("closed", 0)


def test_a_node_with_only_back_edges_is_closed_at_the_start_and_the_run_ends(no_thread_leak):
    # loop reads only the back edge from after; nothing else feeds the graph
    log, got = [], []
    g = Graph.from_dict({"side_packets": {"log": None}, "nodes": [
        {"calculator": "TestEmitsOnClose", "name": "loop", "inputs": {"IN": {"stream": "back", "back_edge": True}},
         "outputs": ["out"], "side_inputs": {"LOG": "log"}},
        {"calculator": "PassThrough", "name": "after", "inputs": ["out"], "outputs": ["back"]},
    ]}, threads=2)
    g.observe("out", lambda p: got.append((p.timestamp, p.value)))
    g.start({"log": log})
    try:
        g.wait(WAIT_S)
    finally:
        if not g.done:
            g.cancel()
            g.wait(WAIT_S)
    assert log == ["closed"], log  # closed once; the packet after sends back reaches a closed node
    assert got == [(0, "closed")]
    assert g.stats()["after"]["count"] == 1
