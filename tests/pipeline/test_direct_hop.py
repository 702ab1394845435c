"""The direct hop (streams.py ``DirectStream``, whose ``send`` makes the consumer's call, planned by
scheduler.py ``Scheduler.plan_direct_hops``) and sampled process times (node.py
``_timed_call``): which streams become direct, and that the same graphs give the same packets,
stats and errors with direct hops on and off (``Scheduler.direct_hops``)."""

from __future__ import annotations

import sys

import pytest

import pipeline.node as node_module
from pipeline import Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.node import SAMPLE_EVERY
from pipeline.scheduler import HANDOFF_NS, MAX_DIRECT_DEPTH, Scheduler
from pipeline.streams import DirectStream
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate, TestEvenOnly


@pytest.fixture(params=[True, False], ids=["direct", "queued"])
def direct(request, monkeypatch):
    monkeypatch.setattr(Scheduler, "direct_hops", request.param)
    return request.param


class FakeClock:
    """node.py's clock in these tests: each read moves it on 1 ns, and a calculator given it
    (side packet CLOCK) makes a long call by moving it on, so process times are exact and the
    load of the machine cannot make a short call look long."""

    def __init__(self):
        self.now = 0

    def read(self) -> int:
        self.now += 1
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(node_module, "_perf_ns", c.read)
    return c


@register
class TestInside(Calculator):
    """Forwards its input; a call lasts ``spin_ns`` on the CLOCK side packet (a FakeClock)."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(object)}
    side_inputs = {"CLOCK": SideInput(object, optional=True)}
    spin_ns = 0

    def process(self, ctx):
        if self.spin_ns:
            ctx.side["CLOCK"].advance(self.spin_ns)
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@register
class TestSlowInside(TestInside):
    """TestInside whose calls last 3x the scheduler's hand-off threshold."""

    spin_ns = 3 * HANDOFF_NS


@register
class TestBurst(Calculator):
    """Emits its input three times, at 3t, 3t + 1 and 3t + 2."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(object)}
    timestamp_offset = None

    def process(self, ctx):
        for i in range(3):
            ctx.outputs["OUT"].add(ctx.timestamp * 3 + i, ctx.timestamp * 3 + i)


@register
class TestBlockAtOne(Calculator):
    """Forwards its input; its call at timestamp 1 waits until the test releases GATE (a Gate)."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(object)}
    side_inputs = {"GATE": SideInput(Gate)}

    def process(self, ctx):
        if ctx.timestamp == 1:
            gate = ctx.side["GATE"]
            gate.entered.set()
            if not gate.released.wait(10):
                raise TimeoutError("test gate was never released")
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


def _clocked(spec: dict) -> dict:
    """``spec`` with the CLOCK side packet given to its TestInside/TestSlowInside nodes."""
    for n in spec["nodes"]:
        if n["calculator"] in ("TestInside", "TestSlowInside"):
            n["side_inputs"] = {"CLOCK": "clock"}
    spec["side_packets"] = {"clock": None}
    return spec


