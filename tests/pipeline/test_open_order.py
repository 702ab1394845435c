"""Concurrent opens (``open_concurrently``) give what opening one node after another gives: the
error named is the first failing node's in graph order, whichever thread failed first; a later
node's failure does not cut short the open of a node before it; a node opened in a thread of its
own is closed by the shutdown, after its last call; a hung open is named with its stack and logged,
and does not keep the process alive. Each ordering is made by events or by waiting for an open's
thread to end (its failure is recorded then), every wait bounded."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from pipeline import STOP, Any, Calculator, Graph, GraphConfigError, GraphRunError, Input, Output, SideInput, \
    SideOutput, register
from pipeline.errors import NodeStuckError
from tests.pipeline.interleave import functions_on

WAIT_S = 30.0  # a bound for what must happen at once: reaching it is the failure
ROOT = Path(__file__).resolve().parents[2]


class Log:
    """What the calculators of one test did (in order), with the events they wait on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.did: list[tuple[str, str]] = []
        self.events: dict[str, threading.Event] = {}

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def note(self, what: str, node: str) -> None:
        with self.lock:
            self.did.append((what, node))

    def nodes(self, what: str) -> list[str]:
        with self.lock:
            return [node for w, node in self.did if w == what]


class Step(BaseModel):
    """What an open does, in order: set an event, wait for one, wait for another node's open to
    end (and its thread: its failure is recorded then), set its side output, fail."""

    model_config = ConfigDict(extra="forbid")
    set: str | None = None
    wait: str | None = None
    join: str | None = None
    make: bool = False
    fail: bool = False
    interrupt: bool = False  # raise KeyboardInterrupt (what a second Ctrl-C raises while opening)


class _Stepper(Calculator):
    inputs = {"IN": Input(Any, optional=True)}
    outputs = {"OUT": Output(Any, optional=True)}
    side_inputs = {"LOG": SideInput(object), "GIVEN": SideInput(object, optional=True)}
    side_outputs = {"MADE": SideOutput(object, optional=True)}
    Options = Step

    def open(self, ctx):
        log, o = ctx.side["LOG"], ctx.options
        try:
            if o.set:
                log.event(o.set).set()
            if o.wait and not log.event(o.wait).wait(WAIT_S):
                raise TimeoutError(f"{ctx.node}: '{o.wait}' was never set")
            if o.join:  # until the other open has returned or failed, and its thread has ended
                if not log.event(f"{o.join} ends").wait(WAIT_S):
                    raise TimeoutError(f"{ctx.node}: the open of '{o.join}' did not end")
                th = next((t for t in threading.enumerate() if t.name == f"vpipe-open:{o.join}"), None)
                if th is not None:
                    th.join(WAIT_S)
                    if th.is_alive():
                        raise TimeoutError(f"{ctx.node}: the thread of '{o.join}' did not end")
            if o.make:
                ctx.side_outputs["MADE"].set(f"made by {ctx.node}")
            if o.fail:
                raise RuntimeError(f"{ctx.node} failed to open")
            if o.interrupt:
                raise KeyboardInterrupt
            log.note("opened", ctx.node)
            self.n = 0
        finally:
            log.event(f"{ctx.node} ends").set()

    def process(self, ctx):
        ctx.side["LOG"].note(f"processed {ctx.timestamp}", ctx.node)
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)

    def close(self, ctx):
        ctx.side["LOG"].note("closed", ctx.node)


@register(name="StepSource")
class StepSource(_Stepper):
    """A source of three ints, opened in the thread that starts the graph."""

    inputs = {}

    def process(self, ctx):
        self.n += 1
        if self.n > 3:
            return STOP
        ctx.outputs["OUT"].add(self.n, self.n)


@register(name="StepHere")
class StepHere(_Stepper):
    """Opened in the thread that starts the graph."""


@register(name="StepAside")
class StepAside(_Stepper):
    """Opened in a thread of its own, beside the others (a model load)."""

    open_concurrently = True


def chain(*nodes: tuple[str, str, dict], **side) -> Graph:
    """A chain source -> ... -> last of (calculator, name, options) nodes, each reading the one
    before; ``side``: node name -> (tag, side packet) for a GIVEN side input or a MADE side output."""
    spec = []
    for i, (calc, name, opts) in enumerate(nodes):
        node = {"calculator": calc, "name": name, "options": opts, "side_inputs": {"LOG": "log"}}
        if i:
            node["inputs"] = {"IN": f"s{i - 1}"}
        if i < len(nodes) - 1:
            node["outputs"] = {"OUT": f"s{i}"}
        for tag, packet in side.get(name, ()):
            (node["side_inputs"] if tag == "GIVEN" else node.setdefault("side_outputs", {}))[tag] = packet
        spec.append(node)
    return Graph.from_dict({"side_packets": {"log": None}, "nodes": spec})


