"""Every problem of reading a graph file (pipeline/config.py), word for word, with its line, and
in the order reported: the message is what the user reads, so a changed word, a lost clause or a
wrong line is a failure here (test_validation.py checks the main ones by pattern)."""

from __future__ import annotations

import typing

import pytest

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline import Calculator, Graph, GraphConfigError, Input, Output, calculator, register
from pipeline.config import load
from pipeline.testing import run_calculator

PASS = "name, calculator, subgraph, inputs, outputs, side_inputs, side_outputs, options, policy, executor, " \
       "max_in_flight, comment, when"


@calculator(name="TestNeedsLabel")
def needs_label(value: int, *, label: str, tags: list[str] = Field(default_factory=lambda: ["x"])) -> int:
    """A required option, and one with a default_factory."""
    return value


def problems(text) -> list[str]:
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(text)
    assert str(ei.value) == "\n".join(str(p) for p in ei.value.problems)
    return [str(p) for p in ei.value.problems]


CASES = {
    "a list": ("- a\n- b\n", [
        "<string>:1: a graph file must be a mapping with a 'nodes' list; this one is a list"]),
    "empty": ("", ["<string>:1: a graph file must be a mapping with a 'nodes' list; this one is empty"]),
    "graph keys": ("nodez: []\nname: {a: 1}\ninputs: [1, a]\noutputs: {b: 1}\n", [
        "<string>:1: unknown graph key 'nodez' (allowed: name, description, inputs, outputs, side_packets, nodes, "
        "executors, plugins)",
        "<string>:2: 'name' must be a text, got a mapping",
        "<string>:3: 'inputs' must list names; item 1 is the number 1",
        "<string>:4: 'outputs' must be a list of names, got a mapping",
        "<string>:1: the graph has no 'nodes' list"]),
    "kinds of values": ('inputs: [true, null, 2.5]\nnodes: "a text of more than forty characters, which is cut"\n', [
        "<string>:1: 'inputs' must list names; item 1 is the boolean true",
        "<string>:1: 'inputs' must list names; item 2 is null",
        "<string>:1: 'inputs' must list names; item 3 is the number 2.5",
        "<string>:2: 'nodes' must be a list, got a text"]),
    "side packets listed": ("side_packets: [a, 3]\nnodes: []\n", [
        "<string>:1: 'side_packets' must list names; item 2 is the number 3"]),
    "side packets a number": ("side_packets: 5\nnodes: []\n", [
        "<string>:1: 'side_packets' must be a mapping name: default, got the number 5"]),
    "executors a number": ("executors: 5\nnodes: []\n", [
        "<string>:1: 'executors' must be a mapping name: {threads: N}, got the number 5"]),
    "executor keys": ("executors:\n  gpu: {threads: 0, thread: 2}\n  cpu: 2000\nnodes: 3\n", [
        "<string>:2: executor 'gpu': unknown key 'thread' (allowed: threads)",
        "<string>:2: executor 'gpu': threads must be an integer from 1 to 1024, got 0",
        "<string>:3: executor 'cpu': threads must be an integer from 1 to 1024, got 2000",
        "<string>:4: 'nodes' must be a list, got the number 3"]),
    "nodes not mappings": ("nodes:\n  - x\n  - 4\n", [
        "<string>:2: node #1 must be a mapping with a 'calculator', got the text 'x'",
        "<string>:3: node #2 must be a mapping with a 'calculator', got the number 4"]),
    "node keys": ("inputs: [a]\nnodes:\n  - calculator: PassThrough\n    inputs: [a]\n    outputs: [b]\n"
                  "    bogus: 1\n  - name: 3\n  - calculator: 7\n", [
        f"<string>:6: unknown node key 'bogus' (allowed: {PASS})",
        "<string>:7: node #2 has no 'calculator' (the name of a registered calculator)",
        "<string>:8: node #3 has no 'calculator' (the name of a registered calculator), got the number 7"]),
    "node fields": ("""inputs: [a]
nodes:
  - calculator: PassThrough
    name: {x: 1}
    inputs: [a]
    outputs: [b]
    executor: 5
    max_in_flight: 0
    options: [1]
  - calculator: PassThrough
    name: p
    inputs: [a]
    outputs: [c]
    max_in_flight: 2000
    options: {1: 2}
    when: display
  - calculator: PassThrough
    name: p
    inputs: [a]
    outputs: [d]
    when: 3
""", [
        "<string>:4: node #1: 'name' must be a text, got a mapping",
        "<string>:7: node 'PassThrough': 'executor' must name an executor, got the number 5",
        "<string>:8: node 'PassThrough': max_in_flight must be an integer from 1 to 1024, got 0",
        "<string>:9: node 'PassThrough': 'options' must be a mapping, got a list",
        "<string>:14: node 'p': max_in_flight must be an integer from 1 to 1024, got 2000",
        "<string>:15: node 'p': option names are text, got the number 1",
        "<string>:16: node 'p': 'when' must name a side packet as $name, got 'display'",
        "<string>:18: node name 'p' is used twice",
        "<string>:21: node 'p': 'when' must name a side packet as $name, got 3"]),
    "policies": ("""inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
    policy: {latest: 0}
  - calculator: PassThrough
    inputs: [a]
    outputs: [c]
    policy: newest
  - calculator: PassThrough
    inputs: [a]
    outputs: [d]
    policy: {latest: 2, other: 1}
""", [
        "<string>:6: node 'PassThrough': policy {latest: N} keeps N timestamps, an integer from 1 to 1,000,000; got 0",
        "<string>:10: node 'PassThrough_2': unknown policy 'newest' (use sync, immediate, latest or {latest: N})",
        "<string>:14: node 'PassThrough_3': unknown policy {'latest': 2, 'other': 1} (use sync, immediate, latest or "
        "{latest: N})"]),
    "ports": ("""inputs: [a]
nodes:
  - calculator: TestJoin
    inputs: [a, a, a]
    outputs: [j]
  - calculator: TestJoin
    inputs: 5
    outputs: {OUT: k}
  - calculator: TestJoin
    inputs: {"A:x": a, "B:1": a, Q: a}
    outputs: {OUT: 3}
""", [
        "<string>:4: node 'TestJoin': TestJoin has 2 inputs (A, B), but 3 are wired by position",
        "<string>:7: node 'TestJoin_2': 'inputs' must be a list of names or a mapping TAG: name, got the number 5",
        "<string>:10: node 'TestJoin_3': 'A:x' is not a port tag (TAG or TAG:N)",
        "<string>:10: node 'TestJoin_3': port 'B' of TestJoin is not indexed; write 'B', not 'B:1'",
        "<string>:10: node 'TestJoin_3': TestJoin has no input port 'Q' (it has: A, B)",
        "<string>:11: node 'TestJoin_3': output 'OUT' must be a stream name, got the number 3",
        "<string>:6: node 'TestJoin_2': required input 'A' of TestJoin is not connected",
        "<string>:9: node 'TestJoin_3': required input 'A' of TestJoin is not connected"]),
    "ports of nothing": ("""nodes:
  - calculator: PassThrough
    outputs: {"OUT:0": [x]}
    side_outputs: {Q: s}
    side_inputs: [s]
""", [
        "<string>:3: node 'PassThrough': output 'OUT:0' must be a stream name, got a list",
        "<string>:5: node 'PassThrough': PassThrough has 0 side_inputs (none), but 1 are wired by position",
        "<string>:4: node 'PassThrough': PassThrough has no side output port 'Q' (it has: none)",
        "<string>:2: node 'PassThrough': required input 'IN' of PassThrough is not connected"]),
    "input mappings": ("""inputs: [a]
nodes:
  - calculator: TestJoin
    inputs:
      A: {stream: a, capacity: 0, overflow: spill, back_edge: maybe, color: red}
      B: {capacity: 3}
    outputs: [j]
  - calculator: TestJoin
    inputs:
      A: 5
      B: {stream: a, capacity: 2000000, overflow: 7, back_edge: "off"}
    outputs: [k]
  - calculator: TestJoin
    inputs: {A: a, "A:0": a}
    outputs: [m]
""", [
        "<string>:5: node 'TestJoin': input 'A' has unknown key 'color' (allowed: stream, back_edge, capacity, overflow)",
        "<string>:5: node 'TestJoin': input 'A': capacity must be an integer from 1 to 1,000,000, got 0",
        "<string>:5: node 'TestJoin': input 'A': unknown overflow policy 'spill' (use block, drop_oldest, reject)",
        "<string>:5: node 'TestJoin': input 'A': back_edge must be true or false, got 'maybe'",
        "<string>:6: node 'TestJoin': input 'B' needs 'stream: NAME'",
        "<string>:10: node 'TestJoin_2': input 'A' must be a stream name or a mapping with 'stream', got the number 5",
        "<string>:11: node 'TestJoin_2': input 'B': capacity must be an integer from 1 to 1,000,000, got 2000000",
        "<string>:11: node 'TestJoin_2': input 'B': unknown overflow policy 7 (use block, drop_oldest, reject)",
        "<string>:14: node 'TestJoin_3': port 'A' of TestJoin is not indexed; write 'A', not 'A:0'",
        "<string>:8: node 'TestJoin_2': required input 'A' of TestJoin is not connected"]),
    "a stream wired twice": ("inputs: [a]\nnodes:\n  - calculator: PassThrough\n    inputs: {IN: a, 'IN:0': a}\n"
                             "    outputs: [b]\n", [
        "<string>:4: node 'PassThrough': input 'IN:0' is wired twice"]),
    "the graph as a whole": ("""inputs: [a]
outputs: [zz]
side_packets: {fac: 2}
nodes:
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
  - calculator: TestJoin
    inputs: {B: a}
    outputs: [j]
    side_inputs: {}
  - calculator: TestSide
    inputs: [a]
    outputs: [s]
  - calculator: TestSide
    inputs: [a]
    outputs: [s2]
    side_inputs: {OFFSET: nope}
    executor: gpu
    when: $off
  - calculator: TestScale
    inputs: [bb]
    outputs: [t]
    options: {factor: $nofac, extra: 1}
""", [
        "<string>:8: stream 'b' has 2 producers (node 'PassThrough' output OUT:0; node 'PassThrough_2' output OUT:0); "
        "a stream has exactly one producer",
        "<string>:11: node 'TestJoin': required input 'A' of TestJoin is not connected",
        "<string>:15: node 'TestSide': required side input 'OFFSET' of TestSide is not connected",
        "<string>:18: node 'TestSide_2': side input OFFSET names side packet 'nope', which is not declared under "
        "'side_packets:' nor produced by a node",
        "<string>:18: node 'TestSide_2': 'when: $off' names a side packet that is not declared under 'side_packets:'",
        "<string>:18: node 'TestSide_2': unknown executor 'gpu' (declare it under 'executors:')",
        "<string>:25: node 'TestScale': input VALUE reads stream 'bb', which has no producer; did you mean 'b'?",
        "<string>:27: node 'TestScale': option 'factor' refers to side packet '$nofac', which is not declared under "
        "'side_packets:'",
        "<string>:27: node 'TestScale': option 'extra': unknown option; TestScale options: {factor: int (default 2)}",
        "<string>: graph output 'zz' is not produced by any node"]),
    "a stream nobody makes": ("nodes:\n  - calculator: TestSide\n    inputs: [x]\n    outputs: [y]\n"
                              "    side_inputs: {OFFSET: o}\n", [
        "<string>:3: node 'TestSide': input IN reads stream 'x', which has no producer; produce it with a node output "
        "or declare it under 'inputs:'",
        "<string>:2: node 'TestSide': side input OFFSET names side packet 'o', which is not declared under "
        "'side_packets:' nor produced by a node"]),
    "options": ("""inputs: [a]
nodes:
  - calculator: TestScale
    inputs: [a]
    outputs: [t]
    options: {factor: lots}
  - calculator: TestScale
    inputs: [a]
    outputs: [u]
    options: {factr: 3}
  - calculator: PassThrough
    inputs: [a]
    outputs: [v]
    options: {x: 1, y: 2}
  - calculator: TestNeedsLabel
    inputs: [a]
    outputs: [w]
    options: {tags: [1]}
""", [
        "<string>:6: node 'TestScale': option 'factor': Input should be a valid integer, unable to parse string as an "
        "integer (got 'lots'); TestScale options: {factor: int (default 2)}",
        "<string>:10: node 'TestScale_2': option 'factr': unknown option; did you mean 'factor'?; TestScale options: "
        "{factor: int (default 2)}",
        "<string>:11: node 'PassThrough': PassThrough takes no options, got x, y",
        "<string>:15: node 'TestNeedsLabel': option 'label': Field required; TestNeedsLabel options: "
        "{label: str (required); tags: list (default ['x'])}",
        "<string>:18: node 'TestNeedsLabel': option 'tags.0': Input should be a valid string (got 1); TestNeedsLabel "
        "options: {label: str (required); tags: list (default ['x'])}"]),
    "a cycle": ("nodes:\n  - {calculator: PassThrough, name: p1, inputs: [c], outputs: [b]}\n"
                "  - {calculator: PassThrough, name: p2, inputs: [b], outputs: [c]}\n", [
        "<string>:2: cycle without a back edge: p1 -> p2 -> p1; mark the input that closes the loop with "
        "'back_edge: true'"]),
    "types": ("nodes:\n  - calculator: TestSeq\n    outputs: [s]\n  - calculator: TestStr\n    inputs: [s]\n"
              "    outputs: [t]\n", [
        "<string>:5: type mismatch on stream 's': node 'TestSeq' output OUT carries int, but node 'TestStr' input "
        "IN takes str"]),
}