@register
class TestWhereCalled(Calculator):
    """Emits, for each input, whether this call runs inside a TestInside/TestSlowInside call
    (its producer's: a direct hop) or not (the packet came through the queue)."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(bool)}

    def process(self, ctx):
        f = sys._getframe(1)
        inside = False
        while f is not None:
            if f.f_code is TestInside.process.__code__:
                inside = True
                break
            f = f.f_back
        ctx.outputs["OUT"].add(inside)


@register
class TestWhereMeasured(Calculator):
    """Emits, for each input, ``(inside, measured)``: whether this call runs inside a call of
    TestEvenOnly (its producer's: a direct hop), and whether it is one of its node's measured
    calls (node.py, ``_timed_call``)."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(tuple)}

    def process(self, ctx):
        f = sys._getframe(1)
        inside = False
        while f is not None:
            if f.f_code is TestEvenOnly.process.__code__:
                inside = True
                break
            f = f.f_back
        ctx.outputs["OUT"].add((inside, ctx._node.timing))


def _chain(n: int, calculator: str = "PassThrough", capacity: int | None = None) -> tuple[dict, str]:
    nodes, prev = [], "in"
    for i in range(n):
        inp = {"stream": prev, "capacity": capacity} if capacity else prev
        nodes.append({"calculator": calculator, "name": f"n{i}", "inputs": {"IN:0" if calculator == "PassThrough"
                                                                             else "IN": inp},
                      "outputs": {"OUT:0" if calculator == "PassThrough" else "OUT": f"s{i}"}})
        prev = f"s{i}"
    return {"inputs": ["in"], "nodes": nodes}, prev


def _direct_streams(graph: Graph) -> list[str]:
    return sorted((s.name for s in graph._streams.values() if type(s) is DirectStream), key=lambda n: int(n[1:]))


def test_which_streams_become_direct(direct):
    spec = {
        "inputs": ["in"],
        "executors": {"other": {"threads": 1}},
        "nodes": [
            {"calculator": "PassThrough", "name": "a", "inputs": ["in"], "outputs": ["s1"]},
            # s1 -> b: one consumer, a simple node on a's executor: direct
            {"calculator": "PassThrough", "name": "b", "inputs": ["s1"], "outputs": ["s2"]},
            # s2 has two consumers: queued
            {"calculator": "PassThrough", "name": "c", "inputs": ["s2"], "outputs": ["s3"]},
            {"calculator": "PassThrough", "name": "d", "inputs": ["s2"], "outputs": ["s4"]},
            # s3 is read by a node of another executor: queued
            {"calculator": "PassThrough", "name": "e", "executor": "other", "inputs": ["s3"], "outputs": ["s5"]},
            # s4 is read by a join (two inputs, not simple): queued
            {"calculator": "TestJoin", "name": "j", "inputs": {"A": "s4", "B": "s5"}, "outputs": {"OUT": "s6"}},
            # s6 is observed: queued
            {"calculator": "PassThrough", "name": "f", "inputs": ["s6"], "outputs": ["s7"]},
            # g runs concurrent calls: its output s8 is queued; s7 -> g: g is not simple, queued
            {"calculator": "PassThrough", "name": "g", "max_in_flight": 2, "inputs": ["s7"], "outputs": ["s8"]},
            {"calculator": "PassThrough", "name": "h", "inputs": ["s8"], "outputs": ["s9"]},
        ],
    }
    with GraphRun(spec, collect=["s6", "s9"], threads=2) as r:
        r.start()
        got = {s.name for s in r.graph._streams.values() if type(s) is DirectStream}
        r.feed("in", [(t, t) for t in range(50)])
        r.finish()
    assert got == ({"s1"} if direct else set())
    assert r.out["s6"] == r.out["s9"] == [(t, (t, t)) for t in range(50)]


def test_a_source_feeds_through_the_queue(direct):
    spec = {"nodes": [{"calculator": "Counter", "name": "src", "outputs": ["n"], "options": {"count": 20}},
                      {"calculator": "PassThrough", "name": "p", "inputs": ["n"], "outputs": ["m"]},
                      {"calculator": "PassThrough", "name": "q", "inputs": ["m"], "outputs": ["o"]}]}
    with GraphRun(spec, collect=["o"], threads=1) as r:
        r.start()
        got = {s.name for s in r.graph._streams.values() if type(s) is DirectStream}
        r.finish()
    assert got == ({"m"} if direct else set())  # n, from a source thread, is queued
    assert [v for _, v in r.out["o"]] == list(range(20))


def test_tracing_runs_every_hop_through_the_queues(direct):
    spec, out = _chain(4)
    g = Graph.from_dict(spec, threads=1)
    got = []
    g.observe(out, got.append)
    g.start(trace=True)
    assert _direct_streams(g) == []
    for t in range(40):
        g.add_packet("in", t, t)
    g.close_all_inputs()
    g.wait(30)
    assert [p.timestamp for p in got] == list(range(40))
    for node in g._nodes:  # every call is measured and traced
        assert node.sampled == node.count == 40
    assert len([e for e in g.trace_events() if e[0] == "n3"]) == 40


def test_direct_hops_nest_at_most_max_direct_depth(direct):
    # A chain of 3 * MAX_DIRECT_DEPTH + 4 nodes: runs of MAX_DIRECT_DEPTH direct streams, each
    # followed by one queued stream; under a recursion limit that an unbounded nesting (4
    # frames a hop) would pass, the chain runs.
    n = 3 * MAX_DIRECT_DEPTH + 4
    spec, out = _chain(n)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        with GraphRun(spec, collect=[out], threads=1) as r:
            r.start()
            names = _direct_streams(r.graph)
            r.feed("in", [(t, t) for t in range(60)])
            r.finish()
    finally:
        sys.setrecursionlimit(limit)
    assert r.out[out] == [(t, t) for t in range(60)]
    if not direct:
        assert names == []
        return
    # s0 is the output of n0 (fed by the graph input, queued): s0..s15 are direct, s16 queued...
    expected = [f"s{i}" for i in range(n - 1) if i % (MAX_DIRECT_DEPTH + 1) != MAX_DIRECT_DEPTH]
    assert names == expected


@pytest.mark.parametrize("threads", [1, 3])
def test_chain_stats_are_the_same_both_ways(direct, threads, clock):
    spec, out = _chain(6)
    with GraphRun(spec, collect=[out], threads=threads) as r:
        r.start()
        r.feed("in", [(t * 2, t) for t in range(500)])
        r.finish()
        stats = r.graph.stats()
        nodes = {n.name: n for n in r.graph._nodes}
    assert r.out[out] == [(t * 2, t) for t in range(500)]
    for i in range(6):
        s = stats[f"n{i}"]
        assert s["count"] == 500 and s["queue_depth"] == 0 and s["drops"] == 0
        assert 1 <= s["queue_peak"], s
        assert s["time_s"] > 0 and s["mean_ms"] > 0
        # short calls: only some are measured (the first, then one in SAMPLE_EVERY at least)
        node = nodes[f"n{i}"]
        assert 500 // SAMPLE_EVERY <= node.sampled < 500, (node.name, node.sampled)


def test_a_direct_call_is_not_counted_in_its_producers_time(direct, clock):
    # a (short calls) -> slow (3x HANDOFF_NS a call): a's process time must not hold slow's,
    # although slow's calls may run inside a's.
    spec = _clocked({"inputs": ["in"], "nodes": [
        {"calculator": "TestInside", "name": "a", "inputs": {"IN": "in"}, "outputs": {"OUT": "x"}},
        {"calculator": "TestSlowInside", "name": "slow", "inputs": {"IN": "x"}, "outputs": {"OUT": "y"}},
        {"calculator": "TestWhereCalled", "name": "where", "inputs": {"IN": "y"}, "outputs": {"OUT": "z"}},
    ]})
    with GraphRun(spec, collect=["z"], threads=1) as r:
        r.start({"clock": clock})
        r.feed("in", [(t, t) for t in range(40)])
        r.finish()
        stats = r.graph.stats()
        nodes = {n.name: n for n in r.graph._nodes}
    assert stats["slow"]["mean_ms"] * 1e6 >= 3 * HANDOFF_NS
    assert stats["a"]["mean_ms"] * 1e6 < HANDOFF_NS, stats["a"]
    assert nodes["slow"].sampled == 40  # long calls: every one measured
    assert nodes["a"].sampled == 2  # short ones: calls 0 and SAMPLE_EVERY
    # slow's packets never go direct (its calls are all measured: see _timed_call)
    assert [v for _, v in r.out["z"]] == [False] * 40


def test_direct_calls_run_inside_the_producers_call_unless_it_is_long(direct, clock):
    spec = _clocked({"inputs": ["in"], "nodes": [
        {"calculator": "TestInside", "name": "fast", "inputs": {"IN": "in"}, "outputs": {"OUT": "x"}},
        {"calculator": "TestWhereCalled", "name": "w1", "inputs": {"IN": "x"}, "outputs": {"OUT": "y1"}},
        {"calculator": "TestSlowInside", "name": "slow", "inputs": {"IN": "in"}, "outputs": {"OUT": "u"}},
        {"calculator": "TestWhereCalled", "name": "w2", "inputs": {"IN": "u"}, "outputs": {"OUT": "y2"}},
    ]})
    n = 3 * SAMPLE_EVERY
    with GraphRun(spec, collect=["y1", "y2"], threads=2) as r:
        r.start({"clock": clock})
        r.feed("in", [(t, t) for t in range(n)])
        r.finish()
    inside = [v for _, v in r.out["y1"]]
    assert len(inside) == n and len(r.out["y2"]) == n
    if direct:
        # the measured calls (the first, and one in SAMPLE_EVERY) send through the queue
        assert inside.count(False) == 3 and inside[0] is False and all(inside[1:SAMPLE_EVERY]), inside
    else:
        assert not any(inside)
    # a producer with long calls never calls its consumer directly: its backlog stays free to
    # go to an idle worker (scheduler.py, HANDOFF_NS)
    assert not any(v for _, v in r.out["y2"])


def test_a_failure_in_a_direct_call_names_its_node_and_timestamp(direct, threads):
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "n0", "inputs": ["in"], "outputs": ["s0"]},
        {"calculator": "PassThrough", "name": "n1", "inputs": ["s0"], "outputs": ["s1"]},
        {"calculator": "TestFail", "name": "bad", "inputs": {"IN": "s1"}, "outputs": {"OUT": "s2"},
         "options": {"phase": "process", "at": 7}},
        {"calculator": "PassThrough", "name": "n3", "inputs": ["s2"], "outputs": ["s3"]},
    ]}
    with GraphRun(spec, collect=["s3"], threads=threads) as r:
        r.start()
        r.feed("in", [(t, t) for t in range(7)])
        r.graph.wait_until_idle(30)
        r.feed("in", [(7, 7)])
        with pytest.raises(GraphRunError) as ei:
            r.graph.wait(30)
        stats = r.graph.stats()
    err = ei.value
    assert err.node == "bad" and err.timestamp == 7 and err.phase == "process", str(err)
    assert str(err).startswith("node 'bad' (TestFail) failed in process at timestamp 7: ValueError: boom at 7")
    assert [t for t, _ in r.out["s3"]] == list(range(7))
    assert stats["bad"]["count"] == 7 and stats["n3"]["count"] == 7
    assert stats["n1"]["count"] == 8


