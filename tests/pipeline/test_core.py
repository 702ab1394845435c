"""The core's contract as a calculator and a caller see it: bound-only processing, FlowLimiter's
timestamps in flight, connected ports, no-op handles, the graph view, the run state and its waits."""

from __future__ import annotations

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, SideOutput, register
from pipeline.run_state import State
from pipeline.testing import GraphRun, run_calculator
from tests.pipeline.calcs import Gate

LIMITED_LOOP = """
inputs: [frames]
nodes:
  - calculator: FlowLimiter
    inputs: {IN: frames, FINISHED: {stream: done, back_edge: true}}
    outputs: {OUT: admitted}
  - calculator: TestEvenOnly      # a detector that emits nothing for odd frames
    inputs: [admitted]
    outputs: [done]
"""


def test_flow_limiter_frees_a_frame_that_finishes_without_a_packet(threads, no_thread_leak):
    # The end of the loop emits nothing for odd frames: its bound moves on without a packet. Each
    # frame arrives once the previous one went as far as it can, so none may be dropped (the
    # limiter that counted FINISHED packets admitted 2 of 10 here and then stalled for good).
    with GraphRun(LIMITED_LOOP, collect=["admitted", "done"], threads=threads) as r:
        r.start()
        r.feed("frames", [(t, t) for t in range(10)], idle=True)
        r.finish()
    assert [t for t, _ in r.out["admitted"]] == list(range(10))
    assert [t for t, _ in r.out["done"]] == [0, 2, 4, 6, 8]
    assert r.graph.stats()["FlowLimiter"]["drops"] == 0


@register
class TestBoundWatcher(Calculator):
    """Records each call: (timestamp, input packet or None, the input's bound as the call sees it)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(tuple)}
    process_timestamp_bounds = True
    timestamp_offset = None

    def process(self, ctx):
        p = ctx.inputs["IN"]
        ctx.outputs["OUT"].add((ctx.timestamp, None if p is None else p.value, ctx.input_bound("IN")))


@register
class TestCallRecorder(Calculator):
    """The same without bound-only processing."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(tuple)}
    timestamp_offset = None

    def process(self, ctx):
        ctx.outputs["OUT"].add((ctx.timestamp, ctx.inputs["IN"].value))


@pytest.mark.parametrize("policy", ["sync", "immediate"])
def test_bound_only_processing_calls_on_a_bound_move(policy, threads, no_thread_leak):
    spec = {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "TestEvenOnly", "inputs": ["in"], "outputs": ["even"]},
            {"calculator": "TestBoundWatcher", "inputs": ["even"], "outputs": ["watched"], "policy": policy},
            {"calculator": "TestCallRecorder", "inputs": ["even"], "outputs": ["recorded"], "policy": policy},
        ],
    }
    with GraphRun(spec, collect=["watched", "recorded"], threads=threads) as r:
        r.start()
        r.feed("in", [(t, t) for t in range(4)], idle=True)
        r.finish()
    # Odd timestamps: no packet on 'even', but its bound moved past them (the offset contract of
    # TestEvenOnly): a call with the input empty at the new bound - 1, seeing that bound.
    assert r.out["watched"] == [(0, (0, 0, 1)), (1, (1, None, 2)), (2, (2, 2, 3)), (3, (3, None, 4))]
    assert r.out["recorded"] == [(0, (0, 0)), (2, (2, 2))]  # not asked: called on packets only


def test_connected_ports_and_no_op_handles(no_thread_leak):
    seen = {}

    @register
    class TestPorts(Calculator):
        inputs = {"A": Input(Any), "B": Input(Any, optional=True)}
        outputs = {"X": Output(Any), "Y": Output(Any, optional=True)}
        side_outputs = {"S": SideOutput(Any, optional=True)}

        def open(self, ctx):
            seen["tags"] = (ctx.input_tags, ctx.output_tags)
            seen["connected"] = {t: ctx.connected(t) for t in ("A", "B", "X", "Y")}
            seen["handles"] = (ctx.outputs["Y"].connected, ctx.side_outputs["S"].connected)
            ctx.side_outputs["S"].set("ignored")  # unconnected: does nothing, raises nothing

        def process(self, ctx):
            ctx.outputs["X"].add(ctx.get("A"))
            ctx.outputs["Y"].add(ctx.get("A"))  # unconnected optional output: a no-op

    out = run_calculator(TestPorts, inputs={"A": [(0, "a"), (5, "b")]}, outputs=["X"])
    assert out == {"X": [(0, "a"), (5, "b")]}
    assert seen["tags"] == (("A",), ("X",))
    assert seen["connected"] == {"A": True, "B": False, "X": True, "Y": False}
    assert seen["handles"] == (False, False)


def test_pass_through_forwards_only_connected_pairs():
    out = run_calculator("PassThrough", inputs={"IN:0": [(0, "a")], "IN:1": [(0, "b"), (3, "c")]},
                         outputs=["OUT:1"])
    assert out == {"OUT:1": [(0, "b"), (3, "c")]}


