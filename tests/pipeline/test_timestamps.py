"""Timestamps (pipeline/timestamp.py): the order of the special values, how each is written in
messages, which values a user may give (``add_packet``, ``outputs[...].add``) and how a packet reads."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline import Graph, Packet, Timestamp
from pipeline.testing import GraphRun

SPECIAL = [("UNSET", "Unset"), ("UNSTARTED", "Unstarted"), ("PRESTREAM", "PreStream"), ("MIN", "Min"),
           ("MAX", "Max"), ("POSTSTREAM", "PostStream"), ("DONE", "Done")]


def test_the_special_values_sit_at_the_ends_of_int64_in_order():
    values = [getattr(Timestamp, n) for n, _ in SPECIAL]
    assert values == [-(2**63), -(2**63) + 1, -(2**63) + 2, -(2**63) + 3, 2**63 - 4, 2**63 - 3, 2**63 - 2]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_each_value_has_its_written_form():
    assert [Timestamp.name(getattr(Timestamp, n)) for n, _ in SPECIAL] == [w for _, w in SPECIAL]
    assert Timestamp.name(None) == "none"
    assert [Timestamp.name(t) for t in (0, -5, 1_000_000, Timestamp.MIN + 1, Timestamp.MAX - 1)] == [
        "0", "-5", "1000000", str(Timestamp.MIN + 1), str(Timestamp.MAX - 1)]
    assert Timestamp.name(2**63 - 1) == str(2**63 - 1)  # one past Done: not a named value


def test_range_values_are_min_to_max_inclusive():
    assert [Timestamp.is_range_value(t) for t in (
        Timestamp.PRESTREAM, Timestamp.MIN, 0, Timestamp.MAX, Timestamp.POSTSTREAM)] == [
        False, True, True, True, False]


def test_check_takes_ints_numpy_ints_and_poststream():
    for t in (Timestamp.MIN, -1, 0, Timestamp.MAX, Timestamp.POSTSTREAM):
        assert Timestamp.check(t) == t
    got = Timestamp.check(np.int64(42))
    assert got == 42 and type(got) is int
    assert type(Timestamp.check(np.uint32(7))) is int


@pytest.mark.parametrize("bad, text", [
    (1.5, "timestamp must be an int of microseconds, got float: 1.5"),
    (True, "timestamp must be an int of microseconds, got bool: True"),
    ("10", "timestamp must be an int of microseconds, got str: '10'"),
    (None, "timestamp must be an int of microseconds, got NoneType: None"),
    (np.float64(2.0), "timestamp must be an int of microseconds, got float64: "),
])
def test_check_refuses_what_is_not_an_int(bad, text):
    with pytest.raises(TypeError) as e:
        Timestamp.check(bad)
    assert str(e.value).startswith(text)
    assert e.value.__cause__ is None and e.value.__suppress_context__


@pytest.mark.parametrize("name, text", [
    ("UNSET", "timestamp Unset is outside [Min, Max] and not PostStream"),
    ("UNSTARTED", "timestamp Unstarted is outside"),
    ("DONE", "timestamp Done is outside"),
])
def test_check_refuses_the_internal_special_values(name, text):
    with pytest.raises(ValueError, match=r"^" + text.replace("[", r"\[").replace("]", r"\]")):
        Timestamp.check(getattr(Timestamp, name))


def test_check_refuses_prestream_and_says_what_to_do():
    # a stream's bound starts at Min: a PreStream packet would be refused by every stream
    with pytest.raises(ValueError, match=r"^timestamp PreStream is not taken: a stream's first allowed timestamp "
                                         r"is Min \(give what comes before every packet as a side packet\)$"):
        Timestamp.check(Timestamp.PRESTREAM)


@pytest.mark.parametrize("t, text", [
    (Timestamp.PRESTREAM, "timestamp PreStream is not taken"), (Timestamp.UNSET, "timestamp Unset is outside"),
    (Timestamp.DONE, "timestamp Done is outside"), (2**70, f"timestamp {2**70} is outside")])
def test_a_graph_input_refuses_a_plain_int_outside_the_range_with_the_sentence_of_check(t, text):
    g = Graph.from_yaml("inputs: [in]\nnodes:\n  - calculator: PassThrough\n    inputs: [in]\n    outputs: [o]\n")
    with GraphRun(g, collect=["o"]) as r:
        r.start()
        with pytest.raises(ValueError, match="^" + re.escape(text)):
            g.add_packet("in", 0, t)
        g.add_packet("in", 1, Timestamp.MIN)  # the stream took nothing: Min is still allowed
        g.add_packet("in", 2, Timestamp.POSTSTREAM)
        r.finish()
    assert r.out["o"] == [(Timestamp.MIN, 1), (Timestamp.POSTSTREAM, 2)]


def test_check_refuses_ints_past_the_range():
    for t in (2**63 - 1, 2**70, -(2**70)):
        with pytest.raises(ValueError, match=f"^timestamp {t} is outside"):
            Timestamp.check(t)


def test_a_graph_input_takes_a_numpy_timestamp_and_refuses_a_float():
    graph = {"name": "ts", "inputs": ["in"], "nodes": [
        {"calculator": "TestEvenOnly", "inputs": {"IN": "in"}, "outputs": {"OUT": "out"}}]}
    with GraphRun(graph, collect=["out"]) as r:
        r.start()
        r.graph.add_packet("in", 4, np.int64(10))
        with pytest.raises(TypeError, match="got float"):
            r.graph.add_packet("in", 6, 11.0)
        r.finish()
    assert r.out["out"] == [(10, 4)]


def test_a_packet_reads_as_its_timestamp_and_payload_type():
    assert repr(Packet(np.zeros(2), 5)) == "Packet(t=5, value=ndarray)"
    assert repr(Packet(None, Timestamp.PRESTREAM)) == "Packet(t=PreStream, value=NoneType)"
    p = Packet("v", 3)
    assert (p.value, p.timestamp) == ("v", 3) and p == ("v", 3)