def test_nothing_is_called_after_a_failure_upstream_of_a_direct_chain(direct):
    # bad fails at 3; later packets already in n0's queue must not run the direct chain below it
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "TestFail", "name": "bad", "inputs": {"IN": {"stream": "in", "capacity": 100}},
         "outputs": {"OUT": "s0"}, "options": {"phase": "process", "at": 3}},
        {"calculator": "PassThrough", "name": "n1", "inputs": ["s0"], "outputs": ["s1"]},
        {"calculator": "PassThrough", "name": "n2", "inputs": ["s1"], "outputs": ["s2"]},
    ]}
    with GraphRun(spec, collect=["s2"], threads=1) as r:
        r.start()
        try:
            r.feed("in", [(t, t) for t in range(50)])
        except GraphRunError:  # add_packet raises the run's error once it has failed
            pass
        with pytest.raises(GraphRunError, match="boom at 3"):
            r.graph.wait(30)
        stats = r.graph.stats()
    assert [t for t, _ in r.out["s2"]] == [0, 1, 2]
    assert stats["n1"]["count"] == 3 and stats["n2"]["count"] == 3


def test_a_packet_emitted_after_cancel_does_not_run_the_chain_below(direct, clock):
    # the blocker is in its call at 1 (not a measured one: its packets may go direct) when the
    # run is cancelled; what it emits then must not be processed below it (none of the chain's
    # nodes is a sink)
    spec = {"inputs": ["in"], "side_packets": {"gate": None}, "nodes": [
        {"calculator": "TestBlockAtOne", "name": "blocker", "inputs": {"IN": {"stream": "in", "capacity": 100}},
         "outputs": {"OUT": "s0"}, "side_inputs": {"GATE": "gate"}},
        {"calculator": "PassThrough", "name": "n1", "inputs": ["s0"], "outputs": ["s1"]},
        {"calculator": "PassThrough", "name": "n2", "inputs": ["s1"], "outputs": ["s2"]},
    ]}
    gate = Gate()
    with GraphRun(spec, collect=["s2"], threads=1) as r:
        r.start({"gate": gate})
        direct_streams = {s.name for s in r.graph._streams.values() if type(s) is DirectStream}
        r.feed("in", [(0, 0)], idle=True)
        r.feed("in", [(t, t) for t in range(1, 10)])
        assert gate.entered.wait(10), "the blocker was never called at 1"
        r.graph.cancel()
        gate.release()
        r.graph.wait(30)
        stats = r.graph.stats()
    assert direct_streams == ({"s0", "s1"} if direct else set())
    assert r.out["s2"] == [(0, 0)]
    assert stats["blocker"]["count"] == 2 and stats["n1"]["count"] == 1 and stats["n2"]["count"] == 1


