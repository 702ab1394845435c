"""A worker's loop (scheduler.py, ``Executor._work``) as the schedule shows it: a node with long
calls (``HANDOFF_NS``) is never handed back to the executor's queue by a lone worker (nobody else
could take it), which keeps it and steps it again once the node its call made ready inline (the
first of the deepest) is done, before a deeper node queued meanwhile (read off the trace's call
order: with one worker it is the schedule); a step that raises (a bug in the framework) fails the
run naming the node; at the shutdown, a sink still queued is run (its packet written); two workers
busy at once leave none counted busy; nodes made ready for another executor run only on its
workers. Written against the survivors of a mutation run of pipeline/scheduler.py
(``Executor._work``: the idle and busy counts, the hand-off test, which ready node runs inline, the
shutdown's test, the failure of a step; docs/testing.md); every wait bounded. Two more cases read the
hand-off itself while a worker is held in a call: a node with long calls goes to one of several idle
workers (the idle count of each going idle, not only the first), and a node whose calls average under
``HANDOFF_NS`` stays with its worker (the average, not the total against a threshold shrinking with
the count)."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline import Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.node import NodeRuntime
from pipeline.scheduler import HANDOFF_NS
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate
from tests.pipeline.interleave import functions_on
from tests.pipeline.test_scheduling import TestSlowSink  # noqa: F401 - registers it
from tests.pipeline.test_direct_hop import TestSlowInside, clock  # noqa: F401 - registers it; the fixture

WAIT_S = 10.0


def test_a_lone_worker_keeps_a_node_with_long_calls_and_steps_it_before_the_queue(clock):  # noqa: F811
    # hold keeps the one worker while slow gets two packets; then slow's call at 0 (long on the
    # fake clock) makes b1 and b2 ready: b1 runs inline, b2 is queued; slow, with a packet left,
    # stays with the worker: its call at 1 comes before b2's at 0 (b2 is deeper: the queue would
    # give it first)
    hold = Gate()
    g = Graph.from_dict({
        "inputs": ["h", "in"], "side_packets": {"hold": None, "clock": None},
        "nodes": [
            {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
             "side_inputs": {"GATE": "hold"}},
            {"calculator": "TestSlowInside", "name": "slow", "inputs": ["in"], "outputs": ["x"],
             "side_inputs": {"CLOCK": "clock"}},
            {"calculator": "PassThrough", "name": "b1", "inputs": ["x"], "outputs": ["y1"]},
            {"calculator": "PassThrough", "name": "b2", "inputs": ["x"], "outputs": ["y2"]},
        ]}, threads=1)
    for s in ("hh", "y1", "y2"):
        g.observe(s, lambda p: None)
    g.start({"hold": hold, "clock": clock}, trace=True)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            g.add_packet("h", "x", 0)
            assert hold.entered.wait(WAIT_S), "hold's call never began"
            g.add_packet("in", "a", 0)
            g.add_packet("in", "b", 1)
            hold.release()
            g.close_all_inputs()
            g.wait(WAIT_S)
        finally:
            hold.release()
    calls = [(node, t) for node, _thread, t, _start, _end in g.trace_events() if node != "hold"]
    assert calls == [("slow", 0), ("b1", 0), ("slow", 1), ("b1", 1), ("b2", 0), ("b2", 1)], calls


def test_a_failure_of_the_framework_in_a_step_fails_the_run_naming_the_node(monkeypatch, no_thread_leak):
    # the worker's last guard: a step that raises (a bug in the framework itself, made here by
    # replacing bad's step) stops the run with the node named and the phase "scheduler"; the
    # worker goes on taking nodes (the close below runs)
    step = NodeRuntime.step

    def failing_step(self, ready, trace):
        if self.name == "bad":
            raise RuntimeError("a bug in the framework")
        return step(self, ready, trace)

    monkeypatch.setattr(NodeRuntime, "step", failing_step)
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "bad", "inputs": ["in"], "outputs": ["o"]}]}, threads=1)
    g.observe("o", lambda p: None)
    g.start()
    g.add_packet("in", "x", 0)
    with pytest.raises(GraphRunError) as ei:
        g.wait(WAIT_S)
    err = ei.value
    assert (err.node, err.phase, err.timestamp) == ("bad", "scheduler", None), str(err)
    assert str(err).startswith("node 'bad' (PassThrough) failed in scheduler: RuntimeError: a bug in the framework")
    assert isinstance(err.cause, RuntimeError)


def test_a_sink_queued_when_the_shutdown_stops_the_workers_still_writes(no_thread_leak):
    # the one worker is in hold's call when the run is cancelled; the writer (a sink) is on the
    # executor's queue with a packet. The shutdown stops the executor (no more work taken, but
    # what is queued is not dropped): once it waits for the worker, hold is let go, and the
    # worker still runs the writer, which writes what reached it, then is closed
    hold, sink, log = Gate(), Gate(), []
    sink.release()  # the writer's calls do not wait
    g = Graph.from_dict({"inputs": ["h", "in"], "side_packets": {"hold": None, "sink": None, "log": None},
                         "nodes": [
        {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
         "side_inputs": {"GATE": "hold"}},
        {"calculator": "TestSlowSink", "name": "writer", "inputs": ["in"], "side_inputs": {"GATE": "sink", "LOG": "log"}},
    ]}, threads=1)
    g.observe("hh", lambda p: None)
    g.start({"hold": hold, "sink": sink, "log": log})
    waiter = threading.current_thread()

    def release_hold_once_joining():
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not _waits_in(waiter, "join"):
            time.sleep(0.002)
        hold.release()

    helper = threading.Thread(target=release_hold_once_joining)
    try:
        g.add_packet("h", "x", 0)
        assert hold.entered.wait(WAIT_S), "hold's call never began"
        g.add_packet("in", "frame", 0)
        helper.start()
        g.cancel()
        g.wait(WAIT_S)
    finally:
        hold.release()
        if helper.ident is not None:
            helper.join(WAIT_S)
    assert log == ["frame", "closed"], log


def test_two_workers_busy_at_once_leave_the_graph_idle_after(no_thread_leak):
    # both workers in a call at the same time, then both done: the executor counts none busy
    first, second = Gate(), Gate()
    g = Graph.from_dict({"inputs": ["a", "b"], "side_packets": {"first": None, "second": None}, "nodes": [
        {"calculator": "TestBlocker", "name": "one", "inputs": ["a"], "outputs": ["x"], "side_inputs": {"GATE": "first"}},
        {"calculator": "TestBlocker", "name": "two", "inputs": ["b"], "outputs": ["y"], "side_inputs": {"GATE": "second"}},
    ]}, threads=2)
    got = []
    g.observe("x", got.append)
    g.observe("y", got.append)
    g.start({"first": first, "second": second})
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            g.add_packet("a", "p", 0)
            g.add_packet("b", "q", 0)
            assert first.entered.wait(WAIT_S) and second.entered.wait(WAIT_S), "the two calls never ran at once"
            first.release()
            second.release()
            g.wait_until_idle(WAIT_S)
            assert len(got) == 2
            g.close_all_inputs()
            g.wait(WAIT_S)
        finally:
            first.release()
            second.release()


def test_nodes_made_ready_on_another_executor_run_only_there(no_thread_leak):
    # src's worker (executor a) makes b1 and b2 ready, both on executor b, whose one worker is
    # held: they wait for it; none of their calls runs on a's worker
    hold = Gate()
    g = Graph.from_dict({
        "inputs": ["h", "in"], "side_packets": {"hold": None},
        "executors": {"a": {"threads": 1}, "b": {"threads": 1}},
        "nodes": [
            {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
             "side_inputs": {"GATE": "hold"}, "executor": "b"},
            {"calculator": "PassThrough", "name": "src", "inputs": ["in"], "outputs": ["x"], "executor": "a"},
            {"calculator": "PassThrough", "name": "b1", "inputs": ["x"], "outputs": ["y1"], "executor": "b"},
            {"calculator": "PassThrough", "name": "b2", "inputs": ["x"], "outputs": ["y2"], "executor": "b"},
        ]})
    got = []
    for s in ("hh", "y1", "y2"):
        g.observe(s, lambda p, s=s: got.append((s, p.timestamp)))
    g.start({"hold": hold}, trace=True)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            g.add_packet("h", "x", 0)
            assert hold.entered.wait(WAIT_S), "hold's call never began"
            g.add_packet("in", "p", 0)
            _wait_until("src's call", lambda: any(e[0] == "src" for e in g.trace_events()))
            hold.release()
            g.close_all_inputs()
            g.wait(WAIT_S)
        finally:
            hold.release()
    threads = {(node, thread) for node, thread, _t, _s, _e in g.trace_events()}
    assert threads == {("hold", "vpipe-b-0"), ("src", "vpipe-a-0"), ("b1", "vpipe-b-0"), ("b2", "vpipe-b-0")}, threads
    assert sorted(got) == [("hh", 0), ("y1", 0), ("y2", 0)]


def _waits_in(thread: threading.Thread, function: str) -> bool:
    """Whether ``thread`` is blocked on a condition inside ``function``."""
    names = functions_on(thread)
    return "wait" in names and function in names


def _wait_until(what: str, predicate) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.002)


@register
class TestHeldSpin(Calculator):
    """Forwards its input; each call lasts SPIN ns on the fake CLOCK; a call at a timestamp in
    HOLDS (``{t: Gate}``) records its thread in the gate (``thread``) and waits for it first."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(object)}
    side_inputs = {"CLOCK": SideInput(object), "SPIN": SideInput(int), "HOLDS": SideInput(dict)}

    def process(self, ctx):
        gate = ctx.side["HOLDS"].get(ctx.timestamp)
        if gate is not None:
            gate.thread = threading.current_thread().name
            gate.entered.set()
            if not gate.released.wait(WAIT_S):
                raise TimeoutError("test gate was never released")
        ctx.side["CLOCK"].advance(ctx.side["SPIN"])
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


