"""The edges of a node's input queue, as what reaches the nodes shows them: the bound of an
interior ``reject`` queue after a refused packet (a join downstream settles the timestamp at once,
and a later packet is still allowed), the bound of a queue of one packet (a join behind a node
that emitted nothing is not kept waiting), the full flag of a ``block`` queue (a ``reject`` queue
throttles no source; one that grew past its capacity keeps its source throttled until it is below
it, and frees it once), a simple node that finished no longer counted as working, a sink draining
what reached it in a stopped run, and the process time of concurrent calls. Written against the
survivors of a mutation run of pipeline/node.py (``_deliver_full``, ``queue_popped``,
``_simple_idle``, ``_process_concurrent``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import logging
import queue
import threading
import time

import pytest

from pipeline import STOP, Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.node import NodeRuntime
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate
from tests.pipeline.test_scheduling import beside_a_held_node, holding, relief_warnings

WAIT_S = 10.0  # a bound for what must happen at once: reaching it is the failure


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def path(request, monkeypatch):
    monkeypatch.setattr(NodeRuntime, "fast_path", request.param)
    return request.param


class Turnstile:
    """A test's hold on a TestTurnstile: each call signals ``entered`` and waits for one permit."""

    def __init__(self, log: list):
        self.entered = threading.Semaphore(0)
        self.permits = threading.Semaphore(0)
        self.log = log

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=WAIT_S), "the next call never began"

    def let_one_through(self) -> None:
        self.permits.release()

    def open(self) -> None:
        for _ in range(100):
            self.permits.release()


@register
class TestTurnstile(Calculator):
    """A sink whose each call waits for one permit of its TURN side packet (a ``Turnstile``),
    then logs ``("done", t)`` there."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"TURN": SideInput(Turnstile)}

    def process(self, ctx):
        turn = ctx.side["TURN"]
        turn.entered.release()
        if not turn.permits.acquire(timeout=WAIT_S):
            raise TimeoutError("the test never let this call through")
        turn.log.append(("done", ctx.timestamp))


@register
class TestTokenSource(Calculator):
    """A source emitting one packet (value = timestamp) per token taken from its TOKENS side packet
    (a ``queue.Queue`` of timestamps; None stops it); logs ``("emitted", t)`` in LOG after each."""

    outputs = {"OUT": Output(int)}
    side_inputs = {"TOKENS": SideInput(queue.Queue), "LOG": SideInput(list)}

    def process(self, ctx):
        try:
            t = ctx.side["TOKENS"].get(timeout=WAIT_S)
        except queue.Empty:
            raise TimeoutError("the test never gave this source a token") from None
        if t is None:
            return STOP
        ctx.outputs["OUT"].add(t, t)
        ctx.side["LOG"].append(("emitted", t))
        return None


@register
class TestSleepy(Calculator):
    """Each call sleeps 5 ms (a call of known length, not a wait for a thread) and appends the
    length it measured itself, in ns, to its side packet SPENT; emits the value."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"SPENT": SideInput(list)}

    def process(self, ctx):
        start = time.perf_counter_ns()
        time.sleep(0.005)
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)
        ctx.side["SPENT"].append(time.perf_counter_ns() - start)


def seen(g: Graph, stream: str, t: int) -> threading.Event:
    """An event set once ``stream`` carried a packet at t (observers are told after its queues)."""
    ev = threading.Event()
    g.observe(stream, lambda p: ev.set() if p.timestamp == t else None)
    return ev


def wait_in(thread_name: str, function: str, unless: threading.Event, timeout: float = WAIT_S) -> bool:
    """Whether the thread named ``thread_name`` is inside ``function`` within ``timeout`` s
    (False at once when ``unless`` is set: what the thread would do after it has happened)."""
    import re
    import sys

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not unless.is_set():
        th = next((t for t in threading.enumerate() if t.name == thread_name), None)
        frame = sys._current_frames().get(th.ident) if th is not None else None
        while frame is not None:
            name = frame.f_code.co_name  # (under mutmut: xǁSchedulerǁthrottle__mutmut_orig, _1, ...)
            if name == function or re.search(f"ǁ{function}__mutmut_(orig|[0-9]+)$", name):
                return True
            frame = frame.f_back
        time.sleep(0.002)
    return False


# -- the bound of a queue -----------------------------------------------------------------------

