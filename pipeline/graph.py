"""The runtime: streams, input queues and policies, the threaded scheduler, and the Graph API.

How a packet moves: a producer's ``add`` checks the stream's bound and appends the packet to each
consumer's input queue under that node's lock; a consumer that becomes ready is handed to the
producer's worker, which runs it *inline* next when it shares the executor (so a hop costs a few
microseconds), and queues it otherwise. A node that still has work after a step goes back to its
executor's priority queue (downstream nodes first) so that an idle worker can pipeline it while this
worker carries the packet on. Sources run on threads of their own and are throttled, never the
interior nodes, so throttling cannot deadlock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any as _Any, Callable

import networkx as nx

from . import config as _config
from .calculator import STOP
from .errors import GraphConfigError, GraphRunError, Problem, QueueFullError, TimestampError
from .timestamp import Packet, Timestamp

log = logging.getLogger("vpipe")

DONE = Timestamp.DONE
_perf_ns = time.perf_counter_ns
_tuple_new = tuple.__new__  # builds a Packet without the namedtuple's Python-level __new__
HANDOFF_NS = 50_000  # mean process() time above which a node's backlog goes to idle workers


# ---------------------------------------------------------------------------------------------
# Streams and queues


class _Consumer:
    """Something that receives a stream's packets directly (observers, pollers)."""

    __slots__ = ("on_packet", "on_bound")

    def __init__(self, on_packet, on_bound=None):
        self.on_packet = on_packet
        self.on_bound = on_bound


class Stream:
    """One producer, any number of consumers; timestamps strictly increase."""

    __slots__ = ("name", "producer", "bound", "last", "queues", "direct", "graph")

    def __init__(self, name: str, producer: str | None, graph: "Graph"):
        self.name = name
        self.producer = producer  # node name, or None for a graph input
        self.bound = Timestamp.MIN  # the smallest timestamp still allowed
        self.last = None
        self.queues: list[InputQueue] = []
        self.direct: list[_Consumer] = []
        self.graph = graph

    def send(self, packet: Packet, ready: list) -> None:
        t = packet.timestamp
        if t < self.bound:
            if self.bound == DONE:
                raise TimestampError(
                    f"stream '{self.name}': node '{self.producer}' sent a packet at {Timestamp.name(t)} "
                    "after the stream was closed")
            last = Timestamp.name(self.last)
            raise TimestampError(
                f"stream '{self.name}': node '{self.producer or 'graph input'}' sent a packet at timestamp "
                f"{Timestamp.name(t)}, but the last timestamp on it was {last} (next allowed: "
                f"{Timestamp.name(self.bound)}). Timestamps on a stream must strictly increase: a source "
                "re-using a timestamp, or a calculator emitting at an earlier timestamp than the one it "
                "processes (declare timestamp_offset = None and emit in order)")
        self.last = t
        self.bound = t + 1
        for q in self.queues:
            q.node.deliver(q, packet, ready)
        for c in self.direct:
            c.on_packet(packet)

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


class InputQueue:
    """A node's bounded input queue on one stream."""

    __slots__ = ("node", "tag", "stream", "dq", "bound", "capacity", "overflow", "back_edge",
                 "peak", "drops", "full")

    def __init__(self, node: "NodeRuntime", tag: str, stream: Stream, capacity: int, overflow: str, back_edge: bool):
        self.node = node
        self.tag = tag
        self.stream = stream
        self.dq: deque[Packet] = deque()
        self.bound = Timestamp.MIN
        self.capacity = capacity
        self.overflow = overflow
        self.back_edge = back_edge
        self.peak = 0
        self.drops = 0
        self.full = False


# ---------------------------------------------------------------------------------------------
# The calculator context


class _Outputs(dict):
    __slots__ = ()

    def __missing__(self, key):
        raise KeyError(f"no output port '{key}' is connected on this node "
                       f"(connected: {', '.join(self) or 'none'})")


class OutputHandle:
    """``ctx.outputs[TAG]``: emit packets, move the bound, close."""

    __slots__ = ("stream", "ctx", "tag")

    def __init__(self, stream: Stream | None, ctx: "Context", tag: str):
        self.stream = stream
        self.ctx = ctx
        self.tag = tag

    def add(self, value, timestamp: int | None = None) -> None:
        ctx = self.ctx
        if timestamp is None:
            timestamp = ctx.timestamp
            if timestamp is None:
                raise ValueError(f"node '{ctx.node}': a source must give a timestamp to outputs['{self.tag}'].add")
        elif type(timestamp) is not int:
            timestamp = Timestamp.check(timestamp)
        stream = self.stream
        if stream is None:  # an optional output left unconnected
            return
        buf = ctx._buffer
        if buf is not None:
            buf.append((stream, _tuple_new(Packet, (value, timestamp))))
        elif ctx._source:
            graph = ctx._node.graph
            graph._throttle(ctx._node)  # a source waits while a queue downstream is full
            if not graph._stopping:
                stream.send(_tuple_new(Packet, (value, timestamp)), ctx._ready)
                graph._dispatch_external(ctx._ready)
        else:
            stream.send(_tuple_new(Packet, (value, timestamp)), ctx._ready)

    def set_next_timestamp_bound(self, timestamp: int) -> None:
        if self.stream is None:
            return
        ctx = self.ctx
        if ctx._buffer is not None:
            ctx._buffer.append((self.stream, timestamp))
            return
        self.stream.set_bound(timestamp, ctx._ready)
        if ctx._source:
            ctx._node.graph._dispatch_external(ctx._ready)

    def close(self) -> None:
        self.set_next_timestamp_bound(DONE)

    @property
    def connected(self) -> bool:
        return self.stream is not None