def _slow_then_b(threads: int) -> Graph:
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {
        "clock": None, "spin": None, "slow_holds": None, "b_holds": None, "zero": None}, "nodes": [
        {"calculator": "TestHeldSpin", "name": "slow", "inputs": ["in"], "outputs": ["x"],
         "side_inputs": {"CLOCK": "clock", "SPIN": "spin", "HOLDS": "slow_holds"}},
        {"calculator": "TestHeldSpin", "name": "b", "inputs": ["x"], "outputs": ["y"],
         "side_inputs": {"CLOCK": "clock", "SPIN": "zero", "HOLDS": "b_holds"}},
    ]}, threads=threads)
    g.observe("y", lambda p: None)
    return g


def _all_workers_idle(g: Graph) -> None:
    ex = g._sched.executors["default"]
    _wait_until("every worker idle", lambda: all(_waits_in(th, "_work") for th in ex.threads))


def test_a_node_with_long_calls_is_handed_to_one_of_several_idle_workers(clock, no_thread_leak):  # noqa: F811
    # Three workers, all idle. slow's call at 0 (3x HANDOFF_NS on the fake clock) waits until 1 is
    # queued; then it makes b ready, which its worker runs inline (held in b's call at 0), and
    # slow, with a packet left and two workers idle, goes back to the executor's queue: another
    # worker makes its call at 1 while the first is still held in b.
    slow0, slow1, b0 = Gate(), Gate(), Gate()
    g = _slow_then_b(3)
    g.start({"clock": clock, "spin": 3 * HANDOFF_NS, "slow_holds": {0: slow0, 1: slow1}, "b_holds": {0: b0},
             "zero": 0}, trace=True)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            _all_workers_idle(g)
            g.add_packet("in", "p", 0)
            assert slow0.entered.wait(WAIT_S), "slow's call at 0 never began"
            g.add_packet("in", "q", 1)
            slow0.release()
            assert b0.entered.wait(WAIT_S), "b's call at 0 never began"
            assert slow1.entered.wait(WAIT_S), "slow's call at 1 waited for the worker held in b"
            assert slow1.thread != slow0.thread
        finally:
            for gate in (slow0, slow1, b0):
                gate.release()
        g.close_all_inputs()
        g.wait(WAIT_S)


