"""A traced run (``start(trace=True)``, what ``vpipe profile`` reads) has one event per call of
every node, on the general path too (two inputs, ``latest``). Written against the survivors of a
mutation run of pipeline/node.py (the trace not handed to a general-path call, docs/testing.md)."""

from __future__ import annotations

import pytest

from pipeline import Graph
from tests.pipeline.test_closed_nodes import TestJoinEmitsInClose  # noqa: F401 - registers it

WAIT_S = 30


@pytest.mark.parametrize("policy", ["sync", {"latest": 50}])
def test_every_call_of_a_general_path_node_is_traced(policy, threads):
    g = Graph.from_dict({"inputs": ["a", "b"], "nodes": [
        {"calculator": "TestJoinEmitsInClose", "name": "join", "inputs": {"A": "a", "B": "b"}, "outputs": ["o"],
         "policy": policy}]}, threads=threads)
    got = []
    g.observe("o", got.append)
    g.start(trace=True)
    for t in range(10):
        g.add_packet("a", t, t)
    g.close_all_inputs()
    g.wait(WAIT_S)
    calls = g.stats()["join"]["count"]
    assert calls >= 1 and len(got) == calls + 1  # one packet per call, and close's "end"
    events = [e for e in g.trace_events() if e[0] == "join"]
    assert len(events) == calls, (len(events), calls)
