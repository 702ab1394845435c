"""What a direct hop's ``send`` (streams.py, ``DirectStream``) keeps of ``Stream.send``, seen by the
consumer and the run, with direct hops on and off: the payload read-only, a timestamp that does not
increase refused with both timestamps named, the packets a producer's measured call queues counted
in the queue's peak. Written against the survivors of a mutation run of pipeline/streams.py
(docs/testing.md)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, SideInput, register
from pipeline.scheduler import Scheduler
from tests.pipeline.calcs import Gate

WAIT_S = 30


@pytest.fixture(params=[True, False], ids=["direct", "queued"])
def direct(request, monkeypatch):
    monkeypatch.setattr(Scheduler, "direct_hops", request.param)
    return request.param


@register
class TestMakesArrays(Calculator):
    """Emits, for each packet, ``COUNT`` arrays of the side packet TYPE (an ndarray subclass) in
    one call (timestamps t*10, t*10+1, ...); with REPEAT, the first one twice at the same timestamp."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"TYPE": SideInput(type), "COUNT": SideInput(int), "REPEAT": SideInput(bool)}
    timestamp_offset = None

    def process(self, ctx):
        t = ctx.timestamp * 10
        for i in range(ctx.side["COUNT"]):
            ctx.outputs["OUT"].add(np.zeros(3).view(ctx.side["TYPE"]), t + i)
            if ctx.side["REPEAT"]:
                ctx.outputs["OUT"].add(np.zeros(3).view(ctx.side["TYPE"]), t + i)


@register
class TestTriesToWrite(Calculator):
    """A sink: tries to write into each array it gets; logs what happened to LOG."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"LOG": SideInput(list)}

    def process(self, ctx):
        try:
            ctx.inputs["IN"].value[0] = 1.0
            ctx.side["LOG"].append("written")
        except ValueError as e:
            ctx.side["LOG"].append(str(e))


def _graph(count=1, repeat=False, log=None):
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"type": None, "count": None, "repeat": None, "log": None},
                         "nodes": [
        {"calculator": "TestMakesArrays", "name": "maker", "inputs": ["in"], "outputs": ["a"],
         "side_inputs": {"TYPE": "type", "COUNT": "count", "REPEAT": "repeat"}},
        {"calculator": "TestTriesToWrite", "name": "writer", "inputs": ["a"], "side_inputs": {"LOG": "log"}}]},
        threads=1)
    fresh = type("FreshHopArray", (np.ndarray,), {})  # a type never sent before (FREEZERS learns each once)
    g.start({"type": fresh, "count": count, "repeat": repeat, "log": log if log is not None else []})
    return g


def test_a_payload_sent_on_the_hop_is_read_only(direct):
    log = []
    g = _graph(log=log)
    for t in range(3):  # the maker's first call is measured (its packet takes the queue), the others hop
        g.add_packet("in", "x", t)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert log == ["assignment destination is read-only"] * 3


def test_a_repeated_timestamp_on_the_hop_is_refused_with_both_named(direct):
    g = _graph(repeat=True)
    for t in range(2):  # the first call (measured) and the second (a direct call when direct)
        g.add_packet("in", "x", t)
    g.close_all_inputs()
    with pytest.raises(GraphRunError) as ei:
        g.wait(WAIT_S)
    assert ("node 'maker' (TestMakesArrays) failed in process at timestamp 0: TimestampError: stream 'a': node "
            "'maker' sent a packet at timestamp 0, but the last timestamp on it was 0 (next allowed: 1)"
            in str(ei.value))


def test_the_packets_of_a_measured_call_count_in_the_queues_peak(direct):
    # one worker: the writer runs after the maker's call, so the first call's three packets queue
    g = _graph(count=3)
    for t in range(3):
        g.add_packet("in", "x", t)
    g.close_all_inputs()
    g.wait(WAIT_S)
    stats = g.stats()["writer"]
    assert (stats["count"], stats["queue_peak"], stats["queue_depth"]) == (9, 3, 0)


@register
class TestPassAndTell(Calculator):
    """Passes IN on; sets the side packet EMITTED (an Event) after each call's emission."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"EMITTED": SideInput(threading.Event)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.get("IN"))
        ctx.side["EMITTED"].set()


@register
class TestHeldLog(Calculator):
    """A sink: its first call waits for the test's GATE (a ``Gate``); logs each call's timestamp to
    LOG as it begins and ends."""

    inputs = {"IN": Input(Any)}
    side_inputs = {"GATE": SideInput(Gate), "LOG": SideInput(list)}

    def process(self, ctx):
        log, gate = ctx.side["LOG"], ctx.side["GATE"]
        log.append(("begin", ctx.timestamp))
        if not gate.entered.is_set():
            gate.entered.set()
            if not gate.released.wait(WAIT_S):
                raise TimeoutError("the test gate was never released")
        log.append(("end", ctx.timestamp))


def test_a_packet_for_a_consumer_busy_on_another_worker_takes_its_queue(direct, no_thread_leak):
    # the consumer, held in its first call on one worker, is sent its next packet from the other:
    # it is queued (no second call of the node at once, no failure), and called once the first returns
    gate, log, emitted = Gate(), [], threading.Event()
    g = Graph.from_dict({"inputs": ["in"], "side_packets": {"gate": None, "log": None, "emitted": None}, "nodes": [
        {"calculator": "TestPassAndTell", "name": "p", "inputs": ["in"], "outputs": ["a"],
         "side_inputs": {"EMITTED": "emitted"}},
        {"calculator": "TestHeldLog", "name": "c", "inputs": ["a"], "side_inputs": {"GATE": "gate", "LOG": "log"}}]},
        threads=2)
    g.start({"gate": gate, "log": log, "emitted": emitted})
    g.add_packet("in", "x", 0)
    assert gate.entered.wait(WAIT_S), "the consumer's first call never began"
    emitted.clear()
    g.add_packet("in", "y", 1)
    assert emitted.wait(WAIT_S), "the producer's second call never emitted"
    gate.release()
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert log == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)]


@register
class TestOneBehind(Calculator):
    """No timestamp offset: each packet is sent on at the timestamp of the one before it (the
    first is kept), so its outputs lag its input by a packet."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    timestamp_offset = None

    def open(self, ctx):
        self.last = None

    def process(self, ctx):
        if self.last is not None:
            ctx.outputs["OUT"].add(ctx.get("IN"), self.last)
        self.last = ctx.timestamp


def test_a_consumer_without_an_offset_called_on_the_hop_keeps_its_outputs_bound(direct):
    # maker -> one_behind on the hop: the direct call must not move one_behind's output bound past
    # its input (the offset contract is for nodes with an offset only), or its next packet, one
    # timestamp behind, is refused (kills node.py add_output__mutmut_6)
    got = []
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "first", "inputs": ["in"], "outputs": ["a"]},
        {"calculator": "TestOneBehind", "name": "lag", "inputs": ["a"], "outputs": ["b"]}]}, threads=1)
    g.observe("b", lambda p: got.append((p.timestamp, p.value)))
    g.start()
    for t in range(40):  # past the first measured calls: most go through the direct hop
        g.add_packet("in", t * 10, t)
    g.close_all_inputs()
    g.wait(WAIT_S)
    assert got == [(t, (t + 1) * 10) for t in range(39)]
