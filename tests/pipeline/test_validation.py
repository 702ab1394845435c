"""Every validation error, with its exact message, file and line; reported all at once."""

import pytest

from pipeline import Graph, GraphConfigError


def problems(text, **kw):
    with pytest.raises(GraphConfigError) as ei:
        g = Graph.from_yaml(text, **kw)
        g.start(kw.get("side_packets"))
    return ei.value


@pytest.mark.parametrize("text, expected", [
    ("""
nodes:
  - calculator: PassThru
    inputs: [a]
""", r"<string>:3: unknown calculator 'PassThru'; did you mean 'PassThrough'"),
    ("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [nowhere]
    outputs: [b]
""", r"<string>:5: node 'PassThrough': input IN:0 reads stream 'nowhere', which has no producer"),
    ("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
""", r"<string>:7: stream 'b' has 2 producers \(node 'PassThrough' output OUT:0; node 'PassThrough_2' output OUT:0\)"),
    ("""
inputs: [a]
nodes:
  - calculator: TestJoin
    inputs: {A: a, C: a}
    outputs: [j]
""", r"<string>:5: node 'TestJoin': TestJoin has no input port 'C' \(it has: A, B\)"),
    ("""
inputs: [a]
nodes:
  - calculator: TestScale
    inputs: [a]
    outputs: [s]
  - calculator: TestStr
    inputs: [s]
    outputs: [t]
""", r"<string>:8: type mismatch on stream 's': node 'TestScale' output OUT carries int, but node 'TestStr' input IN takes str"),
    ("""
inputs: [a]
nodes:
  - calculator: TestScale
    inputs: [a]
    outputs: [s]
    options: {factor: lots}
""", r"<string>:7: node 'TestScale': option 'factor': Input should be a valid integer.*\(got 'lots'\); "
     r"TestScale options: \{factor: int \(default 2\)\}"),
    ("""
inputs: [a]
nodes:
  - calculator: TestScale
    inputs: [a]
    outputs: [s]
    options: {factr: 3}
""", r"<string>:7: node 'TestScale': option 'factr': unknown option"),
    ("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [a, c]
    outputs: [b, x]
  - calculator: PassThrough
    inputs: [b]
    outputs: [c]
""", r"<string>:4: cycle without a back edge: PassThrough -> PassThrough_2 -> PassThrough; mark the input "
     r"that closes the loop with 'back_edge: true'"),
    ("""
inputs: [a]
nodes:
  - calculator: TestSide
    inputs: [a]
    outputs: [b]
    side_inputs: {OFFSET: offset}
""", r"<string>:4: node 'TestSide': side input OFFSET names side packet 'offset', which is not declared"),
    ("""
inputs: [a]
nodes:
  - calculator: TestSide
    inputs: [a]
    outputs: [b]
""", r"<string>:4: node 'TestSide': required side input 'OFFSET' of TestSide is not connected"),
    ("""
nodes:
  - calculator: TestJoin
    inputs: {B: x}
    outputs: [j]
  - calculator: Counter
    outputs: [x]
""", r"<string>:3: node 'TestJoin': required input 'A' of TestJoin is not connected"),
    ("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: {IN: {stream: a, overflow: spill}}
    outputs: [b]
""", r"<string>:5: node 'PassThrough': input 'IN:0': unknown overflow policy 'spill' \(use block, drop_oldest, reject\)"),
    ("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
    executor: gpu
""", r"<string>:4: node 'PassThrough': unknown executor 'gpu' \(declare it under 'executors:'\)"),
    ("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
    policy: fastest
""", r"<string>:7: node 'PassThrough': unknown policy 'fastest'"),
    ("""
inputs: [a]
nodes:
  - calculator: TestScale
    inputs: [a]
    outputs: [b]
    options: {factor: $fac}
""", r"<string>:7: node 'TestScale': option 'factor' refers to side packet '\$fac', which is not declared"),
    ("""
nodes:
  - calculator: Counter
    outputs: [a]
    bogus: 1
""", r"<string>:5: unknown node key 'bogus'"),
    ("""
nodes: [
""", r"<string>:3: invalid YAML"),
])
def test_each_problem_has_file_line_and_message(text, expected):
    err = problems(text)
    assert any(__import__("re").search(expected, str(p)) for p in err.problems), \
        f"expected /{expected}/ among:\n{err}"


def test_all_problems_reported_at_once(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("""nodes:
  - calculator: NoSuchThing
    outputs: [a]
  - calculator: TestScale
    inputs: [missing]
    outputs: [b]
    options: {factor: x}
""")
    with pytest.raises(GraphConfigError) as ei:
        Graph.from_yaml(f)
    msgs = [str(p) for p in ei.value.problems]
    assert len(msgs) == 3, msgs
    assert msgs[0].startswith(f"{f}:2: unknown calculator 'NoSuchThing'")
    assert msgs[1].startswith(f"{f}:5: node 'TestScale': input VALUE reads stream 'missing'")
    assert msgs[2].startswith(f"{f}:7: node 'TestScale': option 'factor'")


def test_option_from_side_packet_is_validated_at_start():
    g = Graph.from_yaml("""
side_packets: {fac: 2}
inputs: [a]
nodes:
  - calculator: TestScale
    inputs: [a]
    outputs: [b]
    options: {factor: $fac}
""")
    with pytest.raises(GraphConfigError, match=r"<string>:8: node 'TestScale': option 'factor'.*got 'big'"):
        g.start({"fac": "big"})


def test_unknown_side_packet_given_at_start():
    g = Graph.from_yaml("""
inputs: [a]
nodes:
  - calculator: PassThrough
    inputs: [a]
    outputs: [b]
""")
    with pytest.raises(GraphConfigError, match=r"side packet 'sourc' is given but the graph does not declare it"):
        g.start({"sourc": 1})


def test_graph_files_cannot_construct_objects():
    with pytest.raises(GraphConfigError, match=r"<string>:3: tag '!!python/object/apply:os.system' is not allowed"):
        Graph.from_yaml("""
nodes:
  - calculator: !!python/object/apply:os.system ["echo pwned"]
""")


def test_plugin_module_that_does_not_exist():
    with pytest.raises(GraphConfigError, match=r"<string>:2: cannot load plugin 'no_such_module_xyz': tried it as a "
                                               r"module name, and no module named 'no_such_module_xyz' is on the "
                                               r"import path"):
        Graph.from_yaml("""
plugins: [no_such_module_xyz]
nodes:
  - calculator: Counter
    outputs: [a]
""", trust=True)


def test_plugin_module_registers_calculators(tmp_path, monkeypatch):
    (tmp_path / "my_vpipe_plugin.py").write_text("""
from pipeline import calculator

@calculator(name="PluginTriple")
def triple(value: int) -> int:
    return 3 * value
""")
    monkeypatch.syspath_prepend(str(tmp_path))
    g = Graph.from_yaml("""
plugins: [my_vpipe_plugin]
inputs: [a]
nodes:
  - calculator: PluginTriple
    inputs: [a]
    outputs: [b]
""", trust=True)
    got = []
    g.observe("b", lambda p: got.append(p.value))
    g.start()
    g.add_packet("a", 5, 0)
    g.close_all_inputs()
    g.wait()
    assert got == [15]