def test_a_refused_packet_moves_its_queues_bound_one_past_it(path, no_thread_leak):
    """A packet refused by a full ``reject`` queue still tells the consumer that nothing comes at
    its timestamp: once the consumer has taken what was queued, its output's bound passes the
    refused timestamp (offset contract) and a join on that output settles it at once, with that
    input empty; the next packet, one later, is still taken as usual."""
    gate = Gate()
    spec = {
        "inputs": ["in"], "executors": {"slow": {"threads": 1}}, "side_packets": {"gate": None},
        "nodes": [
            {"calculator": "PassThrough", "name": "producer", "inputs": ["in"], "outputs": ["mid"]},
            {"calculator": "TestBlocker", "name": "slow", "executor": "slow",
             "inputs": {"IN": {"stream": "mid", "capacity": 1, "overflow": "reject"}},
             "outputs": ["o"], "side_inputs": {"GATE": "gate"}},
            {"calculator": "TestJoin", "name": "join", "inputs": {"A": "in", "B": "o"}, "outputs": ["j"]},
        ],
    }
    with GraphRun(spec, collect=["j"], threads=2) as r:
        refused = seen(r.graph, "mid", 2)
        r.start({"gate": gate})
        try:
            r.feed("in", [(0, 0)])
            assert gate.entered.wait(WAIT_S), "packet 0 never reached the slow node"
            r.feed("in", [(1, 1), (2, 2)])  # 1 is queued; 2 finds the queue full
            assert refused.wait(WAIT_S), "the producer never sent 2"
        finally:
            gate.release()
        r.graph.wait_until_idle(WAIT_S)
        # slow's queue bound is 3 after the refused 2: its output's bound too, after its call at 1
        assert r.out["j"] == [(0, (0, 0)), (1, (1, 1)), (2, (2, None))]
        r.feed("in", [(3, 3)])  # one past the refused packet: slow emits it at 3
        r.finish()
    assert r.out["j"] == [(0, (0, 0)), (1, (1, 1)), (2, (2, None)), (3, (3, 3))]
    assert r.graph.stats()["slow"]["drops"] == 1


def test_a_queue_of_one_packet_moves_its_bound_past_each_packet(path, threads):
    """Each packet into a queue of one fills it (the queue's full path): its bound still moves one
    past the packet, so a node that emits nothing for it still moves its output's bound there
    (offset contract) and the join behind settles the timestamp as soon as it is fed."""
    spec = {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "TestEvenOnly", "name": "even", "inputs": {"IN": {"stream": "in", "capacity": 1}},
             "outputs": {"OUT": "ev"}},
            {"calculator": "TestJoin", "name": "join", "inputs": {"A": "in", "B": "ev"}, "outputs": {"OUT": "j"}},
        ],
    }
    with GraphRun(spec, collect=["j"], threads=threads) as r:
        r.start()
        r.feed("in", [(t, t) for t in range(6)], idle=True)
        assert [t for t, _ in r.out["j"]] == list(range(6))
        r.finish()
    assert r.out["j"] == [(t, (t, t if t % 2 == 0 else None)) for t in range(6)]


# -- the full flag of a queue -----------------------------------------------------------------------

def _throttle_graph(overflow: str) -> Graph:
    return Graph.from_dict({
        "executors": {"slow": {"threads": 1}}, "side_packets": {"turn": None, "tokens": None, "log": None},
        "inputs": ["in"],
        "nodes": [
            {"calculator": "TestTokenSource", "name": "src", "outputs": ["s"],
             "side_inputs": {"TOKENS": "tokens", "LOG": "log"}},
            {"calculator": "PassThrough", "name": "producer", "inputs": ["in"], "outputs": ["mid"]},
            {"calculator": "TestTurnstile", "name": "slow", "executor": "slow",
             "inputs": {"IN": {"stream": "mid", "capacity": 1, "overflow": overflow}},
             "side_inputs": {"TURN": "turn"}},
        ],
    }, threads=1)


@pytest.mark.parametrize("overflow", ["reject", "drop_oldest"])
def test_a_full_queue_that_drops_throttles_no_source(path, overflow, no_thread_leak, caplog):
    """Only a full ``block`` queue throttles the sources: while a ``reject`` or ``drop_oldest``
    queue of one is full (its node held in a call), a source goes on sending; the dropping queue
    takes or refuses what reaches it, and the run ends with no stall warning."""
    tokens, log = queue.Queue(), []
    turn = Turnstile(log)
    g = _throttle_graph(overflow)
    g.observe("s", lambda p: None)
    sent = seen(g, "s", 100)
    queued = seen(g, "mid", 1)
    with caplog.at_level(logging.WARNING, logger="vpipe"), GraphRun(g, timeout=WAIT_S):  # (ends a failed test's run)
        g.start({"turn": turn, "tokens": tokens, "log": log})
        try:
            g.add_packet("in", 0, 0)
            turn.wait_entered()
            g.add_packet("in", 1, 1)
            assert queued.wait(WAIT_S), "the producer never sent 1"  # slow's queue of one is full now
            tokens.put(100)
            assert sent.wait(WAIT_S), f"a full {overflow} queue throttled the source"
            tokens.put(None)
            turn.open()
            g.close_all_inputs()
            g.wait(WAIT_S)
        finally:
            tokens.put(None)
            turn.open()
    assert log.count(("emitted", 100)) == 1
    assert [t for kind, t in log if kind == "done"] == [0, 1]
    assert relief_warnings(caplog) == []


