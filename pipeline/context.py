"""The calculator context: what a calculator sees in ``open``/``process``/``close``
(``ctx.inputs``, ``ctx.outputs[TAG]``, options, side packets, stopping), see docs/calculators.md.

``OutputHandle.add`` is where a packet enters a stream: inside a worker it sends at once (the
ready nodes go on the worker's ``ready`` list); from a source thread it first waits while a queue
downstream is full (the throttle), then hands the ready nodes to their executors; in a call of a
node with ``max_in_flight > 1`` it buffers, so the node's outputs leave in timestamp order. Each
kind of node gets the handle class that does only what it needs (``_WorkerOutput`` for the common
case: one call at a time, not a source), since ``add`` is paid on every hop.

The contract seen from a calculator (docs/calculators.md, "The context"): which ports are connected
(``ctx.input_tags``, ``ctx.output_tags``, ``ctx.connected(tag)``, ``ctx.outputs[TAG].connected``);
an unconnected optional output or side output still has a handle, which does nothing; the graph as
far as a calculator may use it (``ctx.graph``: name, stats, topology, wall time; not the run).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .timestamp import Packet, Timestamp

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .streams import Stream

DONE = Timestamp.DONE
_MIN, _MAX = Timestamp.MIN, Timestamp.MAX
_tuple_new = tuple.__new__  # builds a Packet without the namedtuple's Python-level __new__


class _Outputs(dict):
    __slots__ = ()

    def __missing__(self, key):
        connected = [tag for tag, handle in self.items() if handle.stream is not None]
        raise KeyError(f"no output port '{key}' is connected on this node "
                       f"(connected: {', '.join(connected) or 'none'})")


class OutputHandle:
    """``ctx.outputs[TAG]``: emit packets, move the bound, close."""

    __slots__ = ("stream", "ctx", "tag")

    def __init__(self, stream: "Stream | None", ctx: "Context", tag: str):
        self.stream = stream
        self.ctx = ctx
        self.tag = tag

    def add(self, value, timestamp: int | None = None) -> None:
        ctx = self.ctx
        if timestamp is None:
            timestamp = ctx.timestamp
            if timestamp is None:
                timestamp = self._checked(None)
        elif type(timestamp) is not int or not _MIN <= timestamp <= _MAX:
            timestamp = self._checked(timestamp)
        stream = self.stream
        if stream is None:  # an optional output left unconnected
            return
        buf = ctx._buffer
        if buf is not None:
            buf.append((stream, _tuple_new(Packet, (value, timestamp))))
        elif ctx._source:
            node = ctx._node
            sched = node.sched
            sched.throttle(node)  # a source waits while a queue downstream is full
            if not node.run.stopping:
                stream.send(_tuple_new(Packet, (value, timestamp)), ctx._ready)
                sched.dispatch(ctx._ready)
        else:
            stream.send(_tuple_new(Packet, (value, timestamp)), ctx._ready)

    def _checked(self, timestamp) -> int:
        """A timestamp that is not a plain int in [Min, Max]: checked (PreStream and PostStream
        pass, numpy ints become ints), or the error for a missing one."""
        if timestamp is None:
            ctx = self.ctx
            raise ValueError(f"node '{ctx.node}': a source must give a timestamp to outputs['{self.tag}'].add"
                             if ctx._source else
                             f"node '{ctx.node}': outputs['{self.tag}'].add needs a timestamp outside process()")
        return Timestamp.check(timestamp)

    def add_packet(self, packet: Packet) -> None:
        """Emits a received packet as it is: the same payload at the same timestamp (what a
        pass-through does; no new Packet is made)."""
        if self.stream is None or self.ctx._buffer is not None or self.ctx._source:
            self.add(packet[0], packet[1])
        else:
            self.stream.send(packet, self.ctx._ready)

    def set_next_timestamp_bound(self, timestamp: int) -> None:
        if self.stream is None:
            return
        ctx = self.ctx
        if ctx._buffer is not None:
            ctx._buffer.append((self.stream, timestamp))
            return
        self.stream.set_bound(timestamp, ctx._ready)
        if ctx._source:
            ctx._node.sched.dispatch(ctx._ready)

    def close(self) -> None:
        self.set_next_timestamp_bound(DONE)

    @property
    def connected(self) -> bool:
        return self.stream is not None


class _WorkerOutput(OutputHandle):
    """The output handle of a node that is not a source and runs one call at a time: ``add``
    sends at once on the worker's thread."""

    __slots__ = ()

    def add(self, value, timestamp: int | None = None) -> None:
        ctx = self.ctx
        if timestamp is None:
            timestamp = ctx.timestamp
            if timestamp is None:
                timestamp = self._checked(None)
        elif type(timestamp) is not int or not _MIN <= timestamp <= _MAX:
            timestamp = self._checked(timestamp)
        self.stream.send(_tuple_new(Packet, (value, timestamp)), ctx._ready)

    def add_packet(self, packet: Packet) -> None:
        self.stream.send(packet, self.ctx._ready)


