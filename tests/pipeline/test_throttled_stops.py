"""Sources held by a full ``block`` queue, as a user sees them: a clean stop asked for while a source
is throttled ends the source there, closing its output, so what is queued drains and the run ends
DONE at once (not when the drain bound cuts it short); and a queue a direct hop's producer fills
throttles the source as soon as it is full. Written against the survivors of a mutation run of
pipeline/scheduler.py and pipeline/streams.py (``Scheduler._source_loop``, ``DirectStream._enqueue``;
docs/testing.md); every wait bounded."""

from __future__ import annotations

import sys
import threading
import time

from pipeline import STOP, Any, Calculator, Graph, Input, Output, SideInput, register
from pipeline.run_state import State
from pipeline.streams import DirectStream
from tests.pipeline.calcs import Gate
from tests.pipeline.test_scheduling import wait_in

WAIT_S = 10.0  # a bound for what must happen at once: reaching it is the failure
DRAIN_S = 5.0  # the drain bound: a drain that ends only when it cuts it short failed


def test_a_clean_stop_of_a_throttled_source_closes_its_output_and_the_drain_ends(no_thread_leak):
    gate = Gate()
    g = Graph.from_yaml("""
side_packets: {gate: null}
nodes:
  - calculator: TestSeq
    outputs: [n]
    options: {timestamps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}
  - calculator: TestBlocker
    inputs: {IN: {stream: n, capacity: 2}}
    outputs: [m]
    side_inputs: {GATE: gate}
""", threads=1, drain_timeout=DRAIN_S)
    got = []
    g.observe("m", lambda p: got.append(p.timestamp))
    g.start({"gate": gate})
    try:
        assert gate.entered.wait(WAIT_S), "the first packet never reached the blocked node"
        wait_in("vpipe-source-TestSeq", "throttle")
        start = time.monotonic()
        g.request_stop()  # the source leaves the throttle to a stopped run: it ends there
        gate.release()
        g.wait(WAIT_S + DRAIN_S)
        took = time.monotonic() - start
    finally:
        gate.release()
        if not g.done:
            g.cancel()
            g.wait(WAIT_S)
    assert g.state is State.DONE and not g.drain_expired, (g.state, g.drain_expired, f"{took:.2f} s")
    # the packet in the blocked call and those queued behind it (one or two: the source may have
    # been throttled before or after the first call took its packet out) drained; nothing after
    assert got == list(range(len(got))) and 2 <= len(got) <= 3, got
    assert took < DRAIN_S, f"the drain took {took:.2f} s"
