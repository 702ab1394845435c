"""The scheduler and the input policies as a user sees them: throttled sources going on (after
room, after a stall, after a cancel), idleness while a source holds a packet, the order and the
bounds an ``immediate`` node is given, queues that were full getting room again under every
policy, and ``latest``'s drop count over a run. Written against mutants of pipeline/scheduler.py
and pipeline/policies.py that the other tests let through (docs/testing.md, "Mutation testing")."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from pipeline import STOP, Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, Timestamp, register
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate

RELIEF = ("graph '{}': every source is throttled by a full queue while nothing can run; letting "
          "sources go on (a sync input waits on a stream that does not advance?)")


@register
class TestRecordCalls(Calculator):
    """Appends, for each call, ``(timestamp, the inputs present, input_bound(A), input_bound(B))``
    to its side packet CALLS; emits nothing."""

    inputs = {"A": Input(Any, optional=True), "B": Input(Any, optional=True)}
    side_inputs = {"CALLS": SideInput(list)}

    def process(self, ctx):
        present = tuple(tag for tag in ("A", "B") if ctx.get(tag) is not None)
        ctx.side["CALLS"].append((ctx.timestamp, present, ctx.input_bound("A"), ctx.input_bound("B")))


@register
class TestRecordBoundCalls(TestRecordCalls):
    """TestRecordCalls with ``process_timestamp_bounds``: the bounds it reads are the recorded ones."""

    process_timestamp_bounds = True


@register
class TestEmitOnB(Calculator):
    """Emits B's value at the call's timestamp when B has a packet; nothing for A."""

    inputs = {"A": Input(Any, optional=True), "B": Input(Any, optional=True)}
    outputs = {"OUT": Output(Any)}

    def process(self, ctx):
        if ctx.get("B") is not None:
            ctx.outputs["OUT"].add(ctx.get("B"))


@register
class TestRecordThenFail(Calculator):
    """A sink: appends each call's timestamp to CALLS; its first call raises."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"CALLS": SideInput(list)}

    def process(self, ctx):
        calls = ctx.side["CALLS"]
        calls.append(ctx.timestamp)
        if len(calls) == 1:
            raise RuntimeError("disk full")


@register
class TestQuietSource(Calculator):
    """A source with no outputs: counts its calls in its side packet CALLS, stops after three."""

    side_inputs = {"CALLS": SideInput(list)}

    def process(self, ctx):
        calls = ctx.side["CALLS"]
        calls.append(len(calls))
        return STOP if len(calls) == 3 else None


@register
class TestTimedSource(Calculator):
    """A source whose calls each last at least 5 ms; ten of them. Its close raises when its side
    packet FAIL_CLOSE is true; each call's own length is appended to SPENT (a list) if given."""

    outputs = {"OUT": Output(int)}
    side_inputs = {"FAIL_CLOSE": SideInput(bool, optional=True), "SPENT": SideInput(list, optional=True)}

    def open(self, ctx):
        self.i = 0

    def process(self, ctx):
        start = time.perf_counter()
        time.sleep(0.005)  # the call's own length, measured by the stats (not a wait for a thread)
        ctx.outputs["OUT"].add(self.i, self.i)
        self.i += 1
        if ctx.side.get("SPENT") is not None:
            ctx.side["SPENT"].append(time.perf_counter() - start)
        return STOP if self.i == 10 else None

    def close(self, ctx):
        if ctx.side.get("FAIL_CLOSE"):
            raise OSError("device lost in close")


@register
class TestSlowSink(Calculator):
    """A sink: each call waits until its GATE is released, then appends the value to its side
    packet LOG; its close appends "closed"."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"GATE": SideInput(Gate), "LOG": SideInput(list)}

    def process(self, ctx):
        gate = ctx.side["GATE"]
        gate.entered.set()
        if not gate.released.wait(10):
            raise TimeoutError("test gate was never released")
        ctx.side["LOG"].append(ctx.inputs["IN"].value)

    def close(self, ctx):
        ctx.side["LOG"].append("closed")


def wait_in(thread_name: str, function: str, timeout: float = 10) -> None:
    """Waits (bounded) until the thread named ``thread_name`` is inside ``function``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        th = next((t for t in threading.enumerate() if t.name == thread_name), None)
        frame = sys._current_frames().get(th.ident) if th is not None else None
        while frame is not None:
            name = frame.f_code.co_name  # (under mutmut: xǁSchedulerǁthrottle__mutmut_orig, _1, ...)
            if name == function or re.search(f"ǁ{function}__mutmut_(orig|[0-9]+)$", name):
                return
            frame = frame.f_back
        time.sleep(0.005)
    raise AssertionError(f"thread {thread_name!r} never reached {function}()")


