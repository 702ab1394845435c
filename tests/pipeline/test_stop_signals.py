"""Stop signals (pipeline/signals.py), sent to this process for real: the first asks the watched
graph to stop cleanly, the second cancels it with a short stuck bound, a second one while calculators
are opened raises ``StopSignal``, ``protected()`` defers the exception to the end of the region, and
whatever handler was there before comes back. The graph is any object with ``request_stop`` and
``cancel`` (what ``StopSignals`` calls)."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading

import pytest

from pipeline import signals
from pipeline.signals import EXIT_CODES, NAMES, StopSignal, StopSignals, protected, watching

WAIT_S = 10.0


class FakeGraph:
    """Records what the signal helper thread asks of it."""

    def __init__(self, stuck_timeout=None, opening=False):
        self.calls: list = []
        self.changed = threading.Condition()
        self.drain_timeout = 2.5
        if stuck_timeout is not None:
            self.stuck_timeout = stuck_timeout
        self._opening = opening

    def request_stop(self):
        with self.changed:
            self.calls.append("request_stop")
            self.changed.notify_all()

    def cancel(self, stuck_timeout=None):
        with self.changed:
            self.calls.append(("cancel", stuck_timeout))
            self.changed.notify_all()

    def wait_calls(self, n):
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= n, WAIT_S), f"calls so far: {self.calls}"
        return list(self.calls)


def _kill(signum, raises=False):
    """Sends ``signum`` to this process; its Python handler runs in the main thread at once. Unless
    ``raises``, an exception from the handler fails the test (a KeyboardInterrupt escaping a test
    would end the whole pytest run as interrupted instead)."""
    try:
        os.kill(os.getpid(), signum)
        for _ in range(100):  # a few bytecodes: where the main thread runs the pending handler
            pass
    except KeyboardInterrupt as e:
        if raises:
            raise
        pytest.fail(f"the signal raised {type(e).__name__} where it must not")


@pytest.fixture(autouse=True)
def _handlers_back():
    """Puts back the handlers a test set itself (whether ``StopSignals`` puts back its own is checked
    in the tests)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    # Each test starts from Python's defaults, whatever an earlier test in this process left (an
    # in-process `vpipe run` keeps its late-signal handlers: apps/progress.py)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    yield
    for s, h in before.items():
        signal.signal(s, h)


def test_exit_codes_and_names():
    assert EXIT_CODES == {signal.SIGINT: 130, signal.SIGTERM: 143}
    assert NAMES == {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def test_first_signal_drains_and_second_cancels_with_a_short_bound(caplog):
    g = FakeGraph(stuck_timeout=5.0)
    told = []
    previous_wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_wakeup)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with caplog.at_level(logging.INFO, logger="vpipe"):
        with StopSignals(g, on_signal=lambda s, n: told.append((s, n))) as watch:
            assert watch.installed
            assert signal.getsignal(signal.SIGINT) == watch._handle
            assert signal.getsignal(signal.SIGTERM) == watch._handle
            _kill(signal.SIGINT)
            assert g.wait_calls(1) == ["request_stop"]
            _kill(signal.SIGTERM)
            assert g.wait_calls(2) == ["request_stop", ("cancel", 1.0)]
    assert not watch.installed
    assert {s: signal.getsignal(s) for s in before} == before  # the handlers there before are back
    assert watch.received == [signal.SIGINT, signal.SIGTERM] and watch.first == signal.SIGINT
    assert told == [(signal.SIGINT, 1), (signal.SIGTERM, 2)]
    assert [r.getMessage() for r in caplog.records if r.name == "vpipe"] == [
        "Ctrl-C: stopping cleanly (draining for at most 2.5 s)"]
    assert signal.set_wakeup_fd(-1) == previous_wakeup  # the wakeup fd given back
    signal.set_wakeup_fd(previous_wakeup)


