"""A worker's loop (scheduler.py, ``Executor._work``) as the schedule shows it: a node with long
calls (``HANDOFF_NS``) is never handed back to the executor's queue by a lone worker (nobody else
could take it), which keeps it and steps it again once the node its call made ready inline (the
first of the deepest) is done, before a deeper node queued meanwhile (read off the trace's call
order: with one worker it is the schedule); a step that raises (a bug in the framework) fails the
run naming the node. Written against the survivors of a mutation run of pipeline/scheduler.py
(``Executor._work``: the idle count, the hand-off test, which ready node runs inline, the failure
of a step; docs/testing.md); every wait bounded."""

from __future__ import annotations

import pytest

from pipeline import Graph, GraphRunError
from pipeline.node import NodeRuntime
from tests.pipeline.calcs import Gate
from tests.pipeline.test_direct_hop import TestSlowInside, clock  # noqa: F401 - registers it; the fixture

WAIT_S = 10.0


def test_a_lone_worker_keeps_a_node_with_long_calls_and_steps_it_before_the_queue(clock):  # noqa: F811
    # hold keeps the one worker while slow gets two packets; then slow's call at 0 (long on the
    # fake clock) makes b1 and b2 ready: b1 runs inline, b2 is queued; slow, with a packet left,
    # stays with the worker: its call at 1 comes before b2's at 0 (b2 is deeper: the queue would
    # give it first)
    hold = Gate()
    g = Graph.from_dict({
        "inputs": ["h", "in"], "side_packets": {"hold": None, "clock": None},
        "nodes": [
            {"calculator": "TestBlocker", "name": "hold", "inputs": ["h"], "outputs": ["hh"],
             "side_inputs": {"GATE": "hold"}},
            {"calculator": "TestSlowInside", "name": "slow", "inputs": ["in"], "outputs": ["x"],
             "side_inputs": {"CLOCK": "clock"}},
            {"calculator": "PassThrough", "name": "b1", "inputs": ["x"], "outputs": ["y1"]},
            {"calculator": "PassThrough", "name": "b2", "inputs": ["x"], "outputs": ["y2"]},
        ]}, threads=1)
    for s in ("hh", "y1", "y2"):
        g.observe(s, lambda p: None)
    g.start({"hold": hold, "clock": clock}, trace=True)
    try:
        g.add_packet("h", "x", 0)
        assert hold.entered.wait(WAIT_S), "hold's call never began"
        g.add_packet("in", "a", 0)
        g.add_packet("in", "b", 1)
        hold.release()
        g.close_all_inputs()
        g.wait(WAIT_S)
    finally:
        hold.release()
        if not g.done:
            g.cancel()
            g.wait(WAIT_S)
    calls = [(node, t) for node, _thread, t, _start, _end in g.trace_events() if node != "hold"]
    assert calls == [("slow", 0), ("b1", 0), ("slow", 1), ("b1", 1), ("b2", 0), ("b2", 1)], calls


def test_a_failure_of_the_framework_in_a_step_fails_the_run_naming_the_node(monkeypatch, no_thread_leak):
    # the worker's last guard: a step that raises (a bug in the framework itself, made here by
    # replacing bad's step) stops the run with the node named and the phase "scheduler"; the
    # worker goes on taking nodes (the close below runs)
    step = NodeRuntime.step

    def failing_step(self, ready, trace):
        if self.name == "bad":
            raise RuntimeError("a bug in the framework")
        return step(self, ready, trace)

    monkeypatch.setattr(NodeRuntime, "step", failing_step)
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "bad", "inputs": ["in"], "outputs": ["o"]}]}, threads=1)
    g.observe("o", lambda p: None)
    g.start()
    g.add_packet("in", "x", 0)
    with pytest.raises(GraphRunError) as ei:
        g.wait(WAIT_S)
    err = ei.value
    assert (err.node, err.phase, err.timestamp) == ("bad", "scheduler", None), str(err)
    assert str(err).startswith("node 'bad' (PassThrough) failed in scheduler: RuntimeError: a bug in the framework")
    assert isinstance(err.cause, RuntimeError)
