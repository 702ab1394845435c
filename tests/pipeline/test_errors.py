"""Errors and shutdown: one error naming node, calculator and timestamp; close on every opened
calculator; cancel and Ctrl-C stop promptly; no thread outlives the run."""

import _thread
import sys
import threading

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, TimestampError, register
from pipeline.streams import DirectStream
from pipeline.testing import GraphRun
from tests.pipeline import calcs  # noqa: F401 - registers the Test* calculators
from tests.pipeline.calcs import Gate
from tests.pipeline.interleave import PausePoint
from tests.pipeline.test_worker_handoff import _wait_until
from tests.pipeline.test_shutdown_length import TestFailsAt  # noqa: F401 - registers it
from tests.pipeline.test_stuck_calls import WAIT_S

CHAIN = """
inputs: [in]
side_packets: {closed: null}
nodes:
  - calculator: PassThrough
    name: first
    inputs: [in]
    outputs: [a]
  - calculator: TestFail
    name: failer
    inputs: [a]
    outputs: [b]
    options: {phase: %s, at: %d}
    side_inputs: {CLOSED: closed}
  - calculator: PassThrough
    name: last
    inputs: [b]
    outputs: [c]
"""


def feed(g, n, closed=None):
    g.start({"closed": closed})
    try:
        for t in range(n):
            g.add_packet("in", t, t)
    except GraphRunError:
        pass
    g.close_all_inputs()


@pytest.mark.parametrize("threads", [1, 4])
def test_error_in_process_names_node_timestamp_and_closes_all(threads, no_thread_leak):
    closed = []
    g = Graph.from_yaml(CHAIN % ("process", 7), threads=threads)
    with pytest.raises(GraphRunError, match=r"node 'failer' \(TestFail\) failed in process at timestamp 7: "
                                            r"ValueError: boom at 7") as ei:
        feed(g, 50, closed)
        g.wait()
    err = ei.value
    assert (err.node, err.calculator, err.timestamp, err.phase) == ("failer", "TestFail", 7, "process")
    assert isinstance(err.__cause__, ValueError)
    assert "raise ValueError" in err.cause_traceback
    assert closed == ["failer"]  # close ran after the error


def test_error_in_open_closes_the_opened_ones(no_thread_leak):
    closed = []
    g = Graph.from_yaml(CHAIN % ("open", -1))
    with pytest.raises(GraphRunError, match=r"node 'failer' \(TestFail\) failed in open: RuntimeError: boom in open"):
        g.start({"closed": closed})
    assert closed == []  # open failed: close is not called on it


def test_error_in_open_closes_the_nodes_opened_before_it(no_thread_leak):
    # nodes open in topological order: 'before' opened (so it is closed), 'after' never opened
    closed = []
    g = Graph.from_yaml("""
inputs: [in]
side_packets: {closed: null}
nodes:
  - {calculator: TestFail, name: before, inputs: [in], outputs: [a], options: {phase: process, at: -1},
     side_inputs: {CLOSED: closed}}
  - {calculator: TestFail, name: failer, inputs: [a], outputs: [b], options: {phase: open, at: -1},
     side_inputs: {CLOSED: closed}}
  - {calculator: TestFail, name: after, inputs: [b], outputs: [c], options: {phase: process, at: -1},
     side_inputs: {CLOSED: closed}}
""")
    with pytest.raises(GraphRunError, match=r"node 'failer' \(TestFail\) failed in open"):
        g.start({"closed": closed})
    assert closed == ["before"]


def test_error_in_close_is_reported(no_thread_leak):
    g = Graph.from_yaml(CHAIN % ("close", -1))
    with pytest.raises(GraphRunError, match=r"node 'failer' \(TestFail\) failed in close: RuntimeError: boom in close"):
        feed(g, 3)
        g.wait()


def test_error_in_source(no_thread_leak):
    g = Graph.from_yaml("""
nodes:
  - calculator: TestSourceFail
    name: src
    outputs: [n]
  - calculator: PassThrough
    inputs: [n]
    outputs: [m]
""")
    with pytest.raises(GraphRunError, match=r"node 'src' \(TestSourceFail\) failed in source: OSError: source broke"):
        g.run()


def test_error_in_observer(no_thread_leak):
    g = Graph.from_yaml("""
nodes:
  - calculator: Counter
    outputs: [n]
    options: {count: 100}
""")

    def bad(p):
        if p.timestamp == 3:
            raise KeyError("observer broke")

    g.observe("n", bad)
    with pytest.raises(GraphRunError, match=r"node 'observer of 'n'' \(bad\) failed in observe at timestamp 3"):
        g.run()


