"""Subgraphs written the way people write them: the ``subgraph:`` key below the node's name, wiring
mappings over several lines, side packets passed by the outer graph under names of its own, side
outputs of inlined nodes. Each problem names the line of the key or item it is about (not the
node's first line), word for word."""

from __future__ import annotations

import pytest

from pipeline import STOP, Calculator, Graph, GraphConfigError, Input, Output, SideInput, SideOutput, register
from pipeline.config import graph_search_path


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


SCALER = """name: scaler
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


def problems(text, tmp_path, *args) -> list[str]:
    f = tmp_path / "outer.yaml"
    f.write_text(text)
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(f, *args)
    return [str(p).replace(str(tmp_path), "T") for p in ei.value.problems]


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
    (extra / "nearly_there.yaml").write_text(SCALER)
    out = problems("inputs: [a]\nnodes:\n  - subgraph: nearly_ther\n", tmp_path, [extra])
    where = ", ".join(str(d).replace(str(tmp_path), "T") for d in graph_search_path([extra]))
    assert where.startswith("T/extra, ")
    assert out == [f"T/outer.yaml:3: subgraph 'nearly_ther' not found (looked beside T and in {where}; "
                   "did you mean 'nearly_there'?)"]


def test_wiring_mapping_items_over_several_lines_are_named_at_their_own_line(tmp_path):
    (tmp_path / "scaler.yaml").write_text(SCALER)
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
    (tmp_path / "scaler.yaml").write_text(SCALER)
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