class _SideOutput:
    __slots__ = ("graph", "name", "node")

    def __init__(self, graph, name, node):
        self.graph, self.name, self.node = graph, name, node

    def set(self, value) -> None:
        self.graph._side_values[self.name] = value


class Context:
    """What a calculator sees in ``open``/``process``/``close`` (see docs/calculators.md)."""

    __slots__ = ("timestamp", "inputs", "outputs", "options", "side", "side_outputs", "node", "calculator",
                 "graph", "_node", "_ready", "_buffer", "_source")

    def __init__(self, node: "NodeRuntime"):
        self._node = node
        self.graph = node.graph
        self.node = node.name
        self.calculator = node.spec.calculator
        self.timestamp = None
        self.inputs: dict = {}
        self.outputs = _Outputs()
        self.options = node.options
        self.side = node.side
        self.side_outputs = {tag: _SideOutput(node.graph, name, node.name) for tag, name in node.spec.side_outputs.items()}
        self._ready: list = []
        self._buffer = None
        self._source = False

    def get(self, tag: str, default=None):
        p = self.inputs.get(tag)
        return default if p is None else p.value

    @property
    def stopping(self) -> bool:
        return self.graph._stop_event.is_set()

    @property
    def stop_event(self) -> threading.Event:
        return self.graph._stop_event

    @property
    def max_in_flight(self) -> int:
        """How many process calls of this node may run at once (the node's max_in_flight)."""
        return self._node.max_in_flight

    def count_drop(self, n: int = 1) -> None:
        """Counts packets this calculator dropped on purpose (shown in stats as drops)."""
        self._node.drops += n

    def stop_run(self) -> None:
        """Ends the run cleanly: sources stop, packets in flight drain, ``wait()`` returns."""
        self.graph.request_stop()


class _LocalContext(Context):
    """The context of a node with ``max_in_flight > 1``: per-call state lives in thread-local
    storage, so output handles a calculator kept from ``open`` emit for the call of their thread."""

    __slots__ = ("_local",)

    def __init__(self, node: "NodeRuntime"):
        object.__setattr__(self, "_local", threading.local())
        super().__init__(node)

    def _get(name):  # noqa: N805 - property factory
        def fget(self):
            return getattr(self._local, name, None)

        def fset(self, value):
            setattr(self._local, name, value)

        return property(fget, fset)

    timestamp = _get("timestamp")
    inputs = _get("inputs")
    _ready = _get("_ready")
    _buffer = _get("_buffer")
    del _get


# ---------------------------------------------------------------------------------------------
# Nodes


