"""What the flow calculators promise beyond their options: PassThrough's pairing, Gate's indexed
inputs, FlowLimiter's accounting of in-flight frames and the bound it advances for a dropped frame.

Each test was written against a mutant that the rest of the suite let live (scripts/mutation.py
flow); the assertion that kills it is named in the comment beside it.
"""

from __future__ import annotations

import threading

import pytest

import calculators  # noqa: F401  (registers the built-in calculators)
from pipeline.testing import run_calculator

from .conftest import graph


def test_pass_through_pairs_each_input_with_its_output_and_skips_empty_ones():
    out = run_calculator("PassThrough", inputs={"IN:0": [(0, "a"), (5, "b")], "IN:1": [(5, "x"), (9, "y")]})
    # values by reference, at their own timestamps; t=0 has no IN:1 and t=9 no IN:0: nothing sent there
    assert out == {"OUT:0": [(0, "a"), (5, "b")], "OUT:1": [(5, "x"), (9, "y")]}


def test_pass_through_forwards_the_payload_itself():
    payload = {"big": object()}
    out = run_calculator("PassThrough", inputs={"IN:0": [(3, payload)]})
    assert out["OUT:0"][0][1] is payload


def test_gate_forwards_a_later_input_when_an_earlier_one_is_empty():
    # IN:0 has nothing at t=1: the gate must still forward IN:1 at t=1 (not stop at the first empty input)
    out = run_calculator("Gate", inputs={"IN:0": [(0, "a")], "IN:1": [(0, "x"), (1, "y")]})
    assert out == {"OUT:0": [(0, "a")], "OUT:1": [(0, "x"), (1, "y")]}


def test_flow_limiter_released_frame_counts_once():
    # max_in_flight 1, queue 1: a admitted, b queued; FINISHED(a) releases b; FINISHED(b) leaves
    # nothing in flight, so c is admitted at once.
    out = run_calculator("FlowLimiter", inputs={"IN": [(0, "a"), (1, "b"), (30, "c")],
                                                "FINISHED": [(10, 1), (20, 1)]},
                         options={"max_in_queue": 1}, policy="immediate")
    assert out == {"OUT": [(0, "a"), (1, "b"), (30, "c")]}


def test_flow_limiter_drop_settles_the_timestamp_for_a_synced_consumer(no_leaked_threads):
    """A dropped frame moves OUT's bound past its timestamp, so a sync node joining OUT with the
    frames processes that timestamp at once, not when the next frame is admitted or the run ends."""
    g = graph(
        {"calculator": "FlowLimiter", "name": "limiter", "inputs": {"IN": "frames", "FINISHED": "finished"},
         "outputs": {"OUT": "admitted"}},
        {"calculator": "PassThrough", "name": "join", "inputs": ["frames", "admitted"],
         "outputs": ["frames_out", "admitted_out"]},
        inputs=["frames", "finished"])
    seen: list[int] = []
    settled = threading.Event()

    def on(p):
        seen.append(p.timestamp)
        if p.timestamp == 1:
            settled.set()

    g.observe("frames_out", on)
    g.start()
    try:
        g.add_packet("frames", "f0", 0)  # admitted, never finished
        g.add_packet("frames", "f1", 1)  # dropped: the join may process t=1 without OUT
        assert settled.wait(10), f"join never processed t=1 (saw {seen}): the drop did not advance OUT's bound"
        # a frame right after the drop is still admitted (the bound moved to t+1, not beyond)
        g.add_packet("finished", 1, 1)
        g.add_packet("frames", "f2", 2)
    finally:
        g.close_all_inputs()
    g.wait(30)
    assert seen == [0, 1, 2]
    assert g.stats()["limiter"]["drops"] == 1


@pytest.mark.parametrize("options", [{"max_in_flight": 0}, {"max_in_queue": -1}])
def test_flow_limiter_rejects_impossible_limits(options):
    with pytest.raises(Exception, match="max_in_(flight|queue)"):
        run_calculator("FlowLimiter", inputs={"IN": [(0, "a")]}, options=options)


def test_flow_limiter_a_frame_at_finished_bound_is_still_in_flight(no_leaked_threads):
    """FINISHED's packet at 4 moves its bound to 5: that finishes frames before 5, not the frame
    at 5 itself, so the frame at 6 still finds the limiter busy and is dropped."""
    import time

    g = graph({"calculator": "FlowLimiter", "name": "limiter", "inputs": {"IN": "frames", "FINISHED": "finished"},
               "outputs": {"OUT": "admitted"}}, inputs=["frames", "finished"])
    got = []
    g.observe("admitted", lambda p: got.append((p.timestamp, p.value)))

    def calls(n):  # bounded wait for the limiter to have been called n times
        deadline = time.monotonic() + 10
        while g.stats()["limiter"]["count"] < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert g.stats()["limiter"]["count"] >= n, g.stats()["limiter"]

    g.start()
    try:
        g.add_packet("frames", "a", 5)
        calls(1)
        g.add_packet("finished", 1, 4)
        calls(2)
        g.add_packet("frames", "b", 6)
        calls(3)
        assert got == [(5, "a")] and g.stats()["limiter"]["drops"] == 1
    finally:
        g.close_all_inputs()
        g.wait(30)
