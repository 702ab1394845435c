"""The node runtime: one node's queues, its calculator, its scheduling flags, and one step of work.

Producers call ``deliver``/``advance`` (any thread, under the node's lock): the packet or bound goes
into the input queue, and when the node's policy says it is ready and it may take another call
(``active < max_in_flight``), the node is *activated*: ``active`` goes up and the node is appended
to the producer's ``ready`` list. A worker then calls ``step`` once per activation: it takes an input
set from the policy, runs ``process`` (or only moves bounds, or closes), applies the offset contract
to the outputs, and says whether the node still has work (it stays activated) or not (``active``
goes down).

Three ways through ``step``:

- the fast path (``simple``: one forward input, sync or immediate, one call at a time, no bound-only
  processing; most nodes): pop, call, propagate, all inline and without a lock, since this is paid
  on every hop. A simple node's activation is a claim token (``claim``, a one-key dict whose
  ``pop``/set are atomic under the GIL) instead of ``active`` under the lock: a producer appends the
  packet, then moves the queue's bound, then tries to claim (``Stream.send`` does this itself when
  the queue has room: the queue carries the claim; ``deliver`` only when it is about to fill); the
  worker holding the claim pops, and when it runs out of work releases the claim and looks once
  more (a producer that came after that look claims the node itself). ``fast_path = False`` puts
  every node on the general path (the tests compare both). Whoever reads a queue without the lock
  reads its bound *before* its packets: a packet below a bound read is then always seen. The lock
  still guards the rare paths (a queue filling up or getting room again).
- the general path: the policy's ``readiness``/``take`` (policies.py), then a call, a bound-only call
  (``process_timestamp_bounds``), a bound propagation without a call, or the close;
- ``max_in_flight > 1``: calls run concurrently; each call's outputs are buffered in its
  ``InFlightCall`` and flushed in start order, so outputs stay in timestamp order.

And one way around it: the direct hop. A simple node whose input stream is a ``DirectStream``
(streams.py; chosen at start by the scheduler) is called by that stream's ``send`` itself,
inside its producer's call, when it is idle: the packet never enters the queue. ``send`` makes
the call as the fast path of ``step`` does (the context, ``process``, the count, the sample,
the offset contract), written out there to save a Python call per hop.

Process times are a sample (``_timed_call``): the clock is read around every call of a node
whose calls are long, and around one call in ``SAMPLE_EVERY`` of the others; ``count`` is
exact and ``time_ns`` the estimate.

A stopping run (cancelled or failed) drops work at every node but the sinks (nodes without outputs,
``sink``): they go on writing what reached them until the run is ``halted`` (run_state.py), so a
failure elsewhere still leaves their files whole. ``close_at_shutdown`` closes what did not finish,
once no call of the node can run (see its docstring).

The offset contract (bound propagation) is written once, in ``_bound_after`` and ``_advance_outputs``.
With ``max_in_flight > 1`` every emission, bounds included, goes through ``_flush``, one thread at a
time, so no two threads ever write the same output stream.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from . import config as _config
from .errors import GraphRunError
from .policies import READY_TO_CLOSE, input_bound, policy_for
from .scheduler import HANDOFF_NS
from .streams import InputQueue, ObserverFailed, Stream
from .timestamp import Packet, Timestamp

if TYPE_CHECKING:
    from .context import Context
    from .graph import Graph
    from .run_state import RunState
    from .scheduler import Executor, Scheduler

DONE = Timestamp.DONE
_perf_ns = time.perf_counter_ns
# One call in this many is measured, for nodes with short calls (_timed_call); a prime, so that
# a node whose calls follow a shorter period (every other frame, one in 3, 4, 8...) is not
# measured on one kind of call only.
SAMPLE_EVERY = 31


class InFlightCall:
    """A ``process`` call of a ``max_in_flight > 1`` node, in start order: its timestamp, whether
    it returned, and the outputs it buffered (``(stream, Packet | bound)``). A bounds-only entry
    carries only bounds (the offset contract's, for timestamps with no call)."""

    __slots__ = ("timestamp", "done", "buffer", "bounds_only")

    def __init__(self, timestamp: int, bounds_only: bool = False, streams=()):
        self.timestamp = timestamp
        self.done = bounds_only
        self.bounds_only = bounds_only
        self.buffer: list = [(s, timestamp) for s in streams] if bounds_only else []


class NodeRuntime:
    """The running state of one node: its queues, its calculator and its scheduling flags."""

    # False puts every node on the general path: tests run the same graphs both ways and compare
    # (tests/pipeline/test_fast_path.py), so the fast path is held to the general path's behaviour.
    fast_path = True

    __slots__ = ("graph", "run", "sched", "spec", "name", "cls", "depth", "lock", "queues", "forward_queues",
                 "outputs", "out_streams", "bounded", "calc", "process", "options", "side", "opened", "closed", "finished",
                 "active", "max_in_flight", "policy", "immediate", "offset", "process_bounds", "propagated",
                 "is_source", "simple", "executor", "ctx", "inflight", "flushing", "count", "sampled", "sampled_ns",
                 "every", "timing", "drops",
                 "q0", "dq0", "tag0", "claim", "sink", "__weakref__")

    def __init__(self, graph: "Graph", spec: _config.NodeSpec, depth: int, run: "RunState", sched: "Scheduler"):
        self.graph = graph
        self.run = run
        self.sched = sched
        self.spec = spec
        self.name = spec.name
        self.cls = spec.cls
        self.depth = depth
        self.lock = threading.Lock()
        self.queues: list[InputQueue] = []
        self.forward_queues: list[InputQueue] = []
        self.outputs: dict[str, Stream] = {}
        self.out_streams: tuple[Stream, ...] = ()
        self.bounded: tuple[Stream, ...] = ()  # the outputs the offset contract moves: all, or none
        self.calc = None
        self.process = None  # the calculator's bound process method
        self.options = None
        self.side: dict = {}
        self.opened = False
        self.closed = False
        self.finished = False  # no more work: it closed on its own, or a call of it failed (fail)
        self.active = 0
        self.max_in_flight = spec.max_in_flight
        self.policy = policy_for(spec.policy, spec.latest_size)
        self.immediate = spec.policy == "immediate"
        self.offset = self.cls.timestamp_offset
        self.process_bounds = bool(getattr(self.cls, "process_timestamp_bounds", False))
        self.propagated = Timestamp.MIN
        self.is_source = self.cls.is_source()
        self.simple = False  # set when queues are wired
        self.executor: Executor | None = None
        self.ctx: Context | None = None
        # max_in_flight > 1: calls in start order, flushed in order
        self.inflight: deque[InFlightCall] = deque()
        self.flushing = False
        # stats
        self.count = 0  # process calls that returned
        self.sampled = 0  # of them, the calls whose time was measured (see _timed_call)
        self.sampled_ns = 0  # their total time
        self.every = 1  # one call in this many is measured (see _timed_call)
        self.timing = False  # a measured call is running (its emissions take the queues)
        self.drops = 0
        self.q0: InputQueue | None = None
        self.dq0: deque | None = None
        self.tag0 = ""
        self.claim = {0: True}  # simple nodes: present when free; popped by whoever activates the node
        self.sink = not spec.outputs  # writes what reached it even while a stopping run shuts down

    def add_output(self, tag: str, stream: Stream) -> None:
        self.outputs[tag] = stream
        self.out_streams = tuple(self.outputs.values())
        self.bounded = self.out_streams if self.offset is not None else ()

    def wire_input(self, q: InputQueue) -> None:
        self.queues.append(q)
        if not q.back_edge:
            self.forward_queues.append(q)
        self.simple = (self.fast_path and len(self.queues) == 1 and len(self.forward_queues) == 1
                       and not self.process_bounds and self.policy.name in ("sync", "immediate")
                       and self.max_in_flight == 1)
        self.q0 = self.queues[0]
        self.dq0 = self.q0.dq
        self.tag0 = self.q0.tag
        for x in self.queues:  # a simple node's queue carries its claim: Stream.send pushes into it itself
            x.claim = self.claim if self.simple else None

    def is_active(self) -> bool:
        """Whether the node is activated (scheduled, or running a step)."""
        if self.simple:  # a finished simple node keeps its claim for good: it is not working
            return 0 not in self.claim and not self.finished
        return self.active > 0

    def fail(self, phase: str, t: int | None, e: BaseException) -> None:
        """Records the failure of this node's ``phase`` at t; the run stops. The node is called no
        more (``finished``: a sink does not drain after its own failure); the shutdown closes it."""
        self.finished = True
        if isinstance(e, ObserverFailed):
            return  # the observer's error is already recorded
        err = GraphRunError(self.name, self.spec.calculator, phase, t, e)
        err.__cause__ = e
        self.run.fail(err)

    # -- delivery (called by producers, any thread) -------------------------------------------

    def deliver(self, q: InputQueue, packet: Packet, ready: list) -> None:
        if self.simple:  # a queue with room to spare: Stream.send pushed the packet itself
            with self.lock:
                if not self._deliver_full(q, packet, len(q.dq)):
                    return
            if self.claim.pop(0, False):
                ready.append(self)
            return
        with self.lock:
            dq = q.dq
            n = len(dq)
            if n < q.room:
                dq.append(packet)
                if n >= q.peak:
                    q.peak = n + 1
                q.bound = packet[1] + 1
            elif not self._deliver_full(q, packet, n):
                return
            if self.active < self.max_in_flight and not self.finished and self.policy.readiness(self):
                self.active += 1
                ready.append(self)

    def _deliver_full(self, q: InputQueue, packet: Packet, n: int) -> bool:
        """deliver() for a queue that is full or becomes full; False when the packet is refused."""
        dq = q.dq
        if n >= q.capacity:
            ov = q.overflow
            if ov == "drop_oldest":
                try:
                    dq.popleft()
                    q.drops += 1
                except IndexError:  # a simple node's worker took it first (it pops without the lock)
                    pass
                n = len(dq)
            elif ov == "reject":
                q.drops += 1
                if q.bound <= packet[1]:
                    q.bound = packet[1] + 1
                return False
        dq.append(packet)
        n += 1
        if n > q.peak:
            q.peak = n
        q.bound = packet[1] + 1
        if n >= q.capacity and q.overflow == "block" and not q.full:
            q.full = True
            self.sched.adjust_full(1)
        return True

    def advance(self, q: InputQueue, bound: int, ready: list) -> None:
        if self.simple:
            if bound <= q.bound:
                return
            q.bound = bound
            if (q.dq or bound == DONE or (self.offset is not None and bound > self.propagated)) and \
                    self.claim.pop(0, False):
                ready.append(self)
            return
        with self.lock:
            if bound <= q.bound:
                return
            q.bound = bound
            if self.active < self.max_in_flight and not self.finished and self.policy.readiness(self):
                self.active += 1
                ready.append(self)

    def queue_popped(self, q: InputQueue) -> None:
        """Under the lock, after a pop from a full queue: it may have room again."""
        if q.full and len(q.dq) < q.capacity:
            q.full = False
            self.sched.queue_freed()

    # -- the offset contract, once ---------------------------------------------------------------

    def _bound_after(self, t: int) -> int:
        """After a call at t: the earliest timestamp still to come on the forward inputs, which
        the outputs may advance to (reads without the lock see older, smaller values: safe).
        sync consumed every input at t; immediate may still see t on another input. Inputs that
        are done do not close the outputs here: close() may still emit after t."""
        nb = DONE
        for q in self.forward_queues:
            b = q.bound
            dq = q.dq
            v = dq[0][1] if dq else b
            if v < nb:
                nb = v
        if nb == DONE or (nb <= t and not self.immediate):
            nb = t + 1
        return nb

    def _advance_outputs(self, nb: int, ready: list) -> None:
        """The offset contract's promise after a call: every output's bound up to nb."""
        if nb > self.propagated:
            self.propagated = nb
            self._set_output_bounds(nb, ready)

    def _set_output_bounds(self, nb: int, ready: list) -> None:
        for s in self.out_streams:
            if s.bound < nb:
                s.set_bound(nb, ready)

    # -- running (worker threads) ---------------------------------------------------------------

    def step(self, ready: list, trace: list | None) -> bool:
        """Runs one task. Returns True if the node may have more work (it stays scheduled)."""
        if not self.simple:
            return self._step_general(ready, trace)
        # The fast path, every hop of most graphs: pop, call, propagate, see if there is more.
        dq = self.dq0
        run = self.run
        if not dq or run.stopping and not (self.sink and not run.halted):
            return self._simple_idle(ready)
        p = dq.popleft()  # the claim makes this worker the queue's only consumer
        q = self.q0
        if q.full:
            with self.lock:
                self.queue_popped(q)
        ctx = self.ctx
        t = ctx.timestamp = p[1]
        ctx.inputs = {self.tag0: p}
        ctx._ready = ready
        if self.count % self.every:  # a call left out of the process-time sample: no clock read
            process = self.process  # a bound method in a slot: called from a local, it is cheaper
            try:
                process(ctx)
            except BaseException as e:  # noqa: BLE001 - every failure stops the run
                self.fail("process", t, e)
                return False  # the claim is kept, as by a finished node: it is never activated again
        elif not self._timed_call(ctx, t, trace):
            return False
        self.count += 1
        if self.offset is not None:
            # _advance_outputs(_bound_after(t)) for the one input, inlined; the bound is read
            # before the packets (see the module's docstring)
            nb = q.bound
            if dq:
                nb = dq[0][1]
            elif nb == DONE:
                nb = t + 1
            if nb > self.propagated:
                self.propagated = nb
                for s in self.out_streams:
                    if s.bound < nb:
                        s.set_bound(nb, ready)
        if dq:
            return not run.stopping or self._simple_idle(ready)  # (a sink drains: see _simple_idle)
        # _simple_idle() for its common case, inlined: nothing left, release the claim, look again
        claim = self.claim
        claim[0] = True
        b = q.bound
        if not dq and b != DONE and (self.offset is None or b <= self.propagated) or run.stopping:
            return False
        if not claim.pop(0, False):
            return False  # a producer claimed it: it is scheduled
        return self._simple_idle(ready)

    def _timed_call(self, ctx: "Context", t: int, trace: list | None) -> bool:
        """One ``process`` call, measured: a sample of the node's process time. Reading the clock
        costs as much as a short call (two reads: 0.1-0.6 µs on the VM of docs/benchmarks.md),
        so a node whose measured calls average under ``HANDOFF_NS`` has only one call in
        ``SAMPLE_EVERY`` measured (``every``: the first, and each whose count is a multiple of it);
        a longer one, and every node while tracing, has every call measured. ``time_ns`` is the estimate the stats show. While
        a measured call runs (``timing``), the node's packets take the queues, not a direct hop,
        so the measure holds only the node's own call. Returns False when the call failed."""
        self.timing = True
        start = _perf_ns()
        try:
            self.process(ctx)
        except BaseException as e:  # noqa: BLE001 - every failure stops the run
            self.timing = False
            self.fail("process", t, e)
            return False
        end = _perf_ns()
        self.timing = False
        n = self.sampled = self.sampled + 1
        ns = self.sampled_ns = self.sampled_ns + end - start
        if trace is not None:
            trace.append((self.name, threading.current_thread().name, t, start, end))
        else:
            self.every = SAMPLE_EVERY if ns < HANDOFF_NS * n else 1
        return True

    @property
    def time_ns(self) -> int:
        """The node's total process time in ns: the measured calls' mean times the calls (exact
        when every call is measured: sources, ``max_in_flight > 1``, long calls, tracing)."""
        n = self.sampled
        return self.sampled_ns * self.count // n if n else 0

    def _simple_idle(self, ready: list) -> bool:
        """A simple node holding its claim with no packet in hand: closes, propagates a bound, or
        releases the claim. True when a packet is queued after all (the worker steps again)."""
        q = self.q0
        dq = q.dq
        run = self.run
        claim = self.claim
        offset = self.offset
        while True:
            if run.stopping and not (self.sink and dq and not run.halted):
                claim[0] = True
                return False
            b = q.bound
            if dq:
                return True
            if b == DONE:
                if not self.finished:
                    self.finished = True
                    self._close_node(ready)
                    run.node_finished()
                return False  # the claim is kept: a finished node is never activated again
            if offset is not None and b > self.propagated:
                self.propagated = b
                self._set_output_bounds(b, ready)
                continue
            claim[0] = True
            b = q.bound
            if not (dq or b == DONE or (offset is not None and b > self.propagated)):
                return False
            if not claim.pop(0, False):
                return False  # a producer claimed it after all: it is scheduled

    def _step_general(self, ready: list, trace) -> bool:
        run = self.run
        call = None
        with self.lock:
            if self.finished or run.stopping and not (self.sink and not run.halted):
                self.active -= 1
                return False
            policy = self.policy
            inputs = policy.take(self)  # None when nothing is ready to process
            if inputs is None:
                r = policy.readiness(self)  # then maybe closing
                if r is not READY_TO_CLOSE or self.active > 1:
                    self.active -= 1
                    return False
                self.finished = True
            elif self.max_in_flight > 1:
                call = InFlightCall(inputs.timestamp, inputs.inputs is None, self.out_streams)
                self.inflight.append(call)
        if inputs is None:  # close
            self._close_node(ready)
            with self.lock:
                self.active -= 1
            run.node_finished()
            return False
        if call is not None:
            if not call.bounds_only:
                self._process_concurrent(call, inputs.inputs, ready, trace)
            self._flush(ready)  # a bounds-only set too: every emission of the node goes through it
        elif inputs.inputs is None:  # bounds only, no call (take() recorded them as propagated)
            self._set_output_bounds(inputs.timestamp, ready)
        elif not self._call(inputs.timestamp, inputs.inputs, inputs.bounds, ready, trace):
            return False
        with self.lock:
            if (not run.stopping or (self.sink and not run.halted)) and not self.finished and \
                    self.policy.readiness(self):
                return True
            self.active -= 1
            return False

    def _call(self, t: int, inputs: dict, bounds: dict | None, ready: list, trace) -> bool:
        """One ``process`` call at t, then the offset contract's bound propagation.
        Returns False when the call failed (the run is stopping; the node is released)."""
        ctx = self.ctx
        ctx.timestamp = t
        ctx.inputs = inputs
        ctx._ready = ready
        ctx._bounds = bounds
        if self.count % self.every:  # (see _timed_call)
            try:
                self.process(ctx)
            except BaseException as e:  # noqa: BLE001 - every failure stops the run
                self.fail("process", t, e)
                with self.lock:
                    self.active -= 1
                return False
        elif not self._timed_call(ctx, t, trace):
            with self.lock:
                self.active -= 1
            return False
        self.count += 1
        if self.offset is not None:
            self._advance_outputs(self._bound_after(t), ready)
        return True

    def _process_concurrent(self, call: InFlightCall, inputs: dict, ready: list, trace) -> None:
        """One of several concurrent calls: its outputs go to ``call.buffer``."""
        t = call.timestamp
        ctx = self.ctx
        ctx.timestamp = t
        ctx.inputs = inputs
        ctx._ready = ready
        ctx._buffer = call.buffer
        start = _perf_ns()
        try:
            self.process(ctx)
        except BaseException as e:  # noqa: BLE001
            self.fail("process", t, e)
            return
        finally:
            ctx._buffer = None
        end = _perf_ns()
        if trace is not None:
            trace.append((self.name, threading.current_thread().name, t, start, end))
        with self.lock:  # concurrent calls: every one measured
            self.count += 1
            self.sampled += 1
            self.sampled_ns += end - start
            call.done = True

    def _flush(self, ready: list) -> None:
        """max_in_flight > 1: emits the finished calls' buffered outputs in start order, each call's
        bound after it (offset contract), and once nothing is in flight, the inputs' bound. One
        thread at a time flushes; a thread that finds another flushing leaves its call to it."""
        with self.lock:
            if self.flushing:
                return
            self.flushing = True
        offset = self.offset
        while True:
            with self.lock:
                batch = []
                while self.inflight and self.inflight[0].done:
                    batch.append(self.inflight.popleft())
                if not batch:
                    if not self.inflight and offset is not None:
                        b = input_bound(self)
                        if b != DONE and b > self.propagated:
                            self.propagated = b
                            batch.append(InFlightCall(b, True, self.out_streams))
                    if not batch:
                        self.flushing = False
                        return
            for c in batch:
                for stream, item in c.buffer:
                    if isinstance(item, Packet):
                        stream.send(item, ready)
                    else:
                        stream.set_bound(item, ready)
                if offset is not None and not self.immediate and not c.bounds_only:
                    self._set_output_bounds(c.timestamp + 1, ready)

    def _close_node(self, ready: list) -> None:
        ctx = self.ctx
        ctx.timestamp = None
        ctx.inputs = {}
        ctx._ready = ready
        ctx._buffer = None
        ctx._bounds = None
        if self.opened and not self.closed:
            self.closed = True
            try:
                self.calc.close(ctx)
            except BaseException as e:  # noqa: BLE001
                self.fail("close", None, e)
        for s in self.out_streams:
            s.close(ready)

    def close_at_shutdown(self) -> bool:
        """The shutdown's close of a node that did not finish on its own; False when it is not
        opened or already closed. The shutdown calls it only once no call of this node can run:
        the run's threads have ended, or it is halted and no thread left is in this node's call
        (graph.py reads that off their stacks), so a node is never closed under its call."""
        with self.lock:
            if not self.opened or self.closed:
                return False
            self.closed = True
        ctx = self.ctx
        ctx.timestamp = None
        ctx.inputs = {}
        ctx._buffer = None
        ctx._bounds = None
        try:
            self.calc.close(ctx)
        except BaseException as e:  # noqa: BLE001
            err = GraphRunError(self.name, self.spec.calculator, "close", None, e)
            err.__cause__ = e
            self.run.fail(err)
        return True
