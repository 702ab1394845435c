"""What a calculator's ``close`` is given and how often it runs, the errors of a close at the
shutdown, the general path's queue peak, which nodes take the fast path, and the offset contract
of a node with ``timestamp_offset = None`` on a direct hop. Written against the survivors of a
mutation run of pipeline/node.py (``_close_node``, ``close_at_shutdown``, ``deliver``,
``wire_input``, ``add_output``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, Timestamp, register
from pipeline.node import NodeRuntime
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate
from tests.pipeline.test_scheduling import beside_a_held_node, holding

WAIT_S = 10.0


def _nodes(graph: Graph) -> dict[str, NodeRuntime]:
    return {n.name: n for n in graph._nodes}


@register
class TestCloseRecorder(Calculator):
    """Forwards its input; its close appends ``(timestamp, inputs, input_bound(IN))`` as it sees
    them to its side packet CLOSES."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any, optional=True)}
    side_inputs = {"CLOSES": SideInput(list)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)

    def close(self, ctx):
        ctx.side["CLOSES"].append((ctx.timestamp, dict(ctx.inputs), ctx.input_bound("IN")))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_close_sees_no_timestamp_no_inputs_and_its_inputs_done_and_runs_once(fast, monkeypatch):
    monkeypatch.setattr(NodeRuntime, "fast_path", fast)
    closes = []
    spec = {"inputs": ["in"], "side_packets": {"closes": None}, "nodes": [
        {"calculator": "TestCloseRecorder", "name": "c", "inputs": ["in"], "outputs": ["o"],
         "side_inputs": {"CLOSES": "closes"}}]}
    with GraphRun(spec, collect=["o"], threads=1, timeout=WAIT_S) as r:
        r.run({"in": [(0, "a"), (1, "b")]}, {"closes": closes})
    assert r.out["o"] == [(0, "a"), (1, "b")]
    assert closes == [(None, {}, Timestamp.DONE)]


@register
class TestCloseFails(Calculator):
    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)

    def close(self, ctx):
        raise OSError("device lost in close")


def test_a_close_failing_at_the_shutdown_is_the_runs_error_with_its_cause(no_thread_leak):
    """A cancelled run closes what did not finish at its shutdown; a close failing there is the
    run's error, named with the phase, and chained to the calculator's exception."""
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "TestCloseFails", "name": "dev", "inputs": ["in"], "outputs": ["o"]}]}, threads=1)
    g.observe("o", lambda p: None)
    g.start()
    g.add_packet("in", 0, 0)
    g.wait_until_idle(WAIT_S)
    g.cancel()
    with pytest.raises(GraphRunError, match=r"^node 'dev' \(TestCloseFails\) failed in close") as ei:
        g.wait(WAIT_S)
    assert isinstance(ei.value.__cause__, OSError), repr(ei.value.__cause__)


def test_the_general_paths_queue_peak_is_what_was_queued(no_thread_leak):
    """Three packets queued for a node off the fast path (``latest``) while it cannot run: its
    queue's peak is 3, as on the fast path."""
    gate, closes = Gate(), []
    g = beside_a_held_node({"calculator": "TestCloseRecorder", "name": "w", "inputs": {"IN": "a"},
                            "outputs": {"OUT": "wo"}, "side_inputs": {"CLOSES": "closes"},
                            "policy": {"latest": 50}}, inputs=["a"])
    g.observe("wo", lambda p: None)
    g.start({"gate": gate, "closes": closes})
    assert not _nodes(g)["w"].simple
    with holding(g, gate):
        for t in range(3):
            g.add_packet("a", t, t)
    g.close_all_inputs()
    g.wait(WAIT_S)
    stats = g.stats()["w"]
    assert stats["queue_peak"] == 3 and stats["count"] == 3, stats


@pytest.mark.parametrize("policy", ["sync", "immediate"])
def test_a_one_input_node_with_sync_or_immediate_takes_the_fast_path(policy):
    spec = {"inputs": ["in"], "nodes": [{"calculator": "PassThrough", "name": "p", "inputs": ["in"],
                                         "outputs": ["out"], "policy": policy}]}
    with GraphRun(spec, collect=["out"], threads=1, timeout=WAIT_S) as r:
        r.start()
        assert _nodes(r.graph)["p"].simple
        r.feed("in", [(0, "a"), (1, "b")])
        r.finish()
    assert r.out["out"] == [(0, "a"), (1, "b")]


@register
class TestOneFrameLate(Calculator):
    """``timestamp_offset = None``: emits each packet at its own timestamp one call later (the
    previous packet, when the next comes), and the last one in close."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    timestamp_offset = None

    def open(self, ctx):
        self.prev = None

    def process(self, ctx):
        if self.prev is not None:
            ctx.outputs["OUT"].add(self.prev[1], self.prev[0])
        self.prev = (ctx.timestamp, ctx.inputs["IN"].value)

    def close(self, ctx):
        if self.prev is not None:
            ctx.outputs["OUT"].add(self.prev[1], self.prev[0])


def test_a_node_with_no_offset_on_a_direct_hop_leaves_its_outputs_bound_alone(no_thread_leak):
    """A node with ``timestamp_offset = None`` called on a direct hop: its outputs' bound is not
    moved past its calls (no offset contract), so it may emit an earlier packet later."""
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "first", "inputs": ["in"], "outputs": ["a"]},
        {"calculator": "TestOneFrameLate", "name": "delay", "inputs": ["a"], "outputs": ["d"]}]}
    with GraphRun(spec, collect=["d"], threads=1, timeout=WAIT_S) as r:
        r.start()
        assert type(_nodes(r.graph)["first"].outputs["OUT:0"]).__name__ == "DirectStream"
        r.feed("in", [(t, t) for t in range(40)])
        r.finish()
    assert r.out["d"] == [(t, t) for t in range(40)]


@register
class TestQuietThenCloseAtLast(Calculator):
    """Emits nothing in its calls; its close emits at the last timestamp it was called with (which
    the offset contract has already passed)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def open(self, ctx):
        self.last = None

    def process(self, ctx):
        self.last = ctx.timestamp

    def close(self, ctx):
        ctx.outputs["OUT"].add("late", self.last)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_the_last_call_before_the_inputs_close_moves_the_outputs_bound_past_it(fast, monkeypatch, no_thread_leak):
    """The offset contract holds for the last call too, when its input is already done: the
    outputs' bound passes its timestamp, so a close emitting there is refused."""
    monkeypatch.setattr(NodeRuntime, "fast_path", fast)
    gate, closes = Gate(), []
    g = beside_a_held_node({"calculator": "TestQuietThenCloseAtLast", "name": "q", "inputs": {"IN": "a"},
                            "outputs": {"OUT": "qo"}}, inputs=["a"])
    g.observe("qo", lambda p: None)
    with GraphRun(g, timeout=WAIT_S):  # (ends a failed test's run)
        g.start({"gate": gate})
        with holding(g, gate):  # q's calls wait until a is closed: its last call finds it done
            g.add_packet("a", 0, 0)
            g.add_packet("a", 1, 1)
            g.close_input("a")
        g.close_input("hold")
        with pytest.raises(GraphRunError, match=r"^node 'q' \(TestQuietThenCloseAtLast\) failed in close: "
                                                r"TimestampError: stream 'qo': node 'q' sent a packet at timestamp 1, "
                                                r"but no packet was sent on it yet \(next allowed: 2\)"):
            g.wait(WAIT_S)
