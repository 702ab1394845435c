"""The Graph API as a caller reads it: ``topology()`` whole, ``wall_time()``, ``trace_events()``,
``poller()`` and ``observe()`` misuse, a graph used as a context manager without being started.
Written against the survivors of a mutation run of pipeline/graph.py (docs/testing.md)."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from pipeline import Any, Calculator, Graph, GraphConfigError, GraphRunError, Input, Output, SideOutput, register
from pipeline.errors import QueueFullError
from tests.pipeline.calcs import Gate

TOPOLOGY = """
name: topo
inputs: [frames]
outputs: [summed]
side_packets: {OFFSET: 3}
executors: {slow: {threads: 1}}
nodes:
  - calculator: FlowLimiter
    inputs: {IN: frames, FINISHED: {stream: summed, back_edge: true}}
    outputs: {OUT: admitted}
  - calculator: TestMakesSide
    name: maker
    inputs: {IN: {stream: admitted, capacity: 3, overflow: drop_oldest}}
    outputs: [made]
    side_outputs: {S: made_side}
    policy: {latest: 2}
    executor: slow
  - calculator: TestSide
    inputs: [made]
    outputs: [summed]
    side_inputs: {OFFSET: OFFSET}
    max_in_flight: 2
"""


@register
class TestMakesSide(Calculator):
    """Passes its input on; sets its side output S to 1."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_outputs = {"S": SideOutput(int)}

    def open(self, ctx):
        ctx.side_outputs["S"].set(1)

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.get("IN"))


def _input(stream, back_edge=False, capacity=100, overflow="block"):
    return {"stream": stream, "back_edge": back_edge, "capacity": capacity, "overflow": overflow}


def test_topology_describes_every_node_edge_and_declaration():
    # What `vpipe viz`, the web preview and `vpipe profile` draw from: each field as the graph says.
    topo = Graph.from_yaml(TOPOLOGY).topology()
    assert topo == {
        "name": "topo", "inputs": ["frames"], "outputs": ["summed"], "side_packets": {"OFFSET": 3},
        "executors": {"slow": 1},
        "nodes": [
            {"name": "FlowLimiter", "calculator": "FlowLimiter", "policy": "immediate", "executor": "default",
             "max_in_flight": 1,
             "inputs": {"IN": _input("frames"), "FINISHED": _input("summed", back_edge=True)},
             "outputs": {"OUT": "admitted"}, "side_inputs": {}, "side_outputs": {}},
            {"name": "maker", "calculator": "TestMakesSide", "policy": "latest(2)", "executor": "slow",
             "max_in_flight": 1, "inputs": {"IN": _input("admitted", capacity=3, overflow="drop_oldest")},
             "outputs": {"OUT": "made"}, "side_inputs": {}, "side_outputs": {"S": "made_side"}},
            {"name": "TestSide", "calculator": "TestSide", "policy": "sync", "executor": "default",
             "max_in_flight": 2, "inputs": {"IN": _input("made")},
             "outputs": {"OUT": "summed"}, "side_inputs": {"OFFSET": "OFFSET"}, "side_outputs": {}},
        ],
        # (producer or None for a graph input, consumer, stream, back edge)
        "edges": [(None, "FlowLimiter", "frames", False), ("TestSide", "FlowLimiter", "summed", True),
                  ("FlowLimiter", "maker", "admitted", False), ("maker", "TestSide", "made", False)],
    }


def test_wall_time_is_none_before_start_and_fixed_once_the_run_ended(no_thread_leak):
    g = Graph.from_yaml("nodes: [{calculator: TestSeq, options: {timestamps: [0, 1, 2]}, outputs: [n]}]")
    assert g.wall_time() is None
    t0 = time.perf_counter()
    g.run()
    elapsed = time.perf_counter() - t0
    first = g.wall_time()
    assert 0 < first <= elapsed
    assert g.wall_time() == first, "the wall time of an ended run moved on"


def test_run_records_a_trace_only_when_asked(no_thread_leak):
    g = Graph.from_yaml("nodes: [{calculator: TestSeq, options: {timestamps: [0, 1, 2]}, outputs: [n]}]")
    g.run()
    assert g.trace_events() == [], "run() traced without being asked"
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    g.start(trace=True)
    g.add_packet("a", "x", 5)
    g.close_all_inputs()
    g.wait(10)
    [(node, thread, timestamp, start_ns, end_ns)] = g.trace_events()
    assert (node, timestamp) == ("PassThrough", 5) and thread.startswith("vpipe-default-") and start_ns <= end_ns


