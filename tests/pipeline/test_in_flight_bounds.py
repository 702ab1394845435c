"""A node with ``max_in_flight > 1`` hands on its inputs' bound once its calls in flight are done:
a bound that arrived behind a packet reaches the consumer before the close. Written against the
survivors of a mutation run of pipeline/node.py (``_flush``'s bound after the calls,
docs/testing.md)."""

from __future__ import annotations

import threading

import pytest

from pipeline import Any, Calculator, Graph, Input, Output, register
from tests.pipeline.test_context_contract import TestRecordsBounds  # noqa: F401 - registers it

WAIT_S = 30


@register
class TestPacketThenBound(Calculator):
    """``timestamp_offset = None``: emits its packet, then moves its output's bound to 100."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    timestamp_offset = None

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.get("IN"))
        ctx.outputs["OUT"].set_next_timestamp_bound(100)


@register
class TestPassConcurrent(Calculator):
    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.get("IN"))


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_a_bound_behind_a_packet_is_handed_on_after_the_calls_in_flight(max_in_flight, no_thread_leak):
    bounds, seen = [], threading.Event()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"bounds": None, "seen": None, "at": None}, "nodes": [
        {"calculator": "TestPacketThenBound", "inputs": ["in"], "outputs": ["a"]},
        {"calculator": "TestPassConcurrent", "inputs": ["a"], "outputs": ["b"], "max_in_flight": max_in_flight},
        {"calculator": "TestRecordsBounds", "inputs": ["b"],
         "side_inputs": {"BOUNDS": "bounds", "SEEN": "seen", "AT": "at"}}]}, threads=1)
    g.start({"bounds": bounds, "seen": seen, "at": 100})
    g.add_packet("in", "x", 0)
    assert seen.wait(WAIT_S), f"the bound 100 never reached the consumer (it saw {bounds})"
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert bounds == [(0, 1), (99, 100)]
