"""How the ``vpipe`` command reports a failure to the person at the terminal.

- An expected failure (a ``pipeline.errors.UserError``: bad graph, unreadable media, missing model,
  engine that cannot take a model, no answer from a stream; or an ``OSError`` about a named file) is
  one line, ``error: ...``, naming what, where and the fix; no traceback.
- An unexpected exception (a bug in a calculator or in vpipe) keeps its traceback, with the one-line
  cause printed first and again last, so the line a user reads at the bottom of the terminal is it.
- ``--debug`` (anywhere on the command line) or ``VPIPE_DEBUG=1`` shows the traceback of every failure.
- A log record a calculator marks as a notice (``log.info(..., extra={"notice": True})``, such as the
  web preview's address) is printed as it comes, even with ``-q``: the user needs it to go on.
  vpipe's warnings and errors are printed too (the handler that prints notices would otherwise
  keep Python's last-resort handler from printing them).
- What native libraries write straight to file descriptor 2 never reaches the terminal in their
  own log formats (TFLite's "INFO: Created TensorFlow Lite XNNPACK delegate", absl's "WARNING: All
  log messages before absl::InitializeLog()", glog-style "E0000 00:00:... file.cc:417] ...",
  OpenCV's "[ WARN:0@...]", FFmpeg's "[h264 @ 0x...]", ONNX Runtime's "... [W:onnxruntime:...]"):
  ``capture_native_stderr`` points fd 2 at a pipe whose lines a thread reads, logs those at debug
  level (``vpipe.native``) and passes any other line through; ``-q`` logs every line instead.
  Python's ``sys.stderr`` writes to the real stderr, so vpipe's own lines are never held back.
  ``--debug`` leaves fd 2 alone: everything native shows, as it comes. A line written just before
  a native abort (``std::terminate``) may be lost with the process. Before vpipe's ``error:`` line,
  the thread is given time (at most 0.5 s) to pass on what native code wrote before it
  (``sync_native_stderr``), so the lines that get through show in the order they were written.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import logging
import os
import re
import sys
import threading
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


# The log formats of the native libraries vpipe loads, as they write them to fd 2.
NATIVE_LOG_LINE = re.compile(
    r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "      # absl / glog: E0000 00:00:17.5 31080 text_format.cc:417]
    r"|(?:INFO|WARNING|ERROR|VERBOSE): "                              # TFLite's minimal logger, absl's first line
    r"|\[ ?(?:INFO|WARN|ERROR|DEBUG|FATAL|VERBOSE)[:\]]"             # OpenCV: [ WARN:0@0.5] global cap.cpp:...
    r"|\[[\w,:-]+ @ 0x[0-9a-fA-F]+\] "                                # FFmpeg: [h264 @ 0x55d0c2a3e8c0]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[VIWEF]:onnxruntime"  # ONNX Runtime
)

native_log = logging.getLogger("vpipe.native")


PIPE_BYTES = 1 << 20  # what fd 2's pipe can hold before a writer waits for the reader
SYNC_MARK = b"\x00vpipe-stderr-sync\n"  # a line no library writes: NativeStderr.sync's place in the pipe


class NativeStderr:
    """File descriptor 2 pointed at a pipe that a thread (``vpipe-stderr``) reads line by line:
    native libraries' log lines go to ``vpipe.native`` at debug level, any other line (or, when
    ``quiet``, none) to the real stderr. ``sys.stderr`` becomes a stream on a duplicate of the real
    stderr. ``restore()`` (at exit) puts fd 2 back and lets the thread pass on what is left."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        sys.stderr.flush()
        self.kept = os.dup(2)
        r, w = os.pipe()
        # A native library may write while it holds the GIL, which the reading thread needs: the
        # pipe must hold a burst of such lines (64 KiB by default on Linux; 1 MiB is the usual max).
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        os.dup2(w, 2)
        os.close(w)
        self._read = os.fdopen(r, "rb")
        old = sys.stderr
        new = io.TextIOWrapper(io.FileIO(self.kept, "w", closefd=False),
                               encoding=getattr(old, "encoding", None) or "utf-8",
                               errors="backslashreplace", line_buffering=True)
        new._vpipe_kept = True  # type: ignore[attr-defined]
        sys.stderr = new
        # Handlers made before now hold the old object, which now writes into the pipe.
        for logger in [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                               if isinstance(lg, logging.Logger)]:
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                    handler.setStream(new)
        self._synced: list[threading.Event] = []  # sync() calls whose mark the thread has not read yet
        self._sync_lock = threading.Lock()
        self.thread = threading.Thread(target=self._pump, name="vpipe-stderr", daemon=True)
        self.thread.start()
        self._restored = False
        atexit.register(self.restore)

    def sync(self, timeout: float = 0.5) -> bool:
        """Waits until the thread has passed on every line written to fd 2 before now (at most
        ``timeout`` s), so that the line vpipe writes next comes after them, as it was written.
        The pipe keeps order: a mark written now is read after all of them."""
        done = threading.Event()
        with self._sync_lock:
            self._synced.append(done)
            try:
                os.write(2, SYNC_MARK)
            except OSError:
                self._synced.remove(done)
                return False
        return done.wait(timeout)

    def _pump(self) -> None:
        for raw in self._read:
            if raw.endswith(SYNC_MARK):
                with self._sync_lock:
                    if self._synced:
                        self._synced.pop(0).set()
                raw = raw[:-len(SYNC_MARK)]  # what a writer left without its newline comes first
                if not raw:
                    continue
                raw += b"\n"  # ended here, so that vpipe's line starts a line of its own
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if self.quiet or NATIVE_LOG_LINE.match(line):
                native_log.debug("%s", line)
                continue
            view = memoryview(raw)
            while view:
                try:
                    view = view[os.write(self.kept, view):]
                except OSError:  # the terminal is gone: nothing to pass on to
                    break
        self._read.close()

    def restore(self, wait_s: float = 0.5) -> None:
        """Fd 2 is the real stderr again; what the pipe still holds is passed on (bounded: a child
        process that inherited the pipe may keep it open)."""
        if self._restored:
            return
        self._restored = True
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.kept, 2)  # closes our end of the pipe: the thread reads what is left, then EOF
        self.thread.join(wait_s)


