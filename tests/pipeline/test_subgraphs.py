"""Subgraphs inlined at load (docs/graphs.md, "Subgraphs"), and graphs found by name ("Finding
graphs by name"): the inlined nodes, streams, side packets and executors, the wiring by position
and by name, every wiring problem word for word, and where a name is looked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import STOP, Calculator, Graph, GraphConfigError, Input, Output, SideInput, SideOutput, register
from pipeline.config import builtin_graph_dirs, find_graph_file, graph_names, graph_search_path, load

SCALER = """
name: scaler
inputs: [raw]
outputs: [scaled, passed]
side_packets: {offset: 1, unused: null}
executors: {inner: 2, shared: 5}
nodes:
  - calculator: TestSide
    name: add
    inputs: [raw]
    outputs: [mid]
    side_inputs: {OFFSET: offset}
  - calculator: TestScale
    inputs: [mid]
    outputs: [scaled]
    options: {factor: $offset}
    executor: inner
  - calculator: PassThrough
    inputs: [raw]
    outputs: [passed]
    when: $offset
"""


def run(g: Graph, stream: str, values, side=None) -> list:
    got = []
    g.observe(stream, lambda p: got.append(p.value))
    g.start(side)
    for i, v in enumerate(values):
        g.add_packet("a", v, i)
    g.close_all_inputs()
    g.wait(30)
    return got


def problems(text, tmp_path, **kw) -> list[str]:
    f = tmp_path / "outer.yaml"
    f.write_text(text)
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(f, **kw)
    return [str(p).replace(str(tmp_path), "T") for p in ei.value.problems]


def test_a_subgraph_is_inlined_with_its_nodes_prefixed_and_its_side_packets_renamed(tmp_path):
    (tmp_path / "scaler.yaml").write_text(SCALER)
    f = tmp_path / "outer.yaml"
    f.write_text("""
inputs: [a]
side_packets: {off: 3}
executors: {shared: 1}
nodes:
  - subgraph: scaler
    name: s
    inputs: [a]
    outputs: {SCALED: b, passed: c}
    side_inputs: {OFFSET: off}
  - subgraph: scaler
    inputs: {RAW: a}
    outputs: [d]
