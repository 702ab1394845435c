"""Deterministic interleavings of a run's threads, for tests of the windows between two threads.

A ``PausePoint`` holds the first run thread that reaches a given line of a given function of the
framework (by default pipeline/node.py) until the test has done its part there (a producer's
``add_packet``, say), then lets it go on. What happens in the window between the worker's last
look at a queue and its release of the claim (node.py's docstring) is then one case a test can
run every time, not a race it may or may not meet.

The line is named by its source text and the function by its name, not by line numbers, so that
a point holds while the code around it changes, and in mutmut's mutated copy of the file as well
(where each function's name gains a prefix and a suffix, ``xǁNodeRuntimeǁstep__mutmut_12``). A
mutant may leave a point unreached; a test then does its part without the pause
(``PausePoint.reached`` says which) and checks the same behaviour, so that it fails only for what
the run did, never for where the code is (tests/pipeline/test_release_window.py checks that every
point is reached on the code as it is).

It works with ``threading.settrace``: only threads started after ``install()`` (a graph's workers
and source threads, started by ``start()``) are traced, and only the named function's frames at
line level, so a test's own thread never pauses.
"""

from __future__ import annotations

import linecache
import sys
import threading

WAIT_S = 10.0  # the longest any test waits for a thread to reach a point or the test to go on


def _plain_name(code_name: str) -> str:
    """A function's own name: ``step`` for ``step`` and for mutmut's ``xǁNodeRuntimeǁstep__mutmut_3``."""
    name = code_name.rsplit("ǁ", 1)[-1]
    return name.split("__mutmut_", 1)[0]


def functions_on(thread: threading.Thread | None) -> list[str]:
    """The names of the functions on ``thread``'s stack now, innermost first, as written in the
    source: mutmut renames every function of each file it mutates (``wait_until`` of
    pipeline/run_state.py is ``xǁRunStateǁwait_until__mutmut_orig`` there), and a test that looks for
    where a thread waits must find it in the mutated copy too. Empty for a thread not running."""
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident is not None else None
    names = []
    while frame is not None:
        names.append(_plain_name(frame.f_code.co_name))
        frame = frame.f_back
    return names


_points: list["PausePoint"] = []  # the points installed now (one trace function serves them all)
_points_lock = threading.Lock()


def _on_call(frame, event, arg):
    points = _points
    if not points:
        sys.settrace(None)
        return None
    code = frame.f_code
    name = _plain_name(code.co_name)
    me = threading.current_thread()
    mine = [p for p in points if not p._done and p.function == name and p.only in (None, me)
            and code.co_filename.replace("\\", "/").endswith(p.file)]
    if mine and any(p.node is not None for p in mine):
        owner = getattr(frame.f_locals.get("self"), "name", None)  # the NodeRuntime (or stream) called
        mine = [p for p in mine if p.node in (None, owner)]
    if not mine:
        return None

    held: list[PausePoint] = []  # the points that held this frame: told when it returns

    def on_line(frame, event, arg):
        if event == "return":
            for p in mine:  # a point at the function's return (line None)
                if p.line is None and p._hit():
                    p._hold()
            for p in held:
                p.left.set()
            return on_line
        if event != "line":
            return on_line
        text = None
        for p in mine:
            if p._done or p.line is None:
                continue
            if text is None:
                text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            if text == p.line and p._hit():
                held.append(p)
                p._hold()
        return on_line

    return on_line


class PausePoint:
    """Holds the thread that is about to run ``line`` (its source text, stripped; None: that is
    about to return from the function) for the ``hit``-th time (counted over all threads) inside
    ``function`` of the file ending in ``file`` (by ``thread`` only, when given; in a call of the
    object named ``node`` only, when given: the ``NodeRuntime`` whose method it is);
    ``reached`` is set then, and the thread waits for ``go()`` (at most ``WAIT_S``); ``left`` is
    set once it has returned from that call of the function. One pause per point; several points
    may be installed at once (nested ``with``)."""

    def __init__(self, function: str, line: str | None, hit: int = 1, file: str = "pipeline/node.py",
                 thread: threading.Thread | None = None, node: str | None = None):
        self.function = function
        self.only = thread  # counts and holds only this thread (None: any run thread)
        self.node = node  # counts and holds only calls on the node of this name (None: any)
        self.line = line
        self.hit = hit
        self.file = file
        self.reached = threading.Event()
        self.left = threading.Event()  # the held thread has returned from the function since
        self.thread: threading.Thread | None = None  # the thread held
        self._go = threading.Event()
        self._seen = 0
        self._done = False

    def __enter__(self) -> "PausePoint":
        with _points_lock:
            _points.append(self)
        threading.settrace(_on_call)
        return self

    def __exit__(self, *exc) -> None:
        with _points_lock:
            _points.remove(self)
            if not _points:
                threading.settrace(None)
        self._done = True
        self._go.set()  # a thread still held goes on

    def go(self) -> None:
        """Lets the held thread go on."""
        self._go.set()

    def cancel(self) -> None:
        """No thread is held here from now on (one held already goes on)."""
        with _points_lock:
            self._done = True
        self._go.set()

    @property
    def holding(self) -> bool:
        """A thread is held here now."""
        return self.reached.is_set() and not self._go.is_set()

    def _hold(self) -> None:
        self.thread = threading.current_thread()
        self.reached.set()
        self._go.wait(WAIT_S)

    def wait_reached(self, timeout: float = WAIT_S) -> bool:
        return self.reached.wait(timeout)

    def _hit(self) -> bool:
        """Counts one arrival at the line; True for the one to hold."""
        with _points_lock:
            if self._done:
                return False
            self._seen += 1
            if self._seen == self.hit:
                self._done = True
                return True
            return False