def relief_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vpipe" and "throttled" in r.getMessage()]


# -- throttled sources -----------------------------------------------------------------------------

def test_a_throttled_source_goes_on_once_its_consumer_has_room(threads, no_thread_leak, caplog):
    """A source held by a full ``block`` queue goes on as soon as the queue has room, to the end,
    with nothing lost and no stall warning."""
    gate = Gate()
    g = Graph.from_yaml("""
name: roomy
side_packets: {gate: null}
nodes:
  - calculator: TestSeq
    outputs: [n]
    options: {timestamps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}
  - calculator: TestBlocker
    inputs: {IN: {stream: n, capacity: 2}}
    outputs: [m]
    side_inputs: {GATE: gate}
""", threads=threads)
    got = []
    g.observe("m", got.append)
    with caplog.at_level(logging.WARNING, logger="vpipe"):
        g.start({"gate": gate})
        try:
            assert gate.entered.wait(10), "the first packet never reached the blocked node"
            wait_in("vpipe-source-TestSeq", "throttle")
            gate.release()
            g.wait(20)
        finally:
            gate.release()
            if not g.done:
                g.cancel()
                g.wait(20)
    assert [p.timestamp for p in got] == list(range(12))
    assert relief_warnings(caplog) == []


def test_a_throttled_source_with_nothing_runnable_goes_on_with_one_warning(threads, no_thread_leak, caplog):
    """A sync input waiting on a stream that never advances holds the join; its other input's
    full queue throttles the source while nothing can run: the source is let go on (all its
    packets queue up), with one warning naming the graph."""
    g = Graph.from_yaml("""
name: stalled
inputs: [b]
nodes:
  - calculator: TestSeq
    outputs: [a]
    options: {timestamps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
  - calculator: TestJoin
    inputs: {A: {stream: a, capacity: 2}, B: b}
    outputs: [j]
""", threads=threads)
    got = []
    g.observe("j", got.append)
    last = threading.Event()
    g.observe("a", lambda p: last.set() if p.timestamp == 9 else None)
    with caplog.at_level(logging.WARNING, logger="vpipe"):
        g.start()
        try:
            assert last.wait(10), "the throttled source was never let go on"
            g.close_input("b")
            g.wait(20)
        finally:
            if not g.done:
                g.cancel()
                g.wait(20)
    assert [(p.timestamp, p.value) for p in got] == [(t, (t, None)) for t in range(10)]
    assert relief_warnings(caplog) == [RELIEF.format("stalled")]
    assert g.stats()["TestJoin"]["inputs"]["A"]["peak"] == 10


def test_cancel_ends_a_throttled_source_at_once_without_a_warning(no_thread_leak, caplog):
    """A source throttled by a node stuck in a long call stops when the run is cancelled, without
    waiting for that call (and without the stall warning once it returns)."""
    gate = Gate()
    g = Graph.from_yaml("""
side_packets: {gate: null}
nodes:
  - calculator: TestEndless
    outputs: [n]
  - calculator: TestBlocker
    inputs: {IN: {stream: n, capacity: 2}}
    outputs: [m]
    side_inputs: {GATE: gate}
""")
    with caplog.at_level(logging.WARNING, logger="vpipe"):
        g.start({"gate": gate})
        try:
            assert gate.entered.wait(10)
            wait_in("vpipe-source-TestEndless", "throttle")
            source = next(t for t in threading.enumerate() if t.name == "vpipe-source-TestEndless")
            g.cancel()
            source.join(10)
            assert not source.is_alive(), "a cancelled run's throttled source waited for the stuck call"
        finally:
            gate.release()
        g.wait(20)
    assert relief_warnings(caplog) == []


