"""The Graph API: build a graph from a file, a dict or in code; start, feed, observe, wait.

``Graph.start`` runs named steps, each a method below:

1. ``_resolve``: side packets (declared defaults, then the values given), ``when:`` (nodes switched
   off), every node's options with their ``$refs`` validated; all problems raise together as one
   ``GraphConfigError`` before anything is built.
2. ``_build``: nodes whose outputs reach nothing are left out (``unused_nodes``); then the
   scheduler with its executors, a ``Stream`` per stream and a ``NodeRuntime`` per node, in
   topological order (depth: downstream-first priority).
3. ``_wire``: an ``InputQueue`` per node input on its stream; observers and pollers on theirs.
4. ``_open``: side inputs, the calculator and its context, ``open(ctx)``, in topological order, in
   the caller's thread, except the nodes whose calculator declares ``open_concurrently`` (model
   loads), each opened in a thread of its own beside the others (``_Openers``); a failure closes
   what was opened and raises, naming the node.
5. ``_launch``: the workers and the source threads start.

Which file does what (docs/architecture.md draws the path of one packet through them):
``streams.py`` streams and queues; ``context.py`` the calculator context and output handles;
``policies.py`` input policies; ``node.py`` the node runtime; ``scheduler.py`` executors, source
threads, throttling; ``run_state.py`` the run state and its condition; this file the Graph API.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from . import config as _config
from . import paths as _paths
from . import signals as _signals
from .context import Context, make_context
from .errors import GraphConfigError, GraphRunError, NodeStuckError, Problem, QueueFullError
from .node import NodeRuntime
from .run_state import RunState, State
from .scheduler import Executor, Scheduler, default_threads
from .streams import DirectConsumer, InputQueue, ObserverFailed, Poller, Stream
from .calculator import Any, type_name
from .timestamp import Packet, Timestamp

_tuple_new = tuple.__new__  # builds a Packet without the namedtuple's Python-level __new__

__all__ = ["Context", "Executor", "Graph", "NodeRuntime", "Poller", "State", "Stream", "default_threads"]

log = logging.getLogger("vpipe")

DRAIN_TIMEOUT_S = _signals.DRAIN_TIMEOUT_S  # the stop bounds live with the rest of stopping (signals.py)
STUCK_TIMEOUT_S = _signals.STUCK_TIMEOUT_S


class Graph:
    """A graph of calculators. Build with ``from_yaml``/``from_dict``; run with ``run`` or
    ``start`` + ``add_packet`` + ``close_input`` + ``wait``. Usable as a context manager (cancels
    and waits on exit).

    ``drain_timeout``: how long a clean stop (``request_stop``, Ctrl-C) lets what is already in the
    graph flow into the sinks before it stops at once (default 10 s). ``stuck_timeout``: how long
    the shutdown waits for calls still running, and for each ``close``, before it names the node
    as stuck and abandons it (default 5 s). See docs/graphs.md, "Stopping"."""

    def __init__(self, spec: _config.GraphSpec, threads: int | None = None, *,
                 drain_timeout: float = DRAIN_TIMEOUT_S, stuck_timeout: float = STUCK_TIMEOUT_S):
        if drain_timeout < 0 or stuck_timeout < 0:
            raise ValueError(f"drain_timeout and stuck_timeout must be >= 0 s, got {drain_timeout} and {stuck_timeout}")
        self.spec = spec
        self.name = spec.name
        self.threads = threads or default_threads()
        self.drain_timeout = float(drain_timeout)
        self.stuck_timeout = float(stuck_timeout)
        self._opening = False  # start() is opening calculators in the caller's thread (signals.py, rule 2)
        self._observers: dict[str, list] = {}
        self._wanted: set[str] = set()  # streams observed or polled by someone who wants them
        self._started = False
        self._reset_run_state()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, source, search_paths: list | None = None, threads: int | None = None, *,
                  trust: bool = False, **bounds) -> "Graph":
        """From a path or YAML text. ``trust=True`` imports the plugins it names (``pipeline.plugins``);
        ``bounds``: ``drain_timeout``, ``stuck_timeout``."""
        paths = [Path(p) for p in (search_paths or [])]
        return cls(_config.load(source if not isinstance(source, Path) else source, paths, trust=trust), threads,
                   **bounds)

    @classmethod
    def from_dict(cls, data: dict, search_paths: list | None = None, threads: int | None = None, *,
                  trust: bool = False, **bounds) -> "Graph":
        return cls(_config.parse(data, "<dict>", [Path(p) for p in (search_paths or [])], trust=trust), threads,
                   **bounds)

    def _reset_run_state(self) -> None:
        self._run = RunState(self.drain_timeout)
        self._sched: Scheduler | None = None
        self._feed_lock = threading.Lock()
        self._fed: set[str] = set()  # graph inputs whose first packet's type was checked
        self._trace: list | None = None
        self._side_values: dict = {}
        self._run_spec = self.spec
        self._nodes: list[NodeRuntime] = []
        self._streams: dict[str, Stream] = {}
        self._executors: dict[str, Executor] = {}
        self._start_time = None
        self._end_time = None
        self.left_out: tuple[str, ...] = ()  # nodes not run: their outputs reach no sink or observer

    # -- observation ----------------------------------------------------------------------------

    def observe(self, stream: str, callback: Callable[[Packet], None], *, wanted: bool = True) -> None:
        """Calls ``callback(packet)`` for every packet on ``stream`` (in the producer's thread).

        An observer wants the stream: its producers run even when no sink takes their outputs.
        ``wanted=False`` watches without asking (a progress counter): the stream's producer runs
        only if something else needs it (see ``unused_nodes``).
        """
        if self._started:
            raise RuntimeError("observe() must be called before start()")
        self._check_stream(stream)
        self._observers.setdefault(stream, []).append(callback)
        if wanted:
            self._wanted.add(stream)

    def poller(self, stream: str) -> Poller:
        if self._started:
            raise RuntimeError("poller() must be called before start()")
        self._check_stream(stream)
        p = Poller(stream)
        self._observers.setdefault(stream, []).append(p)
        self._wanted.add(stream)
        return p

    def _check_stream(self, stream: str) -> None:
        if stream not in self.spec.producers():
            from .errors import did_you_mean

            hint = did_you_mean(stream, self.spec.producers())
            raise KeyError(f"graph '{self.name}' has no stream '{stream}'{hint}")

    # -- starting -----------------------------------------------------------------------------------

    def start(self, side_packets: dict | None = None, trace: bool = False) -> "Graph":
        if self._started:
            raise RuntimeError("the graph was already started; build a new Graph to run again")
        self._started = True
        self._reset_run_state()
        for ob in (ob for observers in self._observers.values() for ob in observers):
            if isinstance(ob, Poller):  # before anything can fail: a refused start ends them too
                ob._attach(self._run)
        self._trace = [] if trace else None
        try:
            spec, options = self._resolve(side_packets or {})
            self._build(spec, options)
            self._wire()
        except BaseException as e:  # the graph refused (GraphConfigError), or Ctrl-C: nothing runs yet
            self._teardown_unstarted(e)
            raise
        # Ctrl-C while opening and launching never lands inside threading's locks (signals.py):
        # the first asks for a clean stop, a second leaves a hung open() with StopSignal.
        with _signals.watching(self) as watch:
            self._opening = True
            try:
                self._open()
            finally:
                self._opening = False
            self._start_time = time.perf_counter()
            try:
                self._launch()
            except BaseException:
                self.cancel()
                self._shutdown()
                raise
        if watch.received:  # Ctrl-C while starting (library use): end the run, then say so
            self.wait()
            raise KeyboardInterrupt
        return self

    def _resolve(self, given: dict) -> tuple[_config.GraphSpec, dict]:
        """Side packet values, the nodes ``when:`` leaves in, and each node's validated options."""
        spec = self.spec
        values = dict(spec.side_packets)
        values.update(given)
        self._side_values = values
        problems: list[Problem] = []
        for k in given:
            if k not in spec.side_packets:
                problems.append(Problem(spec.file, None, f"side packet '{k}' is given but the graph does not declare "
                                                         f"it (declared: {', '.join(spec.side_packets) or 'none'})"))
        # Nodes switched off by `when: $name` (a null/false side packet), e.g. optional sinks.
        disabled = {n.name for n in spec.nodes if n.when is not None and not _config.switched_on(values.get(n.when))}
        if disabled:
            producers = spec.producers()
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
        # Options with $refs.
        options = {}
        for ns in spec.nodes:
            opts = dict(ns.options)
            for key, sp in _config.option_refs(opts).items():
                opts[key] = values.get(sp)
            node_problems = [Problem(ns.file, line, msg) for line, msg in _config.validate_options(ns, opts)]
            problems += node_problems
            model = ns.cls.Options
            if model is not None and not node_problems:
                options[ns.name] = model.model_validate(opts)
        if not problems:
            # An output on an input (or two outputs on one file) would destroy data: refused now.
            problems += _paths.check_files([(ns.name, ns.calculator, ns.cls.Options, options.get(ns.name), ns.file,
                                             ns.line) for ns in spec.nodes])
        if problems:
            raise GraphConfigError(problems)
        return spec, options

    def _build(self, spec: _config.GraphSpec, options: dict) -> None:
        """The scheduler, the streams and a NodeRuntime per node, in topological order."""
        unused = unused_nodes(spec, self._wanted)
        if unused:
            self.left_out = tuple(n.name for n in spec.nodes if n.name in unused)
            spec = dataclasses.replace(spec, nodes=[n for n in spec.nodes if n.name not in unused])
        self._run_spec = spec
        run = self._run
        self._sched = sched = Scheduler(run, {"default": self.threads, **spec.executors}, self._trace)
        sched.graph_name = self.name
        self._executors = sched.executors
        # Depth for downstream-first priority: longest path from any root over forward edges.
        preds = spec.predecessors()
        order = spec.topological_order()
        depth: dict[str, int] = {}
        for n in order:
            depth[n] = 0 if not preds[n] else max(depth[p] for p in preds[n]) + 1
        by_name = {n.name: n for n in spec.nodes}
        for s in spec.inputs:
            self._streams[s] = Stream(s, None)
        for name in order:
            ns = by_name[name]
            node = NodeRuntime(self, ns, depth[name], run, sched)
            node.executor = sched.executors[ns.executor]
            node.options = options.get(name)
            for tag, s in ns.outputs.items():
                self._streams[s] = Stream(s, name)
                node.add_output(tag, self._streams[s])
            self._nodes.append(node)

    def _wire(self) -> None:
        """An input queue per node input; observers and pollers on their streams."""
        for node in self._nodes:
            for i in node.spec.inputs:
                stream = self._streams[i.stream]
                q = InputQueue(node, i.tag, stream, i.capacity, i.overflow, i.back_edge)
                stream.add_queue(q)
                node.wire_input(q)
        for stream, observers in self._observers.items():
            if stream not in self._streams:  # its producer is off (`when:`): it carries nothing
                for ob in observers:
                    if isinstance(ob, Poller):
                        ob._closed = True
                continue
            for ob in observers:
                if isinstance(ob, Poller):
                    self._streams[stream].add_direct(DirectConsumer(ob._on_packet, ob._on_bound))
                else:
                    self._streams[stream].add_direct(DirectConsumer(self._wrap_observer(stream, ob)))

    def _wrap_observer(self, stream: str, cb):
        run = self._run

        def on_packet(p: Packet) -> None:
            try:
                cb(p)
            except BaseException as e:  # noqa: BLE001
                err = GraphRunError(f"observer of '{stream}'", getattr(cb, "__name__", "callback"), "observe", p.timestamp, e)
                run.fail(err)
                raise ObserverFailed() from e

        return on_packet

    def _open(self) -> None:
        """Side inputs, calculator and context, ``open(ctx)`` for every node, in topological order in
        the caller's thread; a node whose calculator declares ``open_concurrently`` (a model load or
        compile) opens in a thread of its own instead, from the start of the opening (or once the
        nodes whose side outputs it reads have opened), beside the others: MediaPipe, too, opens
        its nodes on its executors. The first failure ends the opening: opens in flight are waited
        for, every node that opened is closed, and the error names the node that failed."""
        background = _Openers(self)
        producer = {sp: node for node in self._nodes for sp in node.spec.side_outputs.values()}

        def producers_of(node: NodeRuntime) -> list[NodeRuntime]:
            return [producer[sp] for sp in node.spec.side_inputs.values() if producer.get(sp) not in (None, node)]

        at = None  # the node this thread is at: named by a failure that names none (a side packet never set)
        try:
            for node in self._nodes:
                if node.cls.open_concurrently and not producers_of(node):
                    at = node
                    self._set_side_inputs(node)
                    background.start(node)
            for node in self._nodes:
                at = node
                background.raise_failure(before=node)
                if node in background.threads:
                    continue
                for dep in producers_of(node):
                    background.wait_for(dep)
                self._set_side_inputs(node)
                if node.cls.open_concurrently:
                    background.start(node)
                else:
                    self._open_node(node)
            background.wait_for_all()
            background.raise_failure()
        except BaseException as e:
            # A second Ctrl-C (StopSignal) leaves hung opens, as it leaves hung calls (signals.py).
            bound = min(_signals.SECOND_SIGNAL_STUCK_S, self.stuck_timeout) if isinstance(e, KeyboardInterrupt) else None
            stuck = background.finish(bound)
            first = background.first_failure(e, at)
            self._run.refuse(first)  # the run ends (before the closes: a failing close comes second)
            self._close_opened(stuck)
            self._end_time = time.perf_counter()
            if first is not e:
                raise first from None
            raise

    def _set_side_inputs(self, node: NodeRuntime) -> None:
        ns = node.spec
        side = {}
        for tag, sp in ns.side_inputs.items():
            if sp not in self._side_values:
                raise GraphConfigError([Problem(ns.file, ns.line, f"node '{ns.name}': side packet '{sp}' "
                                                                  "was never set (give it to start())")])
            side[tag] = self._side_values[sp]
        node.side = side

    def _open_node(self, node: NodeRuntime) -> None:
        """The calculator, its context and ``open(ctx)`` (in whichever thread opens the node); a
        failure is raised as the node's ``GraphRunError`` (Ctrl-C as itself: not the node's fault)."""
        try:
            node.calc = node.cls()
            node.process = node.calc.process
            node.ctx = make_context(node)
            node.calc.open(node.ctx)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001
            raise GraphRunError(node.spec.name, node.spec.calculator, "open", None, e) from e
        node.opened = True

    def _launch(self) -> None:
        self._run.start(len(self._nodes))
        self._sched.start(self._nodes)

    # -- feeding from Python ------------------------------------------------------------------

    def add_packet(self, stream: str, value, timestamp: int) -> None:
        """Feeds a graph input. Blocks while a consumer's queue (overflow ``block``) is full;
        raises ``QueueFullError`` when one with overflow ``reject`` is."""
        if not self._started:
            raise RuntimeError("start() the graph before add_packet()")
        s = self._streams.get(stream)
        if s is None or s.producer is not None:
            self._check_built()  # (off the per-packet path: an unbuilt run has no streams at all)
            raise KeyError(f"'{stream}' is not an input stream of graph '{self.name}' "
                           f"(inputs: {', '.join(self.spec.inputs) or 'none'})")
        run = self._run
        if run.error is not None:
            raise run.error
        if run.stopping:
            return
        if type(timestamp) is not int or not Timestamp.MIN <= timestamp <= Timestamp.MAX:
            timestamp = Timestamp.check(timestamp)  # (what is not a plain int in the range)
        if stream not in self._fed:
            self._check_fed_type(stream, s, value)
        for q in s.queues:
            if len(q.dq) >= q.capacity:
                if q.overflow == "reject":
                    q.drops += 1
                    raise QueueFullError(f"input '{q.tag}' of node '{q.node.name}' is full "
                                         f"({q.capacity} packets) and its overflow policy is reject")
                if q.overflow == "block":
                    run.wait_until(lambda q=q: len(q.dq) < q.capacity or run.stopping)
        if run.error is not None:
            raise run.error
        ready: list = []
        try:
            with self._feed_lock:
                s.send(_tuple_new(Packet, (value, timestamp)), ready)
        except ObserverFailed:
            raise run.error from None
        self._sched.dispatch(ready)

    def _check_built(self) -> None:
        """A start refused before the run was built has no streams: feeding it raises what refused it."""
        if self._started and self._sched is None:
            if self._run.error is not None:
                raise self._run.error
            raise RuntimeError(f"graph '{self.name}': its start was interrupted; build a new Graph to run again")

    def _check_fed_type(self, stream: str, s, value) -> None:
        """The first packet fed to an input is checked against the port types that read it (a raw
        numpy array where an ``Image`` is declared is a TypeError naming the port), once per input."""
        for q in s.queues:
            port = q.node.cls.inputs.get(_config.split_tag(q.tag)[0])
            declared = getattr(port, "type", None)
            if declared is None or declared is Any or not isinstance(declared, type):
                continue
            if not isinstance(value, declared):
                raise TypeError(f"add_packet('{stream}'): node '{q.node.name}' input {q.tag} takes "
                                f"{type_name(declared)}, got {type(value).__name__}"
                                + (" (wrap the array: Image(array, 'RGB'))" if type_name(declared) == "Image" else ""))
        self._fed.add(stream)

    def close_input(self, stream: str) -> None:
        s = self._streams.get(stream)
        if s is None or s.producer is not None:
            self._check_built()
            raise KeyError(f"'{stream}' is not an input stream of graph '{self.name}'")
        ready: list = []
        with self._feed_lock:
            s.close(ready)
        self._sched.dispatch(ready)

    def close_all_inputs(self) -> None:
        for s in self.spec.inputs:
            self.close_input(s)

    # -- ending -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the run stands: running, draining, cancelled, failed or done (see run_state.py)."""
        return self._run.state

    @property
    def drain_expired(self) -> bool:
        """True when a clean stop did not drain within ``drain_timeout`` and was cut short."""
        return self._run.drain_expired

    @property
    def done(self) -> bool:
        """True once the run has ended (done, cancelled or failed); ``wait()`` then returns at once."""
        return self._started and self._run.ended

    @property
    def _done_event(self):
        """The run's end as ``is_set()`` (kept for callers written before ``Graph.done``)."""
        return self._run

    def request_stop(self) -> None:
        """Ends the run cleanly: sources stop producing and graph inputs close; what is already
        in the graph drains into the sinks (for at most ``drain_timeout``, then the run stops at
        once); ``wait()`` returns normally."""
        self._run.drain()
        for s in self.spec.inputs:
            try:
                self.close_input(s)
            except Exception:  # noqa: BLE001 - already closed
                pass

    def cancel(self, stuck_timeout: float | None = None) -> None:
        """Stops the run at once: sources stop, nothing more is processed except that every sink
        writes what already reached it, then every opened calculator is closed. ``wait()`` then
        returns without error, unless a calculator stayed stuck in a call for ``stuck_timeout``
        (default: the graph's): ``NodeStuckError`` names it. A second Ctrl-C passes a short one."""
        self._run.cancel(stuck_timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Waits for the run to end; raises the run's error (``GraphRunError``) if any, or
        ``TimeoutError`` after ``timeout`` s (the run goes on: cancel it).

        Ctrl-C (where no other SIGINT handler is installed) stops the run as ``request_stop`` does,
        a second one as ``cancel`` does; ``KeyboardInterrupt`` is raised once the run has ended."""
        if not self._started:
            raise RuntimeError("start() the graph before wait()")
        run = self._run
        try:
            with _signals.watching(self) as watch:
                if not self._wait_end(timeout):
                    raise TimeoutError(f"graph '{self.name}' did not finish within {timeout} s")
                self._shutdown()
        except KeyboardInterrupt:  # a SIGINT handler of the user's raised it
            self.cancel()
            self._shutdown()
            raise
        if watch.received:
            raise KeyboardInterrupt
        if run.error is not None:
            raise run.error

    def _wait_end(self, timeout: float | None) -> bool:
        """Waits for the run to end; a drain past ``drain_timeout`` is cut short (cancelled)."""
        run = self._run
        deadline = None if timeout is None else time.monotonic() + timeout
        while not run.ended:
            state = run.state
            now = time.monotonic()
            left = None if deadline is None else deadline - now
            if state is State.DRAINING:
                drain_left = run.drain_deadline - now
                if drain_left <= 0:
                    if run.expire_drain():  # reported by drain_expired (vpipe run prints it after its cause)
                        log.info("graph '%s': the drain did not finish within drain_timeout=%g s; stopping at "
                                 "once (sinks keep what reached them)", self.name, self.drain_timeout)
                    continue
                left = drain_left if left is None else min(left, drain_left)
            if left is not None and left <= 0:
                return False
            run.wait_until(lambda: run.ended or run.state is not state, left)
        return True

    def wait_until_idle(self, timeout: float | None = None) -> None:
        """Waits until no node has work left: every packet fed so far has gone as far as it can
        (MediaPipe's ``WaitUntilIdle``). Source threads are not counted: while a source produces,
        this may return in a lull between its packets. Returns at once when the run has ended;
        raises the run's error, or ``TimeoutError`` after ``timeout`` seconds."""
        if not self._started:
            raise RuntimeError("start() the graph before wait_until_idle()")
        run, sched = self._run, self._sched
        if sched is None:  # a start refused before the run was built: the run has ended
            ok = True
        else:
            with run.cond:
                sched.idle_waiters += 1
            try:
                ok = run.wait_until(lambda: run.ended or sched.idle(), timeout)
            finally:
                with run.cond:
                    sched.idle_waiters -= 1
        if run.error is not None:
            raise run.error
        if not ok:
            raise TimeoutError(f"graph '{self.name}' did not become idle within {timeout} s")

    def _shutdown(self) -> None:
        """Joins the run's threads (until the stuck deadline), names the nodes stuck in a call,
        and closes every opened node not stuck, sinks first."""
        if self._end_time is not None:
            return
        run = self._run
        stuck: set[NodeRuntime] = set()
        if self._sched is not None:
            run.stop_calls_by(self.stuck_timeout)
            alive = self._sched.join()
            if alive:
                run.halt()
                alive = self._sched.finish_sink_calls(run.stuck_bound)
                stuck = self._report_stuck(alive)
        self._close_opened(stuck)
        self._end_time = time.perf_counter()

    def _report_stuck(self, alive: list[threading.Thread]) -> set[NodeRuntime]:
        """Names each node whose call a thread still alive is in (read off the thread's stack,
        which costs nothing while the run goes well), records it as a ``NodeStuckError``, and
        returns those nodes (never to be closed). Any other thread still alive is in no call."""
        frames = sys._current_frames()
        stuck = set()
        for th in alive:
            frame = frames.get(th.ident)
            found = _call_in(frame) if frame is not None else None
            if found is None:
                continue
            node, phase = found
            t = node.ctx.timestamp if phase == "process" and node.max_in_flight == 1 else None
            stack = "".join(traceback.format_stack(frame))
            err = NodeStuckError(node.name, node.spec.calculator, phase, t, self._run.stuck_bound, stack)
            log.info("%s", err.args[0])  # the error itself reaches whoever waits (wait() raises it)
            self._run.fail(err)
            stuck.add(node)
        return stuck

    def _close_opened(self, stuck: set | frozenset = frozenset()) -> None:
        """Closes every opened node that is not closed yet and not ``stuck`` in a call, sinks
        first (their files matter most), each in a closer thread given ``stuck_timeout``: a close
        that does not return is named as stuck and left, and the next closer takes the rest."""
        sinks = [n for n in self._nodes if n.sink]
        todo = sinks + [n for n in reversed(self._nodes) if not n.sink]
        todo = [n for n in todo if n.opened and not n.closed and n not in stuck]
        run = self._run
        while todo:
            closer = _Closer(todo, run)
            th = threading.Thread(target=closer.close_all, name="vpipe-close", daemon=True)
            th.start()
            while True:
                with run.cond:
                    node, since, finished = closer.current, closer.since, closer.finished
                if finished:
                    th.join()
                    todo = []
                    break
                left = since + self.stuck_timeout - time.monotonic()
                if left <= 0:
                    frames = sys._current_frames()
                    stack = "".join(traceback.format_stack(frames[th.ident])) if th.ident in frames else ""
                    err = NodeStuckError(node.name, node.spec.calculator, "close", None, self.stuck_timeout, stack)
                    log.info("%s", err.args[0])
                    run.fail(err)
                    todo = todo[todo.index(node) + 1:]
                    break
                run.wait_until(lambda: closer.finished or closer.current is not node, left)

    def _teardown_unstarted(self, e: BaseException) -> None:
        """The start raised ``e`` before anything was opened: the run reads as ended (``done``;
        FAILED with ``e`` as its error, CANCELLED for Ctrl-C), so ``wait()`` raises ``e`` again at
        once and ``add_packet`` refuses with it (``_open`` ends the run so too, closes first)."""
        self._run.refuse(e)
        self._end_time = time.perf_counter()

    def run(self, side_packets: dict | None = None, trace: bool = False) -> "Graph":
        """``start`` then ``wait`` (inputs, if any, are closed first). Whatever ends it early (Ctrl-C
        included, also one that lands as ``start`` returns, when the sources already run) cancels the
        run and waits for its end: nothing is left running."""
        first = not self._started  # (a second run() is refused by start, and ends nothing)
        try:
            self.start(side_packets, trace=trace)
            self.close_all_inputs()
            self.wait()
        except BaseException:
            if first and self._started and self._end_time is None:
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
    def error(self) -> GraphRunError | GraphConfigError | None:
        """The run's first error (or the ``GraphConfigError`` that refused its start); None if none."""
        return self._run.error

    @property
    def errors(self) -> list[GraphRunError | GraphConfigError]:
        return list(self._run.errors)

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


class _Closer:
    """Closes nodes one after another in a thread of its own, telling the run's condition after
    each; ``current`` and ``since`` say which close runs now and since when."""

    def __init__(self, nodes: list[NodeRuntime], run: RunState):
        self.nodes = nodes
        self.run = run
        self.current: NodeRuntime | None = None
        self.since = time.monotonic()
        self.finished = False

    def close_all(self) -> None:
        run = self.run
        try:
            for node in self.nodes:
                with run.cond:
                    self.current, self.since = node, time.monotonic()
                    run.cond.notify_all()
                node.close_at_shutdown()
        finally:
            with run.cond:
                self.finished = True
                run.cond.notify_all()


class _Openers:
    """The nodes ``Graph._open`` opens in threads of their own (``open_concurrently``): one thread
    per node, each telling the run's condition when its open has returned or failed."""

    def __init__(self, graph: "Graph"):
        self.graph = graph
        self.cond = graph._run.cond
        self.threads: dict[NodeRuntime, threading.Thread] = {}
        self.done: set[NodeRuntime] = set()
        self.failure: BaseException | None = None
        self.failed: dict[NodeRuntime, BaseException] = {}  # every open that failed here
        self.given_up = False
        # The error reported is the one opening one node after another would give (the first node
        # in graph order that fails), whichever thread happens to fail first.
        self.order = {node: i for i, node in enumerate(graph._nodes)}

    def start(self, node: NodeRuntime) -> None:
        """Opens ``node`` (its side inputs already set) in a thread of its own."""
        th = threading.Thread(target=self._open, args=(node,), name=f"vpipe-open:{node.name}", daemon=True)
        self.threads[node] = th
        with _signals.protected():  # a second Ctrl-C must not land inside threading's start (rule 3)
            th.start()

    def _open(self, node: NodeRuntime) -> None:
        failure = None
        try:
            self.graph._open_node(node)
        except BaseException as e:  # noqa: BLE001 - handed to the opening thread
            failure = e
        with self.cond:
            self.done.add(node)
            if failure is not None:
                self.failed[node] = failure
                if self._failed_at() == self.order[node]:  # the first in graph order that failed so far
                    self.failure = failure
            late = self.given_up and node.opened
            self.cond.notify_all()
        if late:  # start() gave up waiting for this open: nobody else will close the node
            node.close_at_shutdown()

    def wait_for(self, node: NodeRuntime) -> None:
        """Until ``node``'s open has returned, if it is opened here (its side outputs are set then)."""
        if node in self.threads:
            self.graph._run.wait_until(lambda: node in self.done)
            self.raise_failure(before=node)

    def wait_for_all(self) -> None:
        self.graph._run.wait_until(lambda: len(self.done) == len(self.threads))
        for th in self.threads.values():
            th.join()

    def _failed_at(self) -> int:
        return min((self.order[n] for n in self.failed), default=len(self.order))

    def raise_failure(self, before: NodeRuntime | None = None) -> None:
        """Raises the first failure in graph order; with ``before``, only one of a node that comes
        before it (the caller opens ``before`` next: a node before it would have failed first)."""
        with self.cond:
            failure = self.failure
            if failure is not None and before is not None and self._failed_at() > self.order[before]:
                failure = None
        if failure is not None:
            raise failure

    def first_failure(self, e: BaseException, at: NodeRuntime | None = None) -> BaseException:
        """After the opens in flight are over: the error to report for the opening ended by ``e``,
        the failure of the first node in graph order (``e`` itself for a Ctrl-C or a failure of a
        node before every background one). ``at``: the node the opening thread was at, for an
        ``e`` that names no node (``GraphConfigError``: a side packet never set)."""
        if not isinstance(e, Exception):
            return e
        with self.cond:
            failed = dict(self.failed)
        mine = getattr(e, "node", None) or (at.name if at is not None else None)
        at = next((i for n, i in self.order.items() if n.name == mine), len(self.order))
        earlier = [(self.order[n], f) for n, f in failed.items() if self.order[n] < at and isinstance(f, Exception)]
        return min(earlier, key=lambda t: t[0])[1] if earlier else e

    def finish(self, timeout: float | None) -> set[NodeRuntime]:
        """After a failure: waits for the opens in flight (``timeout``: at most that long), then
        returns the nodes still opening, which are named as stuck and close themselves when their
        open returns."""
        run = self.graph._run
        run.wait_until(lambda: len(self.done) == len(self.threads), timeout)
        with self.cond:
            self.given_up = True
            stuck = {n for n in self.threads if n not in self.done}
        frames = sys._current_frames()
        for node in stuck:
            frame = frames.get(self.threads[node].ident)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            err = NodeStuckError(node.name, node.spec.calculator, "open", None, timeout or 0.0, stack)
            log.info("%s", err.args[0])
            run.fail(err)
        for node, th in self.threads.items():
            if node not in stuck:
                th.join()
        return stuck


# The frames of the framework that run a calculator's call: (function name, phase, local holding the node).
_CALL_FRAMES = {
    ("step", "process", "self"), ("_call", "process", "self"), ("_process_concurrent", "process", "self"),
    ("_close_node", "close", "self"), ("close_at_shutdown", "close", "self"), ("_source_loop", "source", "node"),
}
_CALL_NAMES = {name: (phase, local) for name, phase, local in _CALL_FRAMES}


def _call_in(frame) -> tuple[NodeRuntime, str] | None:
    """(node, phase) of the calculator call a thread's stack is in, innermost first; None if none."""
    from . import node as _node_module, scheduler as _sched_module

    files = {_node_module.__file__, _sched_module.__file__}
    f = frame
    while f is not None:
        code = f.f_code
        hit = _CALL_NAMES.get(code.co_name)
        if hit is not None and code.co_filename in files:
            phase, local = hit
            node = f.f_locals.get(local)
            if isinstance(node, NodeRuntime):
                return node, phase
        f = f.f_back
    return None



def unused_nodes(spec: _config.GraphSpec, wanted: set[str]) -> set[str]:
    """The nodes whose work nobody receives: none of their output streams or side packets reaches
    a sink (a node without outputs), a ``wanted`` stream (observed or polled), or a node that is
    itself used.

    Such nodes are not run (an ``Annotate`` whose drawings no sink takes costs a full-frame draw
    per frame); ``Graph.left_out`` names them. Back edges count as consumers like any input. A
    graph with no sink and no observer at all is run whole: nothing says which of its results
    are wanted, so every node is (MediaPipe runs every node, always).
    """
    producer = {s: n.name for n in spec.nodes for s in n.outputs.values()}
    side_producer = {s: n.name for n in spec.nodes for s in n.side_outputs.values()}
    feeds: dict[str, set[str]] = {n.name: set() for n in spec.nodes}  # node -> nodes it needs
    for n in spec.nodes:
        for i in n.inputs:
            if i.stream in producer:
                feeds[n.name].add(producer[i.stream])
        for sp in n.side_inputs.values():
            if sp in side_producer:
                feeds[n.name].add(side_producer[sp])
    used = {n.name for n in spec.nodes if not n.outputs}
    used |= {producer[s] for s in wanted if s in producer}
    if not used:
        return set()
    todo = list(used)
    while todo:
        for dep in feeds[todo.pop()]:
            if dep not in used:
                used.add(dep)
                todo.append(dep)
    return {n.name for n in spec.nodes} - used
