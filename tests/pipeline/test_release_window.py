"""The release window of a simple node's claim (pipeline/node.py's docstring): a worker that runs
out of work releases the claim, then looks at the queue once more; a producer that came before
the release leaves the packet to that look, one that came after claims the node itself. Each case
holds the worker at one line of that window (tests/pipeline/interleave.py) while the test's
producer sends, so the case runs every time: every packet is processed once, in order, by one
call at a time, before the graph goes idle (not only when the next packet or the close comes).
Written against the survivors of a mutation run of node.py (``step``'s inlined release,
``_simple_idle``; docs/testing.md)."""

from __future__ import annotations

import threading

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.testing import GraphRun
from tests.pipeline import calcs  # noqa: F401 - registers TestEvenOnly
from tests.pipeline.calcs import Gate
from tests.pipeline.interleave import WAIT_S, PausePoint, functions_on
from tests.pipeline.test_worker_handoff import _wait_until, _waits_in


@register
class TestOneAtATime(Calculator):
    """Passes its packets on and fails if two of its calls ever overlap; with a HOLD side packet
    ``(gate, t)``, its call at t waits for the gate inside the call first."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"HOLD": SideInput(tuple, optional=True)}

    def open(self, ctx):
        self.lock = threading.Lock()
        self.hold = ctx.side.get("HOLD")

    def process(self, ctx):
        if not self.lock.acquire(blocking=False):
            raise RuntimeError("two calls at once")
        try:
            if self.hold is not None and ctx.timestamp == self.hold[1]:
                gate = self.hold[0]
                gate.entered.set()
                if not gate.released.wait(WAIT_S):
                    raise TimeoutError("test gate was never released")
            ctx.outputs["OUT"].add_packet(ctx.inputs["IN"])
        finally:
            self.lock.release()


def _graph(before_n: str | None, threads: int) -> Graph:
    """n (one call at a time, fast path) on ``in``, or behind a node ``before_n`` on ``in``."""
    nodes = [{"calculator": "TestOneAtATime", "name": "n", "inputs": ["a" if before_n else "in"],
              "outputs": ["out"]}]
    if before_n:
        nodes.insert(0, {"calculator": before_n, "name": "e", "inputs": ["in"], "outputs": ["a"]})
    return Graph.from_dict({"inputs": ["in"], "nodes": nodes}, threads=threads)


# (the function, the line the worker is held at, which time it comes to it, what it has done then)
POINTS = {
    "step, before the release": ("step", "claim[0] = True", 1,
                                 "processed 0, found the queue empty, not yet released the claim"),
    "step, after the release": ("step", "b = q.bound", 1,
                                "processed 0, released the claim, not yet looked again"),
}
# n behind TestEvenOnly (e): e's call at 1 emits nothing and moves n's input bound to 2, which
# activates n with no packet: its _simple_idle moves out's bound, then releases the claim
IDLE_POINTS = {
    "idle, before the release": ("_simple_idle", "claim[0] = True", 1,
                                 "moved out's bound to 2, not yet released the claim"),
    "idle, after the release": ("_simple_idle", "b = q.bound", 3,
                                "moved out's bound to 2, released the claim, not yet looked again"),
}


def _run_step_case(point: str, threads: int) -> bool:
    """0 is processed, the worker is held at ``point``, 1 is sent; returns whether it was held."""
    function, line, hit, _ = POINTS[point]
    g = _graph(None, threads)
    with GraphRun(g, collect=["out"], timeout=WAIT_S) as r, PausePoint(function, line, hit) as pause:
        r.start()
        g.add_packet("in", "p0", 0)
        held = pause.wait_reached()
        g.add_packet("in", "p1", 1)  # the producer's part, inside the window when held
        pause.go()
        g.wait_until_idle(WAIT_S)
        assert r.out["out"] == [(0, "p0"), (1, "p1")], "a packet sent in the window was left in the queue"
        r.finish()
    assert g.stats()["n"]["count"] == 2
    return held


def _run_idle_case(point: str, threads: int) -> bool:
    """n is activated by a bound alone and held at ``point``; 2 is sent meanwhile (e passes even
    timestamps on)."""
    function, line, hit, _ = IDLE_POINTS[point]
    g = _graph("TestEvenOnly", threads)
    with GraphRun(g, collect=["out"], timeout=WAIT_S) as r, PausePoint(function, line, hit) as pause:
        r.start()
        g.add_packet("in", 1, 1)
        held = pause.wait_reached()
        g.add_packet("in", 2, 2)  # e's call (on the other worker) sends 2 to n inside the window
        pause.go()
        g.wait_until_idle(WAIT_S)
        assert r.out["out"] == [(2, 2)], "a packet sent in the window was left in the queue"
        r.finish()
    assert g.stats()["n"]["count"] == 1
    return held


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_packet_sent_in_the_release_window_after_a_call_is_processed_at_once(point, threads, no_thread_leak):
    _run_step_case(point, threads)


@pytest.mark.parametrize("point", sorted(IDLE_POINTS))
def test_a_packet_sent_in_the_release_window_after_a_bound_is_processed_at_once(point, no_thread_leak):
    _run_idle_case(point, 2)  # e's call needs a worker of its own while n's is held


@pytest.mark.parametrize("point", sorted(POINTS) + sorted(IDLE_POINTS))
def test_every_pause_point_is_reached(point, no_thread_leak):
    # on the code as it is, each case holds its worker where it says (left out of mutation runs
    # of node.py, where a mutant may move the line: scripts/mutation.py, DESELECT_WHEN_MUTATED)
    held = _run_step_case(point, 1) if point in POINTS else _run_idle_case(point, 2)
    assert held, f"the worker never reached {(POINTS | IDLE_POINTS)[point][:2]} ({(POINTS | IDLE_POINTS)[point][3]})"


def test_a_worker_that_finds_the_node_claimed_after_its_release_leaves_it_to_the_claimer(no_thread_leak):
    # Two workers. A has processed 0 and released the claim (held before its last look); 1 comes,
    # and its sender claims n and hands it to B (held as it begins the step); 2 comes. A looks,
    # finds packets but the claim gone: it must leave n to B. Were it to step n too, A and B
    # would each take a packet and call n at once (B's call at 1 waits inside it for the gate).
    gate = Gate()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"hold": None}, "nodes": [
        {"calculator": "TestOneAtATime", "name": "n", "inputs": ["in"], "outputs": ["out"],
         "side_inputs": {"HOLD": "hold"}}]}, threads=2)
    with GraphRun(g, collect=["out"], timeout=WAIT_S) as r, \
            PausePoint("step", "b = q.bound", 1) as a_looks, PausePoint("step", "dq = self.dq0", 2) as b_steps:
        try:
            r.start({"hold": (gate, 1)})
            g.add_packet("in", "p0", 0)
            a_looks.wait_reached()
            g.add_packet("in", "p1", 1)
            b_steps.wait_reached()
            g.add_packet("in", "p2", 2)
            a_looks.go()
            b_steps.go()
            assert gate.entered.wait(WAIT_S), "no call at 1 began"
        finally:
            gate.release()
        g.wait_until_idle(WAIT_S)
        assert r.out["out"] == [(0, "p0"), (1, "p1"), (2, "p2")]
        r.finish()
    assert g.error is None and g.stats()["n"]["count"] == 3


def test_a_worker_that_finds_the_node_claimed_after_its_release_from_idle_leaves_it_to_the_claimer(no_thread_leak):
    # The same from _simple_idle: A was activated by a bound alone (e's call at 1 sends nothing),
    # moved out's bound to 2 and released the claim (held before its last look). e's call at 2,
    # on B, claims n and calls it (held inside the call at 2). A looks and finds the claim gone:
    # it must leave n alone. Were it to go on, it would move out's bound past 2 under B's call,
    # whose packet at 2 would then be refused.
    gate = Gate()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"hold": None}, "nodes": [
        {"calculator": "TestEvenOnly", "name": "e", "inputs": ["in"], "outputs": ["a"]},
        {"calculator": "TestOneAtATime", "name": "n", "inputs": ["a"], "outputs": ["out"],
         "side_inputs": {"HOLD": "hold"}}]}, threads=2)
    with GraphRun(g, collect=["out"], timeout=WAIT_S) as r, PausePoint(*IDLE_POINTS["idle, after the release"][:3]) as a_looks:
        try:
            r.start({"hold": (gate, 2)})
            g.add_packet("in", 1, 1)
            a_looks.wait_reached()
            g.add_packet("in", 2, 2)
            assert gate.entered.wait(WAIT_S), "n's call at 2 never began"
            a_looks.go()
            assert a_looks.left.wait(WAIT_S), "A never left _simple_idle"
        finally:
            gate.release()
        g.wait_until_idle(WAIT_S)
        r.finish()
        assert r.out["out"] == [(2, 2)]
    assert g.error is None and g.stats()["n"]["count"] == 1


def _even_then_n_then_join() -> Graph:
    """in -> e (TestEvenOnly) -> n (one call at a time) -> out; join (sync) reads c and out: it
    fires at t only once out's bound has passed t (when out has nothing there)."""
    return Graph.from_dict({"inputs": ["in", "c"], "nodes": [
        {"calculator": "TestEvenOnly", "name": "e", "inputs": ["in"], "outputs": ["a"]},
        {"calculator": "TestOneAtATime", "name": "n", "inputs": ["a"], "outputs": ["out"]},
        {"calculator": "TestJoin", "name": "join", "inputs": {"A": "c", "B": "out"}, "outputs": ["j"]},
    ]}, threads=2)