def test_two_full_queues_hold_a_source_until_both_have_room(no_thread_leak):
    """A source feeding two blocked nodes fills both queues; when one of them drains, the other
    is still full, and the source stays throttled (the second node's queue never grows past it)."""
    first, second = Gate(), Gate()
    g = Graph.from_yaml("""
side_packets: {first: null, second: null}
nodes:
  - calculator: TestSeq
    outputs: [n]
    options: {timestamps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}
  - calculator: TestBlocker
    name: first
    inputs: {IN: {stream: n, capacity: 2}}
    outputs: [a]
    side_inputs: {GATE: first}
  - calculator: TestBlocker
    name: second
    inputs: {IN: {stream: n, capacity: 2}}
    outputs: [b]
    side_inputs: {GATE: second}
executors: {one: {threads: 1}, two: {threads: 1}}
""".replace("side_inputs: {GATE: first}", "side_inputs: {GATE: first}\n    executor: one")
   .replace("side_inputs: {GATE: second}", "side_inputs: {GATE: second}\n    executor: two"), threads=1)
    got = []
    g.observe("a", got.append)
    g.observe("b", lambda p: None)
    g.start({"first": first, "second": second})
    try:
        assert first.entered.wait(10) and second.entered.wait(10)
        wait_in("vpipe-source-TestSeq", "throttle")
        first.release()  # first drains its queue; second's is still full
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(got) == 3, f"first passed {len(got)} packets"
        wait_in("vpipe-source-TestSeq", "throttle")
        assert g.stats()["second"]["queue_peak"] <= 2, g.stats()["second"]
        assert g.stats()["TestSeq"]["count"] <= 4, g.stats()["TestSeq"]
    finally:
        first.release()
        second.release()
        g.wait(20)
    assert [p.timestamp for p in got] == list(range(12))


def test_default_threads_follow_the_cpu_count(monkeypatch):
    """The default worker count is the CPU count, from 2 up to 4 (2 when it is unknown)."""
    import os

    spec = "nodes:\n  - calculator: TestSeq\n    outputs: [n]\n"
    for cpus, threads in [(None, 2), (1, 2), (3, 3), (4, 4), (8, 4)]:
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert Graph.from_yaml(spec).threads == threads, cpus


def test_the_run_s_threads_never_keep_the_process_alive(no_thread_leak):
    """Every thread a run starts is a daemon: a call stuck past the stop (abandoned) cannot keep
    the interpreter from exiting."""
    gate = Gate()
    g = Graph.from_yaml("""
side_packets: {gate: null}
executors: {other: {threads: 2}}
nodes:
  - calculator: TestEndless
    outputs: [n]
  - calculator: TestBlocker
    inputs: [n]
    outputs: [m]
    side_inputs: {GATE: gate}
    executor: other
""", threads=2)
    g.observe("m", lambda p: None)
    g.start({"gate": gate})
    try:
        assert gate.entered.wait(10)
        threads = [t for t in threading.enumerate() if t.name.startswith("vpipe-")]
        assert sorted(t.name for t in threads) == [
            "vpipe-default-0", "vpipe-default-1", "vpipe-other-0", "vpipe-other-1", "vpipe-source-TestEndless"]
        assert all(t.daemon for t in threads), [(t.name, t.daemon) for t in threads]
    finally:
        gate.release()
        g.cancel()
        g.wait(20)