class NodeRuntime:
    """The running state of one node: its queues, its calculator and its scheduling flags."""

    def __init__(self, graph: "Graph", spec: _config.NodeSpec, depth: int):
        self.graph = graph
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
        self.active = 0
        self.max_in_flight = spec.max_in_flight
        self.policy = spec.policy
        self.latest_size = spec.latest_size
        self.offset = self.cls.timestamp_offset
        self.propagated = Timestamp.MIN
        self.is_source = self.cls.is_source()
        self.simple = False  # one forward input, sync or immediate: set when queues are wired
        self.executor: Executor | None = None
        self.ctx: Context | None = None
        # max_in_flight > 1: calls in start order, flushed in order
        self.inflight: deque = deque()
        self.flushing = False
        # stats
        self.count = 0
        self.time_ns = 0
        self.drops = 0

    # -- delivery (called by producers, any thread) -------------------------------------------

    def deliver(self, q: InputQueue, packet: Packet, ready: list) -> None:
        graph = self.graph
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
                graph._adjust_full(1)
            if self.active < self.max_in_flight and not self.finished and (self.simple or self._has_task()):
                self.active += 1
                ready.append(self)

    def advance(self, q: InputQueue, bound: int, ready: list) -> None:
        with self.lock:
            if bound <= q.bound:
                return
            q.bound = bound
            if self.active < self.max_in_flight and not self.finished and self._has_task():
                self.active += 1
                ready.append(self)

    # -- readiness (under lock) ---------------------------------------------------------------

    def _has_task(self) -> bool:
        queues = self.queues
        if self.policy == "immediate":
            for q in queues:
                if q.dq:
                    return True
            return self._bound_or_close_pending()
        t = self._next_timestamp()
        if t is None:
            return self._bound_or_close_pending()
        return self._settled(t)

    def _next_timestamp(self) -> int | None:
        """The earliest queued timestamp on any input, or None."""
        t = None
        for q in self.queues:
            if q.dq:
                h = q.dq[0].timestamp
                if t is None or h < t:
                    t = h
        return t

    def _settled(self, t: int) -> bool:
        """sync: t is settled when every forward input has a packet at/after t or its bound passed t."""
        for q in self.forward_queues:
            if not q.dq and q.bound <= t:
                return False
        return True

    def _input_bound(self) -> int:
        b = DONE
        for q in self.forward_queues:
            v = q.dq[0].timestamp if q.dq else q.bound
            if v < b:
                b = v
        return b

    def _bound_or_close_pending(self) -> bool:
        if self.inflight and self.max_in_flight > 1:
            return False
        b = self._input_bound()
        if b == DONE:
            return not self.finished
        return self.offset is not None and b > self.propagated

    def _take(self):
        """Pops the next task: ("process", t, inputs) | ("bound", b) | ("close",) | None."""
        queues = self.queues
        if self.policy == "immediate":
            best = None
            for q in queues:
                if q.dq and (best is None or q.dq[0].timestamp < best.dq[0].timestamp):
                    best = q
            if best is not None:
                p = best.dq.popleft()
                self._after_pop(best)
                inputs = {q.tag: None for q in queues}
                inputs[best.tag] = p
                return ("process", p.timestamp, inputs)
        else:
            if self.policy == "latest":
                self._drop_to_latest()
            t = self._next_timestamp()
            if t is not None and self._settled(t):
                inputs = {}
                for q in queues:
                    dq = q.dq
                    if dq and dq[0].timestamp == t:
                        inputs[q.tag] = dq.popleft()
                        if q.full:
                            self._after_pop(q)
                    else:
                        inputs[q.tag] = None
                return ("process", t, inputs)
        if self.inflight and self.max_in_flight > 1:
            return None
        b = self._input_bound()
        if b == DONE:
            if self.active > 1 or self.finished:
                return None
            self.finished = True
            return ("close",)
        if self.offset is not None and b > self.propagated:
            self.propagated = b
            return ("bound", b)
        return None

    def _after_pop(self, q: InputQueue) -> None:
        if q.full and len(q.dq) < q.capacity:
            q.full = False
            self.graph._adjust_full(-1)
            self.graph._unthrottle_pending = True

    def _drop_to_latest(self) -> None:
        stamps = set()
        for q in self.queues:
            for p in q.dq:
                stamps.add(p.timestamp)
        if len(stamps) <= self.latest_size:
            return
        keep_from = sorted(stamps)[-self.latest_size]
        for q in self.queues:
            dq = q.dq
            while dq and dq[0].timestamp < keep_from:
                dq.popleft()
            if q.full:
                self._after_pop(q)
        self.drops += len(stamps) - self.latest_size

    # -- running (worker threads) ---------------------------------------------------------------

    def step(self, ready: list, trace: list | None) -> bool:
        """Runs one task. Returns True if the node may have more work (it stays scheduled)."""
        graph = self.graph
        if self.simple:
            # Fast path: one forward input, one call at a time (most nodes).
            q = self.queues[0]
            with self.lock:
                dq = q.dq
                if dq and not graph._stopping:
                    p = dq.popleft()
                    if q.full:
                        self._after_pop(q)
                else:
                    p = None
            if p is not None:
                return self._run_simple(p, q, ready, trace)
        with self.lock:
            if graph._stopping:
                self.active -= 1
                return False
            task = self._take()
            if task is None:
                self.active -= 1
                return False
            if self.max_in_flight > 1 and task[0] == "process":
                rec = [task[1], False, []]  # timestamp, done, buffered outputs: in start order
                self.inflight.append(rec)
        kind = task[0]
        if kind == "process":
            t = task[1]
            if self.max_in_flight == 1:
                if not self._run_call(t, task[2], ready, trace):
                    return False
            else:
                self._process_concurrent(rec, task[2], ready, trace)
        elif kind == "bound":
            b = task[1]
            for s in self.outputs.values():
                if s.bound < b:
                    s.set_bound(b, ready)
        else:  # close
            self._close_node(ready)
            with self.lock:
                self.active -= 1
            graph._node_finished(self)
            return False
        if graph._unthrottle_pending:
            graph._notify_throttle()
        with self.lock:
            if self._has_task() and not graph._stopping:
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
            self.graph._fail(self, "process", t, e)
            with self.lock:
                self.active -= 1
            return False
        end = _perf_ns()
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
            if nb == DONE or (nb <= t and self.policy != "immediate"):
                nb = t + 1
            if nb > self.propagated:
                self.propagated = nb
                for s in self.outputs.values():
                    if s.bound < nb:
                        s.set_bound(nb, ready)
        return True

    def _run_simple(self, p: Packet, q: InputQueue, ready: list, trace) -> bool:
        graph = self.graph
        if not self._run_call(p.timestamp, {q.tag: p}, ready, trace):
            return False
        if graph._unthrottle_pending:
            graph._notify_throttle()
        with self.lock:
            if not graph._stopping:
                if q.dq:
                    return True
                # _bound_or_close_pending() for the single input, inlined: this is per packet
                b = q.bound
                if b == DONE or (self.offset is not None and b > self.propagated):
                    return True
            self.active -= 1
            return False

    def _process_concurrent(self, rec: list, inputs: dict, ready: list, trace) -> None:
        graph = self.graph
        t = rec[0]
        ctx = self.ctx
        ctx.timestamp = t
        ctx.inputs = inputs
        ctx._ready = ready
        ctx._buffer = rec[2]
        start = _perf_ns()
        try:
            self.calc.process(ctx)
        except BaseException as e:  # noqa: BLE001
            graph._fail(self, "process", t, e)
            return
        end = _perf_ns()
        if trace is not None:
            trace.append((self.name, threading.current_thread().name, t, start, end))
        with self.lock:
            self.count += 1
            self.time_ns += end - start
            rec[1] = True
            if self.flushing:
                return
            self.flushing = True
        while True:
            with self.lock:
                batch = []
                while self.inflight and self.inflight[0][1]:
                    batch.append(self.inflight.popleft())
                if not batch:
                    self.flushing = False
                    pending_bound = None
                    if not self.inflight and self.offset is not None:
                        pending_bound = self._input_bound()
                    break
            for r in batch:
                for stream, item in r[2]:
                    if isinstance(item, Packet):
                        stream.send(item, ready)
                    else:
                        stream.set_bound(item, ready)
                if self.offset is not None and self.policy != "immediate":
                    for s in self.outputs.values():
                        if s.bound < r[0] + 1:
                            s.set_bound(r[0] + 1, ready)
        if pending_bound is not None and pending_bound != DONE:
            for s in self.outputs.values():
                if s.bound < pending_bound:
                    s.set_bound(pending_bound, ready)

    def _close_node(self, ready: list) -> None:
        graph = self.graph
        ctx = self.ctx
        ctx.timestamp = None
        ctx.inputs = {}
        ctx._ready = ready
        if self.opened and not self.closed:
            self.closed = True
            try:
                self.calc.close(ctx)
            except BaseException as e:  # noqa: BLE001
                graph._fail(self, "close", None, e)
        for s in self.outputs.values():
            s.close(ready)


