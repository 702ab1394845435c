"""The node runtime: one node's queues, its calculator, its scheduling flags, and one step of work.

Producers call ``deliver``/``advance`` (any thread, under the node's lock): the packet or bound goes
into the input queue, and when the node's policy says it is ready and it may take another call
(``active < max_in_flight``), the node is *activated*: ``active`` goes up and the node is appended
to the producer's ``ready`` list. A worker then calls ``step`` once per activation: it takes an input
set from the policy, runs ``process`` (or only moves bounds, or closes), applies the offset contract
to the outputs, and says whether the node still has work (it stays activated) or not (``active``
goes down). A node with one forward input, one call at a time, sync or immediate (most nodes) takes
the fast path ``_run_simple``. With ``max_in_flight > 1`` calls run concurrently; their outputs are
buffered per call (``InFlightCall``) and flushed in start order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from . import config as _config
from .errors import GraphRunError
from .policies import READY_TO_CLOSE, READY_TO_PROCESS, input_bound, policy_for
from .streams import InputQueue, ObserverFailed, Stream
from .timestamp import Packet, Timestamp

if TYPE_CHECKING:
    from .context import Context
    from .graph import Graph
    from .run_state import RunState
    from .scheduler import Executor, Scheduler

DONE = Timestamp.DONE
_perf_ns = time.perf_counter_ns


class InFlightCall:
    """A ``process`` call of a ``max_in_flight > 1`` node, in start order: its timestamp, whether
    it returned, and the outputs it buffered (``(stream, Packet | bound)``)."""

    __slots__ = ("timestamp", "done", "buffer")

    def __init__(self, timestamp: int):
        self.timestamp = timestamp
        self.done = False
        self.buffer: list = []


class NodeRuntime:
    """The running state of one node: its queues, its calculator and its scheduling flags."""

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
        self.calc = None
        self.options = None
        self.side: dict = {}
        self.opened = False
        self.closed = False
        self.finished = False
        # The call running now ("process", "close", "source"; None between calls), set under the
        # lock where a call is taken, so the shutdown never closes a node while its call runs.
        self.calling: str | None = None
        # A sink (no outputs) keeps writing what reached it while a stopping run shuts down.
        self.sink = not spec.outputs
        self.active = 0
        self.max_in_flight = spec.max_in_flight
        self.policy = policy_for(spec.policy, spec.latest_size)
        self.offset = self.cls.timestamp_offset
        self.propagated = Timestamp.MIN
        self.is_source = self.cls.is_source()
        self.simple = False  # one forward input, sync or immediate: set when queues are wired
        self.executor: Executor | None = None
        self.ctx: Context | None = None
        # max_in_flight > 1: calls in start order, flushed in order
        self.inflight: deque[InFlightCall] = deque()
        self.flushing = False
        # stats
        self.count = 0
        self.time_ns = 0
        self.drops = 0

    def wire_input(self, q: InputQueue) -> None:
        self.queues.append(q)
        if not q.back_edge:
            self.forward_queues.append(q)
        self.simple = (len(self.queues) == 1 and len(self.forward_queues) == 1
                       and self.policy.name in ("sync", "immediate") and self.max_in_flight == 1)

    def fail(self, phase: str, t: int | None, e: BaseException) -> None:
        """Records the failure of this node's ``phase`` at t; the run stops."""
        if isinstance(e, ObserverFailed):
            return  # the observer's error is already recorded
        err = GraphRunError(self.name, self.spec.calculator, phase, t, e)
        err.__cause__ = e
        self.run.fail(err)

    # -- delivery (called by producers, any thread) -------------------------------------------

    def deliver(self, q: InputQueue, packet: Packet, ready: list) -> None:
        with self.lock:
            dq = q.dq
            n = len(dq)
            if n >= q.capacity:
                ov = q.overflow
                if ov == "drop_oldest":
                    dq.popleft()
                    q.drops += 1
                    n -= 1
                elif ov == "reject":
                    q.drops += 1
                    if q.bound <= packet.timestamp:
                        q.bound = packet.timestamp + 1
                    return
            dq.append(packet)
            n += 1
            if n > q.peak:
                q.peak = n
            q.bound = packet.timestamp + 1
            if n >= q.capacity and q.overflow == "block" and not q.full:
                q.full = True
                self.sched.adjust_full(1)
            if self.active < self.max_in_flight and not self.finished and (
                    self.simple or self.policy.readiness(self)):
                self.active += 1
                ready.append(self)

    def advance(self, q: InputQueue, bound: int, ready: list) -> None:
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

    # -- running (worker threads) ---------------------------------------------------------------

    def step(self, ready: list, trace: list | None) -> bool:
        """Runs one task. Returns True if the node may have more work (it stays scheduled)."""
        run = self.run
        if self.simple:
            # Fast path: one forward input, one call at a time (most nodes).
            q = self.queues[0]
            with self.lock:
                dq = q.dq
                if dq and (not run.stopping or (self.sink and not run.halted)):
                    p = dq.popleft()
                    if q.full:
                        self.queue_popped(q)
                    self.calling = "process"
                else:
                    p = None
            if p is not None:
                return self._run_simple(p, q, ready, trace)
        call = None
        with self.lock:
            if run.stopping and not (self.sink and not run.halted):
                self.active -= 1
                return False
            policy = self.policy
            r = policy.readiness(self)
            inputs = policy.take(self) if r is READY_TO_PROCESS else None
            if inputs is None:
                if r is READY_TO_PROCESS:
                    r = policy.readiness(self)  # latest dropped what was queued: maybe closing now
                if r is not READY_TO_CLOSE or self.active > 1 or self.finished:
                    self.active -= 1
                    return False
                self.finished = True
            elif self.max_in_flight > 1 and inputs.inputs is not None:
                call = InFlightCall(inputs.timestamp)
                self.inflight.append(call)
            elif inputs.inputs is not None:
                self.calling = "process"
        if inputs is None:  # close
            self._close_node(ready)
            with self.lock:
                self.active -= 1
            run.node_finished()
            return False
        if inputs.inputs is None:  # bound only
            b = inputs.timestamp
            for s in self.outputs.values():
                if s.bound < b:
                    s.set_bound(b, ready)
        elif call is None:
            if not self._run_call(inputs.timestamp, inputs.inputs, ready, trace):
                return False
        else:
            self._process_concurrent(call, inputs.inputs, ready, trace)
        with self.lock:
            if (not run.stopping or (self.sink and not run.halted)) and self.policy.readiness(self):
                return True
            self.active -= 1
            return False

    def _run_call(self, t: int, inputs: dict, ready: list, trace) -> bool:
        """One ``process`` call at t, then the offset contract's bound propagation.
        Returns False when the call failed (the run is stopping; the node is released)."""
        ctx = self.ctx
        ctx.timestamp = t
        ctx.inputs = inputs
        ctx._ready = ready
        start = _perf_ns()
        try:
            self.calc.process(ctx)
        except BaseException as e:  # noqa: BLE001 - every failure stops the run
            self.calling = None
            self.fail("process", t, e)
            with self.lock:
                self.active -= 1
            return False
        end = _perf_ns()
        self.calling = None
        self.count += 1
        self.time_ns += end - start
        if trace is not None:
            trace.append((self.name, threading.current_thread().name, t, start, end))
        if self.offset is not None:
            # Outputs may advance to the earliest timestamp still to come on the inputs
            # (reads without the lock see older, smaller values: safe, never too far).
            nb = DONE
            for q in self.forward_queues:
                dq = q.dq
                v = dq[0].timestamp if dq else q.bound
                if v < nb:
                    nb = v
            # sync consumed every input at t; immediate may still see t on another input. Inputs
            # that are done do not close the outputs here: close() may still emit after t.
            if nb == DONE or (nb <= t and self.policy.name != "immediate"):
                nb = t + 1
            if nb > self.propagated:
                self.propagated = nb
                for s in self.outputs.values():
                    if s.bound < nb:
                        s.set_bound(nb, ready)
        return True

    def _run_simple(self, p: Packet, q: InputQueue, ready: list, trace) -> bool:
        run = self.run
        if not self._run_call(p.timestamp, {q.tag: p}, ready, trace):
            return False
        with self.lock:
            if not run.stopping or (self.sink and not run.halted):
                if q.dq:
                    return True
                # bound_readiness() for the single input, inlined: this is per packet
                b = q.bound
                if b == DONE or (self.offset is not None and b > self.propagated):
                    return True
            self.active -= 1
            return False

    def _process_concurrent(self, call: InFlightCall, inputs: dict, ready: list, trace) -> None:
        t = call.timestamp
        ctx = self.ctx
        ctx.timestamp = t
        ctx.inputs = inputs
        ctx._ready = ready
        ctx._buffer = call.buffer
        start = _perf_ns()
        try:
            self.calc.process(ctx)
        except BaseException as e:  # noqa: BLE001
            call.done = True  # it returned (by raising): no longer a call in progress
            self.fail("process", t, e)
            return
        end = _perf_ns()
        if trace is not None:
            trace.append((self.name, threading.current_thread().name, t, start, end))
        with self.lock:
            self.count += 1
            self.time_ns += end - start
            call.done = True
            if self.flushing:
                return
            self.flushing = True
        while True:
            with self.lock:
                batch = []
                while self.inflight and self.inflight[0].done:
                    batch.append(self.inflight.popleft())
                if not batch:
                    self.flushing = False
                    pending_bound = None
                    if not self.inflight and self.offset is not None:
                        pending_bound = input_bound(self)
                    break
            for c in batch:
                for stream, item in c.buffer:
                    if isinstance(item, Packet):
                        stream.send(item, ready)
                    else:
                        stream.set_bound(item, ready)
                if self.offset is not None and self.policy.name != "immediate":
                    for s in self.outputs.values():
                        if s.bound < c.timestamp + 1:
                            s.set_bound(c.timestamp + 1, ready)
        if pending_bound is not None and pending_bound != DONE:
            for s in self.outputs.values():
                if s.bound < pending_bound:
                    s.set_bound(pending_bound, ready)

    def _close_node(self, ready: list) -> None:
        ctx = self.ctx
        ctx.timestamp = None
        ctx.inputs = {}
        ctx._ready = ready
        with self.lock:
            closing = self.opened and not self.closed and not self.run.halted
            if closing:
                self.closed = True
                self.calling = "close"
        if closing:
            try:
                self.calc.close(ctx)
            except BaseException as e:  # noqa: BLE001
                self.calling = None
                self.fail("close", None, e)
            self.calling = None
        for s in self.outputs.values():
            s.close(ready)

    def close_at_shutdown(self) -> bool:
        """The shutdown's close of a node that did not finish on its own. False when it is not to be
        closed now: not opened, already closed, or in a call (stuck: never closed under it)."""
        with self.lock:
            if not self.opened or self.closed or self.calling is not None or any(not c.done for c in self.inflight):
                return False
            self.closed = True
            self.calling = "close"
        ctx = self.ctx
        ctx.timestamp = None
        ctx.inputs = {}
        try:
            self.calc.close(ctx)
        except BaseException as e:  # noqa: BLE001
            err = GraphRunError(self.name, self.spec.calculator, "close", None, e)
            err.__cause__ = e
            self.run.fail(err)
        finally:
            self.calling = None
        return True

    def call_in_progress(self) -> tuple[str, int | None] | None:
        """(phase, timestamp) of the call running now, or None (read under the lock)."""
        with self.lock:
            if self.calling is not None:
                return self.calling, (self.ctx.timestamp if self.calling == "process" and self.max_in_flight == 1
                                      else None)
            running = [c.timestamp for c in self.inflight if not c.done]
        return ("process", running[0]) if running else None