def test_a_sink_in_a_call_when_the_stop_bound_passes_may_finish_it(tmp_path):
    """Cancelled with one node stuck and a sink still writing: past the stuck bound the sink gets
    that long again to finish its call; it then is closed (its file whole), and only the stuck
    node is named."""
    from pipeline import NodeStuckError

    stuck, sink, log = Gate(), Gate(), []
    g = Graph.from_yaml("""
inputs: [in]
side_packets: {stuck: null, sink: null, log: null}
executors: {a: {threads: 1}, b: {threads: 1}}
nodes:
  - calculator: TestBlocker
    name: stuck
    inputs: [in]
    outputs: [m]
    side_inputs: {GATE: stuck}
    executor: a
  - calculator: TestSlowSink
    name: writer
    inputs: [in]
    side_inputs: {GATE: sink, LOG: log}
    executor: b
""")
    g.observe("m", lambda p: None)
    g.start({"stuck": stuck, "sink": sink, "log": log})

    def release_the_sink_once_halted():
        deadline = time.monotonic() + 20
        while not g._run.halted and time.monotonic() < deadline:
            time.sleep(0.005)
        sink.release()

    helper = threading.Thread(target=release_the_sink_once_halted)
    try:
        g.add_packet("in", "frame", 0)
        assert stuck.entered.wait(10) and sink.entered.wait(10)
        helper.start()
        g.cancel(stuck_timeout=0.5)
        with pytest.raises(NodeStuckError) as ei:
            g.wait(30)
        assert [e.node for e in g.errors if isinstance(e, NodeStuckError)] == ["stuck"], g.errors
        assert ei.value.node == "stuck"
        assert log == ["frame", "closed"]
    finally:
        sink.release()
        stuck.release()
        if helper.is_alive() or helper.ident is not None:
            helper.join(30)
        for t in threading.enumerate():
            if t.name.startswith("vpipe-"):
                t.join(10)


def test_a_sink_stuck_past_both_bounds_is_named_and_left(no_thread_leak):
    """A sink that does not return from its call within the stuck bound and the time it is then
    given is named stuck and abandoned: the shutdown does not wait for it."""
    from pipeline import NodeStuckError

    sink, log = Gate(), []
    g = Graph.from_yaml("""
inputs: [in]
side_packets: {sink: null, log: null}
nodes:
  - calculator: TestSlowSink
    name: writer
    inputs: [in]
    side_inputs: {GATE: sink, LOG: log}
""")
    g.start({"sink": sink, "log": log})
    try:
        g.add_packet("in", "frame", 0)
        assert sink.entered.wait(10)
        g.cancel(stuck_timeout=0.3)
        with pytest.raises(NodeStuckError, match=r"^node 'writer' \(TestSlowSink\) is stuck in process at timestamp 0"):
            g.wait(30)
        assert log == []  # abandoned: not closed under its call
    finally:
        sink.release()
        for t in threading.enumerate():
            if t.name.startswith("vpipe-"):
                t.join(10)


# -- idleness ----------------------------------------------------------------------------------------

def test_wait_until_idle_waits_for_a_packet_still_in_its_producers_hands(no_thread_leak):
    """A packet queued for a node is work even before the node is handed to a worker (here its
    producer is still in a slow observer's callback, inside the send): the graph is not idle
    until the packet has gone through."""
    gate = Gate()
    g = Graph.from_yaml("""
nodes:
  - calculator: TestSeq
    outputs: [n]
    options: {timestamps: [0]}
  - calculator: PassThrough
    inputs: [n]
    outputs: [m]
""")
    got = []
    g.observe("m", got.append)

    def slow_observer(p):
        gate.entered.set()
        if not gate.released.wait(10):
            raise TimeoutError("test gate was never released")

    g.observe("n", slow_observer)
    g.start()
    try:
        assert gate.entered.wait(10)
        with pytest.raises(TimeoutError, match="did not become idle"):
            g.wait_until_idle(0.2)
        assert got == []
    finally:
        gate.release()
    g.wait_until_idle(10)
    assert [p.timestamp for p in got] == [0]
    g.wait(10)


def test_a_node_that_closed_is_not_counted_as_working(no_thread_leak):
    """A node off the fast path that has closed (its input done) while the rest of the graph
    runs on leaves the graph idle once the rest has no work."""
    calls = []
    g = Graph.from_dict({
        "inputs": ["a", "b"], "side_packets": {"calls": None},
        "nodes": [
            {"calculator": "TestRecordCalls", "name": "early", "inputs": {"A": "a", "B": "a"},
             "side_inputs": {"CALLS": "calls"}},
            {"calculator": "PassThrough", "inputs": ["b"], "outputs": ["o"]},
        ],
    }, threads=2)
    got = []
    g.observe("o", got.append)
    g.start({"calls": calls})
    g.add_packet("a", "a0", 0)
    g.close_input("a")
    g.add_packet("b", "b0", 0)
    g.wait_until_idle(10)
    assert [(t, present) for t, present, _, _ in calls] == [(0, ("A", "B"))]
    assert [p.timestamp for p in got] == [0]
    g.close_input("b")
    g.wait(10)