@pytest.mark.parametrize("text, expected", list(CASES.values()), ids=list(CASES))
def test_every_problem_word_for_word_in_order(text, expected):
    assert problems(text) == expected


@calculator(name="TestUnionOption")
def union_option(value: int, *, mode: list[typing.Any] | int = 0) -> int:
    return value


def test_an_option_type_without_a_name_is_written_as_python_writes_it():
    assert problems("inputs: [a]\nnodes:\n  - calculator: TestUnionOption\n    inputs: [a]\n    outputs: [b]\n"
                    "    options: {mod: 1}\n") == [
        "<string>:6: node 'TestUnionOption': option 'mod': unknown option; did you mean 'mode'?; TestUnionOption "
        "options: {mode: list[Any] | int (default 0)}"]


def test_a_text_is_quoted_up_to_40_characters_and_a_value_shown_up_to_60():
    assert problems(f'nodes: "{"t" * 40}"\n') == [f"<string>:1: 'nodes' must be a list, got the text '{'t' * 40}'"]
    assert problems(f'nodes: "{"t" * 41}"\n') == ["<string>:1: 'nodes' must be a list, got a text"]
    seq = "nodes:\n  - calculator: TestSeq\n    outputs: [s]\n"
    assert problems(seq + f'    max_in_flight: "{"x" * 58}"\n') == [
        f"<string>:4: node 'TestSeq': max_in_flight must be an integer from 1 to 1024, got '{'x' * 58}'"]
    assert problems(seq + f'    max_in_flight: "{"x" * 59}"\n') == [
        f"<string>:4: node 'TestSeq': max_in_flight must be an integer from 1 to 1024, got '{'x' * 56}..."]