""")
    g = Graph.from_yaml(f)
    spec = g.spec
    assert [n.name for n in spec.nodes] == ["s/add", "s/TestScale", "s/PassThrough",
                                           "scaler/add", "scaler/TestScale", "scaler/PassThrough"]
    by = {n.name: n for n in spec.nodes}
    assert [i.stream for i in by["s/add"].inputs] == ["a"] and by["s/add"].outputs == {"OUT": "s/mid"}
    assert [i.stream for i in by["s/TestScale"].inputs] == ["s/mid"] and by["s/TestScale"].outputs == {"OUT": "b"}
    assert by["s/PassThrough"].outputs == {"OUT:0": "c"}
    assert by["scaler/TestScale"].outputs == {"OUT": "d"}
    assert by["scaler/PassThrough"].outputs == {"OUT:0": "scaler/passed"}  # not wired: stays inside
    # the side packet wired by name (any case), in side inputs, $refs and when:
    assert by["s/add"].side_inputs == {"OFFSET": "off"} and by["scaler/add"].side_inputs == {"OFFSET": "offset"}
    assert by["s/TestScale"].options == {"factor": "$off"} and by["scaler/TestScale"].options == {"factor": "$offset"}
    assert (by["s/PassThrough"].when, by["scaler/PassThrough"].when) == ("off", "offset")
    # the inner defaults join the graph's, which win; executors too
    assert spec.side_packets == {"off": 3, "offset": 1, "unused": None}
    assert spec.line_of_side_packet["offset"] == 5
    assert spec.executors == {"shared": 1, "inner": 2}
    assert run(g, "b", [10, 20]) == [39, 69]  # (v + 3) * 3


def test_a_subgraph_named_by_path_and_beside_the_file(tmp_path):
    sub = tmp_path / "parts"
    sub.mkdir()
    (sub / "scaler.yaml").write_text(SCALER)
    (tmp_path / "outer.yaml").write_text(
        "inputs: [a]\nnodes:\n  - subgraph: parts/scaler.yaml\n    name: ''\n    inputs: [a]\n    outputs: [b]\n")
    g = Graph.from_yaml(tmp_path / "outer.yaml")
    assert g.spec.nodes[0].name == "scaler/add"  # an empty name falls back to the subgraph's
    assert run(g, "b", [1]) == [2 * 1]  # offset 1, factor 1: (1 + 1) * 1
    (sub / "outer.yml").write_text("inputs: [a]\nnodes:\n  - subgraph: scaler\n    inputs: [a]\n    outputs: [b]\n")
    assert [n.name for n in Graph.from_yaml(sub / "outer.yml").spec.nodes][0] == "scaler/add"


def test_a_subgraph_file_is_read_once_however_often_it_is_included(tmp_path, monkeypatch):
    (tmp_path / "scaler.yaml").write_text(SCALER)
    reads = []
    real = Path.read_bytes

    def counting(self):
        reads.append(self.name)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    text = "inputs: [a]\nnodes:\n" + "".join(
        f"  - subgraph: scaler\n    inputs: [a]\n    outputs: [b{i}]\n" for i in range(3))
    (tmp_path / "outer.yaml").write_text(text)
    g = Graph.from_yaml(tmp_path / "outer.yaml")
    assert reads == ["outer.yaml", "scaler.yaml"]
    assert [n.name for n in g.spec.nodes if n.name.endswith("/add")] == ["scaler/add", "scaler_2/add", "scaler_3/add"]


def test_every_subgraph_wiring_problem_word_for_word(tmp_path):
    """Each problem names the file it is in: an inlined node's, its subgraph file and line there."""
    (tmp_path / "scaler.yaml").write_text(SCALER)
    where = ", ".join(str(d) for d in graph_search_path())
    assert problems("""inputs: [a]
nodes:
  - subgraph: 5
  - subgraph: nowhere_graph
  - subgraph: scaler
    inputs: [a, a]
    outputs: {SCALED: b, BOGUS: c, PASSED: 4}
    side_inputs: {OFFSET: 3}
  - subgraph: scaler
    inputs: 5
    outputs: [b]
    side_inputs: [x]
""", tmp_path) == [
        "T/outer.yaml:3: 'subgraph' must name a graph file, got the number 5",
        f"T/outer.yaml:4: subgraph 'nowhere_graph' not found (looked beside T and in {where})",
        "T/outer.yaml:6: subgraph 'scaler' has 1 inputs, 2 wired",
        "T/outer.yaml:7: subgraph 'scaler' has no output 'BOGUS' (it has: SCALED, PASSED)",
        "T/outer.yaml:7: subgraph 'scaler': output 'passed' must be wired to a stream name, got the number 4",
        "T/outer.yaml:8: subgraph 'scaler': side input 'OFFSET' must name a side packet, got the number 3",
        "T/outer.yaml:10: subgraph 'scaler': 'inputs' must be a list of streams or a mapping NAME: stream, got the "
        "number 5",
        "T/outer.yaml:12: subgraph 'scaler': 'side_inputs' must be a mapping INNER: outer (side packet names), got "
        "a list",
        "T/scaler.yaml:13: stream 'b' has 2 producers (node 'scaler/TestScale' output OUT; node 'scaler_2/TestScale' "
        "output OUT); a stream has exactly one producer",
        "T/scaler.yaml:10: node 'scaler_2/add': input IN reads stream 'scaler_2/raw', which has no producer; did you "
        "mean 'scaler_2/mid', 'scaler_2/passed'?",
        "T/scaler.yaml:19: node 'scaler_2/PassThrough': input IN:0 reads stream 'scaler_2/raw', which has no "
        "producer; did you mean 'scaler_2/mid', 'scaler_2/passed'?"]