def test_a_source_without_outputs_runs_to_its_end(no_thread_leak):
    calls = []
    g = Graph.from_yaml("""
side_packets: {calls: null}
nodes:
  - calculator: TestQuietSource
    side_inputs: {CALLS: calls}
""")
    g.start({"calls": calls})
    g.wait(10)
    assert calls == [0, 1, 2]
    assert g.stats()["TestQuietSource"]["count"] == 3


def test_a_sources_process_time_is_every_call_measured(no_thread_leak):
    """A source's calls are all measured: its time is their sum (at least what the calls timed
    themselves, at least ten times 5 ms, and no more than the run's wall time)."""
    spent = []
    g = Graph.from_yaml("""
side_packets: {spent: null}
nodes:
  - calculator: TestTimedSource
    outputs: [n]
    side_inputs: {SPENT: spent}
  - calculator: PassThrough
    inputs: [n]
    outputs: [m]
""")
    g.observe("m", lambda p: None)
    g.start({"spent": spent})
    g.wait(20)
    stats = g.stats()["TestTimedSource"]
    assert stats["count"] == 10 and len(spent) == 10
    assert max(0.050, sum(spent)) <= stats["time_s"] <= g.wall_time(), (stats, sum(spent), g.wall_time())
    assert stats["mean_ms"] >= 5.0, stats


def test_a_failure_in_a_sources_close_names_the_source_and_close(no_thread_leak):
    g = Graph.from_yaml("""
side_packets: {fail: true}
nodes:
  - calculator: TestTimedSource
    name: camera
    outputs: [n]
    side_inputs: {FAIL_CLOSE: fail}
  - calculator: PassThrough
    inputs: [n]
    outputs: [m]
""")
    got = []
    g.observe("m", got.append)
    g.start({"fail": True})
    with pytest.raises(GraphRunError, match=r"^node 'camera' \(TestTimedSource\) failed in close: "
                                            r"OSError: device lost in close"):
        g.wait(20)
    err = g.error
    assert (err.node, err.phase, err.timestamp) == ("camera", "close", None)
    assert isinstance(err.__cause__, OSError)


# -- immediate: the order and the bounds a call is given -------------------------------------------

def beside_a_held_node(node, inputs=("a", "b")):
    """A graph with ``node`` on a one-thread executor it shares with a node (TestBlocker, on the
    graph input ``hold``) that `holding` keeps in a call, so that packets queue for ``node``
    while it cannot run. Its side inputs are the graph's side packets. Returns the graph."""
    side = {"gate": None, **{name: None for name in node.get("side_inputs", {}).values()}}
    g = Graph.from_dict({
        "inputs": ["hold", *inputs], "executors": {"one": {"threads": 1}}, "side_packets": side,
        "nodes": [
            {"calculator": "TestBlocker", "inputs": ["hold"], "outputs": ["held"],
             "side_inputs": {"GATE": "gate"}, "executor": "one"},
            {**node, "executor": "one"},
        ],
    }, threads=1)
    g.observe("held", lambda p: None)  # (a node whose outputs nothing reads is not run)
    return g


@contextmanager
def holding(g, gate):
    """Keeps the started graph's held node in a call (through ``gate``) for the block's time."""
    try:
        g.add_packet("hold", 0, 0)
        assert gate.entered.wait(10), "the hold never began"
        yield
    finally:
        gate.release()


