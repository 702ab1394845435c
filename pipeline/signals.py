"""SIGINT and SIGTERM: the one place where vpipe handles signals, and why it works this way.

The problem (the same one trio's ``_core/_ki.py`` solves). Python runs a signal handler in the
main thread, between two bytecodes, wherever that thread happens to be. The default SIGINT
handler raises ``KeyboardInterrupt`` right there:

- inside ``threading``'s own locks while ``Graph.start()`` launches threads, which leaves them
  broken ("RuntimeError: release unlocked lock", "cannot join thread before it is started");
- inside the clock that PyAV's interrupt callback calls while FFmpeg blocks in a network open,
  where the exception cannot propagate and is lost as "unraisable" (the open then runs on to its
  timeout);
- in the middle of a sink's ``close``, leaving a half-written file.

And SIGTERM (what ``docker stop`` and systemd send) kills the process at once by default, so an
mp4 being written is never finalized.

The rules:

1. While a run is watched (``StopSignals``: ``vpipe run`` for the whole run, for SIGINT and
   SIGTERM; ``Graph.start``/``Graph.wait`` for SIGINT while they run, when nobody else handles
   it), the handler does not raise. The first signal asks the graph to stop cleanly
   (``Graph.request_stop``: sources stop and what is already in the graph drains into the sinks,
   within the graph's ``drain_timeout``). The second stops it at once (``cancel(stuck_timeout=0)``:
   nothing more is processed, every sink writes what reached it and is finalized, a node stuck in
   a call is named and abandoned without waiting). The run then ends where the main thread already
   waits for it, in ``wait()``, and whoever watched reports the signal (``vpipe run`` exits 130
   for SIGINT, 143 for SIGTERM; ``Graph.wait`` raises ``KeyboardInterrupt``).
2. The one place where a second signal does raise (``StopSignal``, a ``KeyboardInterrupt``) is
   while ``start()`` opens calculators in the main thread: a calculator hung in ``open`` can be
   left only by an exception. ``start`` then closes what it opened and re-raises.
3. ``protected()`` marks code that must never see that exception: native calls that poll Python
   (the FFmpeg interrupt callback), or framework bookkeeping. A signal there only sets the stop;
   the exception, if one is due, is raised when the outermost protected region ends. A protected
   region in the main thread where Python's default handler is in force (a user's own loop
   calling a ``VideoReader``) installs a deferring handler for its duration.
4. Anywhere else Python's defaults apply: a library user's own loop still gets
   ``KeyboardInterrupt`` as usual, and a handler a user installed is never replaced.

Why a helper thread acts on the signal: the handler runs in the main thread between two
bytecodes, possibly while that thread holds the run's lock (inside ``Graph.wait``'s wait, say);
taking the lock there would deadlock. So the handler itself only counts (and, for rule 2,
raises); the C-level handler also writes the signal number to a wakeup pipe
(``signal.set_wakeup_fd``), and a thread of ours (``vpipe-signals``, alive while the handler is
installed) reads it and calls ``request_stop``/``cancel``, which wake the main thread's wait.

Only the main thread receives signals, so none of this costs anything in worker threads.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable

log = logging.getLogger("vpipe")

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, as shells report
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
SECOND_SIGNAL_STUCK_S = 1.0  # after a second signal, calls in progress get this long to return
DRAIN_TIMEOUT_S = 10.0  # a clean stop drains what is in the graph for at most this long (Graph's default)
STUCK_TIMEOUT_S = 5.0  # a shutdown waits at most this long for calls in progress (and for each close)

_protect = 0  # depth of protected regions in the main thread
_deferred: int | None = None  # a StopSignal that arrived inside a protected region


class StopSignal(KeyboardInterrupt):
    """A second stop signal while calculators were being opened (``signum``: which one)."""

    def __init__(self, signum: int):
        super().__init__(NAMES.get(signum, f"signal {signum}"))
        self.signum = signum

    def __reduce__(self):
        return (type(self), (self.signum,))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class StopSignals:
    """Turns stop signals into stops of ``graph`` while installed (a context manager; main thread
    only, else it does nothing). ``received`` lists the signals that arrived; ``on_signal(signum,
    count)`` is told of each, from the helper thread (``vpipe run`` prints what happens next).
    With ``only_default``, a signal whose handler is not Python's default is left alone (a user's
    own handler, or ``vpipe run``'s, wins)."""

    def __init__(self, graph=None, signums=(signal.SIGINT, signal.SIGTERM), *,
                 on_signal: Callable[[int, int], None] | None = None, stop_event: threading.Event | None = None,
                 only_default: bool = False):
        self.graph = graph
        self.signums = tuple(signums)
        self.on_signal = on_signal
        self.stop_event = stop_event
        self.only_default = only_default
        self.received: list[int] = []  # appended by the handler (main thread), no lock needed
        self.first: int | None = None  # the first signal to arrive (Python runs pending handlers by number)
        self._acted = 0
        self._previous: dict[int, object] = {}
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1
        self._thread: threading.Thread | None = None

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def __enter__(self) -> "StopSignals":
        if not _in_main_thread():
            return self
        for s in self.signums:
            current = signal.getsignal(s)
            if self.only_default and current not in (signal.default_int_handler, signal.SIG_DFL):
                continue
            self._previous[s] = current
        if not self._previous:
            return self
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        # The handler first: from here on no KeyboardInterrupt can land in the thread start below
        # (a signal meanwhile waits in the pipe for the helper).
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for s in self._previous:
            signal.signal(s, self._handle)
        self._thread = threading.Thread(target=self._act_loop, name="vpipe-signals", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._previous:
            return
        # The helper ends first, while our handler is still in force (no KeyboardInterrupt in the
        # join); it acts on any signal bytes before the end byte.
        r, w = self._pipe
        os.set_blocking(w, True)
        os.write(w, b"\0")
        self._thread.join()
        signal.set_wakeup_fd(self._old_wakeup)
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()
        os.close(r)
        os.close(w)
        # A signal's byte may reach the pipe after the end byte (the C handler writes it after
        # flagging the signal, so the Python handler can run first): act on it here, in plain code.
        for signum in self.received[self._acted:]:
            self._act(signum)

    def _handle(self, signum: int, _frame) -> None:
        """The Python-level handler (main thread): counts; raises only under rule 2."""
        global _deferred
        self.received.append(signum)
        if self.graph is None and self.stop_event is not None:
            self.stop_event.set()  # protected(): Event.set is safe here (the main thread is in a native call)
        if len(self.received) >= 2 and getattr(self.graph, "_opening", False):
            if _protect:
                _deferred = signum
            else:
                raise StopSignal(signum)

    def _act_loop(self) -> None:
        r = self._pipe[0]
        while True:
            data = os.read(r, 64)
            for signum in data:
                if signum == 0:
                    return
                # every signal with a Python handler writes its number here (the wakeup fd is
                # the process's): act only on the ones our handler took, so that under
                # only_default a signal someone else handles is left alone
                if signum in self._previous:
                    self._act(signum)

    def _act(self, signum: int) -> None:
        self._acted += 1
        count = self._acted
        if self.first is None:
            self.first = signum
        if self.on_signal is not None:
            try:
                self.on_signal(signum, count)
            except Exception:  # noqa: BLE001 - telling the user must never break the stop
                log.exception("stop signal notification failed")
        graph = self.graph
        if graph is None:
            return
        if count == 1:
            log.info("%s: stopping cleanly (draining for at most %g s)", NAMES.get(signum, signum),
                     getattr(graph, "drain_timeout", 0))
            graph.request_stop()
        else:
            graph.cancel(stuck_timeout=min(SECOND_SIGNAL_STUCK_S, getattr(graph, "stuck_timeout", 1.0)))


def watching(graph, signums=(signal.SIGINT,)) -> StopSignals:
    """What ``Graph.start``/``wait`` install for themselves: only where Python's default handler
    is in force (so inside ``vpipe run``, whose own handler is installed, they add nothing)."""
    return StopSignals(graph, signums, only_default=True)


@contextmanager
def protected(stop_event: threading.Event | None = None):
    """Runs the block without ``KeyboardInterrupt`` (rule 3): a signal inside it sets
    ``stop_event`` (and stops the watched run); the exception, if one is due, comes at the end."""
    global _protect, _deferred
    if not _in_main_thread():
        yield
        return
    own = None
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        own = StopSignals(None, (signal.SIGINT,), stop_event=stop_event)
        own._previous[signal.SIGINT] = signal.default_int_handler
        signal.signal(signal.SIGINT, own._handle)  # no helper thread: nothing to stop but the event
    _protect += 1
    try:
        yield
    finally:
        _protect -= 1
        if own is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if _protect == 0:
            due, _deferred = _deferred, None
            if due is not None:
                raise StopSignal(due)
            if own is not None and own.received:
                raise KeyboardInterrupt
