"""A node that has closed is never called again, even when a packet still reaches it on a back
edge (the loop's last node emitting in its own close). Written against the survivors of a
mutation run of pipeline/node.py (``finished`` after the close on the general path,
docs/testing.md)."""

from __future__ import annotations

from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register

WAIT_S = 30


@register
class TestLoopHead(Calculator):
    """Passes IN on; logs each call's timestamp and the inputs present, and its close, to LOG."""

    inputs = {"IN": Input(Any), "LOOP": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        ctx.side["LOG"].append((ctx.timestamp, tuple(t for t in ("IN", "LOOP") if ctx.get(t) is not None)))
        if ctx.get("IN") is not None:
            ctx.outputs["OUT"].add(ctx.get("IN"))

    def close(self, ctx):
        ctx.side["LOG"].append("closed")


@register
class TestEmitsInClose(Calculator):
    """Emits nothing in its calls; one packet at 1000 in its close."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def process(self, ctx):
        pass

    def close(self, ctx):
        ctx.outputs["OUT"].add("late", 1000)


def test_a_packet_on_a_back_edge_after_the_close_is_not_processed(threads, no_thread_leak):
    log = []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"log": None}, "nodes": [
        {"calculator": "TestLoopHead", "inputs": {"IN": "in", "LOOP": {"stream": "loop", "back_edge": True}},
         "outputs": ["a"], "side_inputs": {"LOG": "log"}},
        {"calculator": "TestEmitsInClose", "inputs": ["a"], "outputs": ["loop"]}]}, threads=threads)
    g.start({"log": log})
    g.add_packet("in", "x", 0)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert log == [(0, ("IN",)), "closed"]