def test_timestamp_error_names_stream_node_and_both_timestamps(no_thread_leak):
    g = Graph.from_yaml("""
inputs: [in]
nodes:
  - calculator: TestBackwards
    name: back
    inputs: [in]
    outputs: [out]
""")
    g.start()
    g.add_packet("in", 1, 5)
    g.add_packet("in", 1, 6)
    g.close_all_inputs()
    with pytest.raises(GraphRunError) as ei:
        g.wait()
    assert isinstance(ei.value.cause, TimestampError)
    assert ("stream 'out': node 'back' sent a packet at timestamp 0, but the last timestamp on it was 0 "
            "(next allowed: 6)") in str(ei.value)
    assert ei.value.timestamp == 6


def test_feed_timestamp_must_increase():
    g = Graph.from_yaml("inputs: [in]\nnodes:\n  - calculator: PassThrough\n    inputs: [in]\n    outputs: [o]\n")
    g.start()
    g.add_packet("in", 0, 10)
    with pytest.raises(TimestampError, match=r"stream 'in': node 'graph input' sent a packet at timestamp 10, "
                                             r"but the last timestamp on it was 10"):
        g.add_packet("in", 0, 10)
    g.cancel()
    g.wait()


def test_cancel_stops_an_endless_source_and_closes_everything(no_thread_leak):
    seen = threading.Event()
    g = Graph.from_yaml("""
nodes:
  - calculator: TestEndless
    outputs: [n]
  - calculator: PassThrough
    inputs: [n]
    outputs: [m]
""")
    g.observe("m", lambda p: seen.set() if p.value > 100 else None)
    g.start()
    assert seen.wait(10)
    g.cancel()
    g.wait(timeout=1.0)  # must stop within a second
    assert g.error is None


def test_ctrl_c_during_wait_cancels_cleanly(no_thread_leak):
    seen = threading.Event()
    g = Graph.from_yaml("""
nodes:
  - calculator: TestEndless
    outputs: [n]
  - calculator: PassThrough
    inputs: [n]
    outputs: [m]
""")

    def on(p):
        if p.value == 50:
            seen.set()
            _thread.interrupt_main()  # what Ctrl-C does

    g.observe("m", on)
    with pytest.raises(KeyboardInterrupt):
        g.run()
    assert seen.is_set()
    assert all(not n.opened or n.closed for n in g._nodes)


def test_ctrl_c_as_start_returns_inside_run_cancels_cleanly(monkeypatch, no_thread_leak):
    # the Ctrl-C of the test above lands wherever the main thread is when packet 50 passes: under
    # load, just after start() returned (its sources running) and before run() waits; run() must
    # still end the run. Here it lands there every time.
    started = Graph.start

    def start_then_ctrl_c(self, *args, **kwargs):
        started(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Graph, "start", start_then_ctrl_c)
    g = Graph.from_yaml("nodes:\n  - calculator: TestEndless\n    outputs: [n]\n"
                        "  - calculator: PassThrough\n    inputs: [n]\n    outputs: [m]\n")
    g.observe("m", lambda p: None)
    with pytest.raises(KeyboardInterrupt):
        g.run()
    assert g.done and all(n.closed for n in g._nodes)
    with pytest.raises(RuntimeError, match="already started"):
        g.run()  # a second run() is refused and leaves the first as it ended


def test_a_second_run_while_the_first_runs_is_refused_and_ends_nothing(no_thread_leak):
    g = Graph.from_yaml("inputs: [in]\nnodes:\n  - calculator: PassThrough\n    inputs: [in]\n    outputs: [o]\n")
    got = []
    g.observe("o", lambda p: got.append(p.timestamp))
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        g.start()
        with pytest.raises(RuntimeError, match="already started"):
            g.run()
        assert not g.done
        g.add_packet("in", "x", 0)
        g.close_all_inputs()
        g.wait(WAIT_S)
    assert got == [0] and g.state.name == "DONE"


