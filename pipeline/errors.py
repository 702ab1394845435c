"""The exceptions of vpipe: a small, exact set.

- ``GraphConfigError``: the graph is wrong; raised before anything runs, listing every problem.
- ``GraphRunError``: a calculator failed during a run; names node, calculator, timestamp, cause.
- ``TimestampError``: a packet at or below its stream's bound (raised inside the producing node,
  so it surfaces as the ``GraphRunError`` cause).
- ``QueueFullError``: ``add_packet`` on an input whose overflow policy is ``reject`` and is full.
- ``GraphCancelled`` is not an error: ``wait()`` returns normally after ``cancel()``.
- ``UserError``: a mark, not a kind: a failure whose message says all a user needs (what, where, the fix),
  such as an unreadable video, a missing model, an engine that cannot take a model. The ``vpipe``
  command prints it as one line, without a traceback (unless ``--debug``). Calculator errors of that
  sort (``MediaError``, ``InferenceError``, ``CatalogError``, ...) derive from it, and so may a user's.

Every one of them pickles and unpickles with its message and fields, so an error raised in another
process (a ``--jobs`` worker, a Ray actor) reaches the caller as itself, not as a stand-in that hides
the cause. An exception whose ``__init__`` takes other arguments than its message defines
``__reduce__``; a cause that cannot be pickled travels as ``RemoteCause`` with its type name, text
and traceback.

``did_you_mean()`` is the one way every message offers the closest names for a misspelt one.
"""

from __future__ import annotations

import difflib
import pickle
import traceback
from dataclasses import dataclass
from typing import Iterable


def closest(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The candidates nearest to ``word`` (difflib's ratio), best first; compared ignoring case
    when nothing matches as written."""
    pool = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(word, pool, n=n, cutoff=cutoff)
    if not close:
        lowered = {p.lower(): p for p in pool}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=cutoff)]
    return close


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """``"; did you mean 'a', 'b'?"`` for the names closest to ``word``, or ``""`` when none is close."""
    close = closest(word, candidates, n, cutoff)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class VpipeError(Exception):
    """Base of vpipe's errors."""


class UserError(VpipeError):
    """A failure a user fixes from its message alone; no traceback is shown for it (see module doc).
    A class that cannot derive from it (one that must not import ``pipeline``) sets ``user_error = True``."""

    user_error = True


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class GraphConfigError(UserError):
    """A graph that cannot run, with every problem found (each with file and line)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self):
        return (type(self), (self.problems,), _extra_state(self, ("problems",)))


class TimestampError(VpipeError):
    """A packet's timestamp is not above its stream's bound."""


class QueueFullError(VpipeError):
    """An input queue with overflow policy ``reject`` is full."""


class RemoteCause(VpipeError):
    """Stands in for a cause that could not be pickled: its type's qualified name, its text and its
    traceback as they were in the process that raised it."""

    def __init__(self, type_name: str, message: str, traceback_text: str = ""):
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self):
        return (type(self), (self.type_name, self.message, self.traceback_text))


def portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives a pickle round trip, else a ``RemoteCause`` naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to pickle or rebuild means: send a stand-in
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RemoteCause(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), text)


def _extra_state(exc: BaseException, fields: tuple[str, ...]) -> dict:
    """Attributes set on an exception after construction (besides its constructor's fields)."""
    return {k: v for k, v in vars(exc).items() if k not in fields and not k.startswith("__")}


class GraphRunError(VpipeError):
    """A calculator failed; the run was stopped cleanly.

    Attributes: ``node``, ``calculator``, ``timestamp`` (int or None), ``phase`` (open, process,
    close, source), ``cause`` (the original exception, also ``__cause__``) and ``cause_traceback``.
    """

    def __init__(self, node: str, calculator: str, phase: str, timestamp: int | None, cause: BaseException):
        from .timestamp import Timestamp

        self.node = node
        self.calculator = calculator
        self.phase = phase
        self.timestamp = timestamp
        self.cause = cause
        self.cause_traceback = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        at = "" if timestamp is None else f" at timestamp {Timestamp.name(timestamp)}"
        super().__init__(
            f"node '{node}' ({calculator}) failed in {phase}{at}: {type(cause).__name__}: {cause}"
        )

    def __str__(self) -> str:
        return f"{self.args[0]}\n\nOriginal traceback:\n{self.cause_traceback}"

    def __reduce__(self):
        # The cause's traceback object does not pickle: its text (cause_traceback) travels instead.
        return (_rebuild_run_error, (type(self), self.node, self.calculator, self.phase, self.timestamp,
                                     portable(self.cause), self.cause_traceback, self.args[0]))


def _rebuild_run_error(cls, node, calculator, phase, timestamp, cause, cause_traceback, message):
    err = cls.__new__(cls)
    VpipeError.__init__(err, message)
    err.node, err.calculator, err.phase, err.timestamp = node, calculator, phase, timestamp
    err.cause, err.cause_traceback = cause, cause_traceback
    err.__cause__ = cause
    return err

class StuckCall(VpipeError):
    """The cause of a ``NodeStuckError``: a call that did not return within its bound."""


class NodeStuckError(GraphRunError):
    """A calculator did not return from a call within the run's ``stuck_timeout`` after the run was
    stopped; it was abandoned (its thread left running, the node never closed under it).
    ``cause_traceback`` is where its thread is stuck."""

    def __init__(self, node: str, calculator: str, phase: str, timestamp: int | None, bound_s: float,
                 stack: str = ""):
        from .timestamp import Timestamp

        cause = StuckCall(f"no return within {bound_s:g} s of the stop")
        super().__init__(node, calculator, phase, timestamp, cause)
        self.bound_s = bound_s
        self.cause_traceback = stack or self.cause_traceback
        at = "" if timestamp is None else f" at timestamp {Timestamp.name(timestamp)}"
        self.args = (f"node '{node}' ({calculator}) is stuck in {phase}{at}: it did not return within "
                     f"{bound_s:g} s of the stop; abandoned (its thread is left running, the node is not closed)",)

    def __str__(self) -> str:
        return f"{self.args[0]}\n\nWhere it is stuck:\n{self.cause_traceback}"

    def __reduce__(self):
        return (_rebuild_stuck, (self.node, self.calculator, self.phase, self.timestamp, self.bound_s,
                                 self.cause_traceback))


def _rebuild_stuck(*args) -> "NodeStuckError":
    return NodeStuckError(*args)

