"""The calculator context as a calculator sees it (docs/calculators.md, "The context"): the words for a
port that is not connected, timestamps given to ``add`` (numpy ints taken, anything else refused,
none where none can be inferred), ``add_packet`` from a source, ``input_bound`` read live. Written
against the survivors of a mutation run of pipeline/context.py (docs/testing.md)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline import STOP, Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.testing import run_calculator
from pipeline.timestamp import Packet, Timestamp
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


# -- written against the survivors of the second session's run of pipeline/context.py (docs/testing.md)

WAIT_S = 30


def test_an_indexed_output_is_reached_by_its_indices_only():
    # `ctx.outputs["OUT"]` of an indexed port used to be a silent no-op handle: what was added to it
    # was lost. It is the KeyError of any port not connected, naming only the connected ones (not
    # the no-op handle of the unconnected optional AUX).
    class TestIndexedOut(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any, multiple=True), "AUX": Output(Any, optional=True)}

        def process(self, ctx):
            ctx.outputs["OUT:1"].add(ctx.get("IN"))
            ctx.outputs["OUT"].add("lost")

    assert ("KeyError: \"no output port 'OUT' is connected on this node (connected: OUT:0, OUT:1)\""
            in _error(TestIndexedOut, {"IN": [(0, 1)]}, outputs=["OUT:0", "OUT:1"]))


def test_an_unconnected_optional_output_names_its_port_in_its_errors():
    class TestAddsToAuxInOpen(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any), "AUX": Output(Any, optional=True)}

        def open(self, ctx):
            assert not ctx.outputs["AUX"].connected
            ctx.outputs["AUX"].add("early")

        def process(self, ctx):
            pass

    assert ("ValueError: node 'TestAddsToAuxInOpen': outputs['AUX'].add needs a timestamp outside process()"
            in _error(TestAddsToAuxInOpen, {"IN": [(0, 1)]}, outputs=["OUT"]))


_FAR = {"Done": Timestamp.DONE, "Unset": Timestamp.UNSET, str(2**64): 2**64, "PreStream": Timestamp.PRESTREAM}


@pytest.mark.parametrize("name", sorted(_FAR))
@pytest.mark.parametrize("kind", ["one call at a time", "max_in_flight 2", "source", "unconnected"])
def test_a_timestamp_outside_min_max_is_refused_by_every_output(kind, name):
    # a plain int past Max (Done, beyond int64) or below PreStream used to pass unchecked on the
    # hop of a node with one call at a time, and past Max on every other handle
    far = _FAR[name]

    class TestEmitsFar(Calculator):
        inputs = {} if kind == "source" else {"IN": Input(Any)}
        outputs = {"OUT": Output(Any, optional=True)}
        timestamp_offset = None

        def process(self, ctx):
            ctx.outputs["OUT"].add("v", far)

    outputs = [] if kind == "unconnected" else ["OUT"]
    inputs = None if kind == "source" else {"IN": [(0, 1)]}
    text = ("timestamp PreStream is not taken: a stream's first allowed timestamp is Min" if name == "PreStream"
            else f"timestamp {name} is outside [Min, Max] and not PostStream")
    assert f"ValueError: {text}" in _error(
        TestEmitsFar, inputs, outputs=outputs, max_in_flight=2 if kind == "max_in_flight 2" else None, threads=2)


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_the_ends_of_the_range_and_poststream_are_taken(max_in_flight):
    class TestEmitsEnds(Calculator):
        inputs = {"IN": Input(Any)}
        outputs = {"OUT": Output(Any)}
        timestamp_offset = None

        def process(self, ctx):
            if ctx.timestamp == 0:
                ctx.outputs["OUT"].add("min", Timestamp.MIN)
            else:
                ctx.outputs["OUT"].add("max", Timestamp.MAX)
                ctx.outputs["OUT"].add("post", Timestamp.POSTSTREAM)

    out = run_calculator(TestEmitsEnds, inputs={"IN": [(0, 1), (1, 2)]}, outputs=["OUT"],
                         max_in_flight=max_in_flight, threads=2)
    assert out == {"OUT": [(Timestamp.MIN, "min"), (Timestamp.MAX, "max"), (Timestamp.POSTSTREAM, "post")]}


@register
class TestKeepsTheLast(Calculator):
    """``timestamp_offset = None``: emits nothing in its calls; in close, adds its latest packet's
    value at its timestamp, then passes on a packet "end" after it (``add_packet``)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    timestamp_offset = None

    def open(self, ctx):
        self.seen, self.lock = [], threading.Lock()

    def process(self, ctx):
        with self.lock:
            self.seen.append(ctx.inputs["IN"])

    def close(self, ctx):
        last = max(self.seen, key=lambda p: p.timestamp)
        ctx.outputs["OUT"].add(last.value, last.timestamp)
        ctx.outputs["OUT"].add_packet(Packet("end", last.timestamp + 1))


def test_a_node_with_calls_in_flight_emits_in_close_to_the_node_after_it():
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "TestKeepsTheLast", "inputs": ["in"], "outputs": ["kept"], "max_in_flight": 2},
        {"calculator": "TestStr", "inputs": ["kept"], "outputs": ["o"]}]}, threads=2)
    got = []
    g.observe("o", lambda p: got.append((p.timestamp, p.value)))
    g.start()
    for t, v in [(0, "a"), (4, "b"), (9, "c")]:
        g.add_packet("in", v, t)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert got == [(9, "c"), (10, "end")]


