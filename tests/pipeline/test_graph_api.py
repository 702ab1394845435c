"""The Graph API as a caller reads it: ``topology()`` whole, ``wall_time()``, ``trace_events()``,
``poller()`` and ``observe()`` misuse, a graph used as a context manager without being started.
Written against the survivors of a mutation run of pipeline/graph.py (docs/testing.md)."""

from __future__ import annotations

import time

import pytest

from pipeline import Any, Calculator, Graph, Input, Output, SideOutput, register

TOPOLOGY = """
name: topo
inputs: [frames]
outputs: [summed]
side_packets: {OFFSET: 3}
executors: {slow: {threads: 1}}
nodes:
  - calculator: FlowLimiter
    inputs: {IN: frames, FINISHED: {stream: summed, back_edge: true}}
    outputs: {OUT: admitted}
  - calculator: TestMakesSide
    name: maker
    inputs: {IN: {stream: admitted, capacity: 3, overflow: drop_oldest}}
    outputs: [made]
    side_outputs: {S: made_side}
    policy: {latest: 2}
    executor: slow
  - calculator: TestSide
    inputs: [made]
    outputs: [summed]
    side_inputs: {OFFSET: OFFSET}
    max_in_flight: 2
"""


@register
class TestMakesSide(Calculator):
    """Passes its input on; sets its side output S to 1."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_outputs = {"S": SideOutput(int)}

    def open(self, ctx):
        ctx.side_outputs["S"].set(1)

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.get("IN"))


def _input(stream, back_edge=False, capacity=100, overflow="block"):
    return {"stream": stream, "back_edge": back_edge, "capacity": capacity, "overflow": overflow}


def test_topology_describes_every_node_edge_and_declaration():
    # What `vpipe viz`, the web preview and `vpipe profile` draw from: each field as the graph says.
    topo = Graph.from_yaml(TOPOLOGY).topology()
    assert topo == {
        "name": "topo", "inputs": ["frames"], "outputs": ["summed"], "side_packets": {"OFFSET": 3},
        "executors": {"slow": 1},
        "nodes": [
            {"name": "FlowLimiter", "calculator": "FlowLimiter", "policy": "immediate", "executor": "default",
             "max_in_flight": 1,
             "inputs": {"IN": _input("frames"), "FINISHED": _input("summed", back_edge=True)},
             "outputs": {"OUT": "admitted"}, "side_inputs": {}, "side_outputs": {}},
            {"name": "maker", "calculator": "TestMakesSide", "policy": "latest(2)", "executor": "slow",
             "max_in_flight": 1, "inputs": {"IN": _input("admitted", capacity=3, overflow="drop_oldest")},
             "outputs": {"OUT": "made"}, "side_inputs": {}, "side_outputs": {"S": "made_side"}},
            {"name": "TestSide", "calculator": "TestSide", "policy": "sync", "executor": "default",
             "max_in_flight": 2, "inputs": {"IN": _input("made")},
             "outputs": {"OUT": "summed"}, "side_inputs": {"OFFSET": "OFFSET"}, "side_outputs": {}},
        ],
        # (producer or None for a graph input, consumer, stream, back edge)
        "edges": [(None, "FlowLimiter", "frames", False), ("TestSide", "FlowLimiter", "summed", True),
                  ("FlowLimiter", "maker", "admitted", False), ("maker", "TestSide", "made", False)],
    }


def test_wall_time_is_none_before_start_and_fixed_once_the_run_ended(no_thread_leak):
    g = Graph.from_yaml("nodes: [{calculator: TestSeq, options: {timestamps: [0, 1, 2]}, outputs: [n]}]")
    assert g.wall_time() is None
    t0 = time.perf_counter()
    g.run()
    elapsed = time.perf_counter() - t0
    first = g.wall_time()
    assert 0 < first <= elapsed
    assert g.wall_time() == first, "the wall time of an ended run moved on"


def test_run_records_a_trace_only_when_asked(no_thread_leak):
    spec = "inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]"
    g = Graph.from_yaml(spec)
    g.run()
    assert g.trace_events() == []
    g = Graph.from_yaml(spec)
    g.start(trace=True)
    g.add_packet("a", "x", 5)
    g.close_all_inputs()
    g.wait(10)
    [(node, thread, timestamp, start_ns, end_ns)] = g.trace_events()
    assert (node, timestamp) == ("PassThrough", 5) and thread.startswith("vpipe-default-") and start_ns <= end_ns


def test_poller_and_observe_after_start_are_refused_with_their_names(no_thread_leak):
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    p = g.poller("b")
    with pytest.raises(RuntimeError, match=r"^poller of 'b': start\(\) the graph before get\(\)$"):
        p.get()
    g.start()
    with pytest.raises(RuntimeError, match=r"^poller\(\) must be called before start\(\)$"):
        g.poller("b")
    with pytest.raises(RuntimeError, match=r"^observe\(\) must be called before start\(\)$"):
        g.observe("b", print)
    g.close_all_inputs()
    assert p.get(10) is None
    g.wait(10)


def test_an_unstarted_graph_leaves_a_with_block_quietly():
    with Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]") as g:
        pass
    assert not g.done and g.wall_time() is None