def test_a_run_refused_by_its_side_packets_ends_failed_with_that_error_not_cancelled():
    # Nothing ran: the run reads as ended (FAILED, with the refusal as its error), so that wait()
    # raises it again at once (it waited for ever before: the state stayed RUNNING), and feeding
    # the graph raises it too (it said before that 'in' was not an input, while naming 'in').
    from pipeline import GraphConfigError

    g = Graph.from_yaml("side_packets: {s: null}\ninputs: [in]\nnodes:\n  - calculator: PassThrough\n"
                        "    inputs: [in]\n    outputs: [o]\n")
    poller = g.poller("o")
    with pytest.raises(GraphConfigError, match="side packet 'nope' is given but the graph does not declare it") as e:
        g.run({"nope": 1})
    assert g.done and g.state.name == "FAILED" and g.error is e.value and g.errors == [e.value]
    assert poller.get(timeout=WAIT_S) is None  # the run ended (it said before: "start() the graph before get()")
    for call in (lambda: g.wait(WAIT_S), lambda: g.wait_until_idle(WAIT_S), lambda: g.add_packet("in", "x", 0),
                 lambda: g.close_input("in"), g.close_all_inputs):
        with pytest.raises(GraphConfigError) as again:
            call()
        assert again.value is e.value
    with pytest.raises(RuntimeError, match="already started"):
        g.start()


def test_a_start_whose_open_failed_ends_failed_and_wait_raises_its_error(no_thread_leak):
    closed: list = []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"closed": None}, "nodes": [
        {"name": "first", "calculator": "TestFail", "inputs": {"IN": "in"}, "outputs": {"OUT": "a"},
         "side_inputs": {"CLOSED": "closed"}},
        {"name": "second", "calculator": "TestFail", "inputs": {"IN": "a"}, "options": {"phase": "open"},
         "side_inputs": {"CLOSED": "closed"}}]})
    poller = g.poller("a")
    with pytest.raises(GraphRunError, match=r"^node 'second' \(TestFail\) failed in open: RuntimeError: boom in open") as e:
        g.start({"closed": closed})
    assert closed == ["first"]  # the opened one closed before start() raised
    assert g.done and g.state.name == "FAILED" and g.error is e.value and g.errors == [e.value]
    with pytest.raises(GraphRunError) as again:
        g.wait(WAIT_S)
    assert again.value is e.value
    with pytest.raises(GraphRunError) as again:
        g.add_packet("in", 1, 0)
    assert again.value is e.value
    assert poller.get(timeout=WAIT_S) is None


def test_a_start_whose_open_failed_keeps_that_error_first_when_a_close_fails_too(no_thread_leak):
    # first opened, second's open failed, then first's close fails as the start closes what it
    # opened: the open's failure is the run's error (raised by start and by wait), the close's
    # comes second (it came first before: the close ended the run, and the open's was lost)
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"name": "first", "calculator": "TestFail", "inputs": {"IN": "in"}, "outputs": {"OUT": "a"},
         "options": {"phase": "close"}},
        {"name": "second", "calculator": "TestFail", "inputs": {"IN": "a"}, "options": {"phase": "open"}}]})
    with pytest.raises(GraphRunError, match=r"^node 'second' \(TestFail\) failed in open") as e:
        g.start()
    assert g.error is e.value and [(x.node, x.phase) for x in g.errors] == [("second", "open"), ("first", "close")]
    with pytest.raises(GraphRunError) as again:
        g.wait(WAIT_S)
    assert again.value is e.value


def test_a_start_interrupted_in_an_open_ends_cancelled_and_wait_returns(no_thread_leak):
    @register
    class TestInterruptedOpen(Calculator):
        inputs = {"IN": Input(Any)}

        def open(self, ctx):
            raise KeyboardInterrupt  # as Ctrl-C landing in a calculator's open (the caller's thread)

        def process(self, ctx):
            raise AssertionError("never called")

    g = Graph.from_dict({"inputs": ["in"], "nodes": [{"calculator": "TestInterruptedOpen", "inputs": ["in"]}]})
    with pytest.raises(KeyboardInterrupt):
        g.start()
    assert g.done and g.state.name == "CANCELLED" and g.error is None and g.errors == []
    g.wait(WAIT_S)  # returns at once, without error, as after cancel()
    g.add_packet("in", 1, 0)  # taken and dropped, as by any cancelled run
    g.close_all_inputs()


