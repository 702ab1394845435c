"""Streams and queues: a stream's bound and fan-out, a node's bounded input queue on it, and the
direct consumers of a stream (observer callbacks, pollers).

A producer calls ``Stream.send`` (a packet) or ``Stream.set_bound`` (the bound moves without one);
each consumer's ``InputQueue`` gets it through its node (``NodeRuntime.deliver``/``advance``), which
appends any node that became ready to the caller's ``ready`` list. Nothing here schedules: the
caller hands ``ready`` on (see scheduler.py).

The one exception is paid on every hop, so ``send`` does it itself: the queue of a *simple* node
(one input, one call at a time: node.py) carries the node's claim token (``InputQueue.claim``).
When such a queue has room, ``send`` appends the packet, moves the queue's bound (in that order:
node.py's docstring says why) and takes the claim, with no lock and no call into the node; whoever
takes the claim puts the node on ``ready``. A queue about to fill, and every other queue, goes
through ``NodeRuntime.deliver``.

Cheaper still, the direct hop: a ``DirectStream`` (a stream with one consumer, a simple node on
its producer's executor) makes an idle consumer's call itself, at once (its docstring says when
and why here), skipping the queue and the worker's ``ready`` list.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .errors import TimestampError
from .readonly import FREEZERS, _new as _first_freeze
from .timestamp import Packet, Timestamp

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .run_state import RunState

DONE = Timestamp.DONE


class ObserverFailed(Exception):
    """Raised through the producer when an observer callback failed (already recorded)."""


class DirectConsumer:
    """Something that receives a stream's packets directly (observers, pollers)."""

    __slots__ = ("on_packet", "on_bound")

    def __init__(self, on_packet, on_bound=None):
        self.on_packet = on_packet
        self.on_bound = on_bound


class Stream:
    """One producer, any number of consumers; timestamps strictly increase."""

    __slots__ = ("name", "producer", "bound", "last", "queues", "direct", "_targets", "_on_packet", "_hop",
                 "_from", "_to", "_dq", "_claim", "_run")

    def __init__(self, name: str, producer: str | None):
        self.name = name
        self.producer = producer  # node name, or None for a graph input
        self.bound = Timestamp.MIN  # the smallest timestamp still allowed
        self.last = None
        self.queues: list[InputQueue] = []
        self.direct: list[DirectConsumer] = []
        self._targets: tuple = ()  # the consumer queues: what send() walks
        self._on_packet: tuple = ()  # the direct consumers' on_packet
        # a DirectStream's: its one queue, producer and consumer, and what its send reads of them
        self._hop: InputQueue | None = None
        self._from: "NodeRuntime | None" = None
        self._to: "NodeRuntime | None" = None
        self._dq: deque | None = None  # the queue's packets
        self._claim: dict | None = None  # the consumer's claim token
        self._run: "RunState | None" = None

    def make_direct(self, producer: "NodeRuntime") -> None:
        """Turns this stream into a ``DirectStream`` (see its docstring; the scheduler decides
        which streams, once, at start: ``Scheduler.plan_direct_hops``)."""
        assert len(self.queues) == 1 and not self.direct and self.queues[0].claim is not None
        q = self._hop = self.queues[0]
        self._from = producer
        self._to = q.node
        self._dq = q.dq
        self._claim = q.claim
        self._run = producer.run
        self.__class__ = DirectStream

    def add_queue(self, q: "InputQueue") -> None:
        self.queues.append(q)
        self._targets = tuple(self.queues)

    def add_direct(self, c: DirectConsumer) -> None:
        self.direct.append(c)
        self._on_packet = tuple(x.on_packet for x in self.direct)

    def send(self, packet: Packet, ready: list) -> None:
        v = packet[0]  # handed out read-only: a consumer writing into it fails (readonly.py)
        f = FREEZERS.get(v.__class__, _first_freeze)
        if f is not None:
            f(v)
        t = packet[1]
        if t < self.bound:
            self._refuse(t)
        self.last = t
        b = self.bound = t + 1
        for q in self._targets:
            claim = q.claim
            if claim is not None:  # a simple node's queue (see the module's docstring)
                dq = q.dq
                n = len(dq)
                if n < q.room:  # the common case: room to spare
                    dq.append(packet)
                    if n >= q.peak:
                        q.peak = n + 1
                    q.bound = b
                    if claim.pop(0, False):
                        ready.append(q.node)
                    continue
            q.node.deliver(q, packet, ready)
        if self._on_packet:
            for on_packet in self._on_packet:
                on_packet(packet)

    def _refuse(self, t: int) -> None:
        if self.bound == DONE:
            raise TimestampError(
                f"stream '{self.name}': node '{self.producer}' sent a packet at {Timestamp.name(t)} "
                "after the stream was closed")
        last = ("no packet was sent on it yet" if self.last is None  # its bound moved without one
                else f"the last timestamp on it was {Timestamp.name(self.last)}")
        raise TimestampError(
            f"stream '{self.name}': node '{self.producer or 'graph input'}' sent a packet at timestamp "
            f"{Timestamp.name(t)}, but {last} (next allowed: "
            f"{Timestamp.name(self.bound)}). Timestamps on a stream must strictly increase: a source "
            "re-using a timestamp, or a calculator emitting at an earlier timestamp than the one it "
            "processes (declare timestamp_offset = None and emit in order)")

    def set_bound(self, bound: int, ready: list) -> None:
        if bound <= self.bound:
            return
        self.bound = bound
        for q in self.queues:
            q.node.advance(q, bound, ready)
        for c in self.direct:
            if c.on_bound is not None:
                c.on_bound(bound)

    def close(self, ready: list) -> None:
        self.set_bound(DONE, ready)


