"""The test helpers of pipeline/testing.py, which the calculator tests of every family rely on:
``GraphRun`` (build, feed, collect; never leaves a run going) and ``run_calculator`` (one node run
on timestamped packets)."""

from __future__ import annotations

import pytest

from pipeline import Graph, GraphRunError
from pipeline import testing as _testing
from pipeline.testing import GraphRun, run_calculator
from tests.pipeline.calcs import Gate

PASS = """
inputs: [a, b]
nodes:
  - calculator: PassThrough
    inputs: [a, b]
    outputs: [x, y]
"""


def test_a_graph_run_is_built_from_text_a_path_a_dict_or_a_graph(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(PASS)
    as_dict = {"inputs": ["a", "b"], "nodes": [{"calculator": "PassThrough", "inputs": ["a", "b"],
                                                "outputs": ["x", "y"]}]}
    g = Graph.from_yaml(PASS)
    for source in (PASS, f, str(f), as_dict, g):
        r = GraphRun(source, collect=["x"], threads=3, timeout=7.5)
        assert r.timeout == 7.5
        if source is g:
            assert r.graph is g
        else:
            assert r.graph.threads == 3 and r.graph.spec.file == (str(f) if source in (f, str(f)) else
                                                                  "<dict>" if source is as_dict else "<string>")
        assert r.run({"a": [(0, 1), (5, 2)], "b": [(5, 3)]}) == {"x": [(0, 1), (5, 2)]}
        assert r.out == {"x": [(0, 1), (5, 2)]}
    assert GraphRun(PASS).timeout == 30.0


def test_feed_merged_feeds_in_timestamp_order(monkeypatch):
    """Across inputs by timestamp; equal timestamps: the one earlier in its own list first, then the
    inputs in the order given."""
    r = GraphRun(PASS)
    fed = []
    monkeypatch.setattr(r.graph, "add_packet", lambda s, v, t: fed.append(v))
    r.feed_merged({"b": [(0, "b0"), (10, "b10")], "a": [(0, "a0"), (10, "a10")]})
    assert fed == ["b0", "a0", "b10", "a10"]
    fed.clear()
    r.feed_merged({"a": [(0, "a0"), (5, "a5"), (10, "a10")], "b": [(7, "b7")]})
    assert fed == ["a0", "a5", "b7", "a10"]
    fed.clear()
    r.feed_merged({"a": [(0, "a0"), (10, "a10")], "b": [(0, "b0"), (2, "b2"), (10, "b10")]})
    assert fed == ["a0", "b0", "b2", "a10", "b10"]


def test_feed_with_idle_lets_each_packet_through_before_the_next(monkeypatch):
    with GraphRun("inputs: [a]\nnodes:\n  - {calculator: PassThrough, inputs: [a], outputs: [x]}\n", collect=["x"],
                  timeout=12.5) as r:
        r.start()
        waits = []
        real = r.graph.wait_until_idle
        monkeypatch.setattr(r.graph, "wait_until_idle", lambda t: (real(t), waits.append((len(r.out["x"]), t))))
        r.feed("a", [(0, 1), (1, 2)], idle=True)
        assert waits == [(1, 12.5), (2, 12.5)]  # each packet out before the next goes in
        assert r.finish() == {"x": [(0, 1), (1, 2)]}


def test_finish_raises_after_the_timeout_and_leaving_cancels():
    gate = Gate()
    text = "inputs: [a]\nside_packets: [gate]\nnodes:\n  - calculator: TestBlocker\n    inputs: [a]\n" \
           "    outputs: [b]\n    side_inputs: {GATE: gate}\n"
    with pytest.raises(TimeoutError, match=r"did not finish within 0.3 s"):
        with GraphRun(text, timeout=0.3) as r:
            r.start({"gate": gate})
            r.feed("a", [(0, 1)])
            assert gate.entered.wait(10)
            try:
                r.finish()
            finally:
                gate.release()
    assert r.graph.done


def test_leaving_a_run_raises_its_error_unless_the_block_raised_its_own():
    text = "inputs: [a]\nnodes:\n  - calculator: TestFail\n    inputs: [a]\n    outputs: [b]\n    options: {at: 0}\n"
    with pytest.raises(GraphRunError, match="node 'TestFail'"):
        with GraphRun(text) as r:
            r.start()
            r.feed("a", [(0, 1)])
            with pytest.raises(GraphRunError):
                r.graph.wait_until_idle(10)  # the failure has happened; the run is not yet waited for
    assert r.graph.done
    with pytest.raises(AssertionError, match="mine"):
        with GraphRun(text) as r:
            r.start()
            r.feed("a", [(0, 1)])
            with pytest.raises(GraphRunError):
                r.graph.wait_until_idle(10)
            raise AssertionError("mine")
    with GraphRun(text) as r:  # never started: nothing to end
        pass


def test_run_calculator_wires_every_indexed_output_and_passes_its_settings(monkeypatch):
    built = []
    real = _testing.Graph.from_dict
    monkeypatch.setattr(_testing.Graph, "from_dict", lambda d, threads=None: built.append((d, threads)) or real(
        d, threads=threads))
    out = run_calculator("PassThrough", inputs={"IN:0": [(0, "a")], "IN:1": [(0, "b"), (1, "c")]},
                         policy="immediate", max_in_flight=2, threads=3, capacity=4)
    assert out == {"OUT:0": [(0, "a")], "OUT:1": [(0, "b"), (1, "c")]}
    (d, threads), = built
    assert threads == 3
    (node,) = d["nodes"]
    assert node["inputs"] == {"IN:0": {"stream": "in_in_0", "capacity": 4}, "IN:1": {"stream": "in_in_1", "capacity": 4}}
    assert node["outputs"] == {"OUT:0": "out_out_0", "OUT:1": "out_out_1"}
    assert (node["policy"], node["max_in_flight"], node["calculator"]) == ("immediate", 2, "PassThrough")
    assert d["inputs"] == ["in_in_0", "in_in_1"] and d["name"] == "test_PassThrough"
    built.clear()
    assert run_calculator("PassThrough", inputs={"IN": [(0, 1)]}) == {"OUT:0": [(0, 1)]}
    assert "policy" not in built[0][0]["nodes"][0] and "capacity" not in built[0][0]["nodes"][0]["inputs"]["IN"]
    assert run_calculator("TestSeq", options={"timestamps": [3]}, outputs=["OUT"]) == {"OUT": [(3, 3)]}


def test_run_calculator_gives_side_packets_and_its_timeout():
    assert run_calculator("TestSide", inputs={"IN": [(0, 1)]}, side_packets={"OFFSET": 10}) == {"OUT": [(0, 11)]}
    gate = Gate()
    try:
        with pytest.raises(TimeoutError, match=r"did not finish within 0.3 s"):
            run_calculator("TestBlocker", inputs={"IN": [(0, 1)]}, side_packets={"GATE": gate}, timeout=0.3)
    finally:
        gate.release()


def test_run_calculator_registers_a_class_under_its_own_name(monkeypatch):
    from pipeline import Calculator, Input, Output, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def new(class_name, **attrs):
        def process(self, ctx):
            ctx.outputs["OUT"].add(ctx.inputs["IN"].value)

        return type(class_name, (Calculator,), {"inputs": {"IN": Input(int)}, "outputs": {"OUT": Output(int)},
                                                "process": process, **attrs})

    named = new("Named", name="TestNamedNotRegistered")  # a name, not registered
    assert run_calculator(named, inputs={"IN": [(0, 1)]}) == {"OUT": [(0, 1)]}
    assert named.name == "TestNamedNotRegistered" and registry.find("TestNamedNotRegistered") is named
    renamed = registry.register(name="TestRenamedCalc")(new("OtherName"))  # registered under another name
    assert run_calculator(renamed, inputs={"IN": [(0, 2)]}) == {"OUT": [(0, 2)]}
    assert renamed.name == "TestRenamedCalc" and registry.find("OtherName") is None and registry.find("Named") is None
    bare = new("TestBareCalc")  # neither: registered under its class name
    assert run_calculator(bare, inputs={"IN": [(0, 3)]}) == {"OUT": [(0, 3)]}
    assert bare.name == "TestBareCalc" and registry.find("TestBareCalc") is bare
    with pytest.raises(TypeError) as ei:
        run_calculator(int)
    assert str(ei.value) == "register() expects a Calculator subclass, got <class 'int'>"