def test_a_start_interrupted_before_the_run_was_built_ends_cancelled(no_thread_leak):
    # Ctrl-C while start() reads the side packets' options (before any stream exists): the run
    # reads as cancelled, wait() and wait_until_idle() return, and feeding it says why not.
    from pydantic import BaseModel, field_validator

    class InterruptOptions(BaseModel):
        when: str = "never"

        @field_validator("when")
        @classmethod
        def _interrupt(cls, v):
            if v == "now":
                raise KeyboardInterrupt  # as Ctrl-C landing while the options are validated
            return v

    @register
    class TestInterruptedResolve(Calculator):
        inputs = {"IN": Input(Any)}
        Options = InterruptOptions

        def process(self, ctx):
            raise AssertionError("never called")

    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"when": "never"},
                         "nodes": [{"calculator": "TestInterruptedResolve", "inputs": ["in"],
                                    "options": {"when": "$when"}}]})
    with pytest.raises(KeyboardInterrupt):
        g.start({"when": "now"})
    assert g.done and g.state.name == "CANCELLED" and g.error is None
    g.wait(WAIT_S)
    g.wait_until_idle(WAIT_S)
    for call in (lambda: g.add_packet("in", 1, 0), lambda: g.close_input("in")):
        with pytest.raises(RuntimeError, match=r"^graph '<dict>': its start was interrupted; build a new Graph "
                                               r"to run again$"):
            call()


def test_stop_run_from_a_calculator_ends_cleanly(no_thread_leak):
    from pipeline import Any, Calculator, Input, register

    @register
    class TestStopAt(Calculator):
        inputs = {"IN": Input(Any)}

        def process(self, ctx):
            if ctx.inputs["IN"].value == 20:
                ctx.stop_run()

    g = Graph.from_yaml("""
nodes:
  - calculator: TestEndless
    outputs: [n]
  - calculator: TestStopAt
    inputs: [n]
""")
    g.run()  # returns without error
    assert g.error is None
    assert g.stats()["TestStopAt"]["count"] >= 21


def test_context_manager_cancels_on_exception(no_thread_leak):
    with pytest.raises(RuntimeError, match="user code"):
        with Graph.from_yaml("""
nodes:
  - calculator: TestEndless
    outputs: [n]
""") as g:
            g.start()
            raise RuntimeError("user code")


@pytest.mark.parametrize("word, candidates, kwargs, expected", [
    ("PassThru", ["PassThrough", "Counter"], {}, "; did you mean 'PassThrough'?"),
    ("passthrough", ["PassThrough"], {}, "; did you mean 'PassThrough'?"),  # case only: still found
    ("zzz", ["PassThrough"], {}, ""),
    ("IMAG", ["IMAGE", "IMAGES", "MASK"], {"n": 1}, "; did you mean 'IMAGE'?"),
    ("bkes", ["bikes", "carphone"], {"cutoff": 0.5}, "; did you mean 'bikes'?"),
])
def test_did_you_mean_is_the_one_suggestion(word, candidates, kwargs, expected):
    from pipeline.errors import did_you_mean

    assert did_you_mean(word, candidates, **kwargs) == expected


def test_unknown_stream_in_observe_offers_the_closest():
    from pipeline import Graph

    g = Graph.from_yaml("inputs: [frames]\nnodes:\n  - calculator: PassThrough\n    inputs: {IN: frames}\n"
                     "    outputs: {OUT: passed}\n")
    with pytest.raises(KeyError, match=r"has no stream 'pased'; did you mean 'passed'\?"):
        g.observe("pased", lambda p: None)


