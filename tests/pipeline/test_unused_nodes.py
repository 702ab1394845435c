"""Nodes whose outputs reach nothing are left out of a run: no sink, no wanted observer, no used
node takes what they make (graphs/face_detection.yaml with only `detections` set must not draw
every frame for nobody)."""

import pytest

from pipeline import STOP, Calculator, Graph, Input, Output, SideOutput, register
from pipeline.config import parse
from pipeline.graph import unused_nodes


@register(name="TestCountedPass")
class CountedPass(Calculator):
    """A pass-through that records every node that opened or processed (class-level lists)."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    opened: list[str] = []
    calls: list[str] = []

    def open(self, ctx):
        CountedPass.opened.append(ctx.node)

    def process(self, ctx):
        CountedPass.calls.append(ctx.node)
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@pytest.fixture(autouse=True)
def _reset():
    CountedPass.opened.clear()
    CountedPass.calls.clear()


def spec(nodes: list[dict], **top):
    return parse({"nodes": nodes, **top}, "<test>")


SOURCE = {"calculator": "Counter", "name": "src", "outputs": {"OUT": "n"}, "options": {"count": 5}}
SINK_N = {"calculator": "Collector", "name": "sink", "inputs": {"IN": "n"}}


def node(name, inp, out, **kw):
    return {"calculator": "TestCountedPass", "name": name, "inputs": {"IN": inp}, "outputs": {"OUT": out}, **kw}


@pytest.mark.parametrize("nodes, wanted, unused", [
    # A branch next to the sink's: both of its nodes are left out, the source stays.
    ([SOURCE, SINK_N, node("a", "n", "x"), node("b", "x", "y")], set(), {"a", "b"}),
    # Observing the branch's end wants the whole branch.
    ([SOURCE, SINK_N, node("a", "n", "x"), node("b", "x", "y")], {"y"}, set()),
    # Observing its middle wants only what feeds it.
    ([SOURCE, SINK_N, node("a", "n", "x"), node("b", "x", "y")], {"x"}, {"b"}),
    # No sink and nothing wanted: nothing says what is wanted, so everything runs.
    ([SOURCE, node("a", "n", "x")], set(), set()),
    # Only the sink of a two-source graph keeps its source; the other source goes too.
    ([SOURCE, SINK_N, {"calculator": "Counter", "name": "src2", "outputs": {"OUT": "m"}},
      node("c", "m", "z")], set(), {"src2", "c"}),
    # A back edge is a consumer: the limiter's loop feeds the sink, so all of it is used.
    ([SOURCE, {"calculator": "FlowLimiter", "name": "lim",
               "inputs": {"IN": "n", "FINISHED": {"stream": "d", "back_edge": True}}, "outputs": {"OUT": "t"}},
      node("work", "t", "d"), {"calculator": "Collector", "name": "end", "inputs": {"IN": "d"}}], set(), set()),
    # The same loop with nobody after it: the back edge alone does not make it wanted.
    ([SOURCE, SINK_N, {"calculator": "FlowLimiter", "name": "lim",
                       "inputs": {"IN": "n", "FINISHED": {"stream": "d", "back_edge": True}},
                       "outputs": {"OUT": "t"}}, node("work", "t", "d")], set(), {"lim", "work"}),
])
def test_unused_nodes(nodes, wanted, unused):
    assert unused_nodes(spec(nodes), wanted) == unused


@register(name="TestSideMaker")
class SideMaker(Calculator):
    """A source that only publishes the side packet VALUE (7) in open and emits nothing."""

    outputs = {"OUT": Output(int)}
    side_outputs = {"VALUE": SideOutput(int)}

    def open(self, ctx):
        ctx.side_outputs["VALUE"].set(7)

    def process(self, ctx):
        return STOP


SIDE = [
    {"calculator": "TestSideMaker", "name": "maker", "outputs": {"OUT": "nothing"}, "side_outputs": {"VALUE": "offset"}},
    SOURCE,
    {"calculator": "TestSide", "name": "add", "inputs": {"IN": "n"}, "outputs": {"OUT": "sum"},
     "side_inputs": {"OFFSET": "offset"}},
    {"calculator": "Collector", "name": "sink", "inputs": {"IN": "sum"}, "side_outputs": {"ITEMS": "got"}},
]


def test_a_side_packet_producer_is_used_when_its_reader_is(no_thread_leak):
    assert unused_nodes(spec(SIDE), set()) == set()
    unread = [dict(SIDE[0], side_outputs={"VALUE": "unread"}), *SIDE[1:3], SIDE[3]]
    unread[2] = dict(unread[2], side_inputs={})
    unread[2]["calculator"] = "TestCountedPass"
    assert unused_nodes(spec(unread), set()) == {"maker"}
    g = Graph.from_dict({"nodes": SIDE})
    g.run()
    assert g.left_out == () and [v for _, v in g.side_packet("got")] == [7, 8, 9, 10, 11]


GRAPH = """
nodes:
  - calculator: Counter
    name: src
    outputs: {OUT: n}
    options: {count: 20}
  - calculator: TestCountedPass
    name: kept
    inputs: {IN: n}
    outputs: {OUT: a}
  - calculator: Collector
    name: sink
    inputs: {IN: a}
    side_outputs: {ITEMS: got}
  - calculator: TestCountedPass
    name: dangling
    inputs: {IN: n}
    outputs: {OUT: b}
  - calculator: TestCountedPass
    name: dangling_after
    inputs: {IN: b}
    outputs: {OUT: c}
"""


def test_a_branch_nobody_takes_is_never_opened_and_named(threads, no_thread_leak):
    g = Graph.from_yaml(GRAPH, threads=threads)
    g.run()
    assert g.left_out == ("dangling", "dangling_after")
    assert CountedPass.opened == ["kept"] and CountedPass.calls == ["kept"] * 20
    assert [v for _, v in g.side_packet("got")] == list(range(20))
    assert set(g.stats()) == {"src", "kept", "sink"}


def test_observing_the_branch_runs_it_and_a_watcher_does_not(threads, no_thread_leak):
    g = Graph.from_yaml(GRAPH, threads=threads)
    seen = []
    g.observe("c", lambda p: seen.append(p.value))
    g.run()
    assert g.left_out == () and seen == list(range(20))
    assert sorted(CountedPass.opened) == ["dangling", "dangling_after", "kept"]

    CountedPass.opened.clear()
    g = Graph.from_yaml(GRAPH, threads=threads)
    watched = []
    g.observe("c", lambda p: watched.append(p.value), wanted=False)  # e.g. a progress counter
    g.run()
    assert g.left_out == ("dangling", "dangling_after") and watched == []
    assert CountedPass.opened == ["kept"]


def test_a_poller_wants_its_stream(no_thread_leak):
    g = Graph.from_yaml(GRAPH)
    poller = g.poller("b")
    g.run()
    assert g.left_out == ("dangling_after",)
    assert [p.value for p in iter(poller.get, None)] == list(range(20))
