"""Options of the flow calculators (Gate, Counter, FlowLimiter), as timestamp sequences."""

from __future__ import annotations

import time

import calculators  # noqa: F401  (registers the built-in calculators)
from pipeline.testing import run_calculator

from .conftest import graph


def test_gate_allow_sets_the_state_until_the_first_allow_packet():
    frames = [(0, "a"), (10, "b"), (20, "c"), (30, "d")]
    switches = [(10, False), (30, True)]
    assert run_calculator("Gate", inputs={"IN:0": frames, "ALLOW": switches}) == {"OUT:0": [(0, "a"), (30, "d")]}
    closed_first = run_calculator("Gate", inputs={"IN:0": frames, "ALLOW": [(20, True)]}, options={"allow": False})
    assert closed_first == {"OUT:0": [(20, "c"), (30, "d")]}
    assert run_calculator("Gate", inputs={"IN:0": frames}) == {"OUT:0": frames}


def test_gate_forwards_every_indexed_input_and_counts_what_it_blocks():
    g = graph({"calculator": "Gate", "name": "gate", "inputs": {"IN:0": "a", "IN:1": "b", "ALLOW": "on"},
               "outputs": {"OUT:0": "a_out", "OUT:1": "b_out"}, "options": {"allow": False}},
              inputs=["a", "b", "on"])
    got = {"a_out": [], "b_out": []}
    for s in got:
        g.observe(s, lambda p, s=s: got[s].append((p.timestamp, p.value)))
    g.start()
    for t in range(4):
        g.add_packet("a", f"a{t}", t)
        g.add_packet("b", f"b{t}", t)
        if t == 2:
            g.add_packet("on", True, t)
    g.close_all_inputs()
    g.wait(10)
    assert got == {"a_out": [(2, "a2"), (3, "a3")], "b_out": [(2, "b2"), (3, "b3")]}
    assert g.stats()["gate"]["drops"] == 4  # a0, b0, a1, b1


def test_counter_start_step_first_value():
    out = run_calculator("Counter", options={"count": 3, "start": 1000, "step": 250, "first_value": 7})
    assert out == {"OUT": [(1000, 7), (1250, 8), (1500, 9)]}


def test_counter_realtime_paces_at_the_step():
    def timed(**options):
        t0 = time.monotonic()
        out = run_calculator("Counter", options={"count": 6, "step": 40_000, **options})
        return out["OUT"], time.monotonic() - t0

    fast, t_fast = timed()
    paced, t_paced = timed(realtime=True)
    assert fast == paced == [(i * 40_000, i) for i in range(6)]
    assert t_paced >= 0.2 * 0.95, f"6 packets 40 ms apart took {t_paced:.3f} s"
    assert t_fast < t_paced


def test_flow_limiter_max_in_flight_admits_that_many():
    frames = [(0, "a"), (10, "b"), (20, "c"), (30, "d")]
    out = run_calculator("FlowLimiter", inputs={"IN": frames, "FINISHED": [(25, 1)]}, options={"max_in_flight": 2})
    # a and b in flight; c arrives with both busy (dropped); a finished at 25 frees a slot for d.
    assert out == {"OUT": [(0, "a"), (10, "b"), (30, "d")]}


def test_flow_limiter_max_in_queue_keeps_the_newest():
    frames = [(0, "a"), (10, "b"), (11, "c"), (12, "d")]
    out = run_calculator("FlowLimiter", inputs={"IN": frames, "FINISHED": [(20, 1), (30, 1), (40, 1)]},
                         options={"max_in_queue": 2}, policy="immediate")
    # b, c, d wait while a is in flight; the queue holds 2, so b (the oldest) is dropped.
    assert out == {"OUT": [(0, "a"), (11, "c"), (12, "d")]}
