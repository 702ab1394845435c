"""A node on the general path (pipeline/node.py: two inputs, policy sync) is activated at most
``max_in_flight`` times at once: while that many of its calls are held inside the call, a further
packet waits in its queue, neither queued on the executor nor run by an idle worker. Checked in
two rounds, so that a count left off by one round (an activation counted wrong, or a step's end
not counted) shows in the next; the first activation comes from a packet, or from a bound (the
other input closed under a packet waiting for it). Written against the survivors of a mutation run of node.py (``deliver``,
``advance``, ``_step_general``: ``active``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import threading

import pytest

from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate
from tests.pipeline.interleave import WAIT_S, PausePoint
from tests.pipeline.test_worker_handoff import _wait_until


@register
class TestHeldAtOnce(Calculator):
    """Passes A's packets on; a call at a timestamp in HOLDS (``{t: Gate}``) waits for its gate;
    records the most calls ever inside it at once in PEAK (a one-item list)."""

    inputs = {"A": Input(Any), "B": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"HOLDS": SideInput(dict), "PEAK": SideInput(list)}

    def open(self, ctx):
        self.lock = threading.Lock()
        self.inside = 0

    def process(self, ctx):
        with self.lock:
            self.inside += 1
            peak = ctx.side["PEAK"]
            peak[0] = max(peak[0], self.inside)
        try:
            gate = ctx.side["HOLDS"].get(ctx.timestamp)
            if gate is not None:
                gate.entered.set()
                if not gate.released.wait(WAIT_S):
                    raise TimeoutError("test gate was never released")
            if "A" in ctx.inputs:
                ctx.outputs["OUT"].add_packet(ctx.inputs["A"])
        finally:
            with self.lock:
                self.inside -= 1


def _held_at_once(max_in_flight: int, threads: int, got: list) -> Graph:
    """n (TestHeldAtOnce, policy sync) reading a and b, its output's timestamps appended to ``got``."""
    g = Graph.from_dict({"inputs": ["a", "b"], "side_packets": {"holds": None, "peak": None}, "nodes": [
        {"calculator": "TestHeldAtOnce", "name": "n", "inputs": {"A": "a", "B": "b"}, "outputs": ["out"],
         "policy": "sync", "max_in_flight": max_in_flight, "side_inputs": {"HOLDS": "holds", "PEAK": "peak"}},
    ]}, threads=threads)
    g.observe("out", lambda p: got.append(p.timestamp))
    return g


def _queued_or_busy(g: Graph) -> int:
    """The activations the executor holds now: queued, or being run by a worker."""
    ex = g._sched.executors["default"]
    with ex.lock:
        return len(ex.heap) + ex.busy


@pytest.mark.parametrize("first", ["a packet", "a bound"])
@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_a_general_path_node_is_activated_at_most_max_in_flight_times(max_in_flight, first, no_thread_leak):
    n = max_in_flight
    rounds = [list(range(n + 1)), list(range(10, 10 + n + 1))]  # each: n calls held, one more packet
    holds = {t: Gate() for r in rounds for t in r[:n]}
    peak, got = [0], []
    g = _held_at_once(max_in_flight=n, threads=n + 2, got=got)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        g.start({"holds": holds, "peak": peak})
        try:
            if first == "a packet":
                g.close_input("b")  # (no activation: nothing is queued)
                g.wait_until_idle(WAIT_S)
            else:
                g.add_packet("a", 0, 0)  # waits for b's bound
                g.close_input("b")  # the bound activates n: its call at 0
            for r in rounds:
                for t in r[:n]:
                    if not (t == 0 and first == "a bound"):
                        g.add_packet("a", t, t)
                    assert holds[t].entered.wait(WAIT_S), f"n's call at {t} never began"
                g.add_packet("a", r[n], r[n])  # one more than may run: it waits in n's queue
                assert _queued_or_busy(g) == n, f"n activated more than {n} times at once"
                for t in r[:n]:
                    holds[t].release()
                g.wait_until_idle(WAIT_S)
                assert got[-1] == r[n], got
        finally:
            for gate in holds.values():
                gate.release()
        g.close_all_inputs()
        g.wait(WAIT_S)
    assert sorted(got) == rounds[0] + rounds[1] and peak == [n]
    assert g.stats()["n"]["count"] == 2 * (n + 1)


def test_an_activation_by_a_bound_while_a_call_runs_is_counted(no_thread_leak):
    # max_in_flight 2: the call at 0 (a and b both at 0) is held; 1 on a waits for b's bound, which
    # the close of b brings: that activation, a second one while the first call runs, is counted,
    # so the packet at 2 finds both calls held and waits in the queue.
    holds, peak, got = {0: Gate(), 1: Gate()}, [0], []
    g = _held_at_once(max_in_flight=2, threads=4, got=got)
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        g.start({"holds": holds, "peak": peak})
        try:
            g.add_packet("b", "b0", 0)
            g.add_packet("a", 0, 0)
            assert holds[0].entered.wait(WAIT_S), "n's call at 0 never began"
            g.add_packet("a", 1, 1)  # waits for b's bound to pass 1
            g.close_input("b")  # the bound activates n while its call at 0 runs
            assert holds[1].entered.wait(WAIT_S), "n's call at 1 never began"
            g.add_packet("a", 2, 2)
            assert _queued_or_busy(g) == 2, "n activated more than twice at once"
        finally:
            for gate in holds.values():
                gate.release()
        g.wait_until_idle(WAIT_S)
        g.close_all_inputs()
        g.wait(WAIT_S)
    assert sorted(got) == [0, 1, 2] and peak == [2]


