"""FFmpeg calls that end when the run stops: a network open or read returns within ~0.1 s of a stop.

FFmpeg lets a blocking call be interrupted only through the ``AVIOInterruptCB`` of the format
context, which its network protocols poll (about every 100 ms while they wait). PyAV (up to its
current release) sets that callback to its own timeout check and offers no other interrupt: the
``timeout=(open, read)`` argument of ``av.open`` is the whole API. Its callback reads the time
from the ``time`` module global of ``av.container.core`` (``time.monotonic()``, with the GIL held)
and interrupts when the time is past the call's start plus its timeout.

So a stop is a clock reading: ``abortable(stop_event)`` registers the calling thread, and while
``stop_event`` (or the stop event of an enclosing ``abortable`` block of the same thread) is set, the clock that PyAV's callback reads reports a time ~30 years on to that
thread only; the call fails at its next poll with ``av.error.ExitError``, which the caller, seeing
its stop event set, takes as a stop rather than an error. Every other thread, and every call
made outside ``abortable``, reads the real monotonic clock: PyAV's own timeouts are unchanged.

In the main thread (``Graph.start`` opens sources there) the callback's clock is Python code, so
a signal handler may run inside it; the region is ``pipeline.signals.protected`` so that no
``KeyboardInterrupt`` is raised where it would be lost.

When a PyAV release lacks that module global, ``install`` logs it once and the calls fall back to
their timeouts (``open_timeout_s``, ``read_timeout_s``).
"""

from __future__ import annotations

import logging
import threading
import time as _time
import types
from contextlib import contextmanager

from pipeline import signals

log = logging.getLogger("vpipe.sources")

_stops: dict[int, tuple[threading.Event, ...]] = {}  # thread ident -> the stop events of its nested blocks
_installed: bool | None = None
_lock = threading.Lock()
_monotonic = _time.monotonic
_get_ident = threading.get_ident
# Far later than any timeout, but finite: a call that *starts* while the stop is set takes its
# start time from this clock too, and must still time out as usual rather than never.
_LATE_S = 1e9


class _StopAwareTime(types.ModuleType):
    """Stands for the ``time`` module in ``av.container.core``: the real one, except that
    ``monotonic()`` reads far too late for a thread whose stop event is set."""

    def __init__(self) -> None:
        super().__init__("time")
        self.__dict__.update({k: v for k, v in vars(_time).items() if not k.startswith("__") and k != "monotonic"})

    def monotonic(self) -> float:  # noqa: D401 - the clock PyAV's interrupt callback reads
        events = _stops.get(_get_ident())
        if events is not None:
            for ev in events:
                if ev.is_set():
                    return _monotonic() + _LATE_S
        return _monotonic()


def install() -> bool:
    """Puts the stop-aware clock in PyAV's container module (once); False where it cannot."""
    global _installed
    if _installed is not None:
        return _installed
    with _lock:
        if _installed is None:
            try:
                import av.container.core as core
            except ImportError:  # pragma: no cover - PyAV is a core dependency
                _installed = False
                return False
            if isinstance(getattr(core, "time", None), types.ModuleType):
                if not isinstance(core.time, _StopAwareTime):
                    core.time = _StopAwareTime()
                _installed = True
            else:
                log.warning("PyAV %s has no clock to hook: a stop during a network open or read waits for "
                            "open_timeout_s / read_timeout_s", getattr(__import__("av"), "__version__", "?"))
                _installed = False
    return _installed


@contextmanager
def abortable(stop_event: threading.Event):
    """A blocking PyAV call in this block returns (``av.error.ExitError``) soon after
    ``stop_event`` is set, or the event of an enclosing ``abortable`` block of this thread (a
    reader owned by something that has its own stop: ``CameraSource``'s grabber)."""
    install()
    ident = _get_ident()
    previous = _stops.get(ident)
    _stops[ident] = (stop_event,) if previous is None else previous + (stop_event,)
    try:
        with signals.protected(stop_event):
            yield
    finally:
        if previous is None:
            _stops.pop(ident, None)
        else:
            _stops[ident] = previous