@pytest.mark.parametrize("stuck, bound", [(0.25, 0.25), (None, 1.0), (30.0, 1.0)])
def test_the_second_signal_bound_is_the_shorter_of_one_second_and_the_graphs(stuck, bound):
    g = FakeGraph(stuck_timeout=stuck)
    with StopSignals(g, (signal.SIGINT,)):
        _kill(signal.SIGINT)
        g.wait_calls(1)
        _kill(signal.SIGINT)
        assert g.wait_calls(2)[1] == ("cancel", bound)
    assert signals.SECOND_SIGNAL_STUCK_S == 1.0


def test_only_the_signals_asked_for_are_handled():
    g = FakeGraph()
    with StopSignals(g, (signal.SIGTERM,)) as watch:
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert list(watch._previous) == [signal.SIGTERM]
        _kill(signal.SIGTERM)
        assert g.wait_calls(1) == ["request_stop"]


def test_another_signal_is_named_by_its_number_and_a_bare_graph_drains_for_0_s(caplog):
    g = FakeGraph()
    del g.drain_timeout
    with caplog.at_level(logging.INFO, logger="vpipe"):
        with StopSignals(g, (signal.SIGUSR1,)):
            _kill(signal.SIGUSR1)
            assert g.wait_calls(1) == ["request_stop"]
    assert [r.getMessage() for r in caplog.records if r.name == "vpipe"] == [
        f"{int(signal.SIGUSR1)}: stopping cleanly (draining for at most 0 s)"]


def test_a_failing_notification_does_not_stop_the_stop(caplog):
    g = FakeGraph()

    def boom(signum, count):
        raise RuntimeError("printing failed")

    with caplog.at_level(logging.ERROR, logger="vpipe"):
        with StopSignals(g, (signal.SIGINT,), on_signal=boom):
            _kill(signal.SIGINT)
            assert g.wait_calls(1) == ["request_stop"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "stop signal notification failed"]


def test_a_users_own_handler_is_left_alone_with_only_default():
    got = []

    def mine(signum, frame):
        got.append(signum)

    signal.signal(signal.SIGINT, mine)
    g = FakeGraph()
    with watching(g) as watch:  # what Graph.start/wait install: only over Python's default
        assert not watch.installed and watch.signums == (signal.SIGINT,)
        assert signal.getsignal(signal.SIGINT) is mine
        _kill(signal.SIGINT)
    assert got == [signal.SIGINT] and g.calls == []
    with StopSignals(g, (signal.SIGINT,)) as watch:  # without only_default it takes over
        assert watch.installed
    assert signal.getsignal(signal.SIGINT) is mine


def test_watching_installs_over_the_default_handler():
    g = FakeGraph()
    with watching(g) as watch:
        assert watch.installed and list(watch._previous) == [signal.SIGINT]
        assert signal.getsignal(signal.SIGTERM) is not watch._handle
        _kill(signal.SIGINT)
        assert g.wait_calls(1) == ["request_stop"]
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the C default counts as default too
    with watching(g) as watch:
        assert watch.installed
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_outside_the_main_thread_nothing_is_installed():
    seen = {}

    def other():
        with StopSignals(FakeGraph()) as watch:
            seen["installed"] = watch.installed
        with protected():
            seen["protected"] = True

    t = threading.Thread(target=other)
    t.start()
    t.join(WAIT_S)
    assert seen == {"installed": False, "protected": True}


def test_a_second_signal_while_opening_raises_stop_signal():
    g = FakeGraph(opening=True)
    with StopSignals(g, (signal.SIGINT,)) as watch:
        _kill(signal.SIGINT)  # the first does not raise
        g.wait_calls(1)
        with pytest.raises(StopSignal) as e:
            _kill(signal.SIGINT, raises=True)
    assert e.value.signum == signal.SIGINT and str(e.value) == "Ctrl-C"
    assert isinstance(e.value, KeyboardInterrupt)
    assert watch.received == [signal.SIGINT, signal.SIGINT]
    g.wait_calls(2)


def test_without_a_graph_the_signal_sets_the_stop_event():
    stop = threading.Event()
    with StopSignals(None, (signal.SIGINT,), stop_event=stop) as watch:
        _kill(signal.SIGINT)
        assert stop.is_set()
        _kill(signal.SIGINT)  # a second one raises nothing: there is no graph being opened
    assert watch.received == [signal.SIGINT, signal.SIGINT]


