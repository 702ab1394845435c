"""What the start sets up, as a run shows it: a node whose only inputs are back edges has no
forward input to wait for, so the start activates it, once, and it closes at once, emitting what
its close emits and closing its outputs (the run ends by itself); the plan of direct hops returns
how many streams it made direct (none with direct hops off or while tracing) and looks at every
output of a node (an observed first one does not stop it); a queue no packet reached shows a peak
of 0; an unknown policy name is refused by name. Written against the survivors of a mutation run
of pipeline/scheduler.py, streams.py and policies.py (``Scheduler.start``,
``Scheduler.plan_direct_hops``, ``InputQueue``'s peak, ``policy_for``; docs/testing.md); every
wait bounded."""

from __future__ import annotations

import pytest

import tests.pipeline.calcs  # noqa: F401 - registers TestJoin
from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.policies import policy_for
from pipeline.scheduler import Scheduler
from pipeline.streams import DirectStream
from pipeline.testing import GraphRun
from tests.pipeline.interleave import PausePoint
from tests.pipeline.test_worker_handoff import _wait_until, _waits_in

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
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
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


def test_a_node_with_two_outputs_has_its_second_made_direct_past_an_observed_first(no_thread_leak):
    # two's OUT:0 (a) is observed: not direct; its OUT:1 (b) feeds one simple node: direct
    g = Graph.from_dict({"inputs": ["in", "in2"], "nodes": [
        {"calculator": "PassThrough", "name": "two", "inputs": ["in", "in2"], "outputs": ["a", "b"]},
        {"calculator": "PassThrough", "name": "after", "inputs": ["b"], "outputs": ["c"]},
    ]}, threads=1)
    got = []
    g.observe("a", got.append)
    g.observe("c", got.append)
    g.start()
    g.add_packet("in", "x", 0)
    g.add_packet("in2", "y", 0)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert sorted(s.name for s in g._streams.values() if type(s) is DirectStream) == ["b"]
    assert len(got) == 2


def test_a_queue_no_packet_reached_has_a_peak_of_zero(no_thread_leak):
    g = Graph.from_dict({"inputs": ["in", "in2"], "nodes": [
        {"calculator": "TestJoin", "name": "join", "inputs": {"A": "in", "B": "in2"}, "outputs": ["j"]}]}, threads=1)
    g.observe("j", lambda p: None)
    g.start()
    g.add_packet("in", 1, 0)
    g.close_all_inputs()
    g.wait(WAIT_S)
    stats = g.stats()["join"]
    assert (stats["inputs"]["A"]["peak"], stats["inputs"]["B"]["peak"], stats["queue_peak"]) == (1, 0, 1), stats


def test_an_unknown_policy_name_is_refused_by_name():
    # config.py refuses it first; policy_for, called directly, names it too
    with pytest.raises(ValueError, match=r"^unknown input policy 'fifo'$"):
        policy_for("fifo", None)


@register
class TestRunsOnlyAfterTheHold(Calculator):
    """Passes its packets on; records in SEEN whether a thread was held at the test's PausePoint
    (side packet POINT) when it was called."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"POINT": SideInput(object), "SEEN": SideInput(list)}

    def process(self, ctx):
        ctx.side["SEEN"].append((ctx.timestamp, ctx.side["POINT"].holding))
        ctx.outputs["OUT"].add_packet(ctx.inputs["IN"])


def test_a_node_activated_at_the_start_is_not_activated_again_before_its_first_step(no_thread_leak):
    # loop reads only the back edge from m, which the graph input feeds: the start activates loop,
    # and its first step is held (at its first line) while m's packet comes back to it. That
    # packet finds loop activated already: it waits for the held step, and no second activation
    # runs loop's call on the other worker meanwhile.
    seen, got = [], []
    with PausePoint("_step_general", "run = self.run", 1) as first_step:
        g = Graph.from_dict({"inputs": ["in"], "side_packets": {"point": None, "seen": None}, "nodes": [
            {"calculator": "TestRunsOnlyAfterTheHold", "name": "loop",
             "inputs": {"IN": {"stream": "back", "back_edge": True}}, "outputs": ["out"],
             "side_inputs": {"POINT": "point", "SEEN": "seen"}},
            {"calculator": "PassThrough", "name": "m", "inputs": ["in"], "outputs": ["back"]},
        ]}, threads=2)
        g.observe("back", lambda p: got.append(p.timestamp))
        g.observe("out", lambda p: None)  # (what is observed is what the run keeps: loop too)
        with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
            g.start({"point": first_step, "seen": seen})
            try:
                assert first_step.wait_reached(), "loop's first step never began"
                g.add_packet("in", "x", 0)
                other = [th for th in g._sched.executors["default"].threads if th is not first_step.thread]
                _wait_until("m's packet sent back and the other worker idle",
                            lambda: got == [0] and all(_waits_in(th, "_work") for th in other))
            finally:
                first_step.go()
            g.close_all_inputs()
            g.wait(WAIT_S)
    assert (0, True) not in seen, "loop's call ran while its first step was held"