def test_poller_and_observe_after_start_are_refused_with_their_names(no_thread_leak):
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    p = g.poller("b")
    with pytest.raises(RuntimeError, match=r"^poller of 'b': start\(\) the graph before get\(\)$"):
        p.get()
    g.start()
    with pytest.raises(RuntimeError, match=r"^poller\(\) must be called before start\(\)$"):
        g.poller("b")
    with pytest.raises(RuntimeError, match=r"^observe\(\) must be called before start\(\)$"):
        g.observe("b", print)
    g.close_all_inputs()
    assert p.get(10) is None
    g.wait(10)


def test_an_unstarted_graph_leaves_a_with_block_quietly():
    with Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]") as g:
        pass
    assert g.done is False and g.wall_time() is None and g.side_packet("any") is None


def test_stats_name_every_figure_and_agree_with_each_other(no_thread_leak):
    g = Graph.from_yaml("""
nodes:
  - {calculator: TestSeq, name: src, options: {timestamps: [0, 1, 2]}, outputs: [a]}
  - {calculator: PassThrough, name: p, inputs: {IN: {stream: a, capacity: 5}}, outputs: [b]}
""")
    g.observe("b", lambda p: None)
    t0 = time.perf_counter()
    g.run()
    elapsed = time.perf_counter() - t0
    stats = g.stats()
    assert list(stats) == ["src", "p"]
    for name, calc, count in (("src", "TestSeq", 4), ("p", "PassThrough", 3)):  # a source's last call says STOP
        s = stats[name]
        assert list(s) == ["calculator", "count", "time_s", "mean_ms", "queue_depth", "queue_peak", "drops", "inputs"]
        assert (s["calculator"], s["count"], s["queue_depth"], s["drops"]) == (calc, count, 0, 0)
        assert 0 < s["time_s"] < elapsed
        # the mean is the total over the calls, in ms (exact but for rounding)
        assert s["mean_ms"] * s["count"] / 1e3 == pytest.approx(s["time_s"], rel=1e-12, abs=0)
    assert stats["src"]["inputs"] == {} and stats["src"]["queue_peak"] == 0
    [(tag, q)] = stats["p"]["inputs"].items()
    assert tag == "IN:0" and q.keys() == {"stream", "depth", "peak", "drops", "capacity"}
    assert (q["stream"], q["depth"], q["drops"], q["capacity"]) == ("a", 0, 0, 5)
    assert 1 <= q["peak"] <= 3 and stats["p"]["queue_peak"] == q["peak"]


def test_wait_until_idle_before_start_is_refused():
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    with pytest.raises(RuntimeError, match=r"^start\(\) the graph before wait_until_idle\(\)$"):
        g.wait_until_idle(1)


def test_wait_before_start_is_refused():
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    with pytest.raises(RuntimeError, match=r"^start\(\) the graph before wait\(\)$"):
        g.wait(1)


def test_a_waiter_for_idle_that_gives_up_leaves_the_others_waiting_to_be_woken(no_thread_leak):
    # Two callers wait for the graph to become idle; one gives up (timeout) while a call is held:
    # the other is still woken when the graph becomes idle.
    gate = Gate()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None}, "nodes": [
        {"calculator": "TestBlocker", "inputs": ["in"], "outputs": ["o"], "side_inputs": {"GATE": "gate"}}]})
    g.start({"gate": gate})
    g.add_packet("in", 0, 0)
    assert gate.entered.wait(10)
    woken: list = []
    patient = threading.Thread(target=lambda: woken.append(_idle_or_error(g, 30)))
    patient.start()
    with pytest.raises(TimeoutError, match="did not become idle within 0.2 s"):
        g.wait_until_idle(0.2)
    gate.release()
    patient.join(60)
    assert woken == [None], "the patient waiter was not woken when the graph became idle"
    g.close_all_inputs()
    g.wait(10)


def _idle_or_error(g, timeout):
    try:
        g.wait_until_idle(timeout)
    except Exception as e:  # noqa: BLE001 - handed to the test
        return e
    return None


def test_from_yaml_trusts_no_plugin_unless_told_and_passes_the_bounds(tmp_path, monkeypatch):
    monkeypatch.setenv("VPIPE_CONFIG", str(tmp_path / "config.yaml"))  # no allowlist
    text = "plugins: [vpipe_test_no_such_plugin]\nnodes: [{calculator: TestSeq, outputs: [n]}]"
    with pytest.raises(GraphConfigError, match=r"plugin 'vpipe_test_no_such_plugin' is not loaded: plugins are code"):
        Graph.from_yaml(text)
    g = Graph.from_yaml("nodes: [{calculator: TestSeq, outputs: [n]}]", drain_timeout=1.5, stuck_timeout=0.25)
    assert (g.drain_timeout, g.stuck_timeout) == (1.5, 0.25)


def test_a_graph_whose_start_failed_leaves_a_with_block_quietly():
    spec = "inputs: [a]\nside_packets: {k: 1}\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]"
    with Graph.from_yaml(spec) as g:
        with pytest.raises(GraphConfigError, match="side packet 'nope' is given but the graph does not declare it"):
            g.start({"nope": 2})
    assert g.wall_time() is None