def test_a_second_signal_raises_only_while_opening():
    g = FakeGraph()
    del g._opening  # a graph object that never says it is opening
    with StopSignals(g, (signal.SIGINT,)) as watch:
        _kill(signal.SIGINT)
        _kill(signal.SIGINT)
        assert g.wait_calls(2) == ["request_stop", ("cancel", 1.0)]
    assert watch.received == [signal.SIGINT, signal.SIGINT]


def test_stop_signal_names_and_pickles():
    assert str(StopSignal(signal.SIGTERM)) == "SIGTERM"
    assert str(StopSignal(10)) == "signal 10"
    back = pickle.loads(pickle.dumps(StopSignal(signal.SIGTERM)))
    assert type(back) is StopSignal and back.signum == signal.SIGTERM and str(back) == "SIGTERM"


def test_protected_defers_keyboard_interrupt_to_its_end():
    stop = threading.Event()
    reached = []
    with pytest.raises(KeyboardInterrupt) as e:
        with protected(stop):
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            _kill(signal.SIGINT)  # no exception here
            reached.append("after the signal")
            assert stop.is_set()
    assert type(e.value) is KeyboardInterrupt
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_protected_without_a_signal_raises_nothing_and_nests():
    with protected():
        with protected():
            pass
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with protected():
            with protected():
                _kill(signal.SIGINT)
            reached.append("inner end: not yet")
    assert reached == ["inner end: not yet"]


def test_a_stop_signal_due_inside_protected_comes_at_its_end():
    g = FakeGraph(opening=True)
    reached = []
    with StopSignals(g, (signal.SIGINT,)):
        _kill(signal.SIGINT)
        g.wait_calls(1)
        with pytest.raises(StopSignal) as e:
            with protected():
                # a handler is already installed (ours): protected adds none
                assert signal.getsignal(signal.SIGINT) != signal.default_int_handler
                _kill(signal.SIGINT)
                reached.append("inside")
        g.wait_calls(2)
    assert reached == ["inside"] and e.value.signum == signal.SIGINT
    with protected():  # nothing left due
        pass


def test_protected_under_a_users_handler_leaves_it():
    got = []
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    with protected():
        _kill(signal.SIGINT)
    assert got == [signal.SIGINT]


def test_the_helper_thread_is_a_daemon_named_vpipe_signals_while_installed():
    def helpers():
        return [t for t in threading.enumerate() if t.name == "vpipe-signals"]

    assert helpers() == []
    with StopSignals(FakeGraph(), (signal.SIGINT,)):
        (t,) = helpers()
        assert t.daemon
    assert helpers() == []


def test_only_default_checks_each_signal_on_its_own():
    signal.signal(signal.SIGINT, lambda s, f: None)  # the user's own, for SIGINT only
    with StopSignals(FakeGraph(), (signal.SIGINT, signal.SIGTERM), only_default=True) as watch:
        assert list(watch._previous) == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) == watch._handle


def test_a_signal_of_someone_elses_handler_does_not_stop_the_graph():
    got = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    g = FakeGraph()
    with StopSignals(g, (signal.SIGINT,)):
        _kill(signal.SIGUSR1)  # its byte reaches our wakeup pipe too
        _kill(signal.SIGINT)
        assert g.wait_calls(1) == ["request_stop"]
    assert got == [signal.SIGUSR1] and g.calls == ["request_stop"]


def test_only_default_leaves_a_watched_signal_with_a_users_handler_to_that_handler():
    """Of the signals asked for, one has the user's handler: under only_default it is theirs alone
    (its byte still reaches our wakeup pipe); the other one, over the default, is ours."""
    got = []
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    g = FakeGraph()
    told = []
    with StopSignals(g, (signal.SIGINT, signal.SIGTERM), only_default=True,
                     on_signal=lambda s, n: told.append((s, n))) as watch:
        _kill(signal.SIGINT)
        _kill(signal.SIGTERM)
        assert g.wait_calls(1) == ["request_stop"]
    assert got == [signal.SIGINT]
    assert told == [(signal.SIGTERM, 1)] and g.calls == ["request_stop"] and watch.first == signal.SIGTERM