def test_a_subgraph_too_deep_and_one_including_itself(tmp_path):
    for i in range(10):
        (tmp_path / f"d{i}.yaml").write_text(f"inputs: [x]\noutputs: [y]\nnodes:\n  - subgraph: d{i + 1}\n"
                                             "    inputs: [x]\n    outputs: [y]\n")
    (tmp_path / "d10.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n  - {calculator: PassThrough, inputs: [x], "
                                       "outputs: [y]}\n")
    outer = "inputs: [a]\nnodes:\n  - subgraph: {}\n    inputs: [a]\n    outputs: [b]\n"
    assert problems(outer.format("d0"), tmp_path) == ["T/d7.yaml:4: subgraph 'd8' nests more than 8 levels deep"]
    (tmp_path / "outer.yaml").write_text(outer.format("d3"))  # eight levels: allowed
    assert [n.name for n in Graph.from_yaml(tmp_path / "outer.yaml").spec.nodes] == [
        "d3/d4/d5/d6/d7/d8/d9/d10/PassThrough"]


def test_wiring_problems_name_the_key_and_the_item_lines(tmp_path):
    (tmp_path / "scaler.yaml").write_text(SCALER)
    assert problems("""inputs: [a]
nodes:
  - name: first
    subgraph: 5
  - name: second
    subgraph: scaler
    inputs: [a]
    outputs:
      - {stream: b}
      - 4
""", tmp_path) == [
        "T/outer.yaml:4: 'subgraph' must name a graph file, got the number 5",
        "T/outer.yaml:10: subgraph 'scaler': output 'passed' must be wired to a stream name, got the number 4"]


def test_a_text_graph_looks_for_its_subgraphs_on_the_search_path_only(tmp_path, monkeypatch):
    """YAML text has no folder of its own: a subgraph in the working folder is not 'beside' it."""
    monkeypatch.delenv("VPIPE_GRAPH_PATH", raising=False)
    (tmp_path / "scaler_here.yaml").write_text(SCALER)
    monkeypatch.chdir(tmp_path)
    text = "inputs: [a]\nnodes:\n  - subgraph: scaler_here\n    inputs: [a]\n    outputs: [b]\n"
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(text)
    assert str(ei.value).startswith("<string>:3: subgraph 'scaler_here' not found (looked in ")
    assert [n.name for n in Graph.from_yaml(text, [tmp_path]).spec.nodes][0] == "scaler/add"  # its name: scaler