def test_feeding_what_is_no_graph_input_is_refused_with_the_inputs_named(no_thread_leak):
    g = Graph.from_yaml("inputs: [a, c]\nnodes: [{calculator: TestJoin, inputs: {A: a, B: c}, outputs: [b]}]")
    with pytest.raises(RuntimeError, match=r"^start\(\) the graph before add_packet\(\)$"):
        g.add_packet("a", 1, 0)
    g.start()
    for stream in ("b", "nope"):  # a node's output, no stream at all
        with pytest.raises(KeyError, match=rf"^\"'{stream}' is not an input stream of graph '[^']+' \(inputs: a, c\)\"$"):
            g.add_packet(stream, 1, 0)
        with pytest.raises(KeyError, match=rf"^\"'{stream}' is not an input stream of graph '[^']+'\"$"):
            g.close_input(stream)
    g.close_all_inputs()
    g.wait(10)
    g = Graph.from_yaml("nodes: [{calculator: TestSeq, options: {timestamps: [0]}, outputs: [n]}]")
    g.start()
    with pytest.raises(KeyError, match=r"\(inputs: none\)"):
        g.add_packet("n", 1, 0)
    g.wait(10)


class _Raises:
    """An observer that is no function (no ``__name__``)."""

    def __call__(self, packet):
        raise ValueError("observer broke")


def test_an_observer_without_a_name_is_named_callback_in_the_error(no_thread_leak):
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    g.observe("b", _Raises())
    g.start()
    with pytest.raises(GraphRunError) as ei:  # from add_packet if the observer runs in this thread, or wait
        g.add_packet("a", 1, 3)
        g.close_all_inputs()
        g.wait(10)
    with contextlib.suppress(GraphRunError):  # ends the run's threads (raised by add_packet: not waited yet)
        g.wait(10)
    err = ei.value
    assert (err.node, err.calculator, err.phase, err.timestamp) == ("observer of 'b'", "callback", "observe", 3)


class Image:  # a port type named Image gets the hint to wrap the array
    pass


@register
class TestTypedSink(Calculator):
    """Takes ints on IN:0..n and Images on PICTURE."""

    inputs = {"IN": Input(int, multiple=True), "PICTURE": Input(Image, optional=True)}

    def process(self, ctx):
        pass


def test_the_first_packet_fed_is_checked_against_every_port_that_reads_it(no_thread_leak):
    spec = """
inputs: [a, b, pic]
nodes:
  - {calculator: PassThrough, inputs: [a], outputs: [a2]}   # Any: nothing to check, the next reader is
  - {calculator: TestTypedSink, inputs: {"IN:0": b, "IN:1": a, PICTURE: pic}}
"""
    g = Graph.from_yaml(spec)
    g.observe("a2", lambda p: None)
    with g:
        g.start()
        with pytest.raises(TypeError, match=r"^add_packet\('a'\): node 'TestTypedSink' input IN:1 takes int, got str$"):
            g.add_packet("a", "x", 0)
        with pytest.raises(TypeError, match=r"^add_packet\('pic'\): node 'TestTypedSink' input PICTURE takes Image, "
                                            r"got list \(wrap the array: Image\(array, 'RGB'\)\)$"):
            g.add_packet("pic", [1], 0)
        g.add_packet("b", True, 0)  # a subclass (bool) fits
        g.add_packet("b", "later", 1)  # only the first packet of an input is checked


def test_a_full_graph_input_with_overflow_reject_refuses_and_counts_each_drop(no_thread_leak):
    gate = Gate()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None}, "nodes": [
        {"calculator": "TestBlocker", "inputs": {"IN": {"stream": "in", "capacity": 1, "overflow": "reject"}},
         "outputs": ["o"], "side_inputs": {"GATE": "gate"}}]})
    got = []
    g.observe("o", lambda p: got.append(p.timestamp))
    g.start({"gate": gate})
    g.add_packet("in", 0, 0)
    assert gate.entered.wait(10), "the first call never began"
    g.add_packet("in", 1, 1)  # waits in the queue (capacity 1)
    with pytest.raises(QueueFullError, match=r"^input 'IN' of node 'TestBlocker' is full \(1 packets\) and its "
                                             r"overflow policy is reject$"):
        g.add_packet("in", 2, 2)
    stats = g.stats()["TestBlocker"]
    assert (stats["drops"], stats["inputs"]["IN"]["drops"]) == (1, 1)
    with pytest.raises(QueueFullError):
        g.add_packet("in", 3, 3)
    stats = g.stats()["TestBlocker"]
    assert (stats["drops"], stats["inputs"]["IN"]["drops"]) == (2, 2)
    gate.release()
    g.close_all_inputs()
    g.wait(10)
    assert got == [0, 1]


