"""The input policies as objects: readiness (an enum) and the next input set, on queues set by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.policies import IMMEDIATE, SYNC, LatestPolicy, Readiness
from pipeline.streams import InputQueue, Stream
from pipeline.timestamp import Packet, Timestamp

DONE = Timestamp.DONE
NOT_READY, PROCESS, CLOSE = Readiness.NOT_READY, Readiness.READY_TO_PROCESS, Readiness.READY_TO_CLOSE


def node_with(queues: dict, offset=0, process_bounds=False, back_edges=()):
    """A stand-in for NodeRuntime with what a policy reads: ``{tag: ([timestamps], bound)}``."""
    node = SimpleNamespace(queues=[], forward_queues=[], inflight=(), max_in_flight=1, finished=False,
                           process_bounds=process_bounds, offset=offset, propagated=Timestamp.MIN, drops=0,
                           queue_popped=lambda q: None)
    for tag, (stamps, bound) in queues.items():
        q = InputQueue(node, tag, Stream(tag, None), 10, "block", tag in back_edges)
        for t in stamps:
            q.dq.append(Packet(f"v{t}", t))
        q.bound = bound
        node.queues.append(q)
        if tag not in back_edges:
            node.forward_queues.append(q)
    return node


def shown(inputs):
    return None if inputs is None else {k: (None if p is None else p.timestamp) for k, p in inputs.items()}


@pytest.mark.parametrize("policy, queues, kw, readiness, taken", [
    # sync: t is settled once every input has a packet at/after t or its bound passed t
    (SYNC, {"A": ([5], 6), "B": ([], 3)}, {}, NOT_READY, None),
    (SYNC, {"A": ([5], 6), "B": ([], 6)}, {}, PROCESS, (5, {"A": 5, "B": None})),
    (SYNC, {"A": ([5], 6), "B": ([5, 9], 10)}, {}, PROCESS, (5, {"A": 5, "B": 5})),
    # no packet: bounds to propagate under the offset contract (a set with no call), or nothing
    (SYNC, {"A": ([], 7), "B": ([], 9)}, {}, PROCESS, (7, None)),
    (SYNC, {"A": ([], 7), "B": ([], 9)}, {"offset": None}, NOT_READY, None),
    # bound-only processing: a call with every input empty, one below the moved bound
    (SYNC, {"A": ([], 7), "B": ([], 9)}, {"offset": None, "process_bounds": True}, PROCESS,
     (6, {"A": None, "B": None})),
    # every forward input done: close (a back edge does not hold it open)
    (SYNC, {"A": ([], DONE), "F": ([], 3)}, {"back_edges": ("F",)}, CLOSE, None),
    # immediate: each arrival on its own, earliest first
    (IMMEDIATE, {"A": ([5], 6), "B": ([], 0)}, {}, PROCESS, (5, {"A": 5, "B": None})),
    (IMMEDIATE, {"A": ([8], 9), "B": ([4], 5)}, {}, PROCESS, (4, {"A": None, "B": 4})),
    # latest(1): all but the newest settled timestamp dropped on all inputs at once
    (LatestPolicy(1), {"A": ([1, 2, 3], 4), "B": ([], 10)}, {}, PROCESS, (3, {"A": 3, "B": None})),
])
def test_readiness_and_next_input_set(policy, queues, kw, readiness, taken):
    node = node_with(queues, **kw)
    r = policy.readiness(node)
    assert r is readiness
    if r is PROCESS:
        s = policy.take(node)
        assert (s.timestamp, shown(s.inputs)) == taken


def test_latest_counts_what_it_drops():
    node = node_with({"A": ([1, 2, 3], 4), "B": ([2, 3], 4)})
    s = LatestPolicy(1).take(node)
    assert s.timestamp == 3 and node.drops == 2
    assert [len(q.dq) for q in node.queues] == [0, 0]


def test_bound_only_set_records_what_the_calculator_was_shown():
    node = node_with({"A": ([], 7)}, offset=None, process_bounds=True)
    s = IMMEDIATE.take(node)
    assert (s.timestamp, s.bounds) == (6, {"A": 7})
    assert IMMEDIATE.readiness(node) is NOT_READY  # shown: no second call for the same bound
