"""The run state: where one run of a graph stands, and the one condition everything waits on.

States, and the only moves between them::

    RUNNING ──drain()──▶ DRAINING ──last node finished──▶ DONE
       │                    │
       ├──────cancel()──────┴──▶ CANCELLED
       └──── fail(err) from any state ──▶ FAILED   (the first error is the run's error)
    RUNNING ──last node finished──▶ DONE

- RUNNING: sources produce, nodes process.
- DRAINING: a clean stop was asked for (``Graph.request_stop``, ``ctx.stop_run()``, later the first
  Ctrl-C): sources stop and close their outputs, graph inputs close, and what is already queued
  flows on into the sinks. The run becomes DONE when the last node has closed.
- CANCELLED: stop at once (``Graph.cancel``): queued work is discarded; ``close`` still runs on every
  opened calculator when the run is shut down.
- FAILED: a calculator, an observer or the framework raised; like CANCELLED, and ``wait()`` raises
  the first error. An error while closing after DONE or CANCELLED also moves the run to FAILED.
- DONE: every node finished on its own (its inputs closed) or after DRAINING.

CANCELLED, FAILED and DONE are *ended*: ``Graph.wait`` returns from its wait and shuts the run down
(joins the source threads and workers, closes what is open). ``stopping`` is true in CANCELLED and
FAILED: the hot path reads that one attribute to drop work.

The one condition, ``cond`` (a ``threading.Condition``), is notified on every change of state and
whenever something a waiter may be waiting for happens: queue space freed (throttled sources and a
blocked ``Graph.add_packet``), an executor gone idle (the throttle's deadlock relief), a packet for
a poller. Every wait of the framework outside the executors' own work queues is
``wait_until(predicate, timeout)`` on it, with no polling: a waiter wakes because something it
reads changed, or the run ended. ``stop_event`` (a ``threading.Event``) is set when the run leaves
RUNNING, for calculators that pace themselves with ``ctx.stop_event.wait(delay)``.

For the code that stops runs (signals, drain bounds): ``drain()`` and ``cancel()`` return whether they
changed the state (so a second Ctrl-C can tell it is the second), ``wait_until`` with a deadline is
how a bounded drain waits, and ``state`` may be read at any time without the lock.

Bounds (the Graph's ``drain_timeout`` and ``stuck_timeout``, docs/graphs.md "Stopping"):

- ``drain_deadline``: set by ``drain()``; ``Graph.wait`` cancels a drain still going past it.
- ``stuck_deadline``: how long the shutdown waits for the threads of the run; set when the shutdown
  begins (``stop_calls_by``) and brought forward by ``cancel(stuck_timeout=...)`` (a second Ctrl-C).
  Until then sinks keep writing what reached them, also in CANCELLED and FAILED (``sinks_drain``).
- ``halted``: set once that deadline passed: nothing more is called, not even a sink; a node still
  in a call is stuck, named and abandoned (never closed while its call runs).
- ``threads``: the run's threads still running; each one's end notifies ``cond``, which is how the
  shutdown waits for them with a deadline.
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Callable

from .errors import GraphRunError


class State(enum.Enum):
    RUNNING = "running"
    DRAINING = "draining"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DONE = "done"


_ENDED = frozenset((State.CANCELLED, State.FAILED, State.DONE))


class RunState:
    """One run's state, its errors and the condition every framework wait uses."""

    __slots__ = ("state", "stopping", "cond", "stop_event", "error", "errors", "unfinished", "drain_timeout",
                 "drain_deadline", "drain_expired", "stuck_deadline", "stuck_bound", "halted", "threads")

    def __init__(self, drain_timeout: float = 10.0) -> None:
        self.state = State.RUNNING
        self.stopping = False  # CANCELLED or FAILED: drop queued work, stop at once (sinks drain)
        self.cond = threading.Condition(threading.Lock())
        self.stop_event = threading.Event()
        self.error: Exception | None = None  # a GraphRunError (or the GraphConfigError that refused the start)
        self.errors: list[Exception] = []
        self.unfinished = 0  # nodes that have not finished yet
        self.drain_timeout = drain_timeout
        self.drain_deadline: float | None = None
        self.drain_expired = False  # the drain was cut short by its bound
        self.stuck_deadline: float | None = None
        self.stuck_bound = 0.0  # the wait that set stuck_deadline, in s (for the report)
        self.halted = False  # nothing more is called (past stuck_deadline)
        self.threads = 0

    # -- reading --------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    def is_set(self) -> bool:
        """``ended``, in the form of ``threading.Event.is_set`` (a run's end read like an event)."""
        return self.state in _ENDED

    @property
    def running(self) -> bool:
        """True while nothing asked the run to stop (sources may produce)."""
        return self.state is State.RUNNING

    # -- moves ----------------------------------------------------------------------------------

    def _move(self, state: State) -> None:
        """Under ``cond``: the new state, its flags, and everyone woken."""
        self.state = state
        if state is State.CANCELLED or state is State.FAILED:
            self.stopping = True
        if state is not State.DONE:
            self.stop_event.set()
        self.cond.notify_all()

    def start(self, nodes: int) -> None:
        with self.cond:
            self.unfinished = nodes
            if nodes == 0:
                self._move(State.DONE)

    def drain(self) -> bool:
        """RUNNING → DRAINING. Returns False when the run was already stopping or ended."""
        with self.cond:
            if self.state is not State.RUNNING:
                return False
            self.drain_deadline = time.monotonic() + self.drain_timeout
            self._move(State.DRAINING)
            return True

    def cancel(self, stuck_timeout: float | None = None) -> bool:
        """RUNNING/DRAINING → CANCELLED. Returns False when the run had already ended. With
        ``stuck_timeout``, the shutdown waits no longer than that from now for calls in progress."""
        with self.cond:
            if stuck_timeout is not None:
                self._bring_forward(stuck_timeout)
            if self.state in _ENDED:
                self.cond.notify_all()
                return False
            self._move(State.CANCELLED)
            return True

    def expire_drain(self) -> bool:
        """DRAINING past its deadline → CANCELLED (what was still queued is dropped)."""
        with self.cond:
            if self.state is not State.DRAINING:
                return False
            self.drain_expired = True
            self._move(State.CANCELLED)
            return True

    def _bring_forward(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.stuck_deadline is None or deadline < self.stuck_deadline:
            self.stuck_deadline = deadline
            self.stuck_bound = timeout

    def stop_calls_by(self, timeout: float) -> None:
        """The shutdown begins: threads have until ``timeout`` s from now (or an earlier deadline)."""
        with self.cond:
            self._bring_forward(timeout)

    def past_stuck_deadline(self) -> bool:
        return self.stuck_deadline is not None and time.monotonic() >= self.stuck_deadline

    def halt(self) -> None:
        """Nothing more is called, not even a sink (the stuck deadline passed)."""
        with self.cond:
            self.halted = True
            self.stopping = True
            self.cond.notify_all()

    def threads_started(self, n: int) -> None:
        with self.cond:
            self.threads += n

    def thread_ended(self) -> None:
        with self.cond:
            self.threads -= 1
            self.cond.notify_all()

    def fail(self, err: GraphRunError) -> None:
        """Records an error; the first one becomes the run's error and the run FAILED."""
        with self.cond:
            self.errors.append(err)
            if self.error is None:
                self.error = err
            if self.state is not State.FAILED:
                self._move(State.FAILED)

    def refuse(self, err: BaseException) -> None:
        """A start that raised (its graph refused, an open failed, Ctrl-C while opening): the run
        ends before it began, FAILED with ``err`` as its error (or CANCELLED for an interrupt), so
        that ``wait()`` raises it again at once instead of waiting for a run that never ran. An
        interrupt that left opens hung has already failed the run (their ``NodeStuckError``)."""
        with self.cond:
            if isinstance(err, Exception):
                self.errors.append(err)
                if self.error is None:
                    self.error = err
                if self.state is not State.FAILED:
                    self._move(State.FAILED)
            elif self.state not in _ENDED:
                self._move(State.CANCELLED)

    def node_finished(self) -> None:
        with self.cond:
            self.unfinished -= 1
            if self.unfinished <= 0 and (self.state is State.RUNNING or self.state is State.DRAINING):
                self._move(State.DONE)

    # -- waiting --------------------------------------------------------------------------------

    def notify(self) -> None:
        """Wakes every waiter to re-read what it waits for (queue space, idleness, a packet)."""
        with self.cond:
            self.cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Waits on ``cond`` until ``predicate()`` (read under the lock) is true or ``timeout``
        seconds passed; returns the predicate's last value. The caller's predicate should also
        be true once the run has ended, unless it means to wait past the end."""
        with self.cond:
            if timeout is None:
                while not predicate():
                    self.cond.wait()
                return True
            deadline = time.monotonic() + timeout
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True