def test_long_names_and_values_are_cut_to_a_line():
    long = "n" * 300
    assert problems(f"nodes:\n  - calculator: {long}\n") == [
        f"<string>:2: unknown calculator '{'n' * 50}...{'n' * 12}' (300 characters) (a user calculator is known once "
        "its plugin is loaded: --plugin MODULE_OR_FILE.py, or the graph's 'plugins:' list)"]
    seq = "nodes:\n  - calculator: TestSeq\n    outputs: [s]\n"
    assert problems(seq + f'    max_in_flight: "{"x" * 80}"\n') == [
        f"<string>:4: node 'TestSeq': max_in_flight must be an integer from 1 to 1024, got '{'x' * 56}..."]
    # a quoted name of 199 characters is kept, of 200 cut (_shown then cuts the key's repr at 60)
    name199, name200 = "a" * 199, "b" * 200
    assert problems(f"nodes:\n  - calculator: {name199}\n")[0].startswith(f"<string>:2: unknown calculator '{name199}'")
    assert problems(f"nodes:\n  - calculator: {name200}\n")[0].startswith(
        f"<string>:2: unknown calculator '{'b' * 50}...{'b' * 12}' (200 characters) (")


def test_a_good_graph_reads_into_its_spec():
    """What the file says reaches the spec: defaults where it says nothing."""
    g = Graph.from_yaml("""
name: 7
description: two nodes
inputs: a
side_packets: [s]
executors: {gpu: {threads: 3}, io: 2, one: {}}
nodes:
  - calculator: TestJoin
    name: j
    inputs:
      A: {stream: a, capacity: 7, overflow: drop_oldest, back_edge: "no"}
      B: {stream: b, back_edge: "yes"}
    outputs: [j]
    policy: {latest: 5}
    executor: gpu
    max_in_flight: 3
    comment: joins
  - calculator: PassThrough
    inputs: [j]
    outputs: [b]
    policy: immediate
  - calculator: PassThrough
    inputs: [a]
    outputs: [c]
    policy: latest
""")
    spec = g.spec
    assert (spec.name, spec.description, spec.inputs, spec.outputs) == ("7", "two nodes", ["a"], [])
    assert spec.side_packets == {"s": None} and spec.line_of_side_packet == {"s": 5}
    assert spec.executors == {"gpu": 3, "io": 2, "one": 1}
    j, p, q = spec.nodes
    assert [(i.tag, i.stream, i.back_edge, i.capacity, i.overflow, i.line) for i in j.inputs] == [
        ("A", "a", False, 7, "drop_oldest", 11), ("B", "b", True, 100, "block", 12)]
    assert (j.name, j.policy, j.latest_size, j.executor, j.max_in_flight, j.comment, j.line) == (
        "j", "latest", 5, "gpu", 3, "joins", 8)
    assert (p.name, p.policy, p.latest_size, p.executor, p.max_in_flight, p.comment, p.when) == (
        "PassThrough", "immediate", 1, "default", 1, "", None)
    assert (q.name, q.policy, q.latest_size) == ("PassThrough_2", "latest", 1)
    assert p.inputs[0].tag == "IN:0" and p.outputs == {"OUT:0": "b"}
    assert Graph.from_yaml("nodes:\n  - calculator: TestSeq\n    outputs: [s]\n").spec.name == "<string>"  # the file's stem


