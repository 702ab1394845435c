"""The fast path of a hop (node.py: a simple node's claim token, the push ``Stream.send`` does
itself into its queue, the first branch of ``NodeRuntime.step``) is held to the general path's
behaviour: each graph here runs with the fast path on and with every node on the general path
(``NodeRuntime.fast_path``), and both must give the same packets, bounds, drops, stats and
errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import Calculator, Graph, GraphRunError, Input, Output, register
from pipeline.node import NodeRuntime
from pipeline.testing import GraphRun


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def path(request, monkeypatch):
    monkeypatch.setattr(NodeRuntime, "fast_path", request.param)
    return request.param


@register
class TestWriteInto(Calculator):
    """Writes into the array it received (forbidden: payloads are read-only)."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(object)}

    def process(self, ctx):
        ctx.inputs["IN"].value[0] = 1
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@register
class TestBoundOnly(Calculator):
    """Emits nothing; moves its output's bound to the input's timestamp + ``step`` by hand."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    timestamp_offset = None

    def process(self, ctx):
        ctx.outputs["OUT"].set_next_timestamp_bound(ctx.timestamp + 1)


def _nodes(graph: Graph) -> dict[str, NodeRuntime]:
    return {n.name: n for n in graph._nodes}


def test_the_switch_takes_nodes_off_the_fast_path(path):
    spec = {"inputs": ["in"], "nodes": [{"calculator": "PassThrough", "name": "p", "inputs": ["in"],
                                         "outputs": ["out"]}]}
    with GraphRun(spec, collect=["out"], threads=1) as r:
        r.start()
        node = _nodes(r.graph)["p"]
        assert node.simple is path
        assert (node.q0.claim is not None) is path  # Stream.send pushes into the queue itself
        r.feed("in", [(0, "a")])
        r.finish()
    assert r.out["out"] == [(0, "a")]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("capacity", [1, 2, 100])
def test_chain_keeps_order_and_queue_stats(path, threads, capacity):
    nodes, prev = [], "in"
    for i in range(5):
        nodes.append({"calculator": "PassThrough", "name": f"n{i}",
                      "inputs": {"IN:0": {"stream": prev, "capacity": capacity}}, "outputs": [f"s{i}"]})
        prev = f"s{i}"
    with GraphRun({"inputs": ["in"], "nodes": nodes}, collect=[prev], threads=threads) as r:
        r.start()
        r.feed("in", [(t * 3, t) for t in range(300)])
        r.finish()
        stats = r.graph.stats()
    assert r.out[prev] == [(t * 3, t) for t in range(300)]
    for i in range(5):
        assert stats[f"n{i}"]["count"] == 300
        # the feed blocks while a queue is full, so n0's (fed by it alone) holds at most its
        # capacity; interior nodes never block (docs/graphs.md), so an interior queue may pass its
        # capacity when its consumer is slow (a loaded machine, mutmut's trampolines)
        assert 1 <= stats[f"n{i}"]["queue_peak"], i
        assert i > 0 or stats["n0"]["queue_peak"] <= capacity, stats["n0"]["queue_peak"]
        assert stats[f"n{i}"]["queue_depth"] == 0 and stats[f"n{i}"]["drops"] == 0


@pytest.mark.parametrize("overflow", ["drop_oldest", "reject"])
def test_full_interior_queue_drops_the_same_way(path, overflow):
    # n1's queue of 1 overflows while n0 forwards a burst: every packet arrives once, in order,
    # or is counted as a drop of n1's queue.
    nodes = [
        {"calculator": "PassThrough", "name": "n0", "inputs": {"IN:0": {"stream": "in", "capacity": 50}},
         "outputs": ["a"]},
        {"calculator": "PassThrough", "name": "n1", "inputs": {"IN:0": {"stream": "a", "capacity": 1,
                                                                          "overflow": overflow}},
         "outputs": ["b"]},
    ]
    with GraphRun({"inputs": ["in"], "nodes": nodes}, collect=["b"], threads=1) as r:
        r.start()
        r.feed("in", [(t, t) for t in range(40)])
        r.finish()
        drops = r.graph.stats()["n1"]["drops"]
    got = [t for t, _ in r.out["b"]]
    assert got == sorted(set(got)) and len(got) + drops == 40


def test_offset_contract_moves_bounds_for_a_sync_join(path, threads):
    # TestEvenOnly emits nothing for odd values: its output's bound still passes them (offset
    # contract, inlined in the fast path), so the join sees B empty there instead of waiting.
    spec = {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "TestEvenOnly", "name": "even", "inputs": {"IN": "in"}, "outputs": {"OUT": "ev"}},
            {"calculator": "TestJoin", "name": "join", "inputs": {"A": "in", "B": "ev"}, "outputs": {"OUT": "j"}},
        ],
    }
    with GraphRun(spec, collect=["j"], threads=threads) as r:
        r.start()
        r.feed("in", [(t, t) for t in range(10)], idle=True)
        # every timestamp settles as soon as it is fed: the join never waits for a later packet
        assert [t for t, _ in r.out["j"]] == list(range(10))
        r.finish()
    assert r.out["j"] == [(t, (t, t if t % 2 == 0 else None)) for t in range(10)]


def test_bound_set_by_hand_reaches_the_join(path):
    spec = {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "TestBoundOnly", "name": "bo", "inputs": {"IN": "in"}, "outputs": {"OUT": "x"}},
            {"calculator": "PassThrough", "name": "p", "inputs": ["x"], "outputs": ["y"]},
            {"calculator": "TestJoin", "name": "join", "inputs": {"A": "in", "B": "y"}, "outputs": {"OUT": "j"}},
        ],
    }
    with GraphRun(spec, collect=["j"], threads=1) as r:
        r.start()
        r.feed("in", [(t * 10, t) for t in range(5)], idle=True)
        assert [t for t, _ in r.out["j"]] == [0, 10, 20, 30, 40]  # the bound crossed p, packetless
        assert _nodes(r.graph)["p"].q0.bound == 41 and r.graph._streams["y"].bound == 41
        assert r.graph.stats()["p"]["count"] == 0
        r.finish()
    assert r.out["j"] == [(t * 10, (t, None)) for t in range(5)]


def test_error_in_a_fast_node_names_node_and_timestamp(path, threads, no_thread_leak):
    closed: list = []
    spec = {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "PassThrough", "name": "p", "inputs": ["in"], "outputs": ["a"]},
            {"calculator": "TestFail", "name": "bad", "inputs": {"IN": "a"}, "outputs": {"OUT": "b"},
             "options": {"at": 30}, "side_inputs": {"CLOSED": "closed"}},
            {"calculator": "PassThrough", "name": "after", "inputs": ["b"], "outputs": ["c"]},
        ],
        "side_packets": {"closed": None},
    }
    g = Graph.from_dict(spec, threads=threads)
    got = []
    g.observe("c", lambda p: got.append(p.timestamp))
    g.start({"closed": closed})
    for t in range(0, 100, 10):
        try:
            g.add_packet("in", t, t)
        except GraphRunError:
            break
    with pytest.raises(GraphRunError, match=r"node 'bad' \(TestFail\).*30.*boom at 30"):
        g.wait(timeout=30)
    assert got == [0, 10, 20]  # what came before the error got through; nothing after it
    assert sorted(closed) == ["bad"]


def test_payloads_forwarded_by_a_fast_node_stay_read_only(path):
    spec = {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "PassThrough", "name": "p", "inputs": ["in"], "outputs": ["a"]},
            {"calculator": "TestWriteInto", "name": "w", "inputs": {"IN": "a"}, "outputs": {"OUT": "b"}},
        ],
    }
    g = Graph.from_dict(spec, threads=1)
    g.start()
    frame = np.zeros(4, np.uint8)
    g.add_packet("in", frame, 0)
    g.close_input("in")
    with pytest.raises(GraphRunError, match=r"node 'w'.*read-only"):
        g.wait(timeout=30)
    assert not frame.flags.writeable and frame[0] == 0
