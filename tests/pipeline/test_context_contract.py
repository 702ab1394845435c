"""The calculator context as a calculator sees it (docs/calculators.md, "The context"): the words for a
port that is not connected, timestamps given to ``add`` (numpy ints taken, anything else refused,
none where none can be inferred), ``add_packet`` from a source, ``input_bound`` read live. Written
against the survivors of a mutation run of pipeline/context.py (docs/testing.md)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import STOP, Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.testing import run_calculator
from pipeline.timestamp import Packet
from tests.pipeline.calcs import Gate


def _error(cls, inputs=None, **kw) -> str:
    with pytest.raises(GraphRunError) as ei:
        run_calculator(cls, inputs=inputs or {}, **kw)
    return str(ei.value.args[0])


def test_an_output_or_input_that_is_not_connected_is_named_with_the_connected_ones():
    class TestAsksForNope(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any)}

        def process(self, ctx):
            ctx.outputs["NOPE"].add(1)

    assert ("KeyError: \"no output port 'NOPE' is connected on this node (connected: OUT)\""
            in _error(TestAsksForNope, {"IN": [(0, 1)]}, outputs=["OUT"]))

    class TestSinkAsksForOut(Calculator):
        inputs = {"IN": Input(Any)}

        def process(self, ctx):
            ctx.outputs["OUT"].add(1)

    assert "no output port 'OUT' is connected on this node (connected: none)" in _error(TestSinkAsksForOut,
                                                                                       {"IN": [(0, 1)]})

    class TestAsksForBound(Calculator):
        inputs = {"IN": Input(Any)}

        def process(self, ctx):
            ctx.input_bound("OTHER")

    assert ("KeyError: \"no input port 'OTHER' is connected on node 'TestAsksForBound' (connected: IN)\""
            in _error(TestAsksForBound, {"IN": [(0, 1)]}))


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_a_numpy_int_timestamp_is_taken_as_an_int_and_a_float_is_refused(max_in_flight):
    class TestNumpyStamps(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any)}
        timestamp_offset = None

        def process(self, ctx):
            ctx.outputs["OUT"].add("v", np.int64(ctx.timestamp + 1))

    out = run_calculator(TestNumpyStamps, inputs={"IN": [(0, 1), (5, 2)]}, outputs=["OUT"],
                         max_in_flight=max_in_flight, threads=2)
    assert out == {"OUT": [(1, "v"), (6, "v")]}
    assert all(type(t) is int for t, _ in out["OUT"])

    class TestFloatStamp(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any)}

        def process(self, ctx):
            ctx.outputs["OUT"].add("v", 3.5)

    assert "TypeError: timestamp must be an int of microseconds, got float: 3.5" in _error(
        TestFloatStamp, {"IN": [(0, 1)]}, outputs=["OUT"], max_in_flight=max_in_flight, threads=2)


def test_a_source_must_give_each_packet_its_timestamp():
    class TestSourceWithoutStamp(Calculator):
        outputs = {"OUT": Output(Any)}

        def process(self, ctx):
            ctx.outputs["OUT"].add(1)

    assert ("ValueError: node 'TestSourceWithoutStamp': a source must give a timestamp to outputs['OUT'].add"
            in _error(TestSourceWithoutStamp, outputs=["OUT"]))


def test_a_packet_added_in_close_needs_its_timestamp():
    class TestAddsInClose(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any)}

        def process(self, ctx):
            pass

        def close(self, ctx):
            ctx.outputs["OUT"].add("late")

    assert ("ValueError: node 'TestAddsInClose': outputs['OUT'].add needs a timestamp outside process()"
            in _error(TestAddsInClose, {"IN": [(0, 1)]}, outputs=["OUT"]))


def test_a_source_passes_on_packets_it_made_with_add_packet():
    class TestPacketSource(Calculator):
        outputs = {"OUT": Output(Any)}

        def open(self, ctx):
            self.left = [Packet("a", 3), Packet("b", 7)]

        def process(self, ctx):
            if not self.left:
                return STOP
            ctx.outputs["OUT"].add_packet(self.left.pop(0))

    assert run_calculator(TestPacketSource, outputs=["OUT"]) == {"OUT": [(3, "a"), (7, "b")]}


@register
class TestBoundReader(Calculator):
    """Its first call waits for the GATE; each call then records ``ctx.input_bound('IN')``."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"GATE": SideInput(Gate)}

    def process(self, ctx):
        gate = ctx.side["GATE"]
        if not gate.entered.is_set():
            gate.entered.set()
            if not gate.released.wait(30):
                raise TimeoutError("the test gate was never released")
        ctx.outputs["OUT"].add(ctx.input_bound("IN"))


def test_input_bound_is_read_live_the_next_queued_packet_first():
    # While the first call waits, packets 4 and 9 are queued: the first call then sees 4 (the
    # first still to come), the second 9, the third the bound the closed input ends with.
    gate = Gate()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None}, "nodes": [
        {"calculator": "TestBoundReader", "inputs": ["in"], "outputs": ["o"], "side_inputs": {"GATE": "gate"}}]})
    got = []
    g.observe("o", lambda p: got.append((p.timestamp, p.value)))
    g.start({"gate": gate})
    g.add_packet("in", 0, 0)
    assert gate.entered.wait(30), "the first call never began"
    g.add_packet("in", 1, 4)
    g.add_packet("in", 2, 9)
    gate.release()
    g.close_all_inputs()
    g.wait(30)
    assert [v for _, v in got[:2]] == [4, 9]
    assert [t for t, _ in got] == [0, 4, 9]


def test_the_context_in_open_names_the_node_and_its_calculator_and_holds_no_call():
    seen = {}

    class TestOpenContext(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any)}

        def open(self, ctx):
            seen.update(node=ctx.node, calculator=ctx.calculator, timestamp=ctx.timestamp, inputs=ctx.inputs)

        def process(self, ctx):
            ctx.outputs["OUT"].add(ctx.get("IN"))

    run_calculator(TestOpenContext, inputs={"IN": [(0, 1)]}, outputs=["OUT"])
    assert seen == {"node": "TestOpenContext", "calculator": "TestOpenContext", "timestamp": None, "inputs": {}}


def test_the_connected_ports_are_listed_all_and_none_is_said():
    class TestTwoOutsAsksForNope(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"A": Output(Any), "B": Output(Any)}

        def process(self, ctx):
            ctx.outputs["NOPE"].add(1)

    assert "no output port 'NOPE' is connected on this node (connected: A, B)" in _error(
        TestTwoOutsAsksForNope, {"IN": [(0, 1)]}, outputs=["A", "B"])

    class TestSourceAsksForBound(Calculator):
        outputs = {"OUT": Output(Any)}

        def process(self, ctx):
            ctx.input_bound("IN")

    assert "no input port 'IN' is connected on node 'TestSourceAsksForBound' (connected: none)" in _error(
        TestSourceAsksForBound, outputs=["OUT"])