def test_no_call_after_a_failure_within_the_same_producer_call(direct, threads):
    # burst emits 3, 4, 5 in its call at 1; bad fails at 4: it is not called again at 5
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "TestBurst", "name": "burst", "inputs": {"IN": "in"}, "outputs": {"OUT": "s0"}},
        {"calculator": "TestFail", "name": "bad", "inputs": {"IN": "s0"}, "outputs": {"OUT": "s1"},
         "options": {"phase": "process", "at": 4}},
    ]}
    with GraphRun(spec, collect=["s1"], threads=threads) as r:
        r.start()
        r.feed("in", [(0, 0)], idle=True)
        r.feed("in", [(1, 1)])
        with pytest.raises(GraphRunError, match="boom at 4"):
            r.graph.wait(30)
        stats = r.graph.stats()
    assert [t for t, _ in r.out["s1"]] == [0, 1, 2, 3]
    assert stats["bad"]["count"] == 4 and stats["burst"]["count"] == 2


def test_sampling_measures_long_calls_every_time(clock):
    spec = _clocked({"inputs": ["in"], "nodes": [
        {"calculator": "TestSlowInside", "name": "slow", "inputs": {"IN": "in"}, "outputs": {"OUT": "x"}},
        {"calculator": "TestInside", "name": "fast", "inputs": {"IN": "x"}, "outputs": {"OUT": "y"}},
    ]})
    n = 2 * SAMPLE_EVERY + 5
    with GraphRun(spec, collect=["y"], threads=1) as r:
        r.start({"clock": clock})
        r.feed("in", [(t, t) for t in range(n)])
        r.finish()
        nodes = {x.name: x for x in r.graph._nodes}
    slow, fast = nodes["slow"], nodes["fast"]
    assert slow.count == slow.sampled == n
    assert slow.time_ns == slow.sampled_ns >= n * 3 * HANDOFF_NS
    assert fast.count == n and fast.sampled == 3  # calls 0, SAMPLE_EVERY and 2 * SAMPLE_EVERY
    assert fast.time_ns == fast.sampled_ns * n // 3