# n behind e (TestEvenOnly) and before join (sync, also reading c): n is held before it releases
# its claim, and e's next call (on the other worker) sends nothing and moves n's input bound
# meanwhile; the claim is taken, so that bound is left to n's last look after the release, which
# must claim n again and pass it on to out; join then has its packet on c settled (out can have
# nothing there). (point, the node held, c's packet, e's packets before, e's packet in the window,
# n's input bound then, what join gives)
BOUND_CASES = {
    # n activated by a bound alone (e's call at 1) moved out's bound to 2 and is held
    "after a bound": (IDLE_POINTS["idle, before the release"], None, ("c3", 3), [1], 3, 4, [(3, ("c3", None))]),
    # n processed 0 (e's first call is measured: 0 takes n's queue, not a direct hop) and is held
    # (checked against step's release test skipping that look for a node with a timestamp offset)
    "after a call": (POINTS["step, before the release"], "n", ("c1", 1), [0], 1, 2,
                     [(0, (None, 0)), (1, ("c1", None))]),
}


def _run_bound_case(case: str) -> bool:
    """One of BOUND_CASES; returns whether n was held at its point."""
    point, node, (c, tc), before, during, bound, expected = BOUND_CASES[case]
    g = _even_then_n_then_join()
    with GraphRun(g, collect=["j"], timeout=WAIT_S) as r, PausePoint(*point[:3], node=node) as before_release:
        r.start()
        g.add_packet("c", c, tc)
        for t in before:
            g.add_packet("in", t, t)
        held = before_release.wait_reached()
        g.add_packet("in", during, during)
        if held:
            q = g._streams["a"].queues[0]
            _wait_until("e's bound on n's queue", lambda: q.bound == bound)
        before_release.go()
        g.wait_until_idle(WAIT_S)
        assert r.out["j"] == expected, "out's bound stayed behind n's input bound"
        r.finish()
    assert g.error is None
    return held


