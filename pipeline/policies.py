"""Input policies: when a node is ready, and which input set it gets next.

A policy answers two questions about a node, always under the node's lock:

- ``readiness(node)``: ``NOT_READY``, ``READY_TO_PROCESS`` (a timestamp is settled, or only the
  inputs' bound moved and the node wants to hear of it) or ``READY_TO_CLOSE`` (every forward input
  is done);
- ``take(node)``: pops the next ``InputSet`` (a timestamp and ``{tag: Packet | None}``), or a
  bound-only set (``inputs`` is None: the forward inputs' bound moved to ``timestamp`` with no
  packet), or None when, after all, there is nothing (``latest`` dropped what was queued).

The policies (see docs/graphs.md, "Input policies"):

- ``sync``: timestamp t once it is settled on every forward input (a packet at t, or the bound
  passed t); inputs without a packet at t are empty. MediaPipe's DefaultInputStreamHandler.
- ``immediate``: each arrival on its own, earliest timestamp first. MediaPipe's
  ImmediateInputStreamHandler.
- ``latest`` (N): like sync, after dropping all but the newest N queued timestamps on all inputs at
  once (counted as drops). MediaPipe's FixedSizeInputStreamHandler.

Bounds are written once, here: ``input_bound`` (the earliest timestamp still to come on the forward
inputs) and ``bound_readiness``/``take_bound`` (the offset contract's propagation, bound-only calls
and the close).

Bound-only processing (a calculator with ``process_timestamp_bounds = True``, MediaPipe's
``SetProcessTimestampBounds``): when an input's bound moves with no packet (a producer's
``set_next_timestamp_bound``, or the offset contract of a node that emitted nothing), the node is
called with every input empty at ``ctx.timestamp`` = the new bound minus one, and reads each
input's bound with ``ctx.input_bound(TAG)``. Each queue's ``seen`` is the bound the calculator has
been shown; a call is due when a queue with no packet has ``bound > seen``. A bound moving to Done
calls ``close`` instead (when every forward input is done), never ``process``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .timestamp import Timestamp

if TYPE_CHECKING:
    from .node import NodeRuntime

DONE = Timestamp.DONE


class Readiness(enum.IntEnum):
    NOT_READY = 0
    READY_TO_PROCESS = 1
    READY_TO_CLOSE = 2


NOT_READY = Readiness.NOT_READY
READY_TO_PROCESS = Readiness.READY_TO_PROCESS
READY_TO_CLOSE = Readiness.READY_TO_CLOSE


class InputSet:
    """One call's inputs: ``inputs`` maps every input tag to its Packet or None; None for a
    bounds-only set (no call: the offset contract moves the outputs to ``timestamp``). ``bounds``
    (nodes with ``process_timestamp_bounds``): each input's bound as this call sees it."""

    __slots__ = ("timestamp", "inputs", "bounds")

    def __init__(self, timestamp: int, inputs: dict | None, bounds: dict | None = None):
        self.timestamp = timestamp
        self.inputs = inputs
        self.bounds = bounds


def input_bound(node: "NodeRuntime") -> int:
    """The earliest timestamp still to come on the node's forward inputs (DONE when all are)."""
    b = DONE
    for q in node.forward_queues:
        qb = q.bound  # the bound before the packets (node.py's docstring says why)
        v = q.dq[0][1] if q.dq else qb
        if v < b:
            b = v
    return b


def next_timestamp(node: "NodeRuntime") -> int | None:
    """The earliest queued timestamp on any input, or None."""
    t = None
    for q in node.queues:
        if q.dq:
            h = q.dq[0].timestamp
            if t is None or h < t:
                t = h
    return t


def record_bounds(node: "NodeRuntime", inputs: dict) -> dict:
    """process_timestamp_bounds: each input's bound as a call with ``inputs`` sees it (after its
    packet, if it has one; the queue's bound when it is empty, unless that is Done), recorded as
    seen."""
    bounds = {}
    for q in node.queues:
        p = inputs.get(q.tag)
        if p is not None:
            q.seen = p[1] + 1
        elif not q.dq and q.seen < q.bound != DONE:
            q.seen = q.bound
        bounds[q.tag] = q.seen
    return bounds


def _moved_bound(node: "NodeRuntime") -> int | None:
    """The lowest bound that moved past what the calculator was shown on an empty input."""
    t = None
    for q in node.queues:
        b = q.bound
        if not q.dq and b > q.seen and b != DONE and (t is None or b < t):
            t = b
    return t


