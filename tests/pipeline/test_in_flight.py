"""Nodes with ``max_in_flight > 1`` as a user sees them: a failing call named with its timestamp,
exact stats (every call measured), trace events, the offset contract's bounds through such a node
(as a filter and with gaps), a calculator with ``timestamp_offset = None`` emitting before its
timestamp, and one thread at a time emitting on its outputs. Written against mutants of
pipeline/node.py that the other tests let through (docs/testing.md, "Mutation testing")."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline import Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.testing import GraphRun, run_calculator
from tests.pipeline.calcs import Gate


@register
class TestSlowEven(Calculator):
    """Forwards even values only; every call lasts at least 5 ms; a negative value raises."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        time.sleep(0.005)  # the call's own length, for the stats (not a wait for a thread)
        v = ctx.inputs["IN"].value
        if v < 0:
            raise ValueError(f"negative value {v}")
        if v % 2 == 0:
            ctx.outputs["OUT"].add(v)


@register
class TestEarlier(Calculator):
    """``timestamp_offset = None``: emits each value one tick before its own timestamp."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    timestamp_offset = None

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value, ctx.timestamp - 1)


@register
class TestGatedEven(Calculator):
    """Forwards even values only; its call at timestamp 2 waits until its GATE is released, its
    call at 1 until the call at 2 has begun."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    side_inputs = {"GATE": SideInput(Gate)}

    def process(self, ctx):
        if ctx.timestamp == 2:
            gate = ctx.side["GATE"]
            gate.entered.set()
            if not gate.released.wait(10):
                raise TimeoutError("test gate was never released")
        elif ctx.timestamp == 1 and not ctx.side["GATE"].entered.wait(10):
            raise TimeoutError("the call at 2 never began")
        v = ctx.inputs["IN"].value
        if v % 2 == 0:
            ctx.outputs["OUT"].add(v)


def in_flight(calculator, name="par", n=2):
    return {"calculator": calculator, "name": name, "inputs": ["in"], "outputs": ["out"], "max_in_flight": n}


def test_a_failing_concurrent_call_is_named_with_its_timestamp(no_thread_leak):
    g = Graph.from_dict({"inputs": ["in"], "nodes": [in_flight("TestSlowEven")]}, threads=2)
    g.start()
    for t, v in [(0, 0), (3, 1), (7, -1)]:
        g.add_packet("in", v, t)
    g.close_all_inputs()
    with pytest.raises(GraphRunError, match=r"^node 'par' \(TestSlowEven\) failed in process at timestamp 7: "
                                            r"ValueError: negative value -1"):
        g.wait(20)
    err = g.error
    assert (err.node, err.phase, err.timestamp) == ("par", "process", 7)
    assert isinstance(err.__cause__, ValueError)


def test_concurrent_calls_are_counted_and_all_measured(no_thread_leak):
    """Every call of a concurrent node is measured: its time is their sum (at least 5 ms each),
    and no more than the run's wall time times the calls that may overlap."""
    g = Graph.from_dict({"inputs": ["in"], "nodes": [in_flight("TestSlowEven")]}, threads=2)
    with GraphRun(g, collect=["out"]) as r:
        got = r.run({"in": [(t, t) for t in range(12)]})["out"]
    assert got == [(t, t) for t in range(0, 12, 2)]
    stats = g.stats()["par"]
    assert stats["count"] == 12
    assert 0.060 <= stats["time_s"] <= 2 * g.wall_time(), (stats, g.wall_time())
    assert stats["mean_ms"] >= 5.0, stats


def test_concurrent_calls_are_traced(no_thread_leak):
    g = Graph.from_dict({"inputs": ["in"], "nodes": [in_flight("PassThrough")]}, threads=2)
    g.start(trace=True)
    for t in range(6):
        g.add_packet("in", t, t)
    g.close_all_inputs()
    g.wait(20)
    events = sorted(e for e in g.trace_events() if e[0] == "par")
    assert [e[2] for e in events] == list(range(6))
    for _node, thread, _t, start, end in events:
        assert thread.startswith("vpipe-default-") and start <= end


def joined_0_to_5(g):
    """Feeds 0..5 to the graph input ``in`` of ``g`` and returns what its stream ``j`` got,
    ``(timestamp, value)``, waiting (bounded) for the packet at 5 before closing the input."""
    got = []
    seen = threading.Event()
    g.observe("j", lambda p: (got.append((p.timestamp, p.value)), seen.set() if p.timestamp == 5 else None))
    g.start()
    for t in range(6):
        g.add_packet("in", t, t)
    try:
        assert seen.wait(10), f"timestamp 5 was never joined: the bound did not pass (joined: {got})"
    finally:
        g.close_input("in")
        g.wait(20)
    return got


