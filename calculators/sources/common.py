"""Helpers shared by the media sources and sinks: stream info, pacing, pixel formats, errors.

Nothing here is a calculator; it is kept free of graph code so it can be unit-tested alone.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from calculators.types import Image
from pipeline.errors import UserError

OutputFormat = Literal["RGB", "BGR", "GRAY"]
# VideoSource also gives the decoder's own planar YUV, with no conversion.
VideoOutputFormat = Literal["RGB", "BGR", "GRAY", "I420"]

# PyAV's names for the formats an Image can carry.
AV_FORMATS = {"RGB": "rgb24", "BGR": "bgr24", "GRAY": "gray", "RGBA": "rgba", "BGRA": "bgra", "I420": "yuv420p"}

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp", "hls")


# CPython hands the GIL to a waiting thread only once per switch interval (5 ms by default) while
# another thread runs Python. A decoder wants the GIL back after each native call (demux, decode,
# conversion), so beside a Python-busy thread PyAV decoding fell from 197 to 17 frames/s
# (docs/benchmarks.md). While a video reader is open the interval is at most this; the last
# reader to close puts back the value it found.
DECODER_SWITCH_INTERVAL_S = 0.0005


class FastGilSwitch:
    """Process-wide: the GIL switch interval at most ``DECODER_SWITCH_INTERVAL_S`` while at least
    one holder has ``acquire``d and not yet ``release``d (each holder once)."""

    _lock = threading.Lock()
    _holders = 0
    _saved: float | None = None

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            if cls._holders == 0:
                cls._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(cls._saved, DECODER_SWITCH_INTERVAL_S))
            cls._holders += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            if cls._holders == 0:
                return
            cls._holders -= 1
            if cls._holders == 0 and cls._saved is not None:
                sys.setswitchinterval(cls._saved)
                cls._saved = None


class MediaError(UserError, RuntimeError):
    """A media file, stream or device that cannot be read or written; the message names it and why."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source knows about its stream, before the first frame.

    ``frame_count`` and ``duration_s`` are None when unknown (live streams, cameras).
    """

    uri: str
    width: int
    height: int
    fps: float | None
    codec: str | None
    frame_count: int | None
    duration_s: float | None
    live: bool
    pixel_format: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_network_uri(uri: str) -> bool:
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme.lower() in NETWORK_SCHEMES


def bgr_to_image(array: np.ndarray, fmt: str) -> Image:
    """An Image in ``fmt`` from an OpenCV array: BGR (HxWx3) or single-channel (HxW or HxWx1)."""
    gray = array.ndim == 2 or array.shape[2] == 1
    return Image(array, "GRAY" if gray else "BGR").to(fmt)


def image_to_bgr(image: Image) -> np.ndarray:
    """The BGR (or GRAY) array OpenCV writers expect; a new array unless no conversion is needed."""
    return image.data if image.format in ("BGR", "GRAY") else image.to("BGR").data


class Pacer:
    """Holds frames back so they leave at the rate of their timestamps (``pace: realtime``).

    ``wait(t_us)`` returns False when ``stop_event`` fired during the wait.
    """

    def __init__(self, stop_event: threading.Event | None = None, speed: float = 1.0) -> None:
        self.stop_event = stop_event or threading.Event()
        self.speed = speed
        self._t0_media: int | None = None
        self._t0_wall = 0.0

    def reset(self) -> None:
        self._t0_media = None

    def wait(self, t_us: int) -> bool:
        now = time.monotonic()
        if self._t0_media is None:
            self._t0_media, self._t0_wall = t_us, now
            return not self.stop_event.is_set()
        due = self._t0_wall + (t_us - self._t0_media) / 1e6 / self.speed
        delay = due - now
        if delay > 0:
            return not self.stop_event.wait(delay)
        return not self.stop_event.is_set()


class RateMeter:
    """Events per second of wall-clock time over the last ``window_s``: what Annotate's fps overlay,
    the preview's fps and its per-node rates all report, so that the three agree.

    ``update()`` counts one event; ``update(total)`` takes a running total (a node's call count).
    Thread-safe.
    """

    def __init__(self, window_s: float = 1.0, clock=time.perf_counter) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque = deque()  # (time, running total)
        self._total = 0
        self._lock = threading.Lock()

    def update(self, total: int | None = None, now: float | None = None) -> float | None:
        with self._lock:
            now = self._clock() if now is None else now
            self._total = self._total + 1 if total is None else int(total)
            self._samples.append((now, self._total))
            # Keep one sample at or before the window's start, so the span covers the window.
            while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
                self._samples.popleft()
            return self._rate()

    def rate(self) -> float | None:
        """The latest rate; None before two samples."""
        with self._lock:
            return self._rate()

    def _rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None


class MonotonicTimestamps:
    """Makes a stream's timestamps strictly increase across loops, reconnects and bad pts.

    ``rebase()`` marks a discontinuity (loop restart, reconnect): the next raw timestamp is
    shifted to follow the last emitted one by one frame interval. Within a segment a timestamp
    at or below the last one is nudged to last + 1 and counted in ``fixed``.
    """

    def __init__(self, interval_us: int = 33_333) -> None:
        self.interval_us = max(1, int(interval_us))
        self.offset = 0
        self.last: int | None = None
        self._rebase = False
        self.fixed = 0

    def rebase(self) -> None:
        self._rebase = self.last is not None

    def __call__(self, raw_us: int) -> int:
        if self._rebase:
            self.offset = self.last + self.interval_us - raw_us
            self._rebase = False
        t = raw_us + self.offset
        if self.last is not None and t <= self.last:
            t = self.last + 1
            self.fixed += 1
        self.last = t
        return t


class ChosenContext:
    """A node's context as the calculator it delegates to sees it (``MediaSource``,
    ``MediaWriter``): that calculator's own options, everything else the node's."""

    def __init__(self, ctx: Any, options: Any) -> None:
        self._ctx = ctx
        self.options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def set_side_output(ctx: Any, tag: str, value: Any) -> None:
    """Sets an output side packet when the node has it connected (it is optional)."""
    port = ctx.side_outputs.get(tag)
    if port is not None:
        port.set(value)