@register
class TestClosesAEarly(Calculator):
    """Passes each packet on B; its first also on A, which it then closes."""

    inputs = {"IN": Input(Any)}
    outputs = {"A": Output(Any), "B": Output(Any)}

    def process(self, ctx):
        if ctx.outputs["A"].connected and ctx.get("IN") == "first":
            ctx.outputs["A"].add(ctx.get("IN"))
            ctx.outputs["A"].close()
        ctx.outputs["B"].add(ctx.get("IN"))


@register
class TestTellsItsClose(Calculator):
    """A sink: sets its side packet CLOSED (an Event) in close."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"CLOSED": SideInput(threading.Event)}

    def process(self, ctx):
        pass

    def close(self, ctx):
        ctx.side["CLOSED"].set()


def test_an_output_closed_by_hand_closes_its_stream_at_once():
    # the consumer of A closes while the run still goes on (the graph input is open)
    closed = threading.Event()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"closed": None}, "nodes": [
        {"calculator": "TestClosesAEarly", "inputs": ["in"], "outputs": {"A": "a", "B": "b"}},
        {"calculator": "TestTellsItsClose", "inputs": ["a"], "side_inputs": {"CLOSED": "closed"}}]})
    got = []
    g.observe("b", lambda p: got.append(p.value))
    g.start({"closed": closed})
    g.add_packet("in", "first", 0)
    assert closed.wait(WAIT_S), "closing output A did not close its consumer"
    g.add_packet("in", "second", 1)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert got == ["first", "second"]


@register
class TestRecordsBounds(Calculator):
    """``process_timestamp_bounds``: appends ``(ctx.timestamp, input_bound('IN'))`` of every call to
    its side packet BOUNDS; sets its side packet SEEN (an Event) once a bound reaches AT."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"BOUNDS": SideInput(list), "SEEN": SideInput(threading.Event), "AT": SideInput(int)}
    process_timestamp_bounds = True

    def process(self, ctx):
        b = ctx.input_bound("IN")
        ctx.side["BOUNDS"].append((ctx.timestamp, b))
        if b != Timestamp.DONE and b >= ctx.side["AT"]:
            ctx.side["SEEN"].set()


def _bound_recorder(first: dict, **graph) -> tuple[Graph, list, threading.Event]:
    g = Graph.from_dict({"side_packets": {"bounds": None, "seen": None, "at": None}, **graph,
                         "nodes": [first, {"calculator": "TestRecordsBounds", "inputs": ["o"], "side_inputs": {
                             "BOUNDS": "bounds", "SEEN": "seen", "AT": "at"}}]}, threads=2)
    return g, [], threading.Event()


@register
class TestEmitThenWait(Calculator):
    """A source: moves its output's bound to 10 (option ``packet``: sends a packet at 10), then
    waits (inside that call) until the consumer has seen it (its side packet SEEN)."""

    outputs = {"OUT": Output(Any)}
    side_inputs = {"SEEN": SideInput(threading.Event), "PACKET": SideInput(bool)}

    def process(self, ctx):
        if ctx.side["PACKET"]:
            ctx.outputs["OUT"].add("x", 10)
        else:
            ctx.outputs["OUT"].set_next_timestamp_bound(10)
        if not ctx.side["SEEN"].wait(WAIT_S):
            raise TimeoutError("the consumer did not see it while the source's call went on")
        return STOP


@pytest.mark.parametrize("packet", [False, True], ids=["bound", "packet"])
def test_what_a_source_emits_reaches_the_consumer_while_its_call_goes_on(packet):
    g, bounds, seen = _bound_recorder({"calculator": "TestEmitThenWait", "outputs": ["o"],
                                       "side_inputs": {"SEEN": "seen", "PACKET": "packet"}},
                                      side_packets={"bounds": None, "seen": None, "at": None, "packet": None})
    g.start({"bounds": bounds, "seen": seen, "at": 10, "packet": packet})
    g.wait(WAIT_S)
    assert bounds == ([(10, 11)] if packet else [(9, 10)])


@register
class TestBoundsInFlight(Calculator):
    """``timestamp_offset = None``: emits nothing, moves its output's bound to ``t + 100``."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    timestamp_offset = None

    def process(self, ctx):
        ctx.outputs["OUT"].set_next_timestamp_bound(ctx.timestamp + 100)


def test_a_bound_set_in_a_call_in_flight_reaches_the_consumer():
    g, bounds, seen = _bound_recorder({"calculator": "TestBoundsInFlight", "inputs": ["in"], "outputs": ["o"],
                                       "max_in_flight": 2}, inputs=["in"])
    g.start({"bounds": bounds, "seen": seen, "at": 101})
    g.add_packet("in", "x", 0)
    g.add_packet("in", "y", 1)
    assert seen.wait(WAIT_S), f"the bounds set in the calls never arrived (seen: {bounds})"
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert [b for _, b in bounds][-1] == 101