def test_the_estimate_of_a_node_without_measured_calls_is_zero():
    spec, out = _chain(1)
    g = Graph.from_dict(spec, threads=1)
    g.start()
    node = g._nodes[0]
    assert node.count == node.sampled == 0 and node.time_ns == 0
    g.close_all_inputs()
    g.wait(30)
    assert g.stats()["n0"]["time_s"] == 0.0 and g.stats()["n0"]["mean_ms"] == 0.0


def test_a_consumers_measured_calls_go_direct_when_its_producers_do_not(direct, clock):
    # even drops odd values: w's calls are out of step with even's, so w's measured calls (its
    # first, then one in SAMPLE_EVERY) mostly fall on even's unmeasured ones and hop directly;
    # w's first call is one (even's first call, measured, dropped its packet)
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "TestEvenOnly", "name": "even", "inputs": {"IN": "in"}, "outputs": {"OUT": "s0"}},
        {"calculator": "TestWhereMeasured", "name": "w", "inputs": {"IN": "s0"}, "outputs": {"OUT": "s1"}},
    ]}
    n = 200
    with GraphRun(spec, collect=["s1"], threads=1) as r:
        r.start()
        r.feed("in", [(0, 1), (1, 2)], idle=True)  # even values at odd timestamps
        # w's one call so far: the packet was in its hands, as a queued one would be in its queue
        assert r.graph.stats()["w"]["queue_peak"] == 1
        r.feed("in", [(t, t + 1) for t in range(2, n)])
        r.finish()
        stats = r.graph.stats()
        w = next(x for x in r.graph._nodes if x.name == "w")
    calls = n // 2
    assert [t for t, _ in r.out["s1"]] == list(range(1, n, 2))
    inside = [i for _, (i, _m) in r.out["s1"]]
    measured = [m for _, (_i, m) in r.out["s1"]]
    assert measured == [k % SAMPLE_EVERY == 0 for k in range(calls)]
    # w's k-th call is even's call 2k + 1, which sends through the queue when it is measured
    assert inside == ([(2 * k + 1) % SAMPLE_EVERY != 0 for k in range(calls)] if direct else [False] * calls)
    if direct:
        assert inside[0] and measured[0]  # the first call, measured, was a direct hop
    assert w.count == calls and w.sampled == len(range(0, calls, SAMPLE_EVERY)) and w.time_ns > 0
    assert stats["w"]["queue_peak"] == 1 and stats["w"]["queue_depth"] == 0