@register
class TestSinkFailsFirst(Calculator):
    """A sink of two inputs, called on whichever has a packet (policy immediate): logs each call's
    timestamp to LOG and fails in its first call; its close is logged as "closed"."""

    inputs = {"A": Input(Any), "B": Input(Any)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        log = ctx.side["LOG"]
        log.append(ctx.timestamp)
        if len(log) == 1:
            raise ValueError("the sink fails")

    def close(self, ctx):
        ctx.side["LOG"].append("closed")


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_a_sink_whose_call_failed_is_called_no_more_and_closed_once(max_in_flight, no_thread_leak):
    # A stopping run lets its sinks go on writing what reached them, but not a sink that failed:
    # a packet sent to it after its failure, by a call of another node that was running then,
    # is not processed (the general path: two inputs). It is closed once, by the shutdown.
    gate, log = Gate(), []
    g = Graph.from_dict({"inputs": ["in", "in2"], "side_packets": {"gate": None, "log": None}, "nodes": [
        {"calculator": "TestBlocker", "name": "hold", "inputs": ["in"], "outputs": ["h"],
         "side_inputs": {"GATE": "gate"}},
        {"calculator": "TestSinkFailsFirst", "name": "failing", "inputs": {"A": "in2", "B": "h"},
         "policy": "immediate", "max_in_flight": max_in_flight, "side_inputs": {"LOG": "log"}},
    ]}, threads=2)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        g.start({"gate": gate, "log": log})
        try:
            g.add_packet("in", "x", 7)
            assert gate.entered.wait(WAIT_S), "hold's call never began"
            g.add_packet("in2", "y", 0)
            assert g._run.wait_until(lambda: g._run.error is not None, WAIT_S), "the failure was not recorded"
        finally:
            gate.release()  # hold's call goes on: it sends 7 to the failed sink
        with pytest.raises(GraphRunError, match="^node 'failing' .* at timestamp 0: ValueError: the sink fails"):
            g.wait(WAIT_S)
    assert log == [0, "closed"], "called after its failure" if 7 in log else log


@register
class TestHoldsAtOne(Calculator):
    """Passes its packets on; its call at 1 waits for the test's GATE first."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"GATE": SideInput(Gate)}

    def process(self, ctx):
        if ctx.timestamp == 1:
            gate = ctx.side["GATE"]
            gate.entered.set()
            if not gate.released.wait(WAIT_S):
                raise TimeoutError("test gate was never released")
        ctx.outputs["OUT"].add_packet(ctx.inputs["IN"])


def test_a_fast_path_sink_whose_call_failed_is_called_no_more(no_thread_leak):
    # The same on the fast path (one input, sync), the sink on an executor of its own so that its
    # packets take its queue (no direct hop): first fails at 0 while first's call at 1 waits; the
    # packet at 1, sent after the failure, reaches the sink's queue and is not processed.
    gate, log = Gate(), []
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "at": None, "log": None},
                         "executors": {"sinks": {"threads": 1}}, "nodes": [
        {"calculator": "TestHoldsAtOne", "name": "first", "inputs": ["in"], "outputs": ["a"],
         "side_inputs": {"GATE": "gate"}},
        {"calculator": "TestFailsAt", "name": "failing", "inputs": ["a"], "executor": "sinks",
         "side_inputs": {"AT": "at", "LOG": "log"}},
    ]}, threads=1)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        g.start({"gate": gate, "at": 1, "log": log})
        assert type(g._streams["a"]) is not DirectStream
        try:
            g.add_packet("in", "x", 0)
            g.add_packet("in", "x", 1)
            assert gate.entered.wait(WAIT_S), "first's call at 1 never began"
            assert g._run.wait_until(lambda: g._run.error is not None, WAIT_S), "the failure was not recorded"
        finally:
            gate.release()
        with pytest.raises(GraphRunError, match="^node 'failing' .* at timestamp 0: ValueError: the sink fails"):
            g.wait(WAIT_S)
    assert log == [0], "called after its failure"


def _joining(waiter: threading.Thread, target: threading.Thread) -> bool:
    """Whether ``waiter`` is inside ``target.join()``."""
    frame = sys._current_frames().get(waiter.ident)
    while frame is not None:
        if frame.f_code.co_name == "join" and frame.f_code.co_filename.endswith("threading.py") and \
                frame.f_locals.get("self") is target:
            return True
        frame = frame.f_back
    return False


def test_wait_returns_only_once_every_thread_of_the_run_has_ended(no_thread_leak):
    # A worker is held just after it told the run it ended (thread_ended returned), still alive:
    # wait() must join it, not return while it is alive, even though the run counts no thread left.
    g = Graph.from_yaml("inputs: [in]\nnodes:\n  - calculator: PassThrough\n    inputs: [in]\n    outputs: [o]\n",
                        threads=2)
    done, errors = threading.Event(), []

    def waiter():
        try:
            g.wait(WAIT_S)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        done.set()

    with PausePoint("thread_ended", None, 1, file="pipeline/run_state.py") as ended:
        g.start()
        g.add_packet("in", "x", 0)
        g.close_all_inputs()
        w = threading.Thread(target=waiter, name="test-waiter")
        w.start()
        try:
            assert ended.wait_reached(), "no thread of the run ended"
            _wait_until("wait() returned or joining the held thread",
                        lambda: done.is_set() or _joining(w, ended.thread))
            assert not done.is_set(), "wait() returned while a thread of the run was alive"
        finally:
            ended.go()
        assert done.wait(WAIT_S), "wait() did not return once the thread ended"
        w.join(WAIT_S)
    assert errors == []