def test_pollers_end_at_once_on_a_stream_switched_off_and_on_one_that_closed(no_thread_leak):
    # While the run goes on (its input is open): a poller of a stream whose producer `when:` left
    # out ends at once, and a poller of a source that has stopped ends after its last packet.
    g = Graph.from_yaml("""
inputs: [a]
side_packets: {extra: null}
nodes:
  - {calculator: PassThrough, inputs: [a], outputs: [b]}
  - {calculator: PassThrough, inputs: [a], outputs: [off], when: $extra}
  - {calculator: TestSeq, outputs: [n], options: {timestamps: [1, 2]}}
""")
    off, n = g.poller("off"), g.poller("n")
    got = []
    g.observe("b", lambda p: got.append(p.timestamp))
    g.start()
    try:
        assert off.get(10) is None, "the stream of a node switched off carries nothing"
        assert [p.timestamp for p in (n.get(10), n.get(10))] == [1, 2]
        assert n.get(10) is None, "the source stopped: its stream is closed"
        assert not g.done
        g.add_packet("a", "x", 5)
    finally:
        g.close_all_inputs()
        g.wait(10)
    assert got == [5]


def test_a_graph_started_twice_is_refused(no_thread_leak):
    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    g.start()
    try:
        with pytest.raises(RuntimeError, match=r"^the graph was already started; build a new Graph to run again$"):
            g.start()
    finally:
        g.close_all_inputs()
        g.wait(10)


@pytest.mark.parametrize("declared, listed", [("{x: 1, y: 2}", "x, y"), ("{}", "none")])
def test_a_side_packet_not_declared_is_refused_with_the_declared_ones(declared, listed):
    g = Graph.from_yaml(f"side_packets: {declared}\nnodes: [{{calculator: TestSeq, outputs: [n]}}]")
    with pytest.raises(GraphConfigError, match=rf"side packet 'z' is given but the graph does not declare it "
                                               rf"\(declared: {listed}\)$"):
        g.start({"z": 3})


def test_a_node_switched_off_leaves_the_others_reading_a_graph_input_and_a_stream_that_is_on(no_thread_leak):
    g = Graph.from_yaml("""
inputs: [a]
side_packets: {extra: null}
nodes:
  - {calculator: PassThrough, inputs: [a], outputs: [b]}
  - {calculator: PassThrough, inputs: [b], outputs: [c]}
  - {calculator: PassThrough, inputs: [b], outputs: [d], when: $extra}
""")
    got = []
    g.observe("c", lambda p: got.append((p.timestamp, p.value)))
    g.start()
    g.add_packet("a", "x", 4)
    g.close_all_inputs()
    g.wait(10)
    assert got == [(4, "x")]


def test_from_dict_passes_search_paths_and_trust_on(tmp_path, monkeypatch):
    monkeypatch.delenv("VPIPE_GRAPH_PATH", raising=False)
    sub = tmp_path / "lib"
    sub.mkdir()
    (sub / "relay_sub.yaml").write_text("inputs: [x]\noutputs: [y]\nnodes:\n"
                                        "  - {calculator: PassThrough, inputs: [x], outputs: [y]}\n")
    outer = {"inputs": ["a"], "nodes": [{"subgraph": "relay_sub", "inputs": ["a"], "outputs": ["b"]}]}
    assert [n.name for n in Graph.from_dict(outer, [str(sub)]).spec.nodes] == ["relay_sub/PassThrough"]
    with pytest.raises(GraphConfigError, match=r"subgraph 'relay_sub' not found"):
        Graph.from_dict(outer)
    plugin = {"plugins": ["vpipe_test_never_loaded"], "inputs": ["a"],
              "nodes": [{"calculator": "PassThrough", "inputs": ["a"], "outputs": ["b"]}]}
    with pytest.raises(GraphConfigError, match=r"is not loaded"):
        Graph.from_dict(plugin)
    with pytest.raises(GraphConfigError, match=r"cannot load plugin 'vpipe_test_never_loaded'"):
        Graph.from_dict(plugin, trust=True)


@pytest.mark.parametrize("bounds", [{"drain_timeout": -1}, {"stuck_timeout": -0.5},
                                    {"drain_timeout": -1, "stuck_timeout": -1}])
def test_negative_bounds_are_refused_and_zero_ones_taken(bounds):
    text = "inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]"
    with pytest.raises(ValueError, match=r"^drain_timeout and stuck_timeout must be >= 0 s, got "):
        Graph.from_yaml(text, **bounds)
    g = Graph.from_yaml(text, drain_timeout=0, stuck_timeout=0)
    assert (g.drain_timeout, g.stuck_timeout) == (0.0, 0.0)
    g = Graph.from_yaml(text, drain_timeout=0.5, stuck_timeout=0.5)
    assert (g.drain_timeout, g.stuck_timeout) == (0.5, 0.5)