class _Crop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int = 0


class _CheckedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    size: int = 1
    crop: _Crop = _Crop()

    @field_validator("size")
    @classmethod
    def _positive(cls, v):
        if v <= 0:
            raise ValueError(f"size must be positive, got {v}")
        return v

    @model_validator(mode="after")
    def _crop_inside(self):
        if self.crop.x >= self.size:
            raise ValueError(f"crop x {self.crop.x} is outside size {self.size}")
        return self


@register
class TestCheckedOptions(Calculator):
    """Options checked by their own model: a nested model, a field validator, a check of them all."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    Options = _CheckedOptions

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


CHECKED = "inputs: [a]\nside_packets: {lab: x}\nnodes:\n  - calculator: TestCheckedOptions\n    inputs: [a]\n" \
          "    outputs: [b]\n    options:\n"
CHECKED_SCHEMA = "TestCheckedOptions options: {label: str (required); size: int (default 1); crop: _Crop (default " \
                 "_Crop(x=0))}"


def test_an_options_models_own_checks_in_its_words_at_their_lines():
    """A validator's sentence without pydantic's "Value error, " in front; a key unknown to a nested
    model is an unknown option, named by its path; a check of the options together (a model
    validator) names the node's options, not an option '' (loc is empty there)."""
    assert problems(CHECKED + "      label: x\n      size: 0\n") == [
        f"<string>:9: node 'TestCheckedOptions': option 'size': size must be positive, got 0 (got 0); {CHECKED_SCHEMA}"]
    assert problems(CHECKED + "      label: x\n      crop: {x: 1, z: 2}\n") == [
        f"<string>:9: node 'TestCheckedOptions': option 'crop.z': unknown option (got 2); {CHECKED_SCHEMA}"]
    assert problems(CHECKED + "      label: x\n      crop: {x: 3}\n      size: 2\n") == [
        f"<string>:4: node 'TestCheckedOptions': options: crop x 3 is outside size 2; {CHECKED_SCHEMA}"]


