"""A node with ``max_in_flight > 1`` and ``process_timestamp_bounds``: a bound-only call waits for
the node's calls in flight, also when the node was activated before and finds, when its turn
comes, that another of its activations took the packet it was activated for. Written against the
survivors of a mutation run of pipeline/policies.py (``Policy.take_bound`` with calls in flight,
docs/testing.md); every wait bounded."""

from __future__ import annotations

import threading
import time

from pipeline import Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.testing import GraphRun
from tests.pipeline.calcs import Gate

WAIT_S = 10.0  # a bound for what must happen at once: reaching it is the failure


@register
class TestBoundAtThree(Calculator):
    """``timestamp_offset = None``: forwards its input, except at 3, where it only moves its
    output's bound to 4 and then sets MOVED (an Event)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"MOVED": SideInput(threading.Event)}
    timestamp_offset = None

    def process(self, ctx):
        if ctx.timestamp == 3:
            ctx.outputs["OUT"].set_next_timestamp_bound(4)
            ctx.side["MOVED"].set()
        else:
            ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@register
class TestOverlappingCalls(Calculator):
    """``process_timestamp_bounds``, meant for ``max_in_flight > 1``: logs each call's start as
    ``(timestamp, has a packet, calls of it already running)`` to LOG; its call at 1 waits for
    FIRST, its call at 2 for SECOND (both Gates)."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"LOG": SideInput(list), "FIRST": SideInput(Gate), "SECOND": SideInput(Gate)}
    process_timestamp_bounds = True

    def open(self, ctx):
        self.lock = threading.Lock()
        self.running = 0

    def process(self, ctx):
        t = ctx.timestamp
        with self.lock:
            ctx.side["LOG"].append((t, ctx.inputs["IN"] is not None, self.running))
            self.running += 1
        try:
            gate = {1: ctx.side["FIRST"], 2: ctx.side["SECOND"]}.get(t)
            if gate is not None:
                gate.entered.set()
                if not gate.released.wait(WAIT_S):
                    raise TimeoutError(f"test gate of the call at {t} was never released")
        finally:
            with self.lock:
                self.running -= 1


def _wait_for(what: str, predicate) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.002)


def test_a_stale_activation_makes_no_bound_only_call_while_a_call_is_in_flight(no_thread_leak):
    # main has two workers: hold keeps one; par's call at 1 the other. The packet at 2 activates
    # par a second time (queued: no worker free); when the call at 1 returns, its worker goes on
    # with par and takes the packet at 2 itself. The bound then moves to 4 (no packet at 3) while
    # the call at 2 runs, and hold lets its worker go: it runs par's second activation, which
    # finds no packet. The bound-only call at 3 must wait for the call at 2.
    first, second, hold, moved, log = Gate(), Gate(), Gate(), threading.Event(), []
    g = Graph.from_dict({
        "inputs": ["in", "h"], "executors": {"main": {"threads": 2}, "up": {"threads": 1}},
        "side_packets": {"log": None, "first": None, "second": None, "hold": None, "moved": None},
        "nodes": [
            {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
             "side_inputs": {"GATE": "hold"}, "executor": "main"},
            {"calculator": "TestBoundAtThree", "name": "up", "inputs": ["in"], "outputs": ["a"],
             "side_inputs": {"MOVED": "moved"}, "executor": "up"},
            {"calculator": "TestOverlappingCalls", "name": "par", "inputs": ["a"], "max_in_flight": 2,
             "side_inputs": {"LOG": "log", "FIRST": "first", "SECOND": "second"}, "executor": "main"},
        ]})
    g.observe("hh", lambda p: None)
    g.start({"log": log, "first": first, "second": second, "hold": hold, "moved": moved})
    main = g._sched.executors["main"]
    with GraphRun(g, timeout=WAIT_S):  # (cancels and ends the run of a failed test)
        try:
            g.add_packet("h", "x", 0)
            assert hold.entered.wait(WAIT_S), "hold's call never began"
            g.add_packet("in", "p", 1)
            assert first.entered.wait(WAIT_S), "par's call at 1 never began"
            g.add_packet("in", "p", 2)
            _wait_for("par's second activation queued on main", lambda: len(main.heap) == 1)
            first.release()
            assert second.entered.wait(WAIT_S), "par's call at 2 never began"
            assert len(main.heap) == 1, "par's second activation is not waiting any more"
            g.add_packet("in", "p", 3)
            assert moved.wait(WAIT_S), "the bound never moved to 4"
            hold.release()  # its worker takes par's second activation, then has nothing left
            _wait_for("main's freed worker idle", lambda: main.idle == 1 and not main.heap)
            second.release()
            _wait_for("par's bound-only call at 3", lambda: len(log) == 3)  # (before the close: then none)
            g.close_all_inputs()
            g.wait(WAIT_S)
        finally:
            for gate in (first, second, hold):
                gate.release()
    assert log == [(1, True, 0), (2, True, 0), (3, False, 0)], log
