"""A calculator that does not return after the run was stopped (docs/graphs.md, "Stopping"): the
shutdown names it in a ``NodeStuckError`` (node, calculator, phase, the timestamp of a one-call
node's process call, the bound, where its thread is), never closes it under its call, closes every
other node, and the thread ends once the call returns. In process, and in a close the shutdown
makes (the closes after it still run). Written against the survivors of a mutation run of
pipeline/graph.py (docs/testing.md); coordination by events, every wait bounded."""

from __future__ import annotations

import logging
import time
import threading

import pytest
from pydantic import BaseModel, ConfigDict

from pipeline import STOP, Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.errors import NodeStuckError
from tests.pipeline.calcs import Gate

WAIT_S = 30.0  # a bound for what must happen at once: reaching it is the failure


class HangOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phase: str | None = None  # process or close: where it hangs


@register
class HangsInCall(Calculator):
    """Passes packets on; in the phase its options name (process or close) it waits for its GATE
    (a ``Gate``), at most WAIT_S. Appends its node's name to the side packet CLOSED when closed."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any, optional=True)}
    side_inputs = {"GATE": SideInput(Gate, optional=True), "CLOSED": SideInput(list)}
    Options = HangOptions

    def _hang(self, ctx, phase):
        if ctx.options.phase == phase:
            gate = ctx.side["GATE"]
            gate.entered.set()
            if not gate.released.wait(WAIT_S):
                raise TimeoutError("the test gate was never released")

    def process(self, ctx):
        self._hang(ctx, "process")
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)

    def close(self, ctx):
        self._hang(ctx, "close")
        ctx.side["CLOSED"].append(ctx.node)


class _Session:
    """A per-thread resource whose release, as its thread ends, waits for the test's gate (a
    model session kept in a ``threading.local`` and freed slowly)."""

    def __init__(self, gate: Gate):
        self.gate = gate

    def __del__(self):
        self.gate.entered.set()
        self.gate.released.wait(WAIT_S)


@register
class SessionSource(Calculator):
    """Emits one packet at timestamp 1 from a session it keeps for its thread, then stops: its
    thread then takes until the GATE is released to end."""

    outputs = {"OUT": Output(int)}
    side_inputs = {"GATE": SideInput(Gate)}

    def open(self, ctx):
        self.per_thread = threading.local()
        self.sent = False

    def process(self, ctx):
        if self.sent:
            return STOP
        self.per_thread.session = _Session(ctx.side["GATE"])
        ctx.outputs["OUT"].add(1, 1)
        self.sent = True


def _node(name, stream_in, stream_out=None, **extra):
    node = {"calculator": "HangsInCall", "name": name, "inputs": {"IN": stream_in},
            "side_inputs": {"CLOSED": "closed"}, **extra}
    if stream_out:
        node["outputs"] = {"OUT": stream_out}
    return node


def _join_run_threads():
    for th in threading.enumerate():
        if th.name.startswith("vpipe"):
            th.join(WAIT_S)
            assert not th.is_alive(), f"{th.name} did not end once let go"


@pytest.mark.parametrize("max_in_flight, at", [(1, " at timestamp 7"), (2, "")])
def test_a_call_stuck_in_process_is_named_and_never_closed(max_in_flight, at, caplog, no_thread_leak):
    # cancel(stuck_timeout) bounds this stop, not the graph's stuck_timeout (60 s)
    gate, closed = Gate(), []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "closed": None}, "nodes": [
        _node("first", "in", "a"),
        _node("hang", "a", "b", options={"phase": "process"}, max_in_flight=max_in_flight,
              side_inputs={"GATE": "gate", "CLOSED": "closed"}),
        _node("sink", "b"),
    ]}, stuck_timeout=60)
    g.start({"gate": gate, "closed": closed})
    g.add_packet("in", "x", 7)
    assert gate.entered.wait(WAIT_S), "the call never began"
    g.cancel(stuck_timeout=0.2)
    with caplog.at_level(logging.INFO, logger="vpipe"), pytest.raises(NodeStuckError) as ei:
        g.wait(WAIT_S)
    err = ei.value
    assert (err.node, err.calculator, err.phase, err.timestamp) == (
        "hang", "HangsInCall", "process", 7 if max_in_flight == 1 else None)
    assert err.args[0] == (f"node 'hang' (HangsInCall) is stuck in process{at}: it did not return within 0.2 s "
                           "of the stop; abandoned (its thread is left running, the node is not closed)")
    assert "released.wait(WAIT_S)" in err.cause_traceback, "the report shows where it is stuck"
    lines = err.cause_traceback.splitlines()  # a stack as traceback prints one: File lines, then source
    assert all(line.startswith(("  File ", "    ")) for line in lines) and lines[0].startswith("  File "), lines
    assert [r.getMessage() for r in caplog.records if r.name == "vpipe"] == [err.args[0]], "logged as well"
    assert g.errors == [err]
    assert sorted(closed) == ["first", "sink"], "every node but the stuck one is closed"
    gate.release()
    _join_run_threads()
    assert sorted(closed) == ["first", "sink"], "nor closed after its call returned"


def test_a_close_stuck_at_shutdown_is_named_and_the_closes_after_it_still_run(no_thread_leak):
    # Closed by the shutdown (the run is cancelled): the sink first, then the others from the end;
    # the hung close is named after stuck_timeout and the next closer closes 'first'.
    gate, closed = Gate(), []
    seen = threading.Event()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "closed": None}, "nodes": [
        _node("first", "in", "a"),
        _node("hang", "a", "b", options={"phase": "close"}, side_inputs={"GATE": "gate", "CLOSED": "closed"}),
        _node("sink", "b"),
    ]}, stuck_timeout=0.2)
    g.observe("b", lambda p: seen.set())
    g.start({"gate": gate, "closed": closed})
    g.add_packet("in", "x", 7)
    assert seen.wait(WAIT_S), "the packet never went through"
    g.cancel()
    with pytest.raises(NodeStuckError) as ei:
        g.wait(WAIT_S)
    err = ei.value
    assert (err.node, err.phase, err.timestamp) == ("hang", "close", None)
    assert err.args[0].startswith("node 'hang' (HangsInCall) is stuck in close: it did not return within 0.2 s")
    assert "released.wait(WAIT_S)" in err.cause_traceback
    assert closed == ["sink", "first"]
    held = [t.name for t in threading.enumerate() if t.name.startswith("vpipe") and t.is_alive() and not t.daemon]
    assert held == [], f"threads the program's exit would wait for, the hung close among them: {held}"
    gate.release()
    _join_run_threads()
    assert closed == ["sink", "first", "hang"], "the abandoned close went on once let go"


def test_a_stuck_call_is_named_behind_a_thread_slow_to_end(no_thread_leak):
    # The source has stopped, but its thread is still ending (releasing its per-thread session)
    # when the shutdown looks for stuck calls: that thread is in no call, and the stuck call of
    # the node after it is still named, and that node not closed.
    session, gate, closed = Gate(), Gate(), []
    g = Graph.from_dict({"side_packets": {"session": None, "gate": None, "closed": None}, "nodes": [
        {"calculator": "SessionSource", "name": "source", "outputs": {"OUT": "a"},
         "side_inputs": {"GATE": "session"}},
        _node("hang", "a", "b", options={"phase": "process"}, side_inputs={"GATE": "gate", "CLOSED": "closed"}),
        _node("sink", "b"),
    ]}, stuck_timeout=60)
    g.start({"session": session, "gate": gate, "closed": closed})
    try:
        assert gate.entered.wait(WAIT_S), "the call never began"
        assert session.entered.wait(WAIT_S), "the source's thread never began to end"
        g.cancel(stuck_timeout=0.2)
        with pytest.raises(NodeStuckError) as ei:
            g.wait(WAIT_S)
        assert (ei.value.node, ei.value.phase) == ("hang", "process")
        assert closed == ["sink"], "the stuck node is not closed under its call"
    finally:
        session.release()
        gate.release()
        _join_run_threads()


def test_a_drain_past_drain_timeout_is_cut_short_and_logged(caplog, no_thread_leak):
    # request_stop() while a call hangs: the drain goes on for drain_timeout (not less), then the
    # run is cancelled (logged once, drain_expired), and the hung call is named stuck_timeout later.
    gate, closed = Gate(), []
    g = Graph.from_dict({"name": "drains", "inputs": ["in"], "side_packets": {"gate": None, "closed": None},
                         "nodes": [_node("hang", "in", "b", options={"phase": "process"},
                                         side_inputs={"GATE": "gate", "CLOSED": "closed"}),
                                   _node("sink", "b")]},
                        drain_timeout=0.5, stuck_timeout=0.05)
    g.start({"gate": gate, "closed": closed})
    try:
        g.add_packet("in", "x", 7)
        assert gate.entered.wait(WAIT_S), "the call never began"
        t0 = time.monotonic()
        g.request_stop()
        with caplog.at_level(logging.INFO, logger="vpipe"), pytest.raises(NodeStuckError) as ei:
            g.wait(WAIT_S)
        elapsed = time.monotonic() - t0
        assert (ei.value.node, ei.value.phase, ei.value.timestamp) == ("hang", "process", 7)
        assert g.drain_expired
        assert elapsed >= 0.5, f"the drain was cut after {elapsed:.3f} s, before its drain_timeout of 0.5 s"
        assert [r.getMessage() for r in caplog.records if r.name == "vpipe"][0] == (
            "graph 'drains': the drain did not finish within drain_timeout=0.5 s; stopping at once "
            "(sinks keep what reached them)")
        assert closed == ["sink"]
    finally:
        gate.release()
        _join_run_threads()


def test_wait_with_a_timeout_during_a_longer_drain_times_out_at_its_own(no_thread_leak):
    gate, closed = Gate(), []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "closed": None},
                         "nodes": [_node("hang", "in", options={"phase": "process"},
                                         side_inputs={"GATE": "gate", "CLOSED": "closed"})]},
                        drain_timeout=5, stuck_timeout=WAIT_S)
    g.start({"gate": gate, "closed": closed})
    try:
        g.add_packet("in", "x", 7)
        assert gate.entered.wait(WAIT_S), "the call never began"
        g.request_stop()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"did not finish within 0.2 s"):
            g.wait(0.2)
        assert time.monotonic() - t0 < 5, "wait(0.2) lasted the whole drain"
        assert not g.done, "the run goes on: the drain has time left"
    finally:
        gate.release()
        g.cancel()
        g.wait(WAIT_S)
        _join_run_threads()