def test_an_earlier_background_failure_is_named_over_the_later_ones_whichever_came_first(no_thread_leak):
    # model2 fails first, model1 (before it in graph order) next, then the sink (opened in this
    # thread, after both): the error is model1's, as opening one node after another would give.
    for _ in range(3):
        log = Log()
        g = chain(("StepSource", "source", {}),
                  ("StepAside", "model1", {"join": "model2", "fail": True}),
                  ("StepAside", "model2", {"wait": "sink opening", "fail": True}),
                  ("StepHere", "sink", {"set": "sink opening", "join": "model1", "fail": True}))
        with pytest.raises(GraphRunError, match=r"^node 'model1' \(StepAside\) failed in open: RuntimeError: "
                                                r"model1 failed to open") as ei:
            g.start({"log": log})
        assert ei.value.node == "model1"
        assert log.did == [("opened", "source"), ("closed", "source")]


def test_a_later_background_failure_lets_the_nodes_before_it_open_first(no_thread_leak):
    # 'late' (last in graph order) has failed before 'mid' opens; 'mid' waits for the side packet
    # of 'model' (whose open waited for late's to end): 'mid' still opens, as it would one after
    # another, and the error is late's; every node that opened is closed.
    log = Log()
    g = chain(("StepSource", "source", {}),
              ("StepAside", "model", {"join": "late", "make": True}),
              ("StepHere", "mid", {}),
              ("StepAside", "late", {"fail": True}),
              model=[("MADE", "made")], mid=[("GIVEN", "made")])
    with pytest.raises(GraphRunError, match=r"^node 'late' \(StepAside\) failed in open"):
        g.start({"log": log})
    assert sorted(log.nodes("opened")) == ["mid", "model", "source"]
    assert sorted(log.nodes("closed")) == ["mid", "model", "source"]


def test_an_earlier_failure_is_named_over_a_later_node_interrupting_its_own_open(no_thread_leak):
    # model2's open raises KeyboardInterrupt itself (in its own thread, where no Ctrl-C lands),
    # then model1, before it in graph order, fails: the error is model1's, as opening one node
    # after another would give (model1 fails, model2 is never opened), not model2's interrupt.
    log = Log()
    g = chain(("StepSource", "source", {"join": "model1"}),
              ("StepAside", "model1", {"join": "model2", "fail": True}),
              ("StepAside", "model2", {"interrupt": True}),
              ("StepHere", "sink", {}))
    try:
        with pytest.raises(GraphRunError, match=r"^node 'model1' \(StepAside\) failed in open: RuntimeError"):
            g.start({"log": log})
    except KeyboardInterrupt:
        pytest.fail("the interrupt of model2, after model1 in graph order, was raised instead of model1's failure")
    assert log.did == [("opened", "source"), ("closed", "source")]


def test_a_side_packet_never_set_is_named_before_a_later_background_failure(no_thread_leak):
    # 'mid' reads a side packet its producer never set (a GraphConfigError, which names no node);
    # 'late', after it in graph order, fails in its own thread before: the error is mid's.
    for _ in range(3):
        log = Log()
        g = chain(("StepSource", "source", {"join": "late"}),
                  ("StepHere", "mid", {}),
                  ("StepAside", "late", {"fail": True}),
                  source=[("MADE", "made")], mid=[("GIVEN", "made")])
        with pytest.raises(GraphConfigError, match=r"node 'mid': side packet 'made' was never set"):
            g.start({"log": log})
        assert log.did == [("opened", "source"), ("closed", "source")]


def test_a_side_packet_never_set_is_a_config_error_naming_the_node(no_thread_leak):
    log = Log()
    g = chain(("StepSource", "source", {}), ("StepHere", "sink", {}), source=[("MADE", "made")],
              sink=[("GIVEN", "made")])
    with pytest.raises(GraphConfigError, match=r"node 'sink': side packet 'made' was never set \(give it to start\(\)\)"):
        g.start({"log": log})
    assert log.did == [("opened", "source"), ("closed", "source")]


def test_a_failure_waits_for_an_open_in_flight_whatever_the_stuck_timeout(no_thread_leak):
    # 'sink' fails while 'model' (opened aside: a model load) is still opening: start() waits for
    # that open to end, closes model, and names nothing stuck, even with stuck_timeout 0: that bound
    # is for calls, closes and the opens a second Ctrl-C leaves, not for a load a failure waits for.
    # model's open ends once start() waits for it (checked against that wait bounded as a Ctrl-C's).
    log = Log()
    g = Graph(chain(("StepSource", "source", {}), ("StepAside", "model", {"wait": "go"}),
                    ("StepHere", "sink", {"fail": True})).spec, stuck_timeout=0)
    starter = threading.current_thread()

    def let_the_open_end():
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            names = functions_on(starter)
            if "finish" in names and "wait_until" in names and "wait" in names:
                break
            time.sleep(0.002)
        log.event("go").set()

    helper = threading.Thread(target=let_the_open_end)
    helper.start()
    try:
        with pytest.raises(GraphRunError, match=r"^node 'sink' \(StepHere\) failed in open: RuntimeError"):
            g.start({"log": log})
    finally:
        log.event("go").set()
        helper.join(WAIT_S)
    assert not [e for e in g.errors if isinstance(e, NodeStuckError)], g.errors
    assert sorted(log.nodes("opened")) == ["model", "source"]
    assert sorted(log.nodes("closed")) == ["model", "source"], "model was not closed before start() raised"


