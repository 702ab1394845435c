"""Sources held by a full ``block`` queue, as a user sees them: a clean stop asked for while a source
is throttled ends the source there, closing its output, so what is queued drains and the run ends
DONE at once (not when the drain bound cuts it short); a queue a direct hop's producer fills
throttles the source as soon as it is full; a source throttled while a call still runs is let go
(the stall relief) when that call ends and the executor goes idle. Written against the survivors
of a mutation run of pipeline/scheduler.py and pipeline/streams.py (``Scheduler._source_loop``,
``Scheduler.executor_idle``, ``DirectStream._enqueue``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import threading
import time

from pipeline import STOP, Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.run_state import State
from pipeline.streams import DirectStream
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate
from tests.pipeline.interleave import functions_on
from tests.pipeline.test_scheduling import wait_in

WAIT_S = 10.0  # a bound for what must happen at once: reaching it is the failure
DRAIN_S = 5.0  # the drain bound: a drain that ends only when it cuts it short failed


def test_a_clean_stop_of_a_throttled_source_closes_its_output_and_the_drain_ends(no_thread_leak):
    gate = Gate()
    g = Graph.from_yaml("""
side_packets: {gate: null}
nodes:
  - calculator: TestSeq
    outputs: [n]
    options: {timestamps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}
  - calculator: TestBlocker
    inputs: {IN: {stream: n, capacity: 2}}
    outputs: [m]
    side_inputs: {GATE: gate}
""", threads=1, drain_timeout=DRAIN_S)
    got = []
    g.observe("m", lambda p: got.append(p.timestamp))
    g.start({"gate": gate})
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            assert gate.entered.wait(WAIT_S), "the first packet never reached the blocked node"
            wait_in("vpipe-source-TestSeq", "throttle")
            start = time.monotonic()
            g.request_stop()  # the source leaves the throttle to a stopped run: it ends there
            gate.release()
            g.wait(WAIT_S + DRAIN_S)
            took = time.monotonic() - start
        finally:
            gate.release()
    assert g.state is State.DONE and not g.drain_expired, (g.state, g.drain_expired, f"{took:.2f} s")
    # the packet in the blocked call and those queued behind it (one or two: the source may have
    # been throttled before or after the first call took its packet out) drained; nothing after
    assert got == list(range(len(got))) and 2 <= len(got) <= 3, got
    assert took < DRAIN_S, f"the drain took {took:.2f} s"


@register
class TestLockstepSource(Calculator):
    """A source emitting 0, 1, ... COUNT - 1 (value = timestamp), one a call; each call returns
    only once HANDED (a ``threading.Semaphore``) was released for its packet, so each call
    begins (and its throttle is looked at) after the last packet went on."""

    outputs = {"OUT": Output(int)}
    side_inputs = {"COUNT": SideInput(int), "HANDED": SideInput(object)}

    def open(self, ctx):
        self.k = 0

    def process(self, ctx):
        if self.k == ctx.side["COUNT"]:
            return STOP
        ctx.outputs["OUT"].add(self.k, self.k)
        self.k += 1
        if not ctx.side["HANDED"].acquire(timeout=WAIT_S):
            raise TimeoutError("the packet was never handed on")
        return None


@register
class TestPassesOnThrottled(Calculator):
    """Forwards its input, then releases HANDED (a ``threading.Semaphore``)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"HANDED": SideInput(object)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)
        ctx.side["HANDED"].release()


