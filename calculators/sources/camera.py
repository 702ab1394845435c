"""CameraSource: live frames from a camera (device index or path) through OpenCV's VideoCapture.

A grabber thread reads the device as fast as it delivers and keeps only the newest frame;
the source emits that one, so a slow graph sees fresh frames and never builds latency (frames
it could not take are counted as dropped). When the device disappears it is reopened with
backoff, and each drop and reconnect is logged.

OpenCV opens files and stream URLs through the same API; the tests (there is no camera on CI
machines) drive it with a local video file and a local ffmpeg stream.

Ports: FRAMES (Image) out; INFO (VideoInfo) output side packet.
Timestamps: the capture time, ``time.monotonic_ns() // 1000`` taken right after the grab,
strictly increasing.

Example node:
    - calculator: CameraSource
      outputs: {FRAMES: frames}
      options: {device: 0, size: [1280, 720], fps: 30}
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from calculators.sources.common import MediaError, OutputFormat, VideoInfo, bgr_to_image, set_side_output
from calculators.types import Image
from pipeline import STOP, Calculator, Output, SideOutput, register

log = logging.getLogger("vpipe.sources.camera")


class CameraSourceOptions(BaseModel):
    device: int | str = Field(0, description="a device index (0 = /dev/video0), a device path, or any source OpenCV opens",
                              json_schema_extra={"file": "read"})
    size: tuple[int, int] | None = Field(None, description="requested (width, height); the device may pick the closest")
    fps: float | None = Field(None, gt=0, description="requested frame rate")
    format: OutputFormat = "RGB"
    backend: Literal["any", "v4l2", "ffmpeg", "gstreamer", "dshow", "msmf", "avfoundation"] = "any"
    fourcc: str | None = Field(None, min_length=4, max_length=4, description="requested pixel format, e.g. MJPG")
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    reconnect: bool = Field(True, description="reopen the device when it stops delivering")
    max_reconnects: int | None = Field(None, ge=0, description="consecutive failed reopen attempts before giving up")
    backoff_s: float = Field(0.5, gt=0)
    max_backoff_s: float = Field(5.0, gt=0)

    @field_validator("device")
    @classmethod
    def _index_not_negative(cls, v):
        # OpenCV crashes the process (SIGSEGV) on a negative index instead of failing to open.
        if isinstance(v, int) and v < 0:
            raise ValueError(f"a camera index is 0 or more (0 = /dev/video0), got {v}")
        return v


def missing_device(device: int | str, backend: str) -> str | None:
    """On Linux, why a V4L2 camera cannot be there (checked before OpenCV, which may crash on it)."""
    if not sys.platform.startswith("linux") or backend not in ("any", "v4l2"):
        return None
    if isinstance(device, int):
        path = Path(f"/dev/video{device}")
    elif device.startswith("/dev/"):
        path = Path(device)
    else:
        return None  # a URL, a file or a GStreamer pipeline: OpenCV says
    if path.exists():
        return None
    found = sorted(str(p) for p in Path("/dev").glob("video*"))
    return f"no such device {path} (cameras here: {', '.join(found) if found else 'none'})"


_BACKENDS = {"any": "CAP_ANY", "v4l2": "CAP_V4L2", "ffmpeg": "CAP_FFMPEG", "gstreamer": "CAP_GSTREAMER",
             "dshow": "CAP_DSHOW", "msmf": "CAP_MSMF", "avfoundation": "CAP_AVFOUNDATION"}


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces the frame held, ``take`` waits for a newer one.

    Counts frames replaced before anyone took them (``dropped``).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._seq = 0
        self._taken = 0
        self.dropped = 0
        self.closed = False

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def take(self, timeout: float):
        """The newest item not yet taken, or None after ``timeout`` or once closed and empty."""
        with self._cond:
            end = time.monotonic() + timeout
            while self._item is None and not self.closed:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            item, self._item = self._item, None
            return item


class CameraGrabber:
    """Owns the VideoCapture and the grabber thread; no graph involved."""

    def __init__(self, options: CameraSourceOptions, name: str = "CameraSource",
                 stop_event: threading.Event | None = None) -> None:
        self.o = options
        self.name = name
        self.stop_event = stop_event or threading.Event()
        self.slot = LatestFrame()
        self.cap = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.grabbed = 0
        self.reconnects = 0
        self._halt = threading.Event()
        self._last_t = 0

    def _where(self) -> str:
        return f"{self.name}: camera {self.o.device!r}"

    def _open_capture(self):
        import cv2

        api = getattr(cv2, _BACKENDS[self.o.backend], cv2.CAP_ANY)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.o.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.o.read_timeout_s * 1000)]
        if self.o.size:
            params += [cv2.CAP_PROP_FRAME_WIDTH, int(self.o.size[0]), cv2.CAP_PROP_FRAME_HEIGHT, int(self.o.size[1])]
        missing = missing_device(self.o.device, self.o.backend)
        if missing:
            raise MediaError(f"{self._where()}: {missing}")
        cap = cv2.VideoCapture(self.o.device, api, params)
        if not cap.isOpened():
            cap.release()
            dev = self.o.device
            hint = f" (/dev/video{dev} absent?)" if isinstance(dev, int) else ""
            raise MediaError(f"{self._where()}: cannot open it{hint}: cv2.VideoCapture.isOpened() is False "
                             f"with backend {self.o.backend}")
        if self.o.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.o.fourcc))
        if self.o.fps:
            cap.set(cv2.CAP_PROP_FPS, float(self.o.fps))
        return cap

    def open(self) -> VideoInfo:
        import cv2

        self.cap = self._open_capture()
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            self.cap = None
            raise MediaError(f"{self._where()}: opened but delivered no frame within read_timeout_s={self.o.read_timeout_s}")
        self._put(first)
        fps = self.cap.get(cv2.CAP_PROP_FPS) or None
        info = VideoInfo(uri=str(self.o.device), width=first.shape[1], height=first.shape[0], fps=fps,
                         codec=None, frame_count=None, duration_s=None, live=True, pixel_format=self.o.format)
        self.thread = threading.Thread(target=self._run, name=f"{self.name} grabber", daemon=True)
        self.thread.start()
        return info

    def _put(self, frame: np.ndarray) -> None:
        t = time.monotonic_ns() // 1000
        if t <= self._last_t:
            t = self._last_t + 1
        self._last_t = t
        self.grabbed += 1
        self.slot.put((t, frame))

    def _run(self) -> None:
        try:
            while not self._halt.is_set() and not self.stop_event.is_set():
                ok, frame = self.cap.read()
                if ok and frame is not None:
                    self._put(frame)
                    continue
                if self._halt.is_set() or self.stop_event.is_set():
                    break
                if not self.o.reconnect or not self._reconnect():
                    break
        except BaseException as e:  # reported to the source thread, never lost
            self.error = e
        finally:
            self.slot.close()

    def _reconnect(self) -> bool:
        """Reopens with backoff; False when stopping, or (with ``error`` set) out of attempts."""
        self.cap.release()
        self.cap = None
        delay, attempt, last = self.o.backoff_s, 0, "no reopen attempted"
        while not self._halt.is_set() and not self.stop_event.is_set():
            attempt += 1
            if self.o.max_reconnects is not None and attempt > self.o.max_reconnects:
                msg = (f"{self._where()}: stopped delivering frames; gave up after max_reconnects="
                       f"{self.o.max_reconnects} reopen attempts ({last})")
                log.error("%s", msg)
                # Giving up is an error the run reports, not a clean end of the stream.
                self.error = MediaError(msg)
                return False
            log.warning("%s: stopped delivering frames; reopening in %.1f s (attempt %d)", self._where(), delay, attempt)
            if self._halt.wait(delay) or self.stop_event.is_set():
                return False
            try:
                self.cap = self._open_capture()
            except MediaError as e:
                last = f"last: {str(e).removeprefix(self._where() + ': ')}"
                delay = min(delay * 2, self.o.max_backoff_s)
                continue
            self.reconnects += 1
            log.warning("%s: reopened (attempt %d)", self._where(), attempt)
            return True
        return False

    def next(self, timeout: float = 0.2):
        """(capture_time_us, BGR array) of the newest frame, or None (none yet / closed)."""
        return self.slot.take(timeout)

    @property
    def finished(self) -> bool:
        return self.slot.closed

    def close(self) -> None:
        self._halt.set()
        if self.thread is not None:
            # A read returns within read_timeout_s (the capture's own timeout).
            self.thread.join(self.o.read_timeout_s + 2.0)
            if self.thread.is_alive():
                log.error("%s: grabber thread did not stop within %.1f s", self._where(), self.o.read_timeout_s + 2.0)
            self.thread = None
        if self.cap is not None:
            self.cap.release()
            self.cap = None


@register
class CameraSource(Calculator):
    """A camera (or anything cv2.VideoCapture opens) with newest-frame semantics.

    Ports:
        FRAMES (Image): the newest captured frame each time the graph takes one, in ``format``.
    Side outputs:
        INFO (VideoInfo): the delivered size and fps (live, no frame count).
    Options:
        device: index, device path or URL. size: requested [w, h]. fps: requested rate.
        format: RGB | BGR | GRAY. backend: any | v4l2 | ffmpeg | ... fourcc: e.g. MJPG.
        open_timeout_s / read_timeout_s: capture timeouts. reconnect (default true), max_reconnects,
        backoff_s, max_backoff_s: reopening a device that disappeared or stopped delivering, with
        backoff_s doubling up to max_backoff_s; each drop and reopen is logged. reconnect false:
        the end of the stream ends the run cleanly.
    Timestamps: capture time on the monotonic clock, in µs.
    Errors: a device that does not open (or opens but delivers nothing) fails in ``open``,
    naming the device; one that stays gone for max_reconnects consecutive reopen attempts fails
    the run, naming the device and the last failure.
    Note: there is no camera on the test machines; the tests drive it with a video file and a
    local ffmpeg stream through the same OpenCV capture API.
    Example:
        - calculator: CameraSource
          outputs: {FRAMES: frames}
          options: {device: 0, size: [640, 480], fps: 30}
    """

    inputs: dict = {}
    outputs = {"FRAMES": Output(Image, doc="newest captured frames")}
    side_outputs = {"INFO": SideOutput(VideoInfo)}
    Options = CameraSourceOptions
    timestamp_offset = None

    def open(self, ctx):
        self.grabber = CameraGrabber(ctx.options, name=f"{ctx.calculator} {ctx.node!r}",
                                     stop_event=ctx.stop_event)
        set_side_output(ctx, "INFO", self.grabber.open())

    def process(self, ctx):
        while not ctx.stopping:
            item = self.grabber.next(0.2)
            if item is not None:
                t, bgr = item
                ctx.outputs["FRAMES"].add(bgr_to_image(bgr, ctx.options.format), t)
                return None
            if self.grabber.finished:
                if isinstance(self.grabber.error, MediaError):
                    raise self.grabber.error
                if self.grabber.error is not None:
                    raise MediaError(f"{self.grabber._where()}: capture failed: {self.grabber.error}") from self.grabber.error
                return STOP
        return STOP

    def close(self, ctx):
        if getattr(self, "grabber", None) is not None:
            self.grabber.close()