@pytest.mark.parametrize("case", sorted(BOUND_CASES))
def test_a_bound_that_comes_in_the_release_window_is_passed_on_at_once(case, no_thread_leak):
    _run_bound_case(case)


def test_every_bound_case_holds_n_where_it_says(no_thread_leak):
    # on the code as it is (left out of mutation runs of node.py, as test_every_pause_point_is_reached)
    for case in sorted(BOUND_CASES):
        assert _run_bound_case(case), f"n was never held {case} ({BOUND_CASES[case][0][3]})"


def _idle_in_its_loop(thread: threading.Thread) -> bool:
    """``thread`` (a worker) waits for work in its executor's loop, not held at a PausePoint."""
    return "_hold" not in functions_on(thread) and _waits_in(thread, "_work")


def test_a_worker_that_released_the_claim_with_nothing_left_does_not_step_the_node_again(no_thread_leak):
    # A processed 0, found nothing left and is held before it releases the claim. Once let go it
    # releases the claim and leaves n: stepping it again without the claim, it would take a packet
    # while the claimer runs n's call. The check: after A is let go, it goes idle before any step
    # of n of its own (held at its next step, if it makes one, while 1 is sent: its sender claims
    # n for B, whose call at 1 waits inside it; 2 comes; A goes on and, were it stepping n, it
    # would call n at 2 during B's call).
    gate = Gate()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"hold": None}, "nodes": [
        {"calculator": "TestOneAtATime", "name": "n", "inputs": ["in"], "outputs": ["out"],
         "side_inputs": {"HOLD": "hold"}}]}, threads=2)
    with GraphRun(g, collect=["out"], timeout=WAIT_S) as r, PausePoint("step", "claim[0] = True", 1) as release:
        try:
            r.start({"hold": (gate, 1)})
            g.add_packet("in", "p0", 0)
            assert release.wait_reached(), "A never came to release the claim"
            a = release.thread
            with PausePoint("step", "dq = self.dq0", 1, thread=a) as a_steps_again:
                release.go()
                assert release.left.wait(WAIT_S), "A never left the step"
                _wait_until("A idle, or stepping n again",
                            lambda: a_steps_again.reached.is_set() or _idle_in_its_loop(a))
                if not a_steps_again.reached.is_set():
                    a_steps_again.cancel()  # (A may step n again later, claimed for a packet: fine)
                g.add_packet("in", "p1", 1)
                assert gate.entered.wait(WAIT_S), "no call at 1 began"
                g.add_packet("in", "p2", 2)
                a_steps_again.go()
        finally:
            gate.release()
        g.wait_until_idle(WAIT_S)
        assert r.out["out"] == [(0, "p0"), (1, "p1"), (2, "p2")]
        r.finish()
    assert g.error is None and g.stats()["n"]["count"] == 3
