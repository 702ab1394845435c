"""The calculator context: what a calculator sees in ``open``/``process``/``close``
(``ctx.inputs``, ``ctx.outputs[TAG]``, options, side packets, stopping), see docs/calculators.md.

``OutputHandle.add`` is where a packet enters a stream: inside a worker it sends at once (the
ready nodes go on the worker's ``ready`` list); from a source thread it first waits while a queue
downstream is full (the throttle), then hands the ready nodes to their executors; in a call of a
node with ``max_in_flight > 1`` it buffers, so the node's outputs leave in timestamp order.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .timestamp import Packet, Timestamp

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .streams import Stream

DONE = Timestamp.DONE
_tuple_new = tuple.__new__  # builds a Packet without the namedtuple's Python-level __new__


class _Outputs(dict):
    __slots__ = ()

    def __missing__(self, key):
        raise KeyError(f"no output port '{key}' is connected on this node "
                       f"(connected: {', '.join(self) or 'none'})")


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
            node = ctx._node
            sched = node.sched
            sched.throttle(node)  # a source waits while a queue downstream is full
            if not node.run.stopping:
                stream.send(_tuple_new(Packet, (value, timestamp)), ctx._ready)
                sched.dispatch(ctx._ready)
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
            ctx._node.sched.dispatch(ctx._ready)

    def close(self) -> None:
        self.set_next_timestamp_bound(DONE)

    @property
    def connected(self) -> bool:
        return self.stream is not None


class _SideOutput:
    __slots__ = ("values", "name", "node")

    def __init__(self, values: dict, name: str, node: str):
        self.values, self.name, self.node = values, name, node

    def set(self, value) -> None:
        self.values[self.name] = value


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
        values = node.graph._side_values
        self.side_outputs = {tag: _SideOutput(values, name, node.name) for tag, name in node.spec.side_outputs.items()}
        self._ready: list = []
        self._buffer = None
        self._source = False

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
    del _get


def make_context(node: "NodeRuntime") -> Context:
    """The node's context with an output handle per port (a no-op one for an unconnected
    optional output)."""
    ctx = (_LocalContext if node.max_in_flight > 1 else Context)(node)
    for tag, s in node.outputs.items():
        ctx.outputs[tag] = OutputHandle(s, ctx, tag)
    for tag in node.cls.outputs:
        if tag not in ctx.outputs and ":" not in tag:
            ctx.outputs[tag] = OutputHandle(None, ctx, tag)
    ctx._source = node.is_source
    return ctx