class DirectStream(Stream):
    """A stream whose one consumer is a simple node (node.py) on its producer's executor, with no
    observer: ``send`` runs the consumer's call at once, on the producer's thread, inside the
    producer's call, when the consumer is idle (its claim is free and its queue empty), the run
    is not stopping, and the producer's call is not a measured one (``timing``: node.py's
    ``_timed_call``). A producer whose calls are long is measured on every call, so it never
    hops directly: its backlog is better left to an idle worker, which needs the consumer to go
    through the worker's ``ready``. Otherwise the packet takes the queue as on any stream. No
    lock, no queue, no trip through the worker's loop: the hop is a call, and no measured call
    holds another node's. The scheduler limits how many direct hops may nest
    (``MAX_DIRECT_DEPTH``), so a long chain does not go deep in the stack.

    ``send`` makes the consumer's call itself, as ``NodeRuntime.step``'s fast path would for a
    packet popped from the queue (the context set up, ``process`` called and counted, a failure
    recorded, the offset contract), rather than calling a method of the node that does: each
    Python call is paid on every hop, and this one was one of four (docs/benchmarks.md, "The
    hop, folded"). What it reads of the queue and the nodes is kept in the stream's slots
    (``make_direct``)."""

    __slots__ = ()

    def send(self, packet: Packet, ready: list) -> None:
        v = packet[0]  # as Stream.send: read-only, timestamps strictly increasing
        f = FREEZERS.get(v.__class__, _first_freeze)
        if f is not None:
            f(v)
        t = packet[1]
        if t < self.bound:
            self._refuse(t)
        self.last = t
        b = self.bound = t + 1
        # (only this stream's producer pushes into the queue, and it is here: the queue stays
        # empty and the consumer idle until claimed)
        if self._dq or self._from.timing or self._run.stopping or not self._claim.pop(0, False):
            self._enqueue(packet, b, ready)
            return
        self._hop.bound = b
        c = self._to  # the consumer's call, as in NodeRuntime.step
        ctx = c.ctx
        ctx.timestamp = t
        ctx.inputs = {c.tag0: packet}
        ctx._ready = ready
        if c.count % c.every:  # a call left out of the process-time sample (node.py, _timed_call)
            process = c.process  # a bound method in a slot: called from a local, it is cheaper
            try:
                process(ctx)
            except BaseException as e:  # noqa: BLE001 - every failure stops the run
                c.fail("process", t, e)
                return  # the claim is kept: a failed node is never activated again (node.py)
        else:  # a measured call; the first counts the packet in the queue's peak
            q = self._hop
            if not q.peak:
                q.peak = 1  # the packet was in the node's hands, as a queued one would be
            if not c._timed_call(ctx, t, None):  # (no direct hop while tracing)
                return
        c.count += 1
        # the offset contract: the queue is empty and its bound is b (propagated is read only
        # when there is an offset, so it is set without looking); then the claim is released:
        # nothing can have reached the queue during the call
        c.propagated = b
        for s in c.bounded:
            if s.bound < b:
                s.set_bound(b, ready)
        self._claim[0] = True

    def _enqueue(self, packet: Packet, b: int, ready: list) -> None:
        """The packet takes the queue: ``Stream.send``'s path for a simple node's queue."""
        q = self._hop
        dq = q.dq
        n = len(dq)
        if n < q.room:
            dq.append(packet)
            if n >= q.peak:
                q.peak = n + 1
            q.bound = b
            if q.claim.pop(0, False):
                ready.append(q.node)
            return
        q.node.deliver(q, packet, ready)


