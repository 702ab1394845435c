"""Streams and pollers as a user sees them: the messages for a packet sent out of order or after a
stream's close, and a poller's waits (a packet while the stream is still open, a timeout, before
the start). Written against mutants of pipeline/streams.py that the other tests let through
(docs/testing.md, "Mutation testing")."""

from __future__ import annotations

import threading

import pytest

from pipeline import Any, Calculator, Graph, GraphRunError, Input, Output, TimestampError, register


@register
class TestEmitAfterClose(Calculator):
    """Closes its output, then emits on it."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        ctx.outputs["OUT"].close()
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


def one_node(calculator):
    return Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": calculator, "name": "n", "inputs": ["in"], "outputs": ["out"]}]})


def test_a_packet_after_the_stream_closed_is_named(no_thread_leak):
    g = one_node("TestEmitAfterClose")
    g.start()
    g.add_packet("in", 1, 4)
    g.close_all_inputs()
    with pytest.raises(GraphRunError) as ei:
        g.wait(20)
    assert isinstance(ei.value.cause, TimestampError)
    assert str(ei.value.cause) == "stream 'out': node 'n' sent a packet at 4 after the stream was closed"


def test_a_packet_at_an_earlier_timestamp_says_what_to_do(no_thread_leak):
    g = one_node("TestBackwards")  # emits at 0 whatever it is given
    g.start()
    g.add_packet("in", 1, 5)
    g.add_packet("in", 2, 6)
    g.close_all_inputs()
    with pytest.raises(GraphRunError) as ei:
        g.wait(20)
    assert str(ei.value.cause) == (
        "stream 'out': node 'n' sent a packet at timestamp 0, but the last timestamp on it was 0 (next "
        "allowed: 6). Timestamps on a stream must strictly increase: a source re-using a timestamp, or a "
        "calculator emitting at an earlier timestamp than the one it processes (declare timestamp_offset = "
        "None and emit in order)")


@register
class TestLateFirstPacket(Calculator):
    """Emits nothing for its first packet; for each later one at t, emits at t - 4."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def open(self, ctx):
        self.first = True

    def process(self, ctx):
        if not self.first:
            ctx.outputs["OUT"].add(1, ctx.timestamp - 4)
        self.first = False


def test_a_packet_below_a_bound_moved_with_no_packet_says_none_was_sent(no_thread_leak):
    # the offset contract moved out's bound to 6 after the call at 5, which sent nothing
    g = one_node("TestLateFirstPacket")
    g.start()
    g.add_packet("in", 1, 5)
    g.add_packet("in", 2, 6)
    g.close_all_inputs()
    with pytest.raises(GraphRunError) as ei:
        g.wait(20)
    assert str(ei.value.cause).startswith(
        "stream 'out': node 'n' sent a packet at timestamp 2, but no packet was sent on it yet (next "
        "allowed: 6). Timestamps on a stream must strictly increase")


def test_a_poller_returns_a_packet_while_its_stream_is_still_open(no_thread_leak):
    g = one_node("PassThrough")
    p = g.poller("out")
    g.start()
    try:
        g.add_packet("in", "a", 0)
        got = p.get(timeout=10)
        assert (got.timestamp, got.value) == (0, "a")
    finally:
        g.close_all_inputs()
    assert p.get(timeout=10) is None
    assert p.get(timeout=10) is None  # and again: the stream is done
    g.wait(20)


def test_a_poller_times_out_with_the_stream_named(no_thread_leak):
    g = one_node("PassThrough")
    p = g.poller("out")
    g.start()
    outcome = []

    def get():
        try:
            outcome.append(p.get(timeout=0.1))
        except TimeoutError as e:
            outcome.append(e)

    try:
        th = threading.Thread(target=get)
        th.start()
        th.join(10)
        assert not th.is_alive(), "get(timeout=0.1) did not return"
        assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome
        assert str(outcome[0]) == "no packet on stream 'out' within 0.1 s"
    finally:
        g.close_all_inputs()
        g.wait(20)


def test_a_poller_before_the_start_says_so():
    g = one_node("PassThrough")
    p = g.poller("out")
    with pytest.raises(RuntimeError, match=r"^poller of 'out': start\(\) the graph before get\(\)$"):
        p.get(timeout=1)


def test_a_sync_nodes_waiting_queue_reports_its_depth_and_peak():
    # three packets on one input of a two-input sync node, none on the other: it cannot run, so
    # the queue holds exactly three, and its peak is three (the general path's deliver: kills
    # node.py deliver__mutmut_22, a peak one too high)
    g = Graph.from_dict({"inputs": ["a", "b"], "nodes": [
        {"calculator": "PassThrough", "name": "join", "inputs": ["a", "b"], "outputs": ["x", "y"]}]}, threads=1)
    got = []
    g.observe("x", lambda p: got.append(p.timestamp))
    g.start()
    for t in range(3):
        g.add_packet("a", t, t)
    inputs = g.stats()["join"]["inputs"]
    assert (inputs["IN:0"]["depth"], inputs["IN:0"]["peak"], inputs["IN:1"]["peak"]) == (3, 3, 0)
    for t in range(3):
        g.add_packet("b", t, t)
    g.close_all_inputs()
    g.wait(30)
    assert got == [0, 1, 2] and g.stats()["join"]["queue_peak"] == 3