def held_run(policy, held, after=(), capacity=None):
    """Runs a TestRecordCalls node (inputs A, B from the graph inputs a, b) with ``policy``,
    sharing a one-thread executor with a node held in a call: the packets ``held`` (``(tag, t)``)
    are fed, and a and b closed when ``after`` is empty, while the node cannot run; the hold is
    then released and ``after`` fed. Returns the graph and the calls recorded."""
    gate, calls = Gate(), []
    port = (lambda s: s) if capacity is None else (lambda s: {"stream": s, "capacity": capacity})
    g = beside_a_held_node({"calculator": "TestRecordCalls", "inputs": {"A": port("a"), "B": port("b")},
                            "side_inputs": {"CALLS": "calls"}, "policy": policy})
    g.start({"gate": gate, "calls": calls})
    with holding(g, gate):
        for tag, t in held:
            g.add_packet(tag.lower(), f"{tag}{t}", t)
        if not after:
            g.close_all_inputs()
    for tag, t in after:
        g.add_packet(tag.lower(), f"{tag}{t}", t)
    g.close_all_inputs()
    g.wait(10)
    return g, calls


def test_immediate_takes_one_timestamp_on_several_inputs_in_the_order_of_the_inputs(no_thread_leak):
    # B's packet at 5 arrives first; at one timestamp the inputs are taken in their order: A, B
    _, calls = held_run("immediate", [("B", 5), ("A", 5), ("A", 7)])
    assert [(t, present) for t, present, _, _ in calls] == [(5, ("A",)), (5, ("B",)), (7, ("A",))]


@pytest.mark.parametrize("policy", ["immediate", "sync"])
def test_input_bounds_are_read_live(policy, no_thread_leak):
    """``ctx.input_bound`` of a node without ``process_timestamp_bounds`` is read live: the
    next queued packet's timestamp, or the queue's bound (Done once the input has closed)."""
    _, calls = held_run(policy, [("A", 0), ("B", 0), ("B", 3), ("A", 5)])
    done = Timestamp.DONE
    if policy == "immediate":
        assert calls == [(0, ("A",), 5, 0), (0, ("B",), 5, 3), (3, ("B",), 5, done), (5, ("A",), done, done)]
    else:
        assert calls == [(0, ("A", "B"), 5, 3), (3, ("B",), 5, done), (5, ("A",), done, done)]


def test_bounds_a_bound_processing_node_is_given_are_the_recorded_ones(no_thread_leak):
    """With ``process_timestamp_bounds`` each call reads the bounds as that call saw them: past
    its own packet, and for an empty input what the calculator was last shown."""
    gate, calls = Gate(), []
    g = beside_a_held_node({"calculator": "TestRecordBoundCalls", "inputs": {"A": "a", "B": "b"},
                            "side_inputs": {"CALLS": "calls"}})
    g.start({"gate": gate, "calls": calls})
    with holding(g, gate):
        for tag, t in [("a", 0), ("b", 0), ("b", 3), ("a", 5)]:
            g.add_packet(tag, t, t)
        g.close_all_inputs()
    g.wait(10)
    assert calls[:3] == [(0, ("A", "B"), 1, 1), (3, ("B",), 1, 4), (5, ("A",), 6, 4)]


def test_immediate_keeps_a_timestamp_open_that_another_input_still_has(no_thread_leak):
    """After A's packet at 5, B's packet at 5 is still queued: the output's bound stays at 5, and
    the call for B may emit at 5."""
    gate = Gate()
    g = beside_a_held_node({"calculator": "TestEmitOnB", "inputs": {"A": "a", "B": "b"}, "outputs": ["out"],
                            "policy": "immediate"})
    got = []
    g.observe("out", got.append)
    g.start({"gate": gate})
    with holding(g, gate):
        g.add_packet("a", "a5", 5)
        g.add_packet("b", "b5", 5)
        g.close_all_inputs()
    g.wait(10)
    assert [(p.timestamp, p.value) for p in got] == [(5, "b5")]


def test_a_later_failing_call_on_the_general_path_is_named(no_thread_leak):
    """A node off the fast path (``latest``) failing in a call that is not measured (its fourth)
    is named with the phase and timestamp, like its first."""
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "TestFail", "name": "f", "inputs": ["in"], "outputs": ["o"], "options": {"at": 3},
         "policy": {"latest": 50}}]}, threads=1)
    g.start()
    for t in range(5):
        g.add_packet("in", t, t)
    g.close_all_inputs()
    with pytest.raises(GraphRunError, match=r"^node 'f' \(TestFail\) failed in process at timestamp 3: "
                                            r"ValueError: boom at 3"):
        g.wait(10)