class _SideOutput:
    """``ctx.side_outputs[TAG]``: ``set(value)`` in ``open``; a no-op when the port is unconnected."""

    __slots__ = ("values", "name", "node")

    def __init__(self, values: dict | None, name: str | None, node: str):
        self.values, self.name, self.node = values, name, node

    def set(self, value) -> None:
        if self.values is not None:
            self.values[self.name] = value

    @property
    def connected(self) -> bool:
        return self.values is not None


class GraphView:
    """``ctx.graph``: what a calculator may use of the running graph (live views: stats and
    topology), not the controls of the run (those are ``ctx.stop_run()`` and ``ctx.stopping``)."""

    __slots__ = ("_graph",)

    def __init__(self, graph):
        self._graph = graph

    @property
    def name(self) -> str:
        return self._graph.name

    def stats(self) -> dict:
        return self._graph.stats()

    def topology(self) -> dict:
        return self._graph.topology()

    def wall_time(self) -> float | None:
        return self._graph.wall_time()


class Context:
    """What a calculator sees in ``open``/``process``/``close`` (see docs/calculators.md)."""

    __slots__ = ("timestamp", "inputs", "outputs", "options", "side", "side_outputs", "node", "calculator",
                 "graph", "input_tags", "output_tags", "_node", "_ready", "_buffer", "_bounds", "_source")

    def __init__(self, node: "NodeRuntime"):
        self._node = node
        self.graph = GraphView(node.graph)
        self.node = node.name
        self.calculator = node.spec.calculator
        self.timestamp = None
        self.inputs: dict = {}
        self.outputs = _Outputs()
        self.options = node.options
        self.side = node.side
        values = node.graph._side_values
        self.side_outputs = {tag: _SideOutput(values, name, node.name) for tag, name in node.spec.side_outputs.items()}
        for tag in node.cls.side_outputs:
            if tag not in self.side_outputs:  # an optional side output left unconnected
                self.side_outputs[tag] = _SideOutput(None, None, node.name)
        self.input_tags = tuple(i.tag for i in node.spec.inputs)
        self.output_tags = tuple(node.spec.outputs)
        self._ready: list = []
        self._buffer = None
        self._bounds = None
        self._source = False

    def connected(self, tag: str) -> bool:
        """Whether input or output port ``tag`` (``TAG`` or ``TAG:i``) is wired to a stream."""
        return tag in self.input_tags or tag in self.output_tags

    def input_bound(self, tag: str) -> int:
        """The timestamp bound of input ``tag``: no packet below it is still to come (a packet in
        this call's inputs counts as come). In a bound-only call (``process_timestamp_bounds``)
        and every call of such a node, the bound as this call was given it; otherwise read live."""
        bounds = self._bounds
        if bounds is not None:
            return bounds[tag]
        for q in self._node.queues:
            if q.tag == tag:
                dq = q.dq
                return dq[0].timestamp if dq else q.bound
        raise KeyError(f"no input port '{tag}' is connected on node '{self.node}' "
                       f"(connected: {', '.join(self.input_tags) or 'none'})")

    def get(self, tag: str, default=None):
        p = self.inputs.get(tag)
        return default if p is None else p.value

    @property
    def stopping(self) -> bool:
        return self._node.run.stop_event.is_set()

    @property
    def stop_event(self) -> threading.Event:
        return self._node.run.stop_event

    @property
    def max_in_flight(self) -> int:
        """How many process calls of this node may run at once (the node's max_in_flight)."""
        return self._node.max_in_flight

    def count_drop(self, n: int = 1) -> None:
        """Counts packets this calculator dropped on purpose (shown in stats as drops)."""
        self._node.drops += n

    def stop_run(self) -> None:
        """Ends the run cleanly: sources stop, packets in flight drain, ``wait()`` returns."""
        self._node.graph.request_stop()


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
    _bounds = _get("_bounds")
    del _get


def make_context(node: "NodeRuntime") -> Context:
    """The node's context with an output handle per port (a no-op one for an unconnected
    optional output)."""
    ctx = (_LocalContext if node.max_in_flight > 1 else Context)(node)
    handle = OutputHandle if node.is_source or node.max_in_flight > 1 else _WorkerOutput
    for tag, s in node.outputs.items():
        ctx.outputs[tag] = handle(s, ctx, tag)
    for tag, port in node.cls.outputs.items():
        if tag not in ctx.outputs and not port.multiple:  # an indexed port has handles only as TAG:i
            ctx.outputs[tag] = OutputHandle(None, ctx, tag)
    ctx._source = node.is_source
    return ctx
