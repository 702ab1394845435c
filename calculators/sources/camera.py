"""CameraSource: live frames from a camera (device index or path) through OpenCV's VideoCapture.

A grabber thread reads the device as fast as it delivers and keeps only the newest frame;
the source emits that one, so a slow graph sees fresh frames and never builds latency (frames
it could not take are counted as dropped). When the device disappears it is reopened with
backoff, and each drop and reconnect is logged.

A network stream (``rtsp://``, ``tcp://``, ``http://``, ...: an IP camera) is read through PyAV
instead, with the same newest-frame semantics and reconnects: OpenCV's FFmpeg backend can be
stopped only by its own timeouts (its interrupt callback checks nothing else), so a stop while it
opens or waits for a silent peer would wait for ``open_timeout_s``; PyAV's calls end within
~0.1 s of a stop (``av_interrupt``). OpenCV opens everything else: device indexes and paths,
files, GStreamer pipelines. The tests (there is no camera on CI machines) drive it with a local
video file and a local ffmpeg stream.

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
from pydantic import BaseModel, Field, field_validator, model_validator

from calculators.sources.av_interrupt import abortable
from calculators.sources.common import (
    MediaError, OutputFormat, VideoInfo, bgr_to_image, is_network_uri, set_side_output,
)
from calculators.sources.video import Stopped, VideoReader, VideoSourceOptions
from calculators.types import Image
from pipeline import STOP, Calculator, Output, SideOutput, register

log = logging.getLogger("vpipe.sources.camera")


class CameraSourceOptions(BaseModel):
    device: int | str = Field(0, description="a device index (0 = /dev/video0), a device path, a network stream URL "
                                             "(read with PyAV), or any other source OpenCV opens",
                              json_schema_extra={"file": "read"})
    size: tuple[int, int] | None = Field(None, description="requested (width, height); the device may pick the closest; "
                                                           "a network stream's frames are scaled to it")
    fps: float | None = Field(None, gt=0, description="requested frame rate (devices only)")
    format: OutputFormat = "RGB"
    backend: Literal["any", "v4l2", "ffmpeg", "gstreamer", "dshow", "msmf", "avfoundation"] = Field(
        "any", description="OpenCV's capture backend; a network stream is read with PyAV (FFmpeg): any or ffmpeg")
    fourcc: str | None = Field(None, min_length=4, max_length=4,
                               description="requested pixel format, e.g. MJPG (devices only)")
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

    @model_validator(mode="after")
    def _stream_options(self):
        # A stream has its own rate and codec: a request the capture would silently ignore is an error.
        if not self.network:
            return self
        if self.backend not in ("any", "ffmpeg"):
            raise ValueError(f"a network stream ({self.device}) is read with PyAV (FFmpeg), so that a stop "
                             f"interrupts it: backend must be any or ffmpeg, not {self.backend} (a GStreamer "
                             "pipeline string, not a URL, goes to OpenCV's GStreamer backend)")
        asked = [name for name in ("fps", "fourcc") if getattr(self, name) is not None]
        if asked:
            raise ValueError(f"{' and '.join(asked)} request a mode of a camera device; a network stream "
                             f"({self.device}) sends its own: remove {' and '.join(asked)}")
        return self

    @property
    def network(self) -> bool:
        """``device`` is a network stream URL (read with PyAV rather than OpenCV)."""
        return isinstance(self.device, str) and is_network_uri(self.device)


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


class StreamCapture:
    """A network stream read with PyAV (``VideoReader``), in the shape of OpenCV's VideoCapture as
    the grabber uses it (``read()`` -> (ok, frame), ``release()``); frames come in the source's
    ``format``. Its open and reads end soon after ``stop_event`` is set, or the grabber's own
    stop (an enclosing ``abortable`` block); it raises ``Stopped`` when stopped while opening."""

    def __init__(self, o: CameraSourceOptions, name: str, stop_event: threading.Event) -> None:
        # Slice threads only: frame threads hold back a frame per thread, a live camera wants it now.
        self.reader = VideoReader(VideoSourceOptions(
            uri=o.device, format=o.format, size=o.size, open_timeout_s=o.open_timeout_s,
            read_timeout_s=o.read_timeout_s, reconnect="never", thread_type="slice"), name=name,
            stop_event=stop_event)
        self.fps = self.reader.open().fps
        self._frames = self.reader.frames()

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            item = next(self._frames, None)
        except MediaError as e:  # a read error or timeout: the grabber reconnects, as after OpenCV's False
            log.debug("%s", e)
            return False, None
        return (False, None) if item is None else (True, item[1])

    def release(self) -> None:
        self._frames.close()
        self.reader.close()


class CameraGrabber:
    """Owns the capture (OpenCV's VideoCapture, or a ``StreamCapture`` for a network stream) and
    the grabber thread; no graph involved."""

    def __init__(self, options: CameraSourceOptions, name: str = "CameraSource",
                 stop_event: threading.Event | None = None) -> None:
        self.o = options
        self.name = name
        self._halt = threading.Event()  # close(): the grabber thread ends
        self.stop_event = stop_event or self._halt
        self.slot = LatestFrame()
        self.cap = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.grabbed = 0
        self.reconnects = 0
        self._last_t = 0
        # OpenCV delivers BGR (or GRAY); PyAV decodes straight into the source's format.
        self.frame_format = options.format if options.network else "BGR"

    def _where(self) -> str:
        return f"{self.name}: camera {self.o.device!r}"

    def _open_capture(self):
        if self.o.network:
            return self._open_stream()
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

    def _open_stream(self) -> StreamCapture:
        """PyAV's open, with the grabber's words for its failures (``Stopped`` passes through)."""
        try:
            return StreamCapture(self.o, self.name, self.stop_event)
        except MediaError as e:
            reason = str(e).removeprefix(f"{self.name}: {self.o.device!r}: ").removeprefix("cannot open: ")
            raise MediaError(f"{self._where()}: cannot open it: {reason}") from e

    def open(self) -> VideoInfo | None:
        """Opens the capture, takes its first frame and starts the grabber thread; None when the
        stop came while a network stream was opening (nothing is left open then)."""
        try:
            self.cap = self._open_capture()
        except Stopped:
            self.slot.close()
            return None
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            self.cap = None
            self.slot.close()
            if self.stop_event.is_set():
                return None
            raise MediaError(f"{self._where()}: opened but delivered no frame within read_timeout_s={self.o.read_timeout_s}")
        self._put(first)
        if isinstance(self.cap, StreamCapture):
            fps = self.cap.fps
        else:
            import cv2

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
        # close() ends a PyAV read or open in progress at once (no effect on OpenCV's calls).
        with abortable(self._halt):
            self._grab()

    def _grab(self) -> None:
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
            except Stopped:
                return False
            except MediaError as e:
                last = f"last: {str(e).removeprefix(self._where() + ': ')}"
                delay = min(delay * 2, self.o.max_backoff_s)
                continue
            self.reconnects += 1
            log.warning("%s: reopened (attempt %d)", self._where(), attempt)
            return True
        return False

    def next(self, timeout: float = 0.2):
        """(capture_time_us, array in ``frame_format``) of the newest frame, or None (none yet / closed)."""
        return self.slot.take(timeout)

    def image(self, array: np.ndarray, fmt: str) -> Image:
        """A grabbed array as an Image in ``fmt``."""
        if self.frame_format == "BGR":
            return bgr_to_image(array, fmt)
        return Image(array, self.frame_format).to(fmt)

    @property
    def finished(self) -> bool:
        return self.slot.closed

    def close(self) -> None:
        self._halt.set()
        if self.thread is not None:
            # A read returns within read_timeout_s (OpenCV's own timeout); PyAV's at once.
            self.thread.join(self.o.read_timeout_s + 2.0)
            if self.thread.is_alive():
                # Its capture is still in a call: releasing it under that call would be unsafe.
                log.error("%s: grabber thread did not stop within %.1f s", self._where(), self.o.read_timeout_s + 2.0)
                return
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
        device: index, device path, network stream URL or any other source OpenCV opens.
        size: requested [w, h] (a stream's frames are scaled to it). fps: requested rate.
        format: RGB | BGR | GRAY. backend: any | v4l2 | ffmpeg | ... fourcc: e.g. MJPG.
        A network stream (rtsp, tcp, http, udp, ...) is read with PyAV, so that a stop (Ctrl-C)
        ends its open or a read waiting for a silent peer within ~0.1 s: its backend is any or
        ffmpeg, and fps/fourcc (requests to a device) are refused.
        open_timeout_s / read_timeout_s: capture timeouts. reconnect (default true), max_reconnects,
        backoff_s, max_backoff_s: reopening a device that disappeared or stopped delivering, with
        backoff_s doubling up to max_backoff_s; each drop and reopen is logged. reconnect false:
        the end of the stream ends the run cleanly.
    Timestamps: capture time on the monotonic clock, in µs.
    Errors: a device that does not open (or opens but delivers nothing) fails in ``open``,
    naming the device; one that stays gone for max_reconnects consecutive reopen attempts fails
    the run, naming the device and the last failure.
    Note: there is no camera on the test machines; the tests drive OpenCV's capture with a video
    file, and the network path with a local ffmpeg stream and a peer that never answers.
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
        info = self.grabber.open()
        if info is not None:  # None: the run stopped while a network stream was opening
            set_side_output(ctx, "INFO", info)

    def process(self, ctx):
        while not ctx.stopping:
            item = self.grabber.next(0.2)
            if item is not None:
                t, array = item
                ctx.outputs["FRAMES"].add(self.grabber.image(array, ctx.options.format), t)
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