def test_a_block_queue_past_its_capacity_throttles_until_below_it_then_frees_once(path, no_thread_leak, caplog):
    """An interior node never blocks, so a ``block`` queue of one behind it may hold two packets:
    it is full (its source throttled) until it is below its capacity again, not as soon as one is
    taken, and it frees the source once: the source then goes on, and the run ends with no stall
    warning (a queue counted full twice would hold the source until nothing can run)."""
    tokens, log = queue.Queue(), []
    turn = Turnstile(log)
    g = _throttle_graph("block")
    g.observe("s", lambda p: None)
    sent = seen(g, "s", 100)
    both = seen(g, "mid", 2)
    with caplog.at_level(logging.WARNING, logger="vpipe"), GraphRun(g, timeout=WAIT_S):  # (ends a failed test's run)
        g.start({"turn": turn, "tokens": tokens, "log": log})
        try:
            g.add_packet("in", 0, 0)
            turn.wait_entered()
            g.add_packet("in", 1, 1)  # slow's queue of one is full: 1
            g.add_packet("in", 2, 2)  # and past its capacity: 1, 2 (the producer is not blocked)
            assert both.wait(WAIT_S), "the producer never sent 2"
            turn.let_one_through()  # slow takes 1: its queue holds 2, still full
            turn.wait_entered()
            tokens.put(100)
            assert wait_in("vpipe-source-src", "throttle", unless=sent), "the source was not throttled by a full queue"
            assert ("emitted", 100) not in log and not sent.is_set(), "a full queue let the source go on"
            turn.let_one_through()  # slow ends its call at 1, takes 2: the queue has room
            assert sent.wait(WAIT_S), "the source stayed throttled after the queue had room"
            tokens.put(101)
            deadline = time.monotonic() + WAIT_S
            while ("emitted", 101) not in log and time.monotonic() < deadline:
                time.sleep(0.002)  # bounded: the source's next packet
            assert ("emitted", 101) in log, "the source was throttled again by a queue with room"
            tokens.put(None)
            turn.open()
            g.close_all_inputs()
            g.wait(WAIT_S)
        finally:
            tokens.put(None)
            turn.open()
    assert log.index(("emitted", 100)) > log.index(("done", 1))
    assert [t for kind, t in log if kind == "done"] == [0, 1, 2]
    assert relief_warnings(caplog) == []


# -- a simple node idle, finished, or stopped --------------------------------------------------------

def test_a_simple_node_that_finished_is_not_working(no_thread_leak):
    """A simple node whose input closed has finished: the graph is idle while its other inputs
    stay open (a finished node keeps its claim for good, and is not counted as working)."""
    spec = {"inputs": ["a", "b"], "nodes": [
        {"calculator": "PassThrough", "name": "x", "inputs": ["a"], "outputs": ["xo"]},
        {"calculator": "PassThrough", "name": "y", "inputs": ["b"], "outputs": ["yo"]}]}
    with GraphRun(spec, collect=["xo", "yo"], threads=1, timeout=WAIT_S) as r:
        r.start()
        r.feed("a", [(0, "a0")])
        r.graph.close_input("a")  # x takes 0, then finishes (its one input is done)
        r.graph.wait_until_idle(WAIT_S)
        assert r.out["xo"] == [(0, "a0")]
        r.feed("b", [(1, "b1")], idle=True)
        assert r.out["yo"] == [(1, "b1")]
        r.finish()


def test_a_sink_on_the_fast_path_writes_what_reached_it_when_cancelled(no_thread_leak):
    """Cancelled while packets wait in its queue, a simple sink (one input, no outputs) still
    takes each of them (it writes what reached it until the run is halted)."""
    gate, calls = Gate(), []
    g = beside_a_held_node({"calculator": "TestLogSink", "name": "writer", "inputs": {"IN": "a"},
                            "side_inputs": {"CALLS": "calls"}}, inputs=["a"])
    g.start({"gate": gate, "calls": calls})
    assert {n.name: n for n in g._nodes}["writer"].simple
    with holding(g, gate):
        for t in (1, 2, 3):
            g.add_packet("a", t, t)
        g.cancel()
    g.wait(WAIT_S)
    assert calls == [1, 2, 3]