def test_ctx_graph_is_a_view_for_live_stats(no_thread_leak):
    views = []

    @register
    class TestGraphView(Calculator):
        inputs = {"IN": Input(Any)}

        def open(self, ctx):
            views.append(ctx.graph)

        def process(self, ctx):
            views.append(ctx.graph.stats()[ctx.node]["count"])

    run_calculator(TestGraphView, inputs={"IN": [(0, 1), (1, 2)]})
    view = views[0]
    assert view.name == "test_TestGraphView"
    assert set(view.topology()) >= {"nodes", "edges"}
    assert view.wall_time() > 0
    assert views[1:] == [0, 1]  # stats while running
    for control in ("cancel", "add_packet", "request_stop", "start"):
        assert not hasattr(view, control), f"ctx.graph offers {control}"


def test_run_state_moves(no_thread_leak):
    g = Graph.from_dict({"inputs": ["in"], "nodes": [{"calculator": "PassThrough", "inputs": ["in"],
                                                       "outputs": ["o"]}]})
    g.start()
    assert g.state is State.RUNNING and not g.done
    g.request_stop()  # a clean stop: the inputs close, what is queued drains
    g.wait(10)
    assert g.state is State.DONE and g.done

    g = Graph.from_yaml("nodes: [{calculator: TestEndless, outputs: [n]}]")
    g.start()
    g.cancel()
    assert g.state is State.CANCELLED
    g.wait(10)
    assert g.state is State.CANCELLED and g.error is None

    g = Graph.from_yaml("nodes: [{calculator: TestSourceFail, outputs: [n]}]")
    with pytest.raises(GraphRunError, match="source broke"):
        g.run()
    assert g.state is State.FAILED


def test_draining_lets_queued_packets_through(no_thread_leak):
    gate = Gate()
    g = Graph.from_dict({
        "inputs": ["in"], "side_packets": {"gate": None},
        "nodes": [{"calculator": "TestBlocker", "inputs": ["in"], "outputs": ["o"], "side_inputs": {"GATE": "gate"}}],
    })
    with GraphRun(g, collect=["o"]) as r:
        r.start({"gate": gate})
        r.feed("in", [(0, "a"), (1, "b"), (2, "c")])
        assert gate.entered.wait(5)
        g.request_stop()
        assert g.state is State.DRAINING
        gate.release()
        g.wait(10)
    assert g.state is State.DONE
    assert r.out["o"] == [(0, "a"), (1, "b"), (2, "c")]


def test_poller_wakes_when_the_run_fails(no_thread_leak):
    g = Graph.from_yaml("""
nodes:
  - calculator: TestSourceFail     # emits 0..4, then raises
    outputs: [n]
  - calculator: TestBlocker
    inputs: [n]
    outputs: [m]
    side_inputs: {GATE: gate}
side_packets: {gate: null}
""")
    gate = Gate()
    gate.release()
    p = g.poller("m")
    g.start({"gate": gate})
    got = []
    while (pk := p.get(timeout=10)) is not None:  # ends when the run fails, without wait() first
        got.append(pk.timestamp)
    assert got == sorted(got) and set(got) <= {0, 1, 2, 3, 4}
    with pytest.raises(GraphRunError, match="source broke"):
        g.wait(10)


def test_wait_timeout_and_wait_until_idle(no_thread_leak):
    gate = Gate()
    g = Graph.from_dict({
        "inputs": ["in"], "side_packets": {"gate": None},
        "nodes": [{"calculator": "TestBlocker", "inputs": ["in"], "outputs": ["o"], "side_inputs": {"GATE": "gate"}}],
    })
    with GraphRun(g, collect=["o"]) as r:
        r.start({"gate": gate})
        r.feed("in", [(0, 0)])
        assert gate.entered.wait(5)
        with pytest.raises(TimeoutError, match="did not become idle within 0.05 s"):
            g.wait_until_idle(0.05)
        with pytest.raises(TimeoutError, match="did not finish within 0.05 s"):
            g.wait(0.05)
        gate.release()
        g.wait_until_idle(10)
        assert r.out["o"] == [(0, 0)]  # idle: the packet went all the way
        r.finish()


def test_max_in_flight_node_may_emit_in_close(no_thread_leak):
    out = run_calculator("TestSumOnClose", inputs={"IN": [(0, 1), (1, 2), (2, 3)]}, max_in_flight=2, threads=2)
    assert out == {"OUT": [(3, 6)]}


def test_graph_run_cancels_a_run_left_going(no_thread_leak):
    r = GraphRun("nodes: [{calculator: TestEndless, outputs: [n]}]")
    with pytest.raises(AssertionError):
        with r:
            r.start()
            raise AssertionError("a failing test")
    assert r.graph.state is State.CANCELLED and r.graph._end_time is not None



def test_idle_after_one_branch_finished(no_thread_leak):
    # A node that finished (its input closed) is not working: the graph is idle while the other
    # input still runs.
    spec = {"inputs": ["a", "b"], "nodes": [
        {"calculator": "PassThrough", "name": "pa", "inputs": ["a"], "outputs": ["oa"]},
        {"calculator": "PassThrough", "name": "pb", "inputs": ["b"], "outputs": ["ob"]},
    ]}
    with GraphRun(spec, collect=["ob"]) as r:
        r.start()
        r.graph.close_input("a")
        r.feed("b", [(0, "x")], idle=True)
        assert r.out["ob"] == [(0, "x")]
        r.feed("b", [(1, "y")], idle=True)
        assert r.out["ob"] == [(0, "x"), (1, "y")]
        r.finish()