def test_a_handled_signal_whose_byte_is_not_yet_read_is_acted_on_at_exit():
    g = FakeGraph()
    told = []
    with StopSignals(g, (signal.SIGINT,), on_signal=lambda s, n: told.append((s, n))):
        # the Python handler ran (as the C handler can let it, before writing the wakeup byte)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert told == [(signal.SIGINT, 1)] and g.calls == ["request_stop"]


def test_ctrl_c_in_wait_drains_the_graph_then_raises_keyboard_interrupt(no_thread_leak):
    # Graph.wait() watches Ctrl-C itself (where Python's default handler is in force): the first
    # one drains the run as request_stop() does (its open input is closed), and wait() raises
    # KeyboardInterrupt once the run has ended, its packet delivered.
    from pipeline import Graph

    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    got = []
    g.observe("b", lambda p: got.append(p.timestamp))
    g.start()
    g.add_packet("a", "x", 1)
    failed = []

    def ctrl_c_once_wait_watches():
        # wait() installs its handler in this process's main thread before it blocks; until then
        # a Ctrl-C would land in the test itself
        give_up = threading.Event()
        for _ in range(int(WAIT_S / 0.005)):
            if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                os.kill(os.getpid(), signal.SIGINT)
                return
            give_up.wait(0.005)
        failed.append("wait() never installed its SIGINT handler")
        g.cancel()

    th = threading.Thread(target=ctrl_c_once_wait_watches, name="test-ctrl-c")
    th.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            g.wait(WAIT_S)
    finally:
        th.join(WAIT_S)
    assert not failed, failed
    assert got == [1] and not g.drain_expired
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "wait() put the default back"


def test_two_ctrl_c_in_a_calculators_open_end_start_with_stop_signal(no_thread_leak):
    # Graph.start() itself: two Ctrl-C while a node opens in the starting thread (a model load)
    # raise StopSignal out of that open, so start() ends at once (rule 2), the run cancelled.
    from pipeline import Calculator, Graph, Output, register

    @register(name="TestCtrlCTwiceInOpen")
    class CtrlCTwiceInOpen(Calculator):
        outputs = {"OUT": Output(int)}

        def open(self, ctx):
            for _ in range(2):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(100):  # a few bytecodes: where this thread runs the pending handler
                    pass

        def process(self, ctx):
            pass

    g = Graph.from_yaml("nodes: [{calculator: TestCtrlCTwiceInOpen, outputs: [a]}]")
    try:
        g.start()
    except KeyboardInterrupt as e:  # a plain one escaping a test would end the whole pytest run
        assert isinstance(e, StopSignal), f"{e!r}: not StopSignal, start() went on after the second Ctrl-C"
        assert e.signum == signal.SIGINT
    else:
        pytest.fail("start() returned after two Ctrl-C in an open")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_two_signals_after_start_returned_raise_nothing_and_end_the_run(no_thread_leak):
    # Once start() has returned, no calculator is opening: a second signal cancels the run from the
    # helper thread and raises nothing where the main thread is (StopSignal is for opens only: it
    # may land inside threading's locks). Checked against start() leaving _opening True.
    from pipeline import Graph

    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    g.observe("b", lambda p: None)
    with StopSignals(g, (signal.SIGINT,)) as watch:
        g.start()
        _kill(signal.SIGINT)
        _kill(signal.SIGINT)
    g.wait(WAIT_S)  # the signals ended the run (the first drained it, the second cancels what is left)
    assert watch.received == [signal.SIGINT, signal.SIGINT] and g.done


def test_two_signals_before_start_raise_nothing(no_thread_leak):
    # A graph watched before it starts (vpipe run installs its handlers first) is not opening
    # calculators: a second signal then only cancels it, as it would a running one.
    from pipeline import Graph

    g = Graph.from_yaml("inputs: [a]\nnodes: [{calculator: PassThrough, inputs: [a], outputs: [b]}]")
    with StopSignals(g, (signal.SIGINT,)) as watch:
        _kill(signal.SIGINT)
        _kill(signal.SIGINT)
    assert watch.received == [signal.SIGINT, signal.SIGINT]