_native: NativeStderr | None = None


def capture_native_stderr(quiet: bool = False) -> None:
    """Keeps native libraries' log lines off the terminal (see the module doc); with ``quiet``,
    every line they write. Does nothing under ``--debug``, or where there is no fd 2."""
    global _native
    if debug_enabled():
        return
    if _native is not None:
        _native.quiet = _native.quiet or quiet
        return
    try:
        _native = NativeStderr(quiet)
    except (OSError, ValueError):  # no real stderr (embedded, closed): nothing to capture
        _native = None


def sync_native_stderr() -> None:
    """Before vpipe's own line (an ``error:``): what native code wrote to fd 2 before it is passed
    on first, in order (a line that gets through, with ``-q`` none). Bounded; no-op uncaptured."""
    if _native is not None and not _native._restored:
        _native.sync()


def silence_native_stderr() -> None:
    """``-q``: nothing native libraries write reaches the terminal (vpipe's own messages do)."""
    capture_native_stderr(quiet=True)


class _TerminalHandler(logging.Handler):
    """Prints vpipe's notices, and its warnings and errors where the application set up no logging
    of its own (as Python's last-resort handler would, which stops looking once this handler is
    found), to the current ``sys.stderr``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "notice", False):
            return True
        return record.levelno >= logging.WARNING and not logging.getLogger().handlers

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a message must never break a run
            self.handleError(record)


def install_notice_handler() -> None:
    """Lets vpipe's INFO notices, warnings and errors through to the terminal (other INFO records
    still go nowhere)."""
    logger = logging.getLogger("vpipe")
    if not any(isinstance(h, _TerminalHandler) for h in logger.handlers):
        logger.addHandler(_TerminalHandler(logging.INFO))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