def test_an_option_given_as_a_side_packet_is_left_to_the_start_and_the_next_one_still_checked():
    """``label: $lab`` is left out of the check at load (its value comes at start): pydantic's
    "Field required" for it is passed over, and the problem of the option after it still reported."""
    assert problems(CHECKED + "      label: $lab\n      size: 0\n") == [
        f"<string>:9: node 'TestCheckedOptions': option 'size': size must be positive, got 0 (got 0); {CHECKED_SCHEMA}"]


class _FreeOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    shift: int = 0


@register
class TestFreeOptions(Calculator):
    """Options that allow any key (``extra="allow"``): adds the sum of every option's value."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    Options = _FreeOptions

    def open(self, ctx):
        self.add = ctx.options.shift + sum((ctx.options.model_extra or {}).values())

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value + self.add)


def test_options_that_allow_any_key_take_keys_they_do_not_declare():
    out = run_calculator("TestFreeOptions", inputs={"IN": [(0, 1)]}, options={"shift": 10, "more": 100})
    assert out == {"OUT": [(0, 111)]}
    assert problems("inputs: [a]\nnodes:\n  - calculator: TestFreeOptions\n    inputs: [a]\n    outputs: [b]\n"
                    "    options: {shift: x, more: 1}\n") == [
        "<string>:6: node 'TestFreeOptions': option 'shift': Input should be a valid integer, unable to parse string "
        "as an integer (got 'x'); TestFreeOptions options: {shift: int (default 0)}"]


@register
class TestManyFirst(Calculator):
    """A multiple input ahead of a single one."""

    inputs = {"IN": Input(int, multiple=True), "FLAG": Input(int, optional=True)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(0)


@register
class TestManyLast(Calculator):
    """Two single inputs, then a multiple one, which takes every input wired after them."""

    inputs = {"A": Input(int), "B": Input(int, optional=True), "C": Input(int, multiple=True)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(0)


def test_wiring_by_position_fills_the_ports_in_order_and_the_last_multiple_one_takes_the_rest():
    spec = load("inputs: [a, b, c, d]\nnodes:\n  - {calculator: TestManyFirst, inputs: [a, b], outputs: [x]}\n"
                "  - {calculator: TestManyLast, inputs: [a, b, c, d], outputs: [y]}\n")
    assert [(i.tag, i.stream) for i in spec.nodes[0].inputs] == [("IN:0", "a"), ("FLAG", "b")]
    assert [(i.tag, i.stream) for i in spec.nodes[1].inputs] == [("A", "a"), ("B", "b"), ("C:0", "c"), ("C:1", "d")]


def test_an_input_wired_by_position_is_named_at_its_own_line_and_checked_for_an_unknown_calculator_too():
    """A block list gives each item its line; the inputs of a calculator not found are still read
    (each one's stream checked), not only the first."""
    assert problems("inputs: [a, b, c]\nnodes:\n  - calculator: TestJoin\n    inputs:\n      - a\n      - b\n"
                    "      - c\n    outputs: [d]\n") == [
        "<string>:7: node 'TestJoin': TestJoin has 2 inputs (A, B), but 3 are wired by position"]
    assert problems("inputs: [a]\nnodes:\n  - calculator: NoSuchCalc\n    inputs: [a, b]\n    outputs: [c]\n") == [
        "<string>:3: unknown calculator 'NoSuchCalc' (a user calculator is known once its plugin is loaded: --plugin "
        "MODULE_OR_FILE.py, or the graph's 'plugins:' list)",
        "<string>:4: node 'NoSuchCalc': input #1 reads stream 'b', which has no producer; produce it with a node "
        "output or declare it under 'inputs:'"]


@register
class TestStereo(Calculator):
    """Three inputs whose names are alike, for the "did you mean" of an unknown port."""

    inputs = {"LEFT_IMAGE": Input(int, optional=True), "RIGHT_IMAGE": Input(int, optional=True),
              "DEPTH_IMAGE": Input(int, optional=True)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(0)


def test_an_unknown_port_names_the_two_closest_ports_even_when_only_loosely_alike():
    stereo = "inputs: [a]\nnodes:\n  - calculator: TestStereo\n    inputs: {%s: a}\n    outputs: [b]\n"
    ports = "(it has: LEFT_IMAGE, RIGHT_IMAGE, DEPTH_IMAGE)"
    assert problems(stereo % "IMAGE") == [
        f"<string>:4: node 'TestStereo': TestStereo has no input port 'IMAGE' {ports}; did you mean 'LEFT_IMAGE', "
        "'RIGHT_IMAGE'?"]
    assert problems(stereo % "LEFT") == [
        f"<string>:4: node 'TestStereo': TestStereo has no input port 'LEFT' {ports}; did you mean 'LEFT_IMAGE'?"]


def test_a_position_tag_written_for_a_known_calculator_is_not_a_port_tag():
    """``#0`` is how the inputs of a calculator not found are kept; written for a known one, it is a
    port tag like any other (it crashed the check of the stream's type with a bare ValueError)."""
    assert problems("inputs: [a]\nnodes:\n  - calculator: TestJoin\n    inputs: {'#0': a}\n"
                    "    outputs: {'#1': c}\n") == [
        "<string>:4: node 'TestJoin': '#0' is not a port tag (TAG or TAG:N)",
        "<string>:5: node 'TestJoin': '#1' is not a port tag (TAG or TAG:N)",
        "<string>:3: node 'TestJoin': required input 'A' of TestJoin is not connected"]


def test_latest_keeps_from_one_timestamp_and_its_problem_is_at_the_line_of_n():
    """``{latest: 1}`` is the smallest N; a wrong N is reported at its own line, which differs from
    the policy's when a flow mapping goes on to the next line."""
    spec = load("inputs: [a]\nnodes:\n  - {calculator: PassThrough, inputs: [a], outputs: [b], policy: {latest: 1}}\n")
    assert (spec.nodes[0].policy, spec.nodes[0].latest_size) == ("latest", 1)
    assert problems("inputs: [a]\nnodes:\n  - calculator: PassThrough\n    inputs: [a]\n    outputs: [b]\n"
                    "    policy: {\n      latest: 0}\n") == [
        "<string>:7: node 'PassThrough': policy {latest: N} keeps N timestamps, an integer from 1 to 1,000,000; got 0"]


def test_an_unknown_key_of_an_input_is_at_its_own_line():
    assert problems("inputs: [a]\nnodes:\n  - calculator: PassThrough\n    inputs:\n      IN:\n        stream: a\n"
                    "        capacty: 3\n    outputs: [b]\n") == [
        "<string>:7: node 'PassThrough': input 'IN:0' has unknown key 'capacty' (allowed: stream, back_edge, "
        "capacity, overflow)"]


def test_each_problem_of_an_input_mapping_is_at_the_line_of_its_key_and_the_next_input_still_read():
    """Not the line of the mapping's first key: each problem at its own key's line; an input
    without a stream does not end the reading of the node's other inputs."""
    assert problems("inputs: [a]\nnodes:\n  - calculator: TestJoin\n    inputs:\n      A:\n        capacity: 3\n"
                    "        stream: 5\n      B:\n        stream: a\n        capacity: 0\n        overflow: spill\n"
                    "        back_edge: maybe\n    outputs: [c]\n") == [
        "<string>:7: node 'TestJoin': input 'A' needs 'stream: NAME', got the number 5",
        "<string>:10: node 'TestJoin': input 'B': capacity must be an integer from 1 to 1,000,000, got 0",
        "<string>:11: node 'TestJoin': input 'B': unknown overflow policy 'spill' (use block, drop_oldest, reject)",
        "<string>:12: node 'TestJoin': input 'B': back_edge must be true or false, got 'maybe'",
        "<string>:3: node 'TestJoin': required input 'A' of TestJoin is not connected"]


def test_outputs_and_side_inputs_that_are_not_names_say_what_they_must_be_at_their_line():
    """A side input must name a side packet (an output, a stream); 'outputs' that is neither list nor
    mapping is reported at its key's line; a wrong name does not end the reading of the next ones
    (``b`` is still produced, so nothing reading it is reported)."""
    assert problems("inputs: [a]\nside_packets: {s: 1}\nnodes:\n  - calculator: TestSide\n    inputs: [a]\n"
                    "    side_inputs: {OFFSET: 5}\n    outputs:\n      5\n") == [
        "<string>:7: node 'TestSide': 'outputs' must be a list of names or a mapping TAG: name, got the number 5",
        "<string>:6: node 'TestSide': side input 'OFFSET' must be a side packet name, got the number 5",
        "<string>:4: node 'TestSide': required side input 'OFFSET' of TestSide is not connected"]
    assert problems("inputs: [a]\nnodes:\n  - {calculator: NoSuchCalc, inputs: [a], outputs: [5, b]}\n"
                    "  - {calculator: PassThrough, inputs: [b], outputs: [c]}\n") == [
        "<string>:3: unknown calculator 'NoSuchCalc' (a user calculator is known once its plugin is loaded: --plugin "
        "MODULE_OR_FILE.py, or the graph's 'plugins:' list)",
        "<string>:3: node 'NoSuchCalc': output '#0' must be a stream name, got the number 5"]


def test_an_unknown_output_port_does_not_end_the_reading_of_the_next_outputs():
    assert problems("inputs: [a]\nnodes:\n  - calculator: PassThrough\n    inputs: [a]\n"
                    "    outputs: {NOPE: x, OUT: b}\n  - {calculator: PassThrough, inputs: [b], outputs: [c]}\n") == [
        "<string>:5: node 'PassThrough': PassThrough has no output port 'NOPE' (it has: OUT)"]


def test_a_calculator_that_is_not_a_name_is_reported_at_the_line_of_its_key():
    assert problems("inputs: [a]\nnodes:\n  - name: first\n    calculator: 5\n") == [
        "<string>:4: node #1 has no 'calculator' (the name of a registered calculator), got the number 5"]


def test_an_unknown_calculator_is_reported_at_the_line_of_its_key():
    assert problems("inputs: [a]\nnodes:\n  - name: first\n    calculator: NoSuchCalc\n") == [
        "<string>:4: unknown calculator 'NoSuchCalc' (a user calculator is known once its plugin is loaded: --plugin "
        "MODULE_OR_FILE.py, or the graph's 'plugins:' list)"]


def test_an_unknown_calculator_names_the_graphs_plugin_that_was_not_loaded():
    got = problems("plugins: [vpipe_test_never_loaded]\ninputs: [a]\nnodes:\n"
                   "  - {calculator: NoSuchCalc, inputs: [a], outputs: [b]}\n")
    assert got[0].startswith("<string>:1: plugin 'vpipe_test_never_loaded' is not loaded: ")
    assert got[1:] == ["<string>:4: unknown calculator 'NoSuchCalc'; it may come from the graph's plugin "
                       "'vpipe_test_never_loaded', which was not loaded (see above)"]


def test_a_node_without_a_name_is_numbered_after_the_names_given_to_others():
    """A name given explicitly counts as a use of it: the unnamed node of that calculator is
    ``_2`` after one, ``_3`` after two (the second refused as a duplicate)."""
    spec = load("inputs: [a]\nnodes:\n  - {calculator: PassThrough, name: PassThrough, inputs: [a], outputs: [b]}\n"
                "  - {calculator: PassThrough, inputs: [b], outputs: [c]}\n")
    assert [n.name for n in spec.nodes] == ["PassThrough", "PassThrough_2"]
    assert problems("inputs: [a]\nnodes:\n  - {calculator: PassThrough, name: PassThrough, inputs: [a], outputs: [b]}\n"
                    "  - {calculator: PassThrough, name: PassThrough, inputs: [a], outputs: [c]}\n"
                    "  - {calculator: PassThrough, inputs: [a], outputs: [d], policy: newest}\n") == [
        "<string>:4: node name 'PassThrough' is used twice",
        "<string>:5: node 'PassThrough_3': unknown policy 'newest' (use sync, immediate, latest or {latest: N})"]


@register
class TestOwnDefaults(Calculator):
    """A calculator that declares its own policy and max_in_flight, as FlowLimiter declares immediate."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    policy = "immediate"
    max_in_flight = 3

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


def test_a_calculators_own_policy_and_max_in_flight_are_its_nodes_defaults():
    spec = load("inputs: [a]\nnodes:\n  - {calculator: TestOwnDefaults, inputs: [a], outputs: [b]}\n"
                "  - {calculator: TestOwnDefaults, inputs: [a], outputs: [c], policy: sync, max_in_flight: 1}\n")
    assert [(n.policy, n.max_in_flight) for n in spec.nodes] == [("immediate", 3), ("sync", 1)]


def test_an_option_name_that_is_not_a_text_is_at_its_own_line():
    assert problems("inputs: [a]\nnodes:\n  - calculator: TestScale\n    inputs: [a]\n    outputs: [b]\n"
                    "    options:\n      factor: 3\n      1: x\n") == [
        "<string>:8: node 'TestScale': option names are text, got the number 1"]


# A key on a line of its own (not the graph's first line, nor its mapping's): the problem is at
# the key's line, not at the line of the mapping that holds it.
OWN_LINE = {
    "unknown graph key": ("nodes: []\nnodez: 1\n",
                          "<string>:2: unknown graph key 'nodez' (allowed: name, description, inputs, outputs, "
                          "side_packets, nodes, executors, plugins)"),
    "inputs": ("nodes: []\ninputs: {a: 1}\n", "<string>:2: 'inputs' must be a list of names, got a mapping"),
    "plugins": ("nodes: []\nplugins: {a: 1}\n", "<string>:2: 'plugins' must be a list of names, got a mapping"),
    "side_packets": ("nodes: []\nside_packets: 5\n",
                     "<string>:2: 'side_packets' must be a mapping name: default, got the number 5"),
    "side_packets item": ("nodes: []\nside_packets:\n  - a\n  - 3\n",
                          "<string>:4: 'side_packets' must list names; item 2 is the number 3"),
    "executors": ("nodes: []\nexecutors: 5\n",
                  "<string>:2: 'executors' must be a mapping name: {threads: N}, got the number 5"),
    "executor key": ("nodes: []\nexecutors:\n  gpu:\n    threads: 2\n    thread: 2\n",
                     "<string>:5: executor 'gpu': unknown key 'thread' (allowed: threads)"),
    "threads": ("nodes: []\nexecutors:\n  gpu:\n    comment: x\n    threads: 0\n",
                "<string>:5: executor 'gpu': threads must be an integer from 1 to 1024, got 0"),
    "a list after comments": ("# a graph\n\n- a\n",
                              "<string>:3: a graph file must be a mapping with a 'nodes' list; this one is a list"),
}


@pytest.mark.parametrize("text, expected", list(OWN_LINE.values()), ids=list(OWN_LINE))
def test_a_graph_key_on_a_line_of_its_own_is_reported_at_that_line(text, expected):
    assert expected in problems(text)


@pytest.mark.parametrize("key", ["side_inputs", "side_outputs"])
def test_a_nodes_side_ports_that_are_not_names_are_reported_at_the_line_of_their_key(key):
    text = f"nodes:\n  - calculator: Nope\n    comment: x\n    {key}: 5\n"
    assert any(p.startswith(f"<string>:4: ") and f"'{key}'" in p for p in problems(text)), problems(text)


def test_side_packets_after_a_bad_one_are_still_read_and_each_is_at_its_own_line():
    assert problems("side_packets: [3, a, 4]\nnodes: []\n") == [
        "<string>:1: 'side_packets' must list names; item 1 is the number 3",
        "<string>:1: 'side_packets' must list names; item 3 is the number 4"]
    spec = load("nodes: []\nside_packets:\n  - a\n  - b\n")
    assert spec.line_of_side_packet == {"a": 3, "b": 4}
    spec = load("nodes: []\nside_packets:\n  a: 1\n  b: 2\n")
    assert spec.line_of_side_packet == {"a": 3, "b": 4}


def test_a_graph_without_a_description_has_an_empty_one_and_1024_threads_is_allowed():
    spec = load("nodes: []\nexecutors: {gpu: 1024}\n")
    assert spec.description == ""
    assert spec.executors == {"gpu": 1024}


def test_a_mapping_graph_has_no_lines_and_its_bad_list_items_are_still_reported():
    with pytest.raises(GraphConfigError) as ei:
        load({"nodes": [], "inputs": [1], "side_packets": [2, "a"]})
    assert [(p.line, p.message) for p in ei.value.problems] == [
        (None, "'inputs' must list names; item 1 is the number 1"),
        (None, "'side_packets' must list names; item 1 is the number 2")]


def test_a_cycle_of_three_is_named_at_its_first_nodes_line_and_a_back_edge_beside_it_is_left_out():
    text = ("nodes:\n"
            "  - {calculator: PassThrough, name: q1, inputs: [{stream: e, back_edge: true}], outputs: [d]}\n"
            "  - {calculator: PassThrough, name: q2, inputs: [d], outputs: [e]}\n"
            "  - {calculator: PassThrough, name: p1, inputs: [c], outputs: [a]}\n"
            "  - {calculator: PassThrough, name: p2, inputs: [a], outputs: [b]}\n"
            "  - {calculator: PassThrough, name: p3, inputs: [b], outputs: [c]}\n")
    found = [p for p in problems(text) if "cycle" in p]
    assert len(found) == 1 and found[0].startswith("<string>:4: cycle without a back edge: "), found
    assert "q1" not in found[0]


def test_a_graph_input_that_a_node_also_produces_names_both_producers():
    text = "inputs: [a]\nnodes:\n  - {calculator: PassThrough, name: p, inputs: [a], outputs: [a]}\n"
    assert "<string>:3: stream 'a' has 2 producers (graph input; node 'p' output OUT:0); a stream has " \
           "exactly one producer" in problems(text), problems(text)


def test_a_cycle_inside_a_subgraph_is_named_in_the_subgraphs_file(tmp_path):
    """The cycle's message points at the file and line of the node it closes at, which is the
    subgraph's own file when the loop is inside it, not the graph that includes it."""
    (tmp_path / "looping_sub.yaml").write_text(
        "inputs: [x]\noutputs: [y]\nnodes:\n"
        "  - {calculator: PassThrough, name: p1, inputs: [c], outputs: [b]}\n"
        "  - {calculator: PassThrough, name: p2, inputs: [b], outputs: [c]}\n"
        "  - {calculator: PassThrough, name: p3, inputs: [x], outputs: [y]}\n")
    outer = tmp_path / "outer.yaml"
    outer.write_text("inputs: [a]\nnodes:\n  - {subgraph: looping_sub, inputs: [a], outputs: [z]}\n")
    with pytest.raises(GraphConfigError) as ei:
        load(outer, [tmp_path])
    found = [p for p in ei.value.problems if "cycle without a back edge" in p.message]
    assert [(p.file, p.line) for p in found] == [(str(tmp_path / "looping_sub.yaml"), 4)], ei.value.problems