# ---------------------------------------------------------------------------------------------
# Executors


class Executor:
    """A named pool of worker threads taking ready nodes, downstream (deeper) nodes first."""

    def __init__(self, graph: "Graph", name: str, threads: int):
        self.graph = graph
        self.name = name
        self.nthreads = threads
        self.cond = threading.Condition(threading.Lock())
        self.heap: list = []
        self.seq = itertools.count()
        self.idle = 0
        self.busy = 0
        self.shutdown = False
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.nthreads):
            th = threading.Thread(target=self._worker, name=f"vpipe-{self.name}-{i}", daemon=True)
            self.threads.append(th)
            th.start()

    def submit(self, node: NodeRuntime) -> None:
        with self.cond:
            heapq.heappush(self.heap, (-node.depth, next(self.seq), node))
            if self.idle:
                self.cond.notify()

    def _worker(self) -> None:
        graph = self.graph
        ready: list = []
        local: list[NodeRuntime] = []
        cond = self.cond
        while True:
            with cond:
                while not self.heap and not self.shutdown:
                    self.idle += 1
                    if self.busy == 0:
                        graph._executor_idle(self)
                    cond.wait()
                    self.idle -= 1
                if self.shutdown and not self.heap:
                    return
                node = heapq.heappop(self.heap)[2]
                self.busy += 1
            try:
                local.append(node)
                while local:
                    node = local.pop()
                    more = node.step(ready, graph._trace)
                    if more:
                        # Let an idle worker pipeline this node while we carry its packet on, when
                        # its calls are long enough to gain from it: for a call of microseconds the
                        # hand-off costs more than it saves (two threads only trade the GIL).
                        if self.idle and ready and node.time_ns > HANDOFF_NS * node.count:
                            self.submit(node)
                        else:
                            local.append(node)
                    if ready:
                        if len(ready) == 1:
                            n = ready[0]
                            if n.executor is self:
                                local.append(n)
                            else:
                                n.executor.submit(n)
                        else:
                            # Run the deepest same-executor node inline; queue the others (a node
                            # may appear twice: each entry is one activation).
                            best = -1
                            for i, n in enumerate(ready):
                                if n.executor is self and (best < 0 or n.depth > ready[best].depth):
                                    best = i
                            for i, n in enumerate(ready):
                                if i != best:
                                    n.executor.submit(n)
                            if best >= 0:
                                local.append(ready[best])
                        ready.clear()
            except BaseException as e:  # noqa: BLE001 - a bug in the framework itself
                graph._fail(node, "scheduler", None, e)
                local.clear()
                ready.clear()
            finally:
                with cond:
                    self.busy -= 1


# ---------------------------------------------------------------------------------------------
# Graph


class _Poller:
    """Pulls packets of one output stream: ``get(timeout)`` returns a Packet, or None at the end."""

    def __init__(self, stream: str):
        import queue

        self.stream = stream
        self._q: "queue.Queue" = queue.Queue()
        self._done = False

    def _on_packet(self, p: Packet) -> None:
        self._q.put(p)

    def _on_bound(self, b: int) -> None:
        if b == DONE:
            self._q.put(None)

    def get(self, timeout: float | None = None) -> Packet | None:
        """The next packet; None when the stream is done. Raises TimeoutError after ``timeout`` s."""
        import queue

        if self._done:
            return None
        try:
            p = self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no packet on stream '{self.stream}' within {timeout} s") from None
        if p is None:
            self._done = True
        return p

    def __iter__(self):
        while True:
            p = self.get()
            if p is None:
                return
            yield p


