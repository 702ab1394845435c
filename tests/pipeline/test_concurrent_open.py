"""Opening nodes concurrently: a calculator that declares ``open_concurrently`` (a model load) opens
in a thread of its own from the start of ``Graph.start``, beside the opens of the others, and the
contract of a sequential open holds: a failure anywhere closes every node that opened and names the
node; a node reading a side packet waits for the open that sets it; a second Ctrl-C leaves a hung
open within a bounded time. Coordination is by events, each wait bounded with a message."""

from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel, ConfigDict

from pipeline import STOP, Calculator, Graph, GraphRunError, Input, Output, SideInput, SideOutput, register
from pipeline.errors import NodeStuckError

WAIT_S = 30.0  # a bound for what must happen at once: reaching it is the failure


class Log:
    """What the calculators of one test did, with the events they wait on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.threads: dict[str, str] = {}
        self.events: dict[str, threading.Event] = {}

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def note(self, what: str, node: str) -> None:
        with self.lock:
            getattr(self, what).append(node)
            if what == "opened":
                self.threads[node] = threading.current_thread().name


class Script(BaseModel):
    """What an open does, in order: set an event, wait for one, fail."""

    model_config = ConfigDict(extra="forbid")
    set: str | None = None
    wait: str | None = None
    fail: bool = False


def _act(ctx, log: Log) -> None:
    o = ctx.options
    if o.set:
        log.event(o.set).set()
    if o.wait and not log.event(o.wait).wait(WAIT_S):
        raise TimeoutError(f"{ctx.node}: '{o.wait}' was never set: the opens did not overlap")
    if o.fail:
        raise RuntimeError(f"{ctx.node} failed to open")


@register(name="OpenSource")
class OpenSource(Calculator):
    """A source of three ints whose open follows its script (opened in the caller's thread)."""

    outputs = {"OUT": Output(int)}
    side_inputs = {"LOG": SideInput(object)}
    side_outputs = {"MADE": SideOutput(object, optional=True)}
    Options = Script

    def open(self, ctx):
        _act(ctx, ctx.side["LOG"])
        ctx.side_outputs["MADE"].set(f"made by {ctx.node}")
        ctx.side["LOG"].note("opened", ctx.node)
        self.n = 0

    def process(self, ctx):
        self.n += 1
        if self.n > 3:
            return STOP
        ctx.outputs["OUT"].add(self.n, self.n)

    def close(self, ctx):
        ctx.side["LOG"].note("closed", ctx.node)


@register(name="OpenModel")
class OpenModel(Calculator):
    """Like an inference node: its open may run beside the others'."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    side_inputs = {"LOG": SideInput(object), "GIVEN": SideInput(object, optional=True)}
    side_outputs = {"MADE": SideOutput(object, optional=True)}
    open_concurrently = True
    Options = Script

    def open(self, ctx):
        _act(ctx, ctx.side["LOG"])
        self.given = ctx.side.get("GIVEN")
        ctx.side_outputs["MADE"].set(f"made by {ctx.node}")
        ctx.side["LOG"].note("opened", ctx.node)

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value * 10)

    def close(self, ctx):
        ctx.side["LOG"].note("closed", ctx.node)


@register(name="OpenSink")
class OpenSink(Calculator):
    """A sink whose open follows its script and keeps the GIVEN side packet."""

    inputs = {"IN": Input(int)}
    side_inputs = {"LOG": SideInput(object), "GIVEN": SideInput(object, optional=True)}
    Options = Script

    def open(self, ctx):
        _act(ctx, ctx.side["LOG"])
        self.given = ctx.side.get("GIVEN")
        self.got = []
        ctx.side["LOG"].note("opened", ctx.node)

    def process(self, ctx):
        self.got.append(ctx.inputs["IN"].value)

    def close(self, ctx):
        ctx.side["LOG"].note("closed", ctx.node)
        ctx.side["LOG"].results = (self.given, self.got)


def graph(source: dict | None = None, model: dict | None = None, sink: dict | None = None, **extra) -> Graph:
    def node(calc, name, opts, **ports):
        return {"calculator": calc, "name": name, "options": opts or {}, **ports}

    return Graph.from_dict({"side_packets": {"log": None}, "nodes": [
        node("OpenSource", "source", source, outputs={"OUT": "a"}, side_inputs={"LOG": "log"},
             **({"side_outputs": {"MADE": "from_source"}} if extra.get("source_makes") else {})),
        node("OpenModel", "model", model, inputs={"IN": "a"}, outputs={"OUT": "b"},
             side_inputs={"LOG": "log", **({"GIVEN": "from_source"} if extra.get("source_makes") else {})},
             **({"side_outputs": {"MADE": "from_model"}} if extra.get("model_makes") else {})),
        node("OpenSink", "sink", sink, inputs={"IN": "b"},
             side_inputs={"LOG": "log", **({"GIVEN": "from_model"} if extra.get("model_makes") else {})}),
    ]})


def test_the_model_opens_while_the_source_opens(no_thread_leak):
    # The source (first in topological order) waits in its open for the model's open: only a
    # concurrent open gets past it.
    log = Log()
    g = graph(source={"wait": "model opening"}, model={"set": "model opening"})
    g.run({"log": log})
    assert sorted(log.opened) == ["model", "sink", "source"] and sorted(log.closed) == sorted(log.opened)
    assert log.threads["model"] == "vpipe-open:model" and log.threads["source"] == threading.current_thread().name
    assert log.results == (None, [10, 20, 30])


def test_a_failed_background_open_closes_the_opened_nodes_and_names_its_node(no_thread_leak):
    log = Log()
    g = graph(source={"set": "source opening"}, model={"wait": "source opening", "fail": True})
    with pytest.raises(GraphRunError, match=r"node 'model' \(OpenModel\) failed in open: RuntimeError: "
                                            r"model failed to open") as ei:
        g.start({"log": log})
    assert ei.value.phase == "open"
    # The source's open was under way when the model failed; the sink may open or not before the
    # failure reaches the opening thread: whatever opened is closed.
    assert "source" in log.opened and "model" not in log.opened
    assert sorted(log.closed) == sorted(log.opened)


def test_a_failed_open_waits_for_the_background_open_then_closes_it(no_thread_leak):
    # The source fails while the model's open is still running; the model's open returns once the
    # source has failed, and the model is closed like every node that opened.
    log = Log()
    g = graph(source={"wait": "model opening", "set": "source failing", "fail": True},
              model={"set": "model opening", "wait": "source failing"})
    with pytest.raises(GraphRunError, match=r"node 'source' \(OpenSource\) failed in open"):
        g.start({"log": log})
    assert log.opened == ["model"] and log.closed == ["model"]


def test_a_background_open_waits_for_the_side_packet_it_reads(no_thread_leak):
    # The model reads the source's side output: it opens after the source, still in a thread of its own.
    log = Log()
    g = graph(source_makes=True)
    g.run({"log": log})
    assert log.opened.index("source") < log.opened.index("model")
    assert log.threads["model"] == "vpipe-open:model"
    assert g.side_packet("from_source") == "made by source"


def test_a_node_reading_a_background_nodes_side_packet_waits_for_its_open(no_thread_leak):
    log = Log()
    g = graph(model={"wait": "source opened"}, source={"set": "source opened"}, model_makes=True)
    g.run({"log": log})
    assert log.opened.index("model") < log.opened.index("sink")
    assert log.results == ("made by model", [10, 20, 30])


def test_ctrl_c_while_a_background_open_hangs_leaves_it_named_and_it_closes_itself():
    # KeyboardInterrupt in the caller's thread (what a second Ctrl-C raises while opening): start()
    # gives the hung open a bounded time, names it stuck, and the node closes when its open returns.
    log = Log()

    @register(name="OpenInterrupted")
    class OpenInterrupted(OpenSink):
        def open(self, ctx):
            if not ctx.side["LOG"].event("model opening").wait(WAIT_S):
                raise TimeoutError("the model's open never started")
            raise KeyboardInterrupt

    g = Graph.from_dict({"side_packets": {"log": None}, "nodes": [
        {"calculator": "OpenSource", "name": "source", "outputs": {"OUT": "a"}, "side_inputs": {"LOG": "log"}},
        {"calculator": "OpenModel", "name": "model", "inputs": {"IN": "a"}, "outputs": {"OUT": "b"},
         "side_inputs": {"LOG": "log"}, "options": {"set": "model opening", "wait": "released"}},
        {"calculator": "OpenInterrupted", "name": "sink", "inputs": {"IN": "b"}, "side_inputs": {"LOG": "log"}},
    ]}, stuck_timeout=0.2)
    with pytest.raises(KeyboardInterrupt):
        g.start({"log": log})
    stuck = [e for e in g.errors if isinstance(e, NodeStuckError)]
    assert [(e.node, e.phase) for e in stuck] == [("model", "open")], g.errors
    assert "wait" in stuck[0].cause_traceback, "the stuck open's stack is where it waits"
    assert log.closed == ["source"]
    log.event("released").set()
    opener = next(t for t in threading.enumerate() if t.name == "vpipe-open:model")
    opener.join(WAIT_S)
    assert not opener.is_alive(), "the abandoned open never returned"
    assert log.closed == ["source", "model"], "a late open closes its own node"


def test_when_several_opens_fail_the_first_node_in_graph_order_is_named(no_thread_leak):
    # The model (a background open) fails first; the source (before it in graph order) fails after:
    # the error is the one opening one node after another gives, not the one of the faster thread
    # (seen in `vpipe run` with a missing model: ImageToTensor or Inference named by chance).
    for _ in range(5):
        log = Log()
        g = graph(source={"wait": "model failing", "fail": True}, model={"set": "model failing", "fail": True})
        with pytest.raises(GraphRunError, match=r"node 'source' \(OpenSource\) failed in open"):
            g.start({"log": log})
        assert log.opened == [] and log.closed == []