class Policy:
    """Base: the bound and close readiness every policy shares."""

    __slots__ = ()
    name = ""

    def readiness(self, node: "NodeRuntime") -> Readiness:
        raise NotImplementedError

    def take(self, node: "NodeRuntime") -> InputSet | None:
        raise NotImplementedError

    @staticmethod
    def bound_readiness(node: "NodeRuntime") -> Readiness:
        """With no settled packet: close when every forward input is done; otherwise a bound-only
        call when one is due, or bounds to propagate under the offset contract."""
        if node.inflight and node.max_in_flight > 1:
            return NOT_READY  # calls in flight may still emit: bounds and close wait for them
        b = input_bound(node)
        if b == DONE:
            return NOT_READY if node.finished else READY_TO_CLOSE
        if node.process_bounds and _moved_bound(node) is not None:
            return READY_TO_PROCESS
        if node.offset is not None and b > node.propagated:
            return READY_TO_PROCESS
        return NOT_READY

    @staticmethod
    def take_bound(node: "NodeRuntime") -> InputSet | None:
        if node.inflight and node.max_in_flight > 1:
            return None
        b = input_bound(node)
        if b == DONE:
            return None
        if node.process_bounds:
            t = _moved_bound(node)
            if t is not None:
                inputs = {q.tag: None for q in node.queues}
                return InputSet(t - 1, inputs, record_bounds(node, inputs))
        if node.offset is not None and b > node.propagated:
            node.propagated = b
            return InputSet(b, None)
        return None


class SyncPolicy(Policy):
    __slots__ = ()
    name = "sync"

    def readiness(self, node: "NodeRuntime") -> Readiness:
        t = next_timestamp(node)
        if t is None:
            return self.bound_readiness(node)
        return READY_TO_PROCESS if self.settled(node, t) else NOT_READY

    @staticmethod
    def settled(node: "NodeRuntime", t: int) -> bool:
        """t is settled when every forward input has a packet at/after t or its bound passed t."""
        for q in node.forward_queues:
            if not q.dq and q.bound <= t:
                return False
        return True

    def take(self, node: "NodeRuntime") -> InputSet | None:
        t = next_timestamp(node)
        if t is not None and self.settled(node, t):
            inputs = {}
            for q in node.queues:
                dq = q.dq
                if dq and dq[0].timestamp == t:
                    inputs[q.tag] = dq.popleft()
                    if q.full:
                        node.queue_popped(q)
                else:
                    inputs[q.tag] = None
            return InputSet(t, inputs, record_bounds(node, inputs) if node.process_bounds else None)
        return self.take_bound(node)


class ImmediatePolicy(Policy):
    __slots__ = ()
    name = "immediate"

    def readiness(self, node: "NodeRuntime") -> Readiness:
        for q in node.queues:
            if q.dq:
                return READY_TO_PROCESS
        return self.bound_readiness(node)

    def take(self, node: "NodeRuntime") -> InputSet | None:
        best = None
        for q in node.queues:
            if q.dq and (best is None or q.dq[0].timestamp < best.dq[0].timestamp):
                best = q
        if best is None:
            return self.take_bound(node)
        p = best.dq.popleft()
        if best.full:
            node.queue_popped(best)
        inputs = {q.tag: None for q in node.queues}
        inputs[best.tag] = p
        return InputSet(p.timestamp, inputs, record_bounds(node, inputs) if node.process_bounds else None)


class LatestPolicy(SyncPolicy):
    __slots__ = ("size",)
    name = "latest"

    def __init__(self, size: int):
        self.size = size

    def take(self, node: "NodeRuntime") -> InputSet | None:
        self.drop_to_latest(node)
        return super().take(node)

    def drop_to_latest(self, node: "NodeRuntime") -> None:
        stamps = set()
        for q in node.queues:
            for p in q.dq:
                stamps.add(p.timestamp)
        if len(stamps) <= self.size:
            return
        keep_from = sorted(stamps)[-self.size]
        for q in node.queues:
            dq = q.dq
            while dq and dq[0].timestamp < keep_from:
                dq.popleft()
            if q.full:
                node.queue_popped(q)
        node.drops += len(stamps) - self.size


SYNC = SyncPolicy()
IMMEDIATE = ImmediatePolicy()


def policy_for(name: str, latest_size: int | None) -> Policy:
    """The policy object of a node spec's ``policy`` (``sync``, ``immediate`` or ``latest``)."""
    if name == "sync":
        return SYNC
    if name == "immediate":
        return IMMEDIATE
    if name == "latest":
        return LatestPolicy(latest_size)
    raise ValueError(f"unknown input policy '{name}'")