class InputQueue:
    """A node's bounded input queue on one stream."""

    __slots__ = ("node", "tag", "stream", "dq", "bound", "seen", "capacity", "room", "overflow", "back_edge",
                 "peak", "drops", "full", "claim")

    def __init__(self, node: "NodeRuntime", tag: str, stream: Stream, capacity: int, overflow: str, back_edge: bool):
        self.node = node
        self.tag = tag
        self.stream = stream
        self.dq: deque[Packet] = deque()
        self.bound = Timestamp.MIN  # the smallest timestamp that may still arrive
        self.seen = Timestamp.MIN  # process_timestamp_bounds: the bound the calculator was shown
        self.capacity = capacity
        self.room = capacity - 1  # below this many queued, a packet neither fills nor overflows it
        self.overflow = overflow
        self.back_edge = back_edge
        self.peak = 0
        self.drops = 0
        self.full = False
        self.claim: dict | None = None  # the node's claim token when it is simple (set by its wiring)


class Poller:
    """Pulls packets of one output stream: ``get(timeout)`` returns a Packet, or None at the end
    (the stream closed, or the run ended: cancelled or failed, then ``wait()`` tells which).

    It waits on the run's condition, so it wakes when a packet comes, the stream closes or the
    run ends, whichever is first."""

    def __init__(self, stream: str):
        self.stream = stream
        self._dq: deque[Packet] = deque()
        self._closed = False  # the stream is done
        self._done = False  # get() returned None
        self._run: "RunState | None" = None

    def _attach(self, run: "RunState") -> None:
        self._run = run

    def _on_packet(self, p: Packet) -> None:
        cond = self._run.cond
        with cond:
            self._dq.append(p)
            cond.notify_all()

    def _on_bound(self, b: int) -> None:
        if b == DONE:
            cond = self._run.cond
            with cond:
                self._closed = True
                cond.notify_all()

    def _ready(self) -> bool:
        return bool(self._dq) or self._closed or self._run.ended

    def get(self, timeout: float | None = None) -> Packet | None:
        """The next packet; None when the stream is done. Raises TimeoutError after ``timeout`` s."""
        if self._done:
            return None
        run = self._run
        if run is None:
            raise RuntimeError(f"poller of '{self.stream}': start() the graph before get()")
        if not run.wait_until(self._ready, timeout):
            raise TimeoutError(f"no packet on stream '{self.stream}' within {timeout} s")
        with run.cond:
            if self._dq:
                return self._dq.popleft()
        self._done = True
        return None

    def __iter__(self):
        while True:
            p = self.get()
            if p is None:
                return
            yield p