def test_a_subgraph_finds_its_own_subgraphs_on_the_search_path(tmp_path, monkeypatch):
    monkeypatch.delenv("VPIPE_GRAPH_PATH", raising=False)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "outer_sub.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n  - subgraph: inner_sub\n"
                                        "    inputs: [x]\n    outputs: [y]\n")
    (two / "inner_sub.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                        "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    text = "inputs: [a]\nnodes:\n  - subgraph: outer_sub\n    inputs: [a]\n    outputs: [b]\n"
    assert [n.name for n in Graph.from_yaml(text, [one, two]).spec.nodes] == ["outer_sub/inner_sub/PassThrough"]


def test_a_subgraph_labelled_like_an_inlined_node_gets_a_name_of_its_own(tmp_path):
    (tmp_path / "scaler.yaml").write_text(SCALER)
    f = tmp_path / "outer.yaml"
    f.write_text("inputs: [a]\nnodes:\n" + "".join(
        f"  - subgraph: scaler\n    name: {label}\n    inputs: [a]\n    outputs: [{out}]\n"
        for label, out in (("s", "b"), ("s/add", "c"), ("s/add", "d"))))
    names = [n.name for n in Graph.from_yaml(f).spec.nodes if n.name.endswith("/add")]
    assert names == ["s/add", "s/add_2/add", "s/add_3/add"]


def test_the_subgraph_inclusions_are_bounded(tmp_path, monkeypatch):
    from pipeline import config as _config

    monkeypatch.setattr(_config, "MAX_SUBGRAPHS", 3)
    (tmp_path / "scaler.yaml").write_text(SCALER)

    def including(n):
        return "inputs: [a]\nnodes:\n" + "".join(
            f"  - name: s{i}\n    subgraph: scaler\n    inputs: [a]\n    outputs: [b{i}]\n" for i in range(n)) + \
            "  - calculator: NoSuchCalculatorAfter\n"

    f = tmp_path / "outer.yaml"
    f.write_text(including(3))
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(f)
    assert [str(p).replace(str(tmp_path), "T") for p in ei.value.problems][0].startswith(
        "T/outer.yaml:15: unknown calculator 'NoSuchCalculatorAfter'")  # three are allowed
    f.write_text(including(4))
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(f)
    assert [str(p).replace(str(tmp_path), "T") for p in ei.value.problems] == [
        "T/outer.yaml:16: the graph includes more than 3 subgraphs (counting every inclusion, at any depth)"]


# -- Subgraphs written the way people write them: the ``subgraph:`` key below the node's name, wiring
# mappings over several lines, side packets passed under outer names, side outputs of inlined nodes.
# Each problem names the line of the key or item it is about (not the node's first line).

@register
class TestSideSource(Calculator):
    """Sets the side packet INFO to 7 in ``open``; a source that emits nothing."""

    outputs = {"OUT": Output(int)}
    side_outputs = {"INFO": SideOutput(int)}

    def open(self, ctx):
        ctx.side_outputs["INFO"].set(7)

    def process(self, ctx):
        return STOP


@register
class TestSideReader(Calculator):
    """Adds the side packet INFO to each value."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    side_inputs = {"INFO": SideInput(int)}

    def open(self, ctx):
        self.info = ctx.side["INFO"]

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value + self.info)


WIRED = """name: scaler
inputs: [raw]
outputs: [scaled, passed]
side_packets: {offset: 1}
nodes:
  - calculator: TestSide
    name: add
    inputs: [raw]
    outputs: [mid]
    side_inputs: {OFFSET: offset}
  - calculator: TestScale
    inputs: [mid]
    outputs: [scaled]
  - calculator: PassThrough
    inputs: [raw]
    outputs: [passed]
"""


def test_subgraph_problems_name_the_line_of_the_subgraph_key(tmp_path, monkeypatch):
    """Not found, including itself, nesting too deep, unreadable: the line of ``subgraph:``, which
    here is the node's second line."""
    monkeypatch.delenv("VPIPE_GRAPH_PATH", raising=False)
    where = ", ".join(str(d) for d in graph_search_path())
    assert problems("inputs: [a]\nnodes:\n  - name: lost\n    subgraph: nowhere_graph_3\n", tmp_path) == [
        f"T/outer.yaml:4: subgraph 'nowhere_graph_3' not found (looked beside T and in {where})"]
    (tmp_path / "loop.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n  - name: again\n"
                                        "    comment: the key on the third line\n    subgraph: loop\n")
    assert problems("inputs: [a]\nnodes:\n  - name: l\n    subgraph: loop\n", tmp_path) == [
        "T/loop.yaml:6: subgraph 'loop' includes itself (loop.yaml -> loop.yaml)"]
    for i in range(9):
        (tmp_path / f"d{i}.yaml").write_text(f"inputs: [x]\noutputs: [y]\nnodes:\n  - name: n\n"
                                             f"    subgraph: d{i + 1}\n")
    assert problems("inputs: [a]\nnodes:\n  - name: deep\n    subgraph: d0\n", tmp_path) == [
        "T/d7.yaml:5: subgraph 'd8' nests more than 8 levels deep"]
    (tmp_path / "locked.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes: []\n")
    real = type(tmp_path).read_bytes

    def failing(self):
        if self.name == "locked.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(type(tmp_path), "read_bytes", failing)
    assert problems("inputs: [a]\nnodes:\n  - name: l\n    subgraph: locked\n", tmp_path) == [
        f"T/outer.yaml:4: cannot read graph file T/locked.yaml: Permission denied"]


def test_the_not_found_message_lists_the_callers_search_path(tmp_path, monkeypatch):
    monkeypatch.delenv("VPIPE_GRAPH_PATH", raising=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "nearly_there.yaml").write_text(WIRED)
    out = problems("inputs: [a]\nnodes:\n  - subgraph: nearly_ther\n", tmp_path, search_paths=[extra])
    where = ", ".join(str(d).replace(str(tmp_path), "T") for d in graph_search_path([extra]))
    assert where.startswith("T/extra, ")
    assert out == [f"T/outer.yaml:3: subgraph 'nearly_ther' not found (looked beside T and in {where}; "
                   "did you mean 'nearly_there'?)"]


def test_wiring_mapping_items_over_several_lines_are_named_at_their_own_line(tmp_path):
    (tmp_path / "scaler.yaml").write_text(WIRED)
    assert problems("""inputs: [a]
nodes:
  - name: s
    subgraph: scaler
    inputs:
      RAW: a
      NOPE: a
    outputs:
      SCALED: 4
      PASSED: [x]
      SCALED2: b
    side_inputs:
      OFFSET: 3
      OTHER: [y]
""", tmp_path) == [
        "T/outer.yaml:7: subgraph 'scaler' has no input 'NOPE' (it has: RAW)",
        "T/outer.yaml:11: subgraph 'scaler' has no output 'SCALED2' (it has: SCALED, PASSED)",
        "T/outer.yaml:9: subgraph 'scaler': output 'scaled' must be wired to a stream name, got the number 4",
        "T/outer.yaml:10: subgraph 'scaler': output 'passed' must be wired to a stream name, got a list",
        "T/outer.yaml:13: subgraph 'scaler': side input 'OFFSET' must name a side packet, got the number 3",
        "T/outer.yaml:14: subgraph 'scaler': side input 'OTHER' must name a side packet, got a list"]


def test_a_subgraph_without_outputs_says_it_has_none(tmp_path):
    (tmp_path / "sink.yaml").write_text("inputs: [x]\nnodes:\n"
                                        "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    assert problems("inputs: [a]\nnodes:\n  - subgraph: sink\n    inputs: [a]\n    outputs: {Y: b}\n", tmp_path) \
        == ["T/outer.yaml:5: subgraph 'sink' has no output 'Y' (it has: none)"]


def test_a_subgraphs_side_packet_joins_the_graph_under_the_name_it_is_wired_to(tmp_path):
    """The subgraph's default (offset: 1) becomes the outer graph's default for the outer name, with
    its line in the subgraph file; the outer graph declares no side packets of its own."""
    (tmp_path / "scaler.yaml").write_text(WIRED)
    f = tmp_path / "outer.yaml"
    f.write_text("inputs: [a]\nnodes:\n  - subgraph: scaler\n    inputs: [a]\n    outputs: [b]\n"
                 "    side_inputs: {Offset: shift}\n")
    g = Graph.from_yaml(f)
    assert g.spec.side_packets == {"shift": 1}
    assert g.spec.line_of_side_packet == {"shift": 4}
    got = []
    g.observe("b", lambda p: got.append(p.value))
    g.start()  # no side packets given: the default under the outer name
    g.add_packet("a", 5, 0)
    g.close_all_inputs()
    g.wait(30)
    assert got == [(5 + 1) * 2]  # TestScale's default factor is 2


def test_side_outputs_of_inlined_nodes_are_renamed_like_their_side_inputs(tmp_path):
    (tmp_path / "informer.yaml").write_text("""inputs: [x]
outputs: [y]
nodes:
  - {calculator: TestSideSource, outputs: [unused], side_outputs: {INFO: info}}
  - calculator: TestSideReader
    inputs: [x]
    outputs: [y]
    side_inputs: {INFO: info}
""")
    f = tmp_path / "outer.yaml"
    f.write_text("""inputs: [a]
nodes:
  - subgraph: informer
    inputs: [a]
    outputs: [b]
    side_inputs: {info: outer_info}
  - calculator: TestSideReader
    inputs: [b]
    outputs: [c]
    side_inputs: {INFO: outer_info}
  - subgraph: informer
    name: plain
    inputs: [a]
    outputs: [d]
""")
    g = Graph.from_yaml(f)
    by = {n.name: n for n in g.spec.nodes}
    assert by["informer/TestSideSource"].side_outputs == {"INFO": "outer_info"}
    assert by["informer/TestSideReader"].side_inputs == {"INFO": "outer_info"}
    # not wired: the side packet keeps its name (side packets are the graph's, not prefixed)
    assert by["plain/TestSideSource"].side_outputs == {"INFO": "info"}
    assert by["plain/TestSideReader"].side_inputs == {"INFO": "info"}
    got, plain = [], []
    g.observe("c", lambda p: got.append(p.value))
    g.observe("d", lambda p: plain.append(p.value))
    g.start()
    g.add_packet("a", 1, 0)
    g.close_all_inputs()
    g.wait(30)
    assert got == [1 + 7 + 7] and plain == [1 + 7]


def test_an_empty_subgraph_file_is_reported_not_left_out(tmp_path):
    """An empty subgraph file was taken for one that could not be read (whose problem is already
    reported) and its inclusion silently dropped: the graph loaded without it."""
    (tmp_path / "empty.yaml").write_text("")
    assert problems("inputs: [a]\nnodes:\n  - subgraph: empty\n    inputs: [a]\n"
                    "  - {calculator: PassThrough, inputs: [a], outputs: [c]}\n", tmp_path) == [
        "T/empty.yaml:1: a graph file must be a mapping with a 'nodes' list; this one is empty",
        "T/outer.yaml:4: subgraph 'empty' has 0 inputs, 1 wired"]


def test_a_subgraph_file_that_is_no_mapping_stands_for_an_empty_graph_named_graph(tmp_path):
    """What _parse gives back for a file that is not a mapping, after reporting it: a graph named
    "graph" with no inputs, outputs, side packets or nodes, so that its wiring is checked
    against nothing (each wired name reported, no crash) and its inclusion takes the name "graph"
    (then "graph_2"), which the nodes after it cannot take."""
    (tmp_path / "listed.yaml").write_text("- a\n- b\n")
    assert problems("""inputs: [a]
nodes:
  - subgraph: listed
    inputs: [a]
    outputs: {X: b}
  - subgraph: listed
    inputs: {A: a}
    outputs: [b]
  - {calculator: PassThrough, name: graph, inputs: [a], outputs: [c]}
  - {calculator: PassThrough, name: graph_2, inputs: [a], outputs: [d]}
""", tmp_path) == [
        "T/listed.yaml:1: a graph file must be a mapping with a 'nodes' list; this one is a list",
        "T/outer.yaml:4: subgraph 'listed' has 0 inputs, 1 wired",
        "T/outer.yaml:5: subgraph 'listed' has no output 'X' (it has: none)",
        "T/listed.yaml:1: a graph file must be a mapping with a 'nodes' list; this one is a list",
        "T/outer.yaml:7: subgraph 'listed' has no input 'A' (it has: none)",
        "T/outer.yaml:8: subgraph 'listed' has 0 outputs, 1 wired",
        "T/outer.yaml:9: node name 'graph' is used twice",
        "T/outer.yaml:10: node name 'graph_2' is used twice"]