def _throttled(thread_name: str) -> None:
    """Waits (bounded) until the thread named ``thread_name`` waits in ``Scheduler.throttle`` for
    a full queue to get room (which it does only once a queue was counted full)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        th = next((t for t in threading.enumerate() if t.name == thread_name), None)
        names = functions_on(th)
        if "wait_until" in names and "throttle" in names:
            return
        time.sleep(0.005)
    raise AssertionError(f"thread {thread_name!r} never waited in throttle()")


def test_a_queue_filled_behind_a_direct_hop_throttles_the_source_when_full(no_thread_leak):
    # src -> hand (not a source) -> blocked (a direct hop): blocked holds a worker in its call at
    # 0; hand, on the other worker, sends 1 and 2 to blocked's queue (capacity 2, block), which
    # is then full: src is held before its next call, with two packets queued, not three
    gate, handed = Gate(), threading.Semaphore(0)
    n = 6
    g = Graph.from_dict({"side_packets": {"gate": None, "handed": None, "count": None}, "nodes": [
        {"calculator": "TestLockstepSource", "name": "src", "outputs": ["a"],
         "side_inputs": {"COUNT": "count", "HANDED": "handed"}},
        {"calculator": "TestPassesOnThrottled", "name": "hand", "inputs": ["a"], "outputs": ["b"],
         "side_inputs": {"HANDED": "handed"}},
        {"calculator": "TestBlocker", "name": "blocked", "inputs": {"IN": {"stream": "b", "capacity": 2}},
         "outputs": ["c"], "side_inputs": {"GATE": "gate"}},
    ]}, threads=2)
    got = []
    g.observe("c", lambda p: got.append(p.timestamp))
    g.start({"gate": gate, "handed": handed, "count": n})
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            assert type(g._streams["b"]) is DirectStream
            assert gate.entered.wait(WAIT_S), "the first packet never reached the blocked node"
            _throttled("vpipe-source-src")
            stats = g.stats()
            assert stats["blocked"]["queue_depth"] == 2 and stats["src"]["count"] == 3, stats
            gate.release()
            g.wait(WAIT_S)
        finally:
            gate.release()
    assert got == list(range(n))


@register
class TestSeqAfterGo(Calculator):
    """A source emitting 0 .. COUNT - 1 (value = timestamp), one a call, once GO (an Event) is set."""

    outputs = {"OUT": Output(int)}
    side_inputs = {"COUNT": SideInput(int), "GO": SideInput(threading.Event)}

    def open(self, ctx):
        self.k = 0

    def process(self, ctx):
        if not ctx.side["GO"].wait(WAIT_S):
            raise TimeoutError("the test never let the source go")
        if self.k == ctx.side["COUNT"]:
            return STOP
        ctx.outputs["OUT"].add(self.k, self.k)
        self.k += 1
        return None


def test_a_throttled_source_is_let_go_when_the_last_busy_worker_goes_idle(caplog, no_thread_leak):
    # join's A (capacity 2) fills and waits for B, which never advances; the source is throttled
    # while hold's call still runs (something can run: no relief yet). When hold's call ends the
    # executor goes idle with one full queue: that wakes the source, which finds nothing can run
    # and goes on, with one warning
    import logging

    from tests.pipeline.test_scheduling import RELIEF, relief_warnings

    hold, go, last = Gate(), threading.Event(), threading.Event()
    n = 5
    g = Graph.from_dict({"name": "held", "inputs": ["b", "h"],
                         "side_packets": {"hold": None, "go": None, "count": None}, "nodes": [
        {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"], "side_inputs": {"GATE": "hold"}},
        {"calculator": "TestSeqAfterGo", "name": "src", "outputs": ["a"], "side_inputs": {"COUNT": "count", "GO": "go"}},
        {"calculator": "TestJoin", "name": "join", "inputs": {"A": {"stream": "a", "capacity": 2}, "B": "b"},
         "outputs": ["j"]},
    ]}, threads=1)
    got = []
    g.observe("hh", lambda p: None)
    g.observe("j", lambda p: got.append(p.timestamp))
    g.observe("a", lambda p: last.set() if p.timestamp == n - 1 else None)
    with caplog.at_level(logging.WARNING, logger="vpipe"):
        g.start({"hold": hold, "go": go, "count": n})
        with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
            try:
                g.add_packet("h", "x", 0)
                assert hold.entered.wait(WAIT_S), "hold's call never began"
                go.set()
                _throttled("vpipe-source-src")
                assert relief_warnings(caplog) == [], "let go while hold's call could still run"
                hold.release()
                assert last.wait(WAIT_S), "the throttled source was never let go on"
                g.close_input("b")
                g.close_input("h")
                g.wait(WAIT_S)
            finally:
                hold.release()
                go.set()
    assert got == list(range(n))
    assert relief_warnings(caplog) == [RELIEF.format("held")]