def test_a_node_opened_aside_is_closed_by_the_shutdown_after_its_last_call(no_thread_leak):
    log = Log()
    g = chain(("StepSource", "source", {}), ("StepAside", "model", {}), ("StepHere", "sink", {}))
    g.run({"log": log})
    model = [what for what, node in log.did if node == "model"]
    assert model == ["opened", "processed 1", "processed 2", "processed 3", "closed"]


@pytest.mark.parametrize("stuck_timeout", [0.2, 0.0])
def test_a_hung_open_is_named_with_its_stack_and_logged(caplog, stuck_timeout):
    # Ctrl-C in this thread's open while the model's open hangs: start() waits stuck_timeout for
    # it (0: not at all), names it stuck (its stack, in the log too), and the model closes once
    # its open returns.
    log = Log()
    g = chain(("StepSource", "source", {}), ("StepAside", "model", {"set": "model opening", "wait": "released"}),
              ("StepHere", "sink", {"wait": "model opening", "interrupt": True}))
    g.stuck_timeout = stuck_timeout
    with caplog.at_level(logging.INFO, logger="vpipe"):
        with pytest.raises(KeyboardInterrupt):
            g.start({"log": log})
    [stuck] = [e for e in g.errors if isinstance(e, NodeStuckError)]
    assert stuck.args[0] == (f"node 'model' (StepAside) is stuck in open: it did not return within {stuck_timeout:g} "
                             "s of the stop; abandoned (its thread is left running, the node is not closed)")
    lines = stuck.cause_traceback.splitlines()
    assert lines[0].startswith("  File ") and all(line.startswith(("  File ", "    ")) for line in lines), lines
    assert any("in open" in line for line in lines) and "in wait" in lines[-2], "the stack ends where the open waits"
    assert stuck.args[0] in [r.getMessage() for r in caplog.records if r.name == "vpipe"]
    log.event("released").set()
    opener = next((t for t in threading.enumerate() if t.name == "vpipe-open:model"), None)
    if opener is not None:
        opener.join(WAIT_S)
        assert not opener.is_alive(), "the abandoned open never returned"
    assert log.nodes("closed") == ["source", "model"], "a late open closes its own node"


def test_a_hung_open_does_not_keep_the_process_alive():
    # Ctrl-C while a model load hangs: the program ends (a thread left in open does not hold it).
    # In this process first: Python's exit waits for every thread that is not a daemon, so the
    # open left hanging must be one (this half also lets mutmut see that the test reaches the
    # opening, which it cannot see in the subprocess below).
    log = Log()
    g = chain(("StepSource", "source", {}), ("StepAside", "model", {"set": "model opening", "wait": "released"}),
              ("StepHere", "sink", {"wait": "model opening", "interrupt": True}))
    g.stuck_timeout = 0.05
    try:
        with pytest.raises(KeyboardInterrupt):
            g.start({"log": log})
        held = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon
                and t is not threading.main_thread() and t.name.startswith("vpipe")]
        assert held == [], f"threads the program's exit would wait for: {held}"
    finally:
        log.event("released").set()
        opener = next((t for t in threading.enumerate() if t.name == "vpipe-open:model"), None)
        if opener is not None:
            opener.join(WAIT_S)
    # Then the whole program, ended by Ctrl-C while one open hangs for good:
    script = textwrap.dedent("""
        import threading
        from pipeline import Calculator, Graph, Output, register

        hang = threading.Event()

        @register(name="HangsInOpen")
        class HangsInOpen(Calculator):
            outputs = {"OUT": Output(int)}
            open_concurrently = True
            def open(self, ctx):
                hang.wait()
            def process(self, ctx):
                pass

        @register(name="InterruptedInOpen")
        class InterruptedInOpen(Calculator):
            outputs = {"OUT": Output(int)}
            def open(self, ctx):
                raise KeyboardInterrupt

        g = Graph.from_yaml("nodes: [{calculator: HangsInOpen, outputs: [a]}, "
                            "{calculator: InterruptedInOpen, outputs: [b]}]", stuck_timeout=0.1)
        try:
            g.start()
        except KeyboardInterrupt:
            print("interrupted")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (out.returncode, out.stdout) == (0, "interrupted\n"), out.stderr