def default_threads() -> int:
    return max(2, min(4, os.cpu_count() or 2))


class Graph:
    """A graph of calculators. Build with ``from_yaml``/``from_dict``; run with ``run`` or
    ``start`` + ``add_packet`` + ``close_input`` + ``wait``. Usable as a context manager (cancels
    and waits on exit)."""

    def __init__(self, spec: _config.GraphSpec, threads: int | None = None):
        self.spec = spec
        self.name = spec.name
        self.threads = threads or default_threads()
        self._observers: dict[str, list] = {}
        self._started = False
        self._reset_run_state()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, source, search_paths: list | None = None, threads: int | None = None, *,
                  trust: bool = False) -> "Graph":
        """From a path or YAML text. ``trust=True`` imports the plugins it names (``pipeline.plugins``)."""
        paths = [Path(p) for p in (search_paths or [])]
        return cls(_config.load(source if not isinstance(source, Path) else source, paths, trust=trust), threads)

    @classmethod
    def from_dict(cls, data: dict, search_paths: list | None = None, threads: int | None = None, *,
                  trust: bool = False) -> "Graph":
        return cls(_config.parse(data, "<dict>", [Path(p) for p in (search_paths or [])], trust=trust), threads)

    def _reset_run_state(self) -> None:
        self._stop_event = threading.Event()
        self._stopping = False
        self._graceful = False
        self._error: GraphRunError | None = None
        self._errors: list[GraphRunError] = []
        self._done_event = threading.Event()
        self._lock = threading.Lock()
        self._throttle_cond = threading.Condition(threading.Lock())
        self._full_queues = 0
        self._full_lock = threading.Lock()
        self._feed_lock = threading.Lock()
        self._unthrottle_pending = False
        self._trace: list | None = None
        self._side_values: dict = {}
        self._nodes: list[NodeRuntime] = []
        self._streams: dict[str, Stream] = {}
        self._executors: dict[str, Executor] = {}
        self._source_threads: list[threading.Thread] = []
        self._unfinished = 0
        self._pollers: list[_Poller] = []
        self._start_time = None
        self._end_time = None
        self._relief_warned = False

    # -- observation ----------------------------------------------------------------------------

    def observe(self, stream: str, callback: Callable[[Packet], None]) -> None:
        """Calls ``callback(packet)`` for every packet on ``stream`` (in the producer's thread)."""
        if self._started:
            raise RuntimeError("observe() must be called before start()")
        self._check_stream(stream)
        self._observers.setdefault(stream, []).append(callback)

    def poller(self, stream: str) -> _Poller:
        if self._started:
            raise RuntimeError("poller() must be called before start()")
        self._check_stream(stream)
        p = _Poller(stream)
        self._observers.setdefault(stream, []).append(p)
        return p

    def _check_stream(self, stream: str) -> None:
        if stream not in self.spec.producers():
            import difflib

            close = difflib.get_close_matches(stream, list(self.spec.producers()), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"graph '{self.name}' has no stream '{stream}'{hint}")

    # -- running ----------------------------------------------------------------------------------

    def start(self, side_packets: dict | None = None, trace: bool = False) -> "Graph":
        if self._started:
            raise RuntimeError("the graph was already started; build a new Graph to run again")
        self._started = True
        self._reset_run_state()
        self._trace = [] if trace else None
        spec = self.spec
        values = dict(spec.side_packets)
        for k, v in (side_packets or {}).items():
            values[k] = v
        self._side_values = values
        problems: list[Problem] = []
        unknown = [k for k in (side_packets or {}) if k not in spec.side_packets]
        for k in unknown:
            problems.append(Problem(spec.file, None, f"side packet '{k}' is given but the graph does not declare it "
                                                     f"(declared: {', '.join(spec.side_packets) or 'none'})"))
        # Nodes switched off by `when: $name` (a null/false side packet), e.g. optional sinks.
        disabled = {n.name for n in spec.nodes if n.when is not None and not _config.switched_on(values.get(n.when))}
        if disabled:
            import dataclasses

            producers = self.spec.producers()
            spec = dataclasses.replace(spec, nodes=[n for n in spec.nodes if n.name not in disabled])
            for n in spec.nodes:
                for i in n.inputs:
                    src = producers.get(i.stream)
                    if src and src[0] is not None and src[0].name in disabled:
                        problems.append(Problem(n.file, i.line, f"node '{n.name}' reads stream '{i.stream}' from node "
                                                                f"'{src[0].name}', which is off ('when: ${src[0].when}' is "
                                                                f"{values.get(src[0].when)!r})"))
            if problems:
                raise GraphConfigError(problems)
        self._run_spec = spec
        # Depth for downstream-first priority: longest path from any root over forward edges.
        g = spec.nx_graph(include_back_edges=False)
        depth = {}
        for n in nx.topological_sort(g):
            preds = list(g.predecessors(n))
            depth[n] = 0 if not preds else max(depth[p] for p in preds) + 1
        order = list(nx.topological_sort(g))
        by_name = {n.name: n for n in spec.nodes}
        for ex_name, threads in {"default": self.threads, **spec.executors}.items():
            self._executors[ex_name] = Executor(self, ex_name, threads)
        for s in spec.inputs:
            self._streams[s] = Stream(s, None, self)
        for name in order:
            ns = by_name[name]
            node = NodeRuntime(self, ns, depth[name])
            node.executor = self._executors[ns.executor]
            for tag, s in ns.outputs.items():
                self._streams[s] = Stream(s, name, self)
                node.outputs[tag] = self._streams[s]
            self._nodes.append(node)
        for node in self._nodes:
            for i in node.spec.inputs:
                q = InputQueue(node, i.tag, self._streams[i.stream], i.capacity, i.overflow, i.back_edge)
                self._streams[i.stream].queues.append(q)
                node.queues.append(q)
                if not i.back_edge:
                    node.forward_queues.append(q)
            node.simple = (len(node.queues) == 1 and len(node.forward_queues) == 1
                           and node.policy in ("sync", "immediate") and node.max_in_flight == 1)
        for stream, observers in self._observers.items():
            if stream not in self._streams:  # its producer is off (`when:`): it carries nothing
                for ob in observers:
                    if isinstance(ob, _Poller):
                        ob._q.put(None)
                continue
            for ob in observers:
                if isinstance(ob, _Poller):
                    self._pollers.append(ob)
                    self._streams[stream].direct.append(_Consumer(ob._on_packet, ob._on_bound))
                else:
                    self._streams[stream].direct.append(_Consumer(self._wrap_observer(stream, ob)))
        # Options with $refs, side inputs.
        for node in self._nodes:
            ns = node.spec
            opts = dict(ns.options)
            for key, sp in _config.option_refs(opts).items():
                opts[key] = values.get(sp)
            for line, msg in _config.validate_options(ns, opts):
                problems.append(Problem(ns.file, line, msg))
            model = node.cls.Options
            if model is not None and not any(p.message.startswith(f"node '{ns.name}'") for p in problems):
                node.options = model.model_validate(opts)
        if problems:
            self._teardown_unstarted()
            raise GraphConfigError(problems)
        # Open every node in topological order, in this thread.
        for node in self._nodes:
            ns = node.spec
            side = {}
            for tag, sp in ns.side_inputs.items():
                if sp not in self._side_values:
                    self._close_opened()
                    self._teardown_unstarted()
                    raise GraphConfigError([Problem(ns.file, ns.line, f"node '{ns.name}': side packet '{sp}' "
                                                                      "was never set (give it to start())")])
                side[tag] = self._side_values[sp]
            node.side = side
            try:
                node.calc = node.cls()
                node.ctx = ctx = (_LocalContext if node.max_in_flight > 1 else Context)(node)
                for tag, s in node.outputs.items():
                    ctx.outputs[tag] = OutputHandle(s, ctx, tag)
                for tag in node.cls.outputs:
                    if tag not in ctx.outputs and ":" not in tag:
                        ctx.outputs[tag] = OutputHandle(None, ctx, tag)
                ctx._source = node.is_source
                node.calc.open(ctx)
                node.opened = True
            except BaseException as e:  # noqa: BLE001
                self._close_opened()
                self._teardown_unstarted()
                if isinstance(e, KeyboardInterrupt):  # Ctrl-C while opening: not the node's fault
                    raise
                err = GraphRunError(ns.name, ns.calculator, "open", None, e)
                raise err from e
        self._unfinished = len(self._nodes)
        self._start_time = time.perf_counter()
        try:
            self._launch()
        except BaseException:
            self.cancel()
            self._shutdown()
            raise
        return self

    def _launch(self) -> None:
        for ex in self._executors.values():
            ex.start()
        if not self._nodes:
            self._done_event.set()
        # Nodes with no forward inputs that are not sources (only back edges) start ready.
        ready: list = []
        for node in self._nodes:
            if node.is_source:
                th = threading.Thread(target=self._run_source, args=(node,), name=f"vpipe-source-{node.name}", daemon=True)
                self._source_threads.append(th)
            elif not node.forward_queues:
                with node.lock:
                    if node.active == 0:
                        node.active += 1
                        ready.append(node)
        self._dispatch_external(ready)
        for th in self._source_threads:
            th.start()

    def _wrap_observer(self, stream: str, cb):
        def on_packet(p: Packet) -> None:
            try:
                cb(p)
            except BaseException as e:  # noqa: BLE001
                err = GraphRunError(f"observer of '{stream}'", getattr(cb, "__name__", "callback"), "observe", p.timestamp, e)
                self._record_error(err)
                raise _ObserverFailed() from e

        return on_packet

    def _dispatch_external(self, ready: list) -> None:
        """Hands ready nodes found outside a worker (feed, sources) to their executors."""
        if ready:
            for n in ready:
                n.executor.submit(n)
            ready.clear()

    def _run_source(self, node: NodeRuntime) -> None:
        ctx = node.ctx
        calc = node.calc
        ready = ctx._ready
        trace = self._trace
        first_out = next(iter(node.outputs.values()), None)
        try:
            while not self._stop_event.is_set():
                self._throttle(node)
                if self._stop_event.is_set():
                    break
                last = first_out.last if first_out is not None else None
                start = _perf_ns()
                r = calc.process(ctx)
                end = _perf_ns()
                node.count += 1
                node.time_ns += end - start
                if trace is not None and first_out is not None and first_out.last != last:
                    # one event per call that emitted, at the timestamp it emitted
                    trace.append((node.name, threading.current_thread().name, first_out.last, start, end))
                self._dispatch_external(ready)
                if r is STOP:
                    break
        except _ObserverFailed:
            self._stop_now()
        except BaseException as e:  # noqa: BLE001
            self._fail(node, "source", None, e)
        ready.clear()
        with node.lock:
            if node.finished:
                return
            node.finished = True
        if not self._stopping:
            try:
                node._close_node(ready)
            except _ObserverFailed:
                self._stop_now()
            except BaseException as e:  # noqa: BLE001
                self._fail(node, "close", None, e)
            self._dispatch_external(ready)
        self._node_finished(node)

    # -- throttling ---------------------------------------------------------------------------

    def _throttle(self, node: NodeRuntime) -> None:
        if self._full_queues <= 0:
            return
        with self._throttle_cond:
            while self._full_queues > 0 and not self._stopping and not self._graceful:
                if self._all_idle():
                    if not self._relief_warned:
                        self._relief_warned = True
                        log.warning("graph '%s': every source is throttled by a full queue while nothing can run; "
                                    "letting sources go on (a sync input waits on a stream that does not advance?)",
                                    self.name)
                    return
                self._throttle_cond.wait(0.25)

    def _adjust_full(self, delta: int) -> None:
        with self._full_lock:
            self._full_queues += delta

    def _notify_throttle(self) -> None:
        self._unthrottle_pending = False
        with self._throttle_cond:
            self._throttle_cond.notify_all()

    def _executor_idle(self, ex: Executor) -> None:
        if self._full_queues > 0:
            self._notify_throttle()

    def _all_idle(self) -> bool:
        for ex in self._executors.values():
            if ex.busy or ex.heap:
                return False
        for node in self._nodes:
            if node.active and not node.is_source:
                return False
        return True

    # -- feeding from Python ------------------------------------------------------------------

    def add_packet(self, stream: str, value, timestamp: int) -> None:
        """Feeds a graph input. Blocks while a consumer's queue (overflow ``block``) is full;
        raises ``QueueFullError`` when one with overflow ``reject`` is."""
        if not self._started:
            raise RuntimeError("start() the graph before add_packet()")
        s = self._streams.get(stream)
        if s is None or s.producer is not None:
            raise KeyError(f"'{stream}' is not an input stream of graph '{self.name}' "
                           f"(inputs: {', '.join(self.spec.inputs) or 'none'})")
        if self._error is not None:
            raise self._error
        if self._stopping:
            return
        if type(timestamp) is not int:
            timestamp = Timestamp.check(timestamp)
        for q in s.queues:
            if len(q.dq) >= q.capacity:
                if q.overflow == "reject":
                    q.drops += 1
                    raise QueueFullError(f"input '{q.tag}' of node '{q.node.name}' is full "
                                         f"({q.capacity} packets) and its overflow policy is reject")
                if q.overflow == "block":
                    with self._throttle_cond:
                        while len(q.dq) >= q.capacity and not self._stopping:
                            self._throttle_cond.wait(0.25)
        if self._error is not None:
            raise self._error
        ready: list = []
        try:
            with self._feed_lock:
                s.send(Packet(value, timestamp), ready)
        except _ObserverFailed:
            raise self._error from None
        self._dispatch_external(ready)

    def close_input(self, stream: str) -> None:
        s = self._streams.get(stream)
        if s is None or s.producer is not None:
            raise KeyError(f"'{stream}' is not an input stream of graph '{self.name}'")
        ready: list = []
        with self._feed_lock:
            s.close(ready)
        self._dispatch_external(ready)

    def close_all_inputs(self) -> None:
        for s in self.spec.inputs:
            self.close_input(s)

    # -- ending -------------------------------------------------------------------------------

    def _node_finished(self, node: NodeRuntime) -> None:
        with self._lock:
            self._unfinished -= 1
            if self._unfinished <= 0:
                self._done_event.set()

    def _record_error(self, err: GraphRunError) -> None:
        with self._lock:
            self._errors.append(err)
            if self._error is None:
                self._error = err
        self._stop_now()

    def _fail(self, node: NodeRuntime, phase: str, t: int | None, e: BaseException) -> None:
        if isinstance(e, _ObserverFailed):
            self._stop_now()
            return
        err = GraphRunError(node.name, node.spec.calculator, phase, t, e)
        err.__cause__ = e
        self._record_error(err)

    def _stop_now(self) -> None:
        self._stopping = True
        self._stop_event.set()
        with self._throttle_cond:
            self._throttle_cond.notify_all()
        self._done_event.set()

    def request_stop(self) -> None:
        """Ends the run cleanly: sources stop producing and graph inputs close; what is in
        flight drains; ``wait()`` returns normally."""
        self._graceful = True
        self._stop_event.set()
        with self._throttle_cond:
            self._throttle_cond.notify_all()
        for s in self.spec.inputs:
            try:
                self.close_input(s)
            except Exception:  # noqa: BLE001 - already closed
                pass

    def cancel(self) -> None:
        """Stops the run at once: sources stop, queued packets are discarded, every opened
        calculator is closed. ``wait()`` then returns without error."""
        self._stop_now()

    def wait(self, timeout: float | None = None) -> None:
        """Waits for the run to end; raises the run's error (``GraphRunError``) if any.

        On Ctrl-C the run is cancelled cleanly and ``KeyboardInterrupt`` propagates."""
        if not self._started:
            raise RuntimeError("start() the graph before wait()")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._done_event.wait(0.1):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"graph '{self.name}' did not finish within {timeout} s")
        except KeyboardInterrupt:
            self.cancel()
            self._shutdown()
            raise
        self._shutdown()
        if self._error is not None:
            raise self._error

    def _shutdown(self) -> None:
        if self._end_time is not None:
            return
        # Stop sources first (they poll the stop event), then the workers.
        if self._stopping:
            self._stop_event.set()
        for th in self._source_threads:
            if th is not threading.current_thread():
                th.join()
        for ex in self._executors.values():
            with ex.cond:
                ex.shutdown = True
                if self._stopping:
                    ex.heap.clear()
                ex.cond.notify_all()
        for ex in self._executors.values():
            for th in ex.threads:
                if th is not threading.current_thread():
                    th.join()
        self._close_opened()
        for p in self._pollers:
            p._q.put(None)
        self._end_time = time.perf_counter()

    def _close_opened(self) -> None:
        for node in self._nodes:
            if node.opened and not node.closed:
                node.closed = True
                ctx = node.ctx
                ctx.timestamp = None
                ctx.inputs = {}
                try:
                    node.calc.close(ctx)
                except BaseException as e:  # noqa: BLE001
                    err = GraphRunError(node.name, node.spec.calculator, "close", None, e)
                    err.__cause__ = e
                    with self._lock:
                        self._errors.append(err)
                        if self._error is None:
                            self._error = err

    def _teardown_unstarted(self) -> None:
        self._end_time = time.perf_counter()

    def run(self, side_packets: dict | None = None, trace: bool = False) -> "Graph":
        """``start`` then ``wait`` (inputs, if any, are closed first)."""
        self.start(side_packets, trace=trace)
        try:
            self.close_all_inputs()
            self.wait()
        except BaseException:
            self.cancel()
            self._shutdown()
            raise
        return self

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._started and self._end_time is None:
            if exc_type is not None:
                self.cancel()
                self._shutdown()
            else:
                self.close_all_inputs()
                self.wait()

    # -- introspection ---------------------------------------------------------------------------

    @property
    def error(self) -> GraphRunError | None:
        return self._error

    @property
    def errors(self) -> list[GraphRunError]:
        return list(self._errors)

    def side_packet(self, name: str):
        return self._side_values.get(name)

    def stats(self) -> dict:
        """Per node: calculator, count, time_s, mean_ms, queue_depth, queue_peak, drops, inputs."""
        out = {}
        for node in self._nodes:
            qs = {q.tag: {"stream": q.stream.name, "depth": len(q.dq), "peak": q.peak, "drops": q.drops,
                          "capacity": q.capacity} for q in node.queues}
            out[node.name] = {
                "calculator": node.spec.calculator,
                "count": node.count,
                "time_s": node.time_ns / 1e9,
                "mean_ms": (node.time_ns / node.count / 1e6) if node.count else 0.0,
                "queue_depth": sum(v["depth"] for v in qs.values()),
                "queue_peak": max((v["peak"] for v in qs.values()), default=0),
                "drops": node.drops + sum(v["drops"] for v in qs.values()),
                "inputs": qs,
            }
        return out

    def wall_time(self) -> float | None:
        if self._start_time is None:
            return None
        end = self._end_time or time.perf_counter()
        return end - self._start_time

    def trace_events(self) -> list[tuple]:
        """(node, thread, timestamp_us, start_ns, end_ns) per process() call, when started with trace=True."""
        return list(self._trace or [])

    def topology(self) -> dict:
        spec = self.spec
        nodes = []
        for n in spec.nodes:
            nodes.append({
                "name": n.name, "calculator": n.calculator,
                "policy": n.policy if n.policy != "latest" else f"latest({n.latest_size})",
                "executor": n.executor, "max_in_flight": n.max_in_flight,
                "inputs": {i.tag: {"stream": i.stream, "back_edge": i.back_edge, "capacity": i.capacity,
                                   "overflow": i.overflow} for i in n.inputs},
                "outputs": dict(n.outputs),
                "side_inputs": dict(n.side_inputs), "side_outputs": dict(n.side_outputs),
            })
        prod = spec.producers()
        edges = []
        for n in spec.nodes:
            for i in n.inputs:
                src = prod.get(i.stream)
                if src is not None:
                    edges.append((src[0].name if src[0] is not None else None, n.name, i.stream, i.back_edge))
        return {"name": spec.name, "inputs": list(spec.inputs), "outputs": list(spec.outputs),
                "side_packets": dict(spec.side_packets), "executors": dict(spec.executors),
                "nodes": nodes, "edges": edges}


class _ObserverFailed(Exception):
    """Raised through the producer when an observer callback failed (already recorded)."""
