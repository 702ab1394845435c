"""A node whose only inputs are back edges has no forward input to wait for: the start activates
it, once, and it closes at once (every forward input of it is done: it has none), emitting what
its close emits and closing its outputs, so the run ends by itself. And the start's plan of direct
hops returns how many streams it made direct (none with direct hops off or while tracing).
Written against the survivors of a mutation run of pipeline/scheduler.py (``Scheduler.start``'s
activation of such nodes, ``Scheduler.plan_direct_hops``' count; docs/testing.md); every wait
bounded."""

from __future__ import annotations

import pytest

from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.scheduler import Scheduler
from pipeline.streams import DirectStream

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


@pytest.mark.parametrize("how", ["direct hops", "direct hops off", "tracing"])
def test_the_plan_of_direct_hops_returns_how_many_streams_it_made_direct(how, monkeypatch, no_thread_leak):
    # in -> n0 -> s0 -> n1 -> s1 -> n2 -> s2 (observed): s0 and s1 can be direct, s2 cannot
    if how == "direct hops off":
        monkeypatch.setattr(Scheduler, "direct_hops", False)
    made, plan = [], Scheduler.plan_direct_hops

    def recorded(self, nodes):
        made.append(plan(self, nodes))
        return made[-1]

    monkeypatch.setattr(Scheduler, "plan_direct_hops", recorded)
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": f"n{i}", "inputs": ["in" if i == 0 else f"s{i - 1}"],
         "outputs": [f"s{i}"]} for i in range(3)]}, threads=1)
    got = []
    g.observe("s2", got.append)
    g.start(trace=how == "tracing")
    g.add_packet("in", "x", 0)
    g.close_all_inputs()
    g.wait(WAIT_S)
    direct = sorted(s.name for s in g._streams.values() if type(s) is DirectStream)
    assert direct == (["s0", "s1"] if how == "direct hops" else [])
    assert made == [len(direct)] and len(got) == 1