def test_a_failure_in_a_measured_direct_call_stops_the_run(direct):
    # even drops the value at 0: bad's first call (a measured one) is at 1, a direct hop
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "TestEvenOnly", "name": "even", "inputs": {"IN": "in"}, "outputs": {"OUT": "s0"}},
        {"calculator": "TestFail", "name": "bad", "inputs": {"IN": "s0"}, "outputs": {"OUT": "s1"},
         "options": {"phase": "process", "at": 1}},
        {"calculator": "PassThrough", "name": "after", "inputs": ["s1"], "outputs": ["s2"]},
    ]}
    with GraphRun(spec, collect=["s2"], threads=1) as r:
        r.start()
        direct_streams = {s.name for s in r.graph._streams.values() if type(s) is DirectStream}
        try:
            r.feed("in", [(t, t + 1) for t in range(20)])
        except GraphRunError:  # add_packet raises the run's error once it has failed
            pass
        with pytest.raises(GraphRunError) as ei:
            r.graph.wait(30)
        stats = r.graph.stats()
    assert direct_streams == ({"s0", "s1"} if direct else set())
    err = ei.value
    assert err.node == "bad" and err.timestamp == 1 and err.phase == "process", str(err)
    assert r.out["s2"] == []
    assert stats["bad"]["count"] == 0 and stats["after"]["count"] == 0


def test_a_direct_call_that_emits_nothing_still_moves_its_outputs_bound(direct):
    # p -> even (a direct hop) drops odd values; join reads the graph input and even's output:
    # it processes each timestamp as soon as it is fed, only if even's call moved its output's
    # bound past it (the offset contract), with or without a packet
    spec = {"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "p", "inputs": ["in"], "outputs": ["s0"]},
        {"calculator": "TestEvenOnly", "name": "even", "inputs": {"IN": "s0"}, "outputs": {"OUT": "s1"}},
        {"calculator": "TestJoin", "name": "join", "inputs": {"A": "in", "B": "s1"}, "outputs": {"OUT": "s2"}},
    ]}
    with GraphRun(spec, collect=["s2"], threads=1) as r:
        r.start()
        direct_streams = {s.name for s in r.graph._streams.values() if type(s) is DirectStream}
        for t in range(6):
            r.feed("in", [(t, t)], idle=True)
            assert len(r.out["s2"]) == t + 1, f"join has not processed {t} once the graph is idle: {r.out['s2']}"
        r.finish()
    assert direct_streams == ({"s0"} if direct else set())
    assert r.out["s2"] == [(t, (t, t if t % 2 == 0 else None)) for t in range(6)]