def test_a_sink_whose_call_failed_takes_no_more_calls(no_thread_leak):
    """A sink off the fast path that fails in a call is not called again for what is queued
    behind it (the run has failed; sinks drain only when someone else stopped the run)."""
    gate, calls = Gate(), []
    g = beside_a_held_node({"calculator": "TestRecordThenFail", "name": "writer", "inputs": ["a"],
                            "side_inputs": {"CALLS": "calls"}, "policy": {"latest": 50}}, inputs=["a"])
    g.start({"gate": gate, "calls": calls})
    with holding(g, gate):
        for t in range(3):
            g.add_packet("a", t, t)
    with pytest.raises(GraphRunError, match=r"^node 'writer' \(TestRecordThenFail\) failed in process at "
                                            r"timestamp 0: RuntimeError: disk full"):
        g.wait(10)
    assert calls == [0]


def test_a_sink_off_the_fast_path_writes_what_reached_it_when_cancelled(no_thread_leak):
    """Cancelled while packets wait in its queues, a sink (no outputs) on the general path still
    takes them (it writes what reached it); the other nodes drop theirs."""
    gate, calls = Gate(), []
    g = beside_a_held_node({"calculator": "TestRecordCalls", "inputs": {"A": "a", "B": "b"},
                            "side_inputs": {"CALLS": "calls"}, "policy": "immediate"})
    g.start({"gate": gate, "calls": calls})
    with holding(g, gate):
        for tag, t in [("a", 1), ("b", 2), ("a", 3)]:
            g.add_packet(tag, t, t)
        g.cancel()
    g.wait(10)
    assert [t for t, _, _, _ in calls] == [1, 2, 3]


@pytest.mark.parametrize("policy", ["immediate", "sync"])
def test_full_queues_get_room_again(policy, no_thread_leak):
    """A one-packet queue is full as soon as it holds a packet: taking it out frees it, and the
    feed (which waits while it is full) goes on."""
    _, calls = held_run(policy, [("A", 0), ("B", 0)], [("A", 4), ("B", 4), ("A", 6)], capacity=1)
    stamps = [t for t, _, _, _ in calls]
    assert stamps == ([0, 0, 4, 4, 6] if policy == "immediate" else [0, 4, 6])


def test_latest_frees_the_full_queues_it_drops_from(no_thread_leak):
    # A's packet at 0 fills its queue; B's at 2 makes two timestamps, and latest(1) drops 0
    # (A's queue has room again: the feed goes on); A's at 3 then makes 2 the older one
    g, calls = held_run({"latest": 1}, [("A", 0), ("B", 2)], [("A", 3), ("B", 3)], capacity=1)
    assert [(t, present) for t, present, _, _ in calls] == [(3, ("A", "B"))]
    assert g.stats()["TestRecordCalls"]["drops"] == 2


def test_latest_counts_every_drop_over_a_run(no_thread_leak):
    """``latest``'s drop count is the run's total, over several rounds of dropping: A's packets
    wait for B (sync), and each packet on B settles three of A's at once, of which one is kept."""
    calls = []
    g = Graph.from_dict({
        "inputs": ["a", "b"], "side_packets": {"calls": None},
        "nodes": [{"calculator": "TestRecordCalls", "inputs": {"A": "a", "B": "b"},
                   "side_inputs": {"CALLS": "calls"}, "policy": {"latest": 1}}],
    }, threads=1)
    g.start({"calls": calls})
    for first in (0, 3):
        for t in range(first, first + 3):
            g.add_packet("a", f"a{t}", t)
        g.add_packet("b", "b", first + 2)
        g.wait_until_idle(10)
    g.close_all_inputs()
    g.wait(10)
    assert [(t, present) for t, present, _, _ in calls] == [(2, ("A", "B")), (5, ("A", "B"))]
    assert g.stats()["TestRecordCalls"]["drops"] == 4
