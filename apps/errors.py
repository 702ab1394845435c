"""How the ``vpipe`` command reports a failure to the person at the terminal.

- An expected failure (a ``pipeline.errors.UserError``: bad graph, unreadable media, missing model,
  engine that cannot take a model, no answer from a stream; or an ``OSError`` about a named file) is
  one line, ``error: ...``, naming what, where and the fix; no traceback.
- An unexpected exception (a bug in a calculator or in vpipe) keeps its traceback, with the one-line
  cause printed first and again last, so the line a user reads at the bottom of the terminal is it.
- ``--debug`` (anywhere on the command line) or ``VPIPE_DEBUG=1`` shows the traceback of every failure.
- A log record a calculator marks as a notice (``log.info(..., extra={"notice": True})``, such as the
  web preview's address) is printed as it comes, even with ``-q``: the user needs it to go on.
- ``-q`` sends what native libraries write straight to the process's stderr (TFLite's "Created
  TensorFlow Lite XNNPACK delegate", absl's "Logging before InitGoogle()", OpenCV's warnings) to
  /dev/null, while vpipe's own messages still reach the terminal.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import traceback

TRUE_WORDS = ("1", "true", "yes", "on")


def debug_enabled() -> bool:
    """``--debug`` was given (``apps.cli`` turns it into ``VPIPE_DEBUG=1``) or ``VPIPE_DEBUG`` is set."""
    return os.environ.get("VPIPE_DEBUG", "").strip().lower() in TRUE_WORDS


def is_expected(exc: BaseException) -> bool:
    """A failure whose message is all a user needs (see the module doc)."""
    if getattr(exc, "user_error", False):  # pipeline.errors.UserError and the classes marked like it
        return True
    return isinstance(exc, OSError) and getattr(exc, "filename", None) is not None


_NATIVE_LOCATION = re.compile(r"\s*Exception from \S+:\d+:")  # OpenVINO's trail of C++ source lines


def one_line(exc: BaseException) -> str:
    """An exception as one line: an expected one by its message, another with its type first.
    A message of several lines (a native library's) is joined, without C++ source locations."""
    text = " ".join(_NATIVE_LOCATION.sub(" ", str(exc)).split()) or type(exc).__name__
    return text if is_expected(exc) and not isinstance(exc, OSError) else f"{type(exc).__name__}: {text}"


def run_error_text(e) -> str:
    """A ``GraphRunError`` for stderr: one line when its cause is expected (unless debugging),
    else the line, the calculator's traceback and the line again."""
    from pipeline.timestamp import Timestamp

    cause = e.cause
    at = "" if e.timestamp is None else f" at timestamp {Timestamp.name(e.timestamp)}"
    line = f"node '{e.node}' ({e.calculator}) failed in {e.phase}{at}: {one_line(cause)}"
    if is_expected(cause) and not debug_enabled():
        return line
    return f"{line}\n\nOriginal traceback:\n{e.cause_traceback.rstrip()}\n\nerror: {line}"


def uncaught_text(exc: BaseException) -> str:
    """What to print for an exception that reached the top of the command."""
    line = one_line(exc)
    if is_expected(exc) and not debug_enabled():
        return line
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    hint = "" if debug_enabled() else "\n(this is a bug in vpipe or a plugin; please report it with the traceback)"
    return f"{line}\n{tb}{hint}\n\nerror: {line}"


def silence_native_stderr() -> None:
    """Points file descriptor 2 (where native libraries write) at /dev/null and gives Python's
    ``sys.stderr`` a duplicate of the original, so only vpipe's own messages reach the terminal.
    Does nothing under ``--debug``."""
    if debug_enabled() or getattr(sys.stderr, "_vpipe_kept", False):
        return
    try:
        sys.stderr.flush()
        kept = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no real stderr (embedded, closed): nothing to silence
        return
    os.dup2(devnull, 2)
    os.close(devnull)
    old = sys.stderr
    new = io.TextIOWrapper(io.FileIO(kept, "w"), encoding=getattr(old, "encoding", None) or "utf-8",
                           errors="backslashreplace", line_buffering=True)
    new._vpipe_kept = True  # type: ignore[attr-defined]
    sys.stderr = new
    # Handlers made before now hold the old object, which now writes to /dev/null.
    for logger in [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                           if isinstance(lg, logging.Logger)]:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


class _NoticeHandler(logging.Handler):
    """Prints the records marked ``notice`` to the current ``sys.stderr``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(getattr(record, "notice", False))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a notice must never break a run
            self.handleError(record)


def install_notice_handler() -> None:
    """Lets vpipe's INFO notices through to the terminal (other INFO records still go nowhere)."""
    logger = logging.getLogger("vpipe")
    if not any(isinstance(h, _NoticeHandler) for h in logger.handlers):
        logger.addHandler(_NoticeHandler(logging.INFO))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