@register
class TestLogSink(Calculator):
    """A sink: appends each call's timestamp to its side packet CALLS."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"CALLS": SideInput(list)}

    def process(self, ctx):
        ctx.side["CALLS"].append(ctx.timestamp)


class EvenGate(Gate):
    """A Gate for TestHoldOnEven: ``entered_at`` is the timestamp of the call held."""

    entered_at = None


@register
class TestHoldOnEven(Calculator):
    """Emits nothing for an odd value (its output's bound still moves past it: offset contract);
    holds a call with an even one until its GATE is released, then emits it."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    side_inputs = {"GATE": SideInput(EvenGate)}

    def process(self, ctx):
        v = ctx.inputs["IN"].value
        if v % 2:
            return
        gate = ctx.side["GATE"]
        gate.entered_at = ctx.timestamp
        gate.entered.set()
        if not gate.released.wait(WAIT_S):
            raise TimeoutError("test gate was never released")
        ctx.outputs["OUT"].add(v)


def test_a_stopped_sink_woken_by_a_bound_still_takes_a_later_packet(no_thread_leak):
    """In a cancelled run, a simple sink stepped for a bound only (no packet queued) lets go of
    its claim; a packet its producer emits afterwards (a call in progress at the cancel) wakes it
    again, and it writes it (sinks write what reached them until the run is halted)."""
    hold, producer, calls = Gate(), EvenGate(), []
    g = Graph.from_dict({
        "inputs": ["hold", "in"], "executors": {"one": {"threads": 1}, "two": {"threads": 1}},
        "side_packets": {"gate": None, "producer": None, "calls": None},
        "nodes": [
            {"calculator": "TestBlocker", "inputs": ["hold"], "outputs": ["held"],
             "side_inputs": {"GATE": "gate"}, "executor": "one"},
            {"calculator": "TestHoldOnEven", "name": "producer", "inputs": {"IN": "in"}, "outputs": {"OUT": "p"},
             "side_inputs": {"GATE": "producer"}, "executor": "two"},
            {"calculator": "TestLogSink", "name": "writer", "inputs": {"IN": "p"},
             "side_inputs": {"CALLS": "calls"}, "executor": "one"},
        ],
    }, threads=1)
    g.observe("held", lambda p: None)
    with GraphRun(g, timeout=WAIT_S):
        g.start({"gate": hold, "producer": producer, "calls": calls})
        writer = {n.name: n for n in g._nodes}["writer"]
        assert writer.simple and writer.sink
        try:
            with holding(g, hold):  # the writer's executor is held
                g.add_packet("in", 1, 1)  # nothing emitted: the writer's bound moves to 2 (it is woken)
                g.add_packet("in", 2, 2)
                assert producer.entered.wait(WAIT_S) and producer.entered_at == 2, "the producer never held 2"
                g.cancel()
            # the writer steps for its bound: nothing queued, the run stopping: it lets go
            deadline = time.monotonic() + WAIT_S
            while writer.is_active() and time.monotonic() < deadline:
                time.sleep(0.002)  # bounded: the writer's step on the released executor
            assert not writer.is_active(), "the writer never let go of its claim"
            producer.release()  # the producer's call at 2 emits 2 to the writer
            deadline = time.monotonic() + WAIT_S
            while not calls and time.monotonic() < deadline:
                time.sleep(0.002)  # bounded: the writer's call (before the shutdown ends the workers)
            assert calls == [2], "the writer never took the packet that reached it"
        finally:
            producer.release()
        g.wait(WAIT_S)
    assert calls == [2]


# -- concurrent calls -----------------------------------------------------------------------------

def test_concurrent_calls_are_each_measured_once(no_thread_leak):
    """With ``max_in_flight > 1`` every call is measured: the node's process time is the sum of
    its calls, at least what the calls measured themselves."""
    spent = []
    spec = {"inputs": ["in"], "side_packets": {"spent": None}, "nodes": [
        {"calculator": "TestSleepy", "name": "sleepy", "inputs": ["in"], "outputs": ["o"],
         "side_inputs": {"SPENT": "spent"}, "max_in_flight": 2}]}
    with GraphRun(spec, collect=["o"], threads=2, timeout=WAIT_S) as r:
        r.run({"in": [(t, t) for t in range(4)]}, {"spent": spent})
    assert [t for t, _ in r.out["o"]] == [0, 1, 2, 3]
    stats = r.graph.stats()["sleepy"]
    assert stats["count"] == 4 and len(spent) == 4
    assert stats["time_s"] * 1e9 >= sum(spent), (stats, spent)
