"""Around a node's close: once closed it is never called again, even when a packet still reaches
it on a back edge (the loop's last node emitting in its own close); after its last call the
outputs' bound is one past it, so a consumer hears of it and ``close()`` may still emit there.
A close made by the shutdown (a cancelled run) holds no call, may emit, and its failure is named.
Written against the survivors of a mutation run of pipeline/node.py (``finished`` after the close
on the general path, ``_bound_after`` once the inputs are done, ``close_at_shutdown``;
docs/testing.md)."""

from __future__ import annotations

import threading

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, register

WAIT_S = 30


@register
class TestLoopHead(Calculator):
    """Passes IN on; logs each call's timestamp and the inputs present, and its close, to LOG."""

    inputs = {"IN": Input(Any), "LOOP": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        ctx.side["LOG"].append((ctx.timestamp, tuple(t for t in ("IN", "LOOP") if ctx.get(t) is not None)))
        if ctx.get("IN") is not None:
            ctx.outputs["OUT"].add(ctx.get("IN"))

    def close(self, ctx):
        ctx.side["LOG"].append("closed")


@register
class TestEmitsInClose(Calculator):
    """Emits nothing in its calls; one packet at 1000 in its close."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def process(self, ctx):
        pass

    def close(self, ctx):
        ctx.outputs["OUT"].add("late", 1000)


def test_a_packet_on_a_back_edge_after_the_close_is_not_processed(threads, no_thread_leak):
    log = []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"log": None}, "nodes": [
        {"calculator": "TestLoopHead", "inputs": {"IN": "in", "LOOP": {"stream": "loop", "back_edge": True}},
         "outputs": ["a"], "side_inputs": {"LOG": "log"}},
        {"calculator": "TestEmitsInClose", "inputs": ["a"], "outputs": ["loop"]}]}, threads=threads)
    g.start({"log": log})
    g.add_packet("in", "x", 0)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert log == [(0, ("IN",)), "closed"]


@register
class TestJoinEmitsInClose(Calculator):
    """Two inputs (the general path): passes A on; in close, emits "end" one past the last timestamp."""

    inputs = {"A": Input(Any), "B": Input(Any, optional=True)}
    outputs = {"OUT": Output(Any)}

    def open(self, ctx):
        self.last = None

    def process(self, ctx):
        self.last = ctx.timestamp
        if ctx.get("A") is not None:
            ctx.outputs["OUT"].add(ctx.get("A"))

    def close(self, ctx):
        ctx.outputs["OUT"].add("end", self.last + 1)


@register
class TestBoundLog(Calculator):
    """``process_timestamp_bounds``: logs ``(timestamp, value or None, input_bound('IN'))`` of each call."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"LOG": SideInput(list)}
    process_timestamp_bounds = True

    def process(self, ctx):
        ctx.side["LOG"].append((ctx.timestamp, ctx.get("IN"), ctx.input_bound("IN")))


@pytest.mark.parametrize("emits", [True, False], ids=["a packet at 5", "nothing at 5"])
def test_after_the_last_call_the_outputs_bound_is_one_past_it_and_close_may_emit_there(emits, no_thread_leak):
    # the inputs are done after the call at 5: the outputs' bound moves to 6 (a consumer that got
    # nothing at 5 has a bound-only call there), and close() may still emit at 6
    log = []
    g = Graph.from_dict({"inputs": ["a", "b"], "side_packets": {"log": None}, "nodes": [
        {"calculator": "TestJoinEmitsInClose", "inputs": {"A": "a", "B": "b"}, "outputs": ["o"]},
        {"calculator": "TestBoundLog", "inputs": ["o"], "side_inputs": {"LOG": "log"}}]}, threads=1)
    g.start({"log": log})
    g.add_packet("a" if emits else "b", "x", 5)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert log == [(5, "x" if emits else None, 6), (6, "end", 7)]


@register
class TestClosesBadly(Calculator):
    """Passes IN on; its close logs what its context says (timestamp, IN, IN's bound) to LOG, emits
    "bye" at 50, then raises."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.get("IN"))

    def close(self, ctx):
        ctx.side["LOG"].append((ctx.timestamp, ctx.get("IN"), ctx.input_bound("IN")))
        ctx.outputs["OUT"].add("bye", 50)
        raise ValueError("the close fails")


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_a_close_made_by_the_shutdown_holds_no_call_and_its_failure_is_named(max_in_flight, no_thread_leak):
    # cancelled with its input still open, the node is closed by the shutdown: its context holds
    # no call (no timestamp, no inputs, the bound read live), it may still emit, and its failure is
    # reported with the node, calculator and phase
    log, got = [], []
    seen = threading.Event()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"log": None}, "nodes": [
        {"calculator": "TestClosesBadly", "name": "x", "inputs": ["in"], "outputs": ["o"],
         "side_inputs": {"LOG": "log"}, "max_in_flight": max_in_flight}]})
    g.observe("o", lambda p: (got.append(p.value), seen.set()))
    g.start({"log": log})
    g.add_packet("in", "a", 0)
    assert seen.wait(WAIT_S), "the packet never went through"
    g.cancel()
    with pytest.raises(GraphRunError) as ei:
        g.wait(WAIT_S)
    assert str(ei.value).startswith("node 'x' (TestClosesBadly) failed in close: ValueError: the close fails"), \
        str(ei.value)
    assert (ei.value.node, ei.value.calculator, ei.value.phase) == ("x", "TestClosesBadly", "close")
    assert log == [(None, None, 1)]