def test_a_node_whose_calls_average_under_the_threshold_stays_with_its_worker(clock, no_thread_leak):  # noqa: F811
    # Two workers. slow's calls last 0.6x HANDOFF_NS, each measured (tracing): 0.6x on average,
    # so after its call at 1, with 2 queued and the other worker idle, it stays with its worker,
    # which runs b's call at 1 inline (held there): nothing else is queued or running then.
    slow0, slow2, b1 = Gate(), Gate(), Gate()
    g = _slow_then_b(2)
    g.start({"clock": clock, "spin": 6 * HANDOFF_NS // 10, "slow_holds": {0: slow0, 2: slow2},
             "b_holds": {1: b1}, "zero": 0}, trace=True)
    ex = g._sched.executors["default"]
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            g.add_packet("in", "p", 0)
            assert slow0.entered.wait(WAIT_S), "slow's call at 0 never began"
            g.add_packet("in", "q", 1)
            g.add_packet("in", "r", 2)
            slow0.release()
            assert b1.entered.wait(WAIT_S), "b's call at 1 never began"
            with ex.lock:
                queued_or_busy = len(ex.heap) + ex.busy
            assert queued_or_busy == 1 and not slow2.entered.is_set(), "slow was handed on"
        finally:
            for gate in (slow0, slow2, b1):
                gate.release()
        g.close_all_inputs()
        g.wait(WAIT_S)
    assert {thread for node, thread, *_ in g.trace_events() if node == "slow"} == {slow0.thread}
