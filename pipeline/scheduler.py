"""The scheduler: executors (named pools of worker threads), the source threads, and throttling.

- An ``Executor`` keeps a priority queue of activated nodes, downstream (deeper) first, so packets
  drain before sources make more. A worker pops a node and runs its steps; a node its step made
  ready runs *inline* next on the same worker when it shares the executor (a hop costs a few
  microseconds), and is queued otherwise. A node that still has work goes back to the queue only
  when its calls are long enough that another worker gains from pipelining it (``HANDOFF_NS``).
  A node submitted to an executor with idle workers wakes the one that went idle last
  (``Executor.sleeping``): the thread that just ran the graph, whose caches still hold it.
- Cheaper than the inline hop, the direct hop (streams.py, ``DirectStream``): at start,
  ``plan_direct_hops`` picks the streams whose consumer may be called straight from the
  emission, inside the producer's call, on the producer's worker.
- Sources run on threads of their own (``run_source``): each ``process`` call emits through
  ``OutputHandle.add``, which waits in ``throttle`` while an input queue with overflow ``block`` is
  full. Only sources and the Python feed are throttled, never interior nodes, so throttling cannot
  deadlock; should every source be throttled while nothing can run (a sync input waiting on a
  stream that does not advance), the throttle lifts with one warning.
- Waits outside the executors' own queues are on the run state's condition (run_state.py): a
  queue that had been full getting room (``queue_freed``) and an executor going idle notify it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .calculator import STOP
from .run_state import State

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .run_state import RunState

log = logging.getLogger("vpipe")

_perf_ns = time.perf_counter_ns
HANDOFF_NS = 50_000  # mean process() time above which a node's backlog goes to idle workers
MAX_DIRECT_DEPTH = 16  # direct hops nested in one another at most (each is a few stack frames)


def default_threads() -> int:
    return max(2, min(4, os.cpu_count() or 2))


class Executor:
    """A named pool of worker threads taking ready nodes, downstream (deeper) nodes first."""

    def __init__(self, sched: "Scheduler", name: str, threads: int):
        self.sched = sched
        self.name = name
        self.nthreads = threads
        self.lock = threading.Lock()
        self.heap: list = []
        self.seq = itertools.count()
        self.idle = 0  # workers waiting for a node
        # their wake-ups (each a Condition on ``lock``), the one that went idle last on top: a
        # node is given to the worker that ran last, whose caches still hold the graph, so a
        # chain fed from outside stays on one thread instead of moving to the other at each batch
        self.sleeping: list[threading.Condition] = []
        self.busy = 0
        self.shutdown = False
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.sched.run.threads_started(self.nthreads)
        for i in range(self.nthreads):
            th = threading.Thread(target=self._worker, name=f"vpipe-{self.name}-{i}", daemon=True)
            self.threads.append(th)
            th.start()

    def submit(self, node: "NodeRuntime") -> None:
        with self.lock:
            heapq.heappush(self.heap, (-node.depth, next(self.seq), node))
            if self.sleeping:
                self.sleeping.pop().notify()

    def stop(self, discard: bool) -> None:
        with self.lock:
            self.shutdown = True
            if discard:
                self.heap.clear()
            for wake in self.sleeping:
                wake.notify()
            self.sleeping.clear()

    def _worker(self) -> None:
        try:
            self._work()
        finally:
            self.sched.run.thread_ended()  # the shutdown waits for this, with a deadline

    def _work(self) -> None:
        sched = self.sched
        trace = sched.trace
        # deques, not lists: a list that goes 1 -> 0 -> 1 items (each hop) reallocates every time
        ready: deque = deque()
        local: deque[NodeRuntime] = deque()
        lock = self.lock
        wake = threading.Condition(lock)  # this worker's (see ``sleeping``)
        while True:
            with lock:
                while not self.heap and not self.shutdown:
                    self.idle += 1
                    self.sleeping.append(wake)
                    if self.busy == 0:
                        sched.executor_idle(self)
                    wake.wait()  # until submit() or stop() takes it off ``sleeping``
                    self.idle -= 1
                if self.shutdown and not self.heap:
                    return
                node = heapq.heappop(self.heap)[2]
                self.busy += 1
            try:
                local.append(node)
                while local:
                    node = local.pop()
                    while True:  # node steps; the node it made ready, on this executor, steps next
                        if node.step(ready, trace):
                            # Let an idle worker pipeline this node while we carry its packet on,
                            # when its calls are long enough to gain from it: for a call of
                            # microseconds the hand-off costs more than it saves (two threads only
                            # trade the GIL).
                            if self.idle and ready and node.sampled_ns > HANDOFF_NS * node.sampled:
                                self.submit(node)
                            else:
                                local.append(node)
                        if not ready:
                            break
                        if len(ready) == 1:  # the common case: the inline hop
                            n = ready.pop()
                            if n.executor is self:
                                node = n
                                continue
                            n.executor.submit(n)
                            break
                        # Run the deepest same-executor node inline; queue the others (a node may
                        # appear twice: each entry is one activation).
                        best = -1
                        for i, n in enumerate(ready):
                            if n.executor is self and (best < 0 or n.depth > ready[best].depth):
                                best = i
                        for i, n in enumerate(ready):
                            if i != best:
                                n.executor.submit(n)
                        n = ready[best] if best >= 0 else None
                        ready.clear()
                        if n is None:
                            break
                        node = n
            except BaseException as e:  # noqa: BLE001 - a bug in the framework itself
                node.fail("scheduler", None, e)
                local.clear()
                ready.clear()
            finally:
                with lock:
                    self.busy -= 1


class Scheduler:
    """The executors, the source threads and the throttle of one run."""

    # False sends every packet through the queues: tests run the same graphs both ways and
    # compare (tests/pipeline/test_direct_hop.py).
    direct_hops = True

    def __init__(self, run: "RunState", executors: dict[str, int], trace: list | None):
        self.run = run
        self.trace = trace
        self.executors = {name: Executor(self, name, n) for name, n in executors.items()}
        self.nodes: list[NodeRuntime] = []
        self.source_threads: list[threading.Thread] = []
        self.full_queues = 0  # input queues with overflow block that are full
        self.full_lock = threading.Lock()
        self.relief_warned = False
        self.idle_waiters = 0  # callers of Graph.wait_until_idle: executors going idle notify them
        self.graph_name = ""

    # -- starting and stopping -------------------------------------------------------------------

    def start(self, nodes: list["NodeRuntime"]) -> None:
        """Plans the direct hops, starts the workers, activates the nodes that have no forward
        input (only back edges) and starts one thread per source."""
        self.nodes = nodes
        self.plan_direct_hops(nodes)
        for ex in self.executors.values():
            ex.start()
        ready: list = []
        for node in nodes:
            if node.is_source:
                th = threading.Thread(target=self.run_source, args=(node,), name=f"vpipe-source-{node.name}",
                                      daemon=True)
                self.source_threads.append(th)
            elif not node.forward_queues:
                with node.lock:
                    if node.active == 0:
                        node.active += 1
                        ready.append(node)
        self.dispatch(ready)
        self.run.threads_started(len(self.source_threads))
        for th in self.source_threads:
            th.start()

    def plan_direct_hops(self, nodes: list["NodeRuntime"]) -> int:
        """Chooses, once, the streams whose packets go straight into their consumer's ``process``
        (streams.py, ``DirectStream``): a stream with one consumer and no observer, made by a node
        that is not a source and runs one call at a time (so it emits only from its own steps, on
        a worker of its executor), read by a simple node (node.py) on the same executor. At most
        ``MAX_DIRECT_DEPTH`` direct hops follow one another; the next one takes the queue, and the
        count starts again after it. None while tracing (``vpipe profile``: a direct call would
        sit inside its producer's traced call). ``nodes`` is in topological order; returns how
        many streams became direct."""
        if not self.direct_hops or self.trace is not None:
            return 0
        nesting: dict = {}  # node -> how many direct hops deep its calls may run
        made = 0
        for node in nodes:
            if node.is_source or node.max_in_flight != 1:
                continue
            level = nesting.get(node, 0) + 1
            for s in node.out_streams:
                if len(s.queues) != 1 or s.direct:
                    continue
                c = s.queues[0].node
                if c.simple and c.executor is node.executor and level <= MAX_DIRECT_DEPTH:
                    s.make_direct(node)
                    nesting[c] = level
                    made += 1
        return made

    def join(self) -> list[threading.Thread]:
        """Waits for the sources to stop and the workers to run out of work (sinks write what
        reached them, also when the run is stopping), until the run's stuck deadline; returns the
        threads still running then (each stuck in a call)."""
        run = self.run
        me = threading.current_thread()
        for ex in self.executors.values():
            ex.stop(discard=False)  # a stopping run's non-sink steps return at once
        threads = [th for th in self.source_threads + [t for ex in self.executors.values() for t in ex.threads]
                   if th is not me]
        mine = 1 if me in self.source_threads or any(me in ex.threads for ex in self.executors.values()) else 0

        def over() -> bool:
            return run.threads <= mine or run.past_stuck_deadline()

        while not run.wait_until(over, max(0.0, run.stuck_deadline - time.monotonic())):
            pass  # the deadline moved later: cannot happen (it only comes forward); re-check
        if run.threads > mine:
            return [th for th in threads if th.is_alive()]
        for th in threads:
            th.join()  # each has left its loop: this returns at once
        return []

    def finish_sink_calls(self, timeout: float) -> list[threading.Thread]:
        """After ``halt``: a sink still in a call (writing a frame that reached it) gets up to
        ``timeout`` to finish it, so its file can still be finalized; returns the threads still
        running then."""
        run = self.run
        me = threading.current_thread()
        threads = [th for th in self.source_threads + [t for ex in self.executors.values() for t in ex.threads]
                   if th is not me]
        mine = len(self.source_threads) + sum(len(ex.threads) for ex in self.executors.values()) - len(threads)

        def settled() -> bool:
            return run.threads <= mine or not any(n.sink and n.is_active() and not n.finished for n in self.nodes)

        run.wait_until(settled, timeout)
        return [th for th in threads if th.is_alive()]

    def dispatch(self, ready: list) -> None:
        """Hands ready nodes found outside a worker (feed, sources) to their executors."""
        if ready:
            for n in ready:
                n.executor.submit(n)
            ready.clear()

    # -- sources -----------------------------------------------------------------------------------

    def run_source(self, node: "NodeRuntime") -> None:
        try:
            self._source_loop(node)
        finally:
            self.run.thread_ended()

    def _source_loop(self, node: "NodeRuntime") -> None:
        run = self.run
        ctx = node.ctx
        calc = node.calc
        ready = ctx._ready
        trace = self.trace
        stop = run.stop_event
        first_out = next(iter(node.outputs.values()), None)
        try:
            while not stop.is_set():
                self.throttle(node)
                if stop.is_set():
                    break
                last = first_out.last if first_out is not None else None
                start = _perf_ns()
                r = calc.process(ctx)
                end = _perf_ns()
                node.count += 1  # a source's calls are all measured
                node.sampled += 1
                node.sampled_ns += end - start
                if trace is not None and first_out is not None and first_out.last != last:
                    # one event per call that emitted, at the timestamp it emitted
                    trace.append((node.name, threading.current_thread().name, first_out.last, start, end))
                self.dispatch(ready)
                if r is STOP:
                    break
        except BaseException as e:  # noqa: BLE001
            node.fail("source", None, e)
        ready.clear()
        with node.lock:
            if node.finished:
                return
            node.finished = True
        if not run.stopping:
            try:
                node._close_node(ready)
            except BaseException as e:  # noqa: BLE001
                node.fail("close", None, e)
            self.dispatch(ready)
        run.node_finished()

    # -- throttling --------------------------------------------------------------------------------

    def throttle(self, node: "NodeRuntime") -> None:
        """A source waits here while an input queue with overflow ``block`` is full."""
        if self.full_queues <= 0:
            return
        self.run.wait_until(self._may_produce)

    def _may_produce(self) -> bool:
        if self.full_queues <= 0 or self.run.state is not State.RUNNING:
            return True
        if self._all_idle():
            if not self.relief_warned:
                self.relief_warned = True
                log.warning("graph '%s': every source is throttled by a full queue while nothing can run; "
                            "letting sources go on (a sync input waits on a stream that does not advance?)",
                            self.graph_name)
            return True
        return False

    def adjust_full(self, delta: int) -> None:
        with self.full_lock:
            self.full_queues += delta

    def queue_freed(self) -> None:
        """A full queue has room again: throttled sources and a blocked feed may go on."""
        self.adjust_full(-1)
        self.run.notify()

    def executor_idle(self, ex: Executor) -> None:
        if self.full_queues > 0 or self.idle_waiters > 0:
            self.run.notify()

    def idle(self) -> bool:
        """No node is activated and no executor has work (source threads are not counted)."""
        return self._all_idle()

    def _all_idle(self) -> bool:
        for ex in self.executors.values():
            if ex.busy or ex.heap:
                return False
        for node in self.nodes:
            if not node.is_source and node.is_active():
                return False
        return True