@pytest.mark.parametrize("policy", ["sync", {"latest": 5}])
def test_an_activation_queued_when_the_run_is_cancelled_processes_nothing(policy, no_thread_leak):
    # One worker, held in hold's call; n (two inputs: the general path; not a sink) gets a packet
    # and waits on the executor's queue. The run is cancelled, then the worker is let go: it takes
    # n from the queue, and n's step, in a stopping run, calls nothing.
    gate, holds, peak, got = Gate(), {}, [0], []
    g = Graph.from_dict({"inputs": ["h", "a", "b"], "side_packets": {"gate": None, "holds": None, "peak": None},
                         "nodes": [
        {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
         "side_inputs": {"GATE": "gate"}},
        {"calculator": "TestHeldAtOnce", "name": "n", "inputs": {"A": "a", "B": "b"}, "outputs": ["out"],
         "policy": policy, "side_inputs": {"HOLDS": "holds", "PEAK": "peak"}},
    ]}, threads=1)
    g.observe("hh", lambda p: None)
    g.observe("out", lambda p: got.append(p.timestamp))
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        g.start({"gate": gate, "holds": holds, "peak": peak})
        try:
            g.add_packet("h", "x", 0)
            assert gate.entered.wait(WAIT_S), "hold's call never began"
            g.close_input("b")
            g.add_packet("a", 0, 0)
            assert _queued_or_busy(g) == 2, "n is not waiting on the executor's queue"
            g.cancel()
        finally:
            gate.release()
        g.wait(WAIT_S)
    assert got == [] and g.stats()["n"]["count"] == 0, "n was called in a cancelled run"


def test_a_concurrent_node_is_not_closed_while_another_activation_flushes_its_calls(no_thread_leak):
    # max_in_flight 2, its calls at 0 and 1 held; 1 is let go first (it waits for 0 to be flushed),
    # then 0: its worker flushes both and is held as it sends 0 on. a closes meanwhile: every input
    # is done and no call is in flight, so that bound activates n again, but that activation finds
    # n active twice (the flush is part of the other's step): it must leave the close to it, not
    # close n's outputs under the flush (whose packets would then be refused).
    holds, peak, got = {0: Gate(), 1: Gate()}, [0], []
    g = _held_at_once(max_in_flight=2, threads=3, got=got)
    with GraphRun(g, timeout=WAIT_S), PausePoint("_flush", "stream.send(item, ready)", 1) as sends:
        g.start({"holds": holds, "peak": peak})
        try:
            g.close_input("b")
            g.add_packet("a", 0, 0)
            g.add_packet("a", 1, 1)
            assert holds[0].entered.wait(WAIT_S) and holds[1].entered.wait(WAIT_S), "the two calls never ran at once"
            holds[1].release()
            _wait_until("the call at 1 done and its step ended", lambda: _queued_or_busy(g) == 1)
            holds[0].release()
            assert sends.wait_reached(), "the flush never began"
            g.close_input("a")
            _wait_until("the activation by a's close ended", lambda: _queued_or_busy(g) == 1)
        finally:
            sends.go()
            for gate in holds.values():
                gate.release()
        g.wait(WAIT_S)
    assert got == [0, 1] and peak == [2]


def test_an_activation_that_finds_its_packet_taken_is_counted_out_once(no_thread_leak):
    # max_in_flight 2. 0 comes: activation X calls n at 0 (held). 1 comes: activation Y, held as
    # its step begins. X's call ends; X, seeing 1 queued, steps again and calls n at 1 (held). Y
    # goes on, finds nothing to take and ends: n is active once now (X). So 2 activates n (its
    # call held), and 3 waits in the queue: two calls at most.
    holds, peak, got = {t: Gate() for t in range(3)}, [0], []
    g = _held_at_once(max_in_flight=2, threads=4, got=got)
    with GraphRun(g, timeout=WAIT_S), PausePoint("_step_general", "run = self.run", 2) as y_steps:
        g.start({"holds": holds, "peak": peak})
        try:
            g.close_input("b")
            g.add_packet("a", 0, 0)
            assert holds[0].entered.wait(WAIT_S), "n's call at 0 never began"
            g.add_packet("a", 1, 1)
            assert y_steps.wait_reached(), "the second activation never stepped"
            holds[0].release()
            assert holds[1].entered.wait(WAIT_S), "n's call at 1 never began"
            y_steps.go()
            assert y_steps.left.wait(WAIT_S), "the second activation's step never ended"
            g.add_packet("a", 2, 2)
            assert holds[2].entered.wait(WAIT_S), "n's call at 2 never began"
            g.add_packet("a", 3, 3)
            assert _queued_or_busy(g) == 2, "n activated more than twice at once"
        finally:
            y_steps.go()
            for gate in holds.values():
                gate.release()
        g.wait_until_idle(WAIT_S)
        g.close_all_inputs()
        g.wait(WAIT_S)
    assert sorted(got) == [0, 1, 2, 3] and peak == [2]
