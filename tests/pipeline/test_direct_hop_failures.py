"""A sink whose call failed on a direct hop (streams.py, ``DirectStream``), in a measured call or
one left out of the sample, is left as a failed call on the queue path leaves it: in no call and
not activated, so the shutdown of a run with a call stuck elsewhere waits one stuck bound, not a
second one for that sink, also when its producer sent it more packets after the failure: it is
called no more (the packets sent after the failure take its queue and stay there). Written
against the survivors of a mutation run of pipeline/streams.py (the claim given back after a
failed direct call, ``DirectStream.send``; docs/testing.md); every wait bounded."""

from __future__ import annotations

import time

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, register
from pipeline.streams import DirectStream
from tests.pipeline.calcs import Gate
from tests.pipeline.test_direct_hop import clock  # noqa: F401 - the fixture: calls measured exactly
from tests.pipeline.test_shutdown_length import TestFailsAt  # noqa: F401 - registers it
from tests.pipeline.test_stuck_calls import WAIT_S, _join_run_threads, _node

BOUND = 1.0  # the run's stuck bound, in s


@register
class TestBurstAfterFirst(Calculator):
    """Emits nothing for its packet at 0; for one at t > 0, emits t three times, at 3t, 3t + 1 and
    3t + 2, in one call."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    timestamp_offset = None

    def process(self, ctx):
        t = ctx.timestamp
        if t:
            for i in range(3):
                ctx.outputs["OUT"].add(t, 3 * t + i)


@pytest.mark.parametrize("at", [1, 2], ids=["its first call, measured", "its second call, not measured"])
def test_a_sink_whose_direct_call_failed_is_not_waited_for_at_the_shutdown(at, clock, no_thread_leak):  # noqa: F811
    # hang holds one worker in a call until the end; burst's first call (measured: its packets
    # would take the queue) emits nothing, its second (not measured) sends 3, 4, 5 straight into
    # the failing sink's calls: the sink's first call is a measured one, its second is not. The
    # call at 3 or 4 fails; what burst sends after it takes the queue.
    gate, closed, log = Gate(), [], []
    g = Graph.from_dict({"inputs": ["in", "in2"], "side_packets": {
        "gate": None, "closed": None, "at": None, "log": None}, "nodes": [
        _node("hang", "in", "b", options={"phase": "process"}, side_inputs={"GATE": "gate", "CLOSED": "closed"}),
        _node("sink", "b"),
        {"calculator": "TestBurstAfterFirst", "name": "burst", "inputs": ["in2"], "outputs": ["s"]},
        {"calculator": "TestFailsAt", "name": "failing", "inputs": ["s"], "side_inputs": {"AT": "at", "LOG": "log"}},
    ]}, threads=2, stuck_timeout=BOUND)
    g.start({"gate": gate, "closed": closed, "at": at, "log": log})
    assert type(g._streams["s"]) is DirectStream
    g.add_packet("in", "x", 7)
    assert gate.entered.wait(WAIT_S), "the held call never began"
    g.add_packet("in2", "y", 0)
    g.add_packet("in2", "y", 1)
    start = time.monotonic()
    with pytest.raises(GraphRunError, match=f"^node 'failing' .* at timestamp {2 + at}: ValueError: the sink fails"):
        g.wait(WAIT_S)
    took = time.monotonic() - start
    gate.release()
    _join_run_threads()
    assert log == list(range(3, 3 + at)), "called after its failure"  # burst sent it 3, 4 and 5
    # one bound for the threads (hang's call), then nothing left to finish: no sink in a call
    assert took < 1.5 * BOUND, f"the shutdown took {took:.2f} s for a stuck bound of {BOUND} s"