@pytest.mark.parametrize("n", [1, 2, 3])
def test_bounds_pass_through_a_concurrent_filter(n, no_thread_leak):
    """A concurrent node that emits nothing at odd timestamps still moves its output's bound (the
    offset contract), so a join with the unfiltered stream runs at each odd timestamp without
    waiting for the input to close."""
    g = Graph.from_dict({
        "inputs": ["in"],
        "nodes": [
            in_flight("TestEvenOnly", n=n),
            {"calculator": "TestJoin", "inputs": {"A": "in", "B": "out"}, "outputs": ["j"]},
        ],
    }, threads=2)
    assert joined_0_to_5(g) == [(t, (t, t if t % 2 == 0 else None)) for t in range(6)]


def test_a_finished_call_moves_the_bound_while_a_later_call_is_in_flight(no_thread_leak):
    """The call at 1 emits nothing and returns while the call at 2 is still running: the output's
    bound moves past 1 at once (the join runs at 1), not when the call at 2 ends."""
    gate = Gate()
    g = Graph.from_dict({
        "inputs": ["in"], "side_packets": {"gate": None},
        "nodes": [
            {"calculator": "TestGatedEven", "name": "par", "inputs": ["in"], "outputs": ["out"],
             "side_inputs": {"GATE": "gate"}, "max_in_flight": 2},
            {"calculator": "TestJoin", "inputs": {"A": "in", "B": "out"}, "outputs": ["j"]},
        ],
    }, threads=3)
    got = []
    seen = threading.Event()
    g.observe("j", lambda p: (got.append((p.timestamp, p.value)), seen.set() if p.timestamp == 1 else None))
    g.start({"gate": gate})
    try:
        g.add_packet("in", 0, 0)
        g.add_packet("in", 1, 1)
        g.add_packet("in", 2, 2)
        assert gate.entered.wait(10), "the call at 2 never began"
        assert seen.wait(10), f"timestamp 1 waited for the call at 2 (joined: {got})"
    finally:
        gate.release()
        g.close_input("in")
        g.wait(20)
    assert got == [(0, (0, 0)), (1, (1, None)), (2, (2, 2))]


def test_bounds_pass_through_a_concurrent_node_behind_a_filter(no_thread_leak):
    """The bound a filter moves (no packet) goes on through a concurrent node downstream, which
    then has no call to make: the join behind them still runs at the odd timestamps."""
    g = Graph.from_dict({
        "inputs": ["in"],
        "nodes": [
            {"calculator": "TestEvenOnly", "inputs": ["in"], "outputs": ["even"]},
            {"calculator": "PassThrough", "name": "par", "inputs": ["even"], "outputs": ["out"], "max_in_flight": 2},
            {"calculator": "TestJoin", "inputs": {"A": "in", "B": "out"}, "outputs": ["j"]},
        ],
    }, threads=2)
    assert joined_0_to_5(g) == [(t, (t, t if t % 2 == 0 else None)) for t in range(6)]


def test_a_concurrent_node_without_offset_may_emit_before_its_timestamp(no_thread_leak):
    """``timestamp_offset = None``: no bound is promised for the node, so each call may emit
    below its own timestamp (here one tick before), also with gaps in the input."""
    stamps = [1, 2, 4, 5, 9]
    out = run_calculator("TestEarlier", inputs={"IN": [(t, t) for t in stamps]}, max_in_flight=2, threads=2)
    assert out["OUT"] == [(t - 1, t) for t in stamps]


def test_one_thread_at_a_time_emits_a_concurrent_nodes_outputs(no_thread_leak):
    """While one call's outputs are being sent (here into a slow observer), a call finishing on
    another thread leaves its outputs to that sender: an output's callbacks never overlap."""
    first_in_observer = threading.Event()
    overlapped = threading.Event()
    busy = threading.Lock()

    def observer(p):
        if not busy.acquire(blocking=False):
            overlapped.set()
            return
        try:
            if p.timestamp == 0:
                first_in_observer.set()
                # the call at 1 ends meanwhile on the other worker; its packet must wait for us
                overlapped.wait(0.5)
        finally:
            busy.release()

    g = Graph.from_dict({"inputs": ["in"], "nodes": [in_flight("PassThrough")]}, threads=2)
    got = []
    g.observe("out", observer)
    g.observe("out", lambda p: got.append(p.timestamp))
    g.start()
    g.add_packet("in", 0, 0)
    assert first_in_observer.wait(10)
    g.add_packet("in", 1, 1)
    g.close_all_inputs()
    g.wait(20)
    assert not overlapped.is_set(), "two threads sent on one output at once"
    assert got == [0, 1]
