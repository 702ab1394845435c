"""VideoSource: decodes a video file or a network stream (anything FFmpeg opens) with PyAV.

Ports: FRAMES (Image) out; INFO (VideoInfo) output side packet, set in ``open``.
Timestamps: each frame's presentation time in microseconds (pts x time_base), strictly
increasing. Where the stream restarts (a loop, a reconnect) or its pts go backwards, the
timestamps are shifted to follow on from the last one emitted, one frame interval later.

Example node:
    - calculator: VideoSource
      outputs: {FRAMES: frames}
      side_outputs: {INFO: video_info}
      options: {uri: $source, pace: realtime, loop: true}
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Iterator, Literal

import numpy as np
from pydantic import BaseModel, Field

from calculators.sources.av_interrupt import abortable
from calculators.sources.common import (
    AV_FORMATS, FastGilSwitch, MediaError, MonotonicTimestamps, Pacer, VideoInfo, VideoOutputFormat, is_network_uri,
    set_side_output,
)
from calculators.types import Image
from pipeline import STOP, Calculator, Output, SideOutput, register

log = logging.getLogger("vpipe.sources.video")


class VideoSourceOptions(BaseModel):
    uri: str = Field(description="a file path, a URL (rtsp://, http(s)://, udp://, tcp://, srt://, ...) "
                                 "or a catalog sample (sample:carphone)", json_schema_extra={"file": "read"})
    start_s: float | None = Field(None, ge=0, description="skip frames before this presentation time")
    stop_s: float | None = Field(None, gt=0, description="stop at this presentation time (exclusive)")
    loop: bool | int = Field(False, description="true: repeat forever; an int n >= 1: play n times in all")
    pace: Literal["fast", "realtime"] = Field(
        "fast", description="fast: as fast as the graph takes frames; realtime: at the rate of the timestamps")
    threads: int = Field(0, ge=0, description="decoder threads (0: FFmpeg picks)")
    thread_type: Literal["auto", "frame", "slice"] = Field(
        "auto", description="how the decoder uses its threads: auto (FFmpeg's choice: frame threads where the "
                            "codec has them, the fastest decode alone), frame, or slice (no frame threads: "
                            "~1/3 less CPU per frame, for graphs whose other stages need the other cores)")
    format: VideoOutputFormat = Field("RGB", description="pixel format of the output images")
    size: tuple[int, int] | None = Field(None, description="scale frames to (width, height) while converting")
    stream_index: int = Field(0, ge=0, description="which video stream of the container")
    open_timeout_s: float = Field(10.0, gt=0, description="give up opening after this long")
    read_timeout_s: float = Field(5.0, gt=0, description="a read that waits longer than this fails (network: reconnect)")
    reconnect: Literal["auto", "never", "on_error", "always"] = Field(
        "auto", description="auto: files never; http(s) on read errors; other network streams on errors and end of stream")
    max_reconnects: int | None = Field(None, ge=0, description="consecutive failed reconnects before giving up; null: never give up")
    backoff_s: float = Field(0.5, gt=0, description="first wait before reconnecting; doubled on each failure")
    max_backoff_s: float = Field(5.0, gt=0)
    strict: bool = Field(False, description="a truncated or corrupt file is an error instead of a warning")
    av_options: dict[str, str] = Field(default_factory=dict, description="FFmpeg format options, e.g. {rtsp_transport: tcp}")


class Stopped(Exception):
    """The run stopped while the reader waited for the network (not an error)."""


def _to_us(pts: int, time_base) -> int:
    num, den = time_base.numerator, time_base.denominator
    return (pts * num * 1_000_000 + den // 2) // den


def _describe(exc: BaseException, read_timeout_s: float | None = None) -> str:
    import av

    if isinstance(exc, av.error.ExitError) and read_timeout_s is not None:
        # FFmpeg's words for "the timeout callback gave up" are "Immediate exit requested".
        return f"no data within read_timeout_s={read_timeout_s:g}"
    text = str(exc) or type(exc).__name__
    return text


_ISO_BMFF = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pdin", b"moof", b"mfra")


def _mp4_boxes(path: str, size: int) -> list[bytes] | None:
    """The types of an MP4/MOV file's top-level boxes, or None when it is not one."""
    types = []
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size and len(types) < 10_000:
            f.seek(pos)
            head = f.read(16)
            box_size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if not types and kind not in _ISO_BMFF:
                return None
            types.append(kind)
            if box_size == 1 and len(head) == 16:
                box_size = int.from_bytes(head[8:16], "big")
            elif box_size == 0:  # the box runs to the end of the file
                break
            if box_size < 8:
                break
            pos += box_size
    return types or None


def unreadable_file_reason(path: str) -> str | None:
    """Why a local file FFmpeg refused is not a video, in words; None when it cannot tell."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "the file is empty (0 bytes)"
        boxes = _mp4_boxes(path, size)
    except OSError:
        return None
    if boxes is not None and b"moov" not in boxes and b"moof" not in boxes:
        if b"mdat" in boxes:
            return ("an MP4 whose index (its 'moov' box) is missing: the recording was cut short before it was "
                    "finalized; record to MKV or fragmented MP4 to survive that, or repair it with an MP4 repair tool")
        return "an MP4 that ends before its index and its media data: the file is cut short"
    return None


class VideoReader:
    """Decodes one video stream into (timestamp_us, ndarray) pairs; no graph involved.

    Handles start/stop times, loops, strictly increasing timestamps and reconnects with
    backoff for network streams. ``stop_event`` ends ``frames()`` between frames and cuts
    reconnect waits short.
    """

    def __init__(self, options: VideoSourceOptions, *, name: str = "VideoSource",
                 stop_event: threading.Event | None = None) -> None:
        self.o = options
        self.name = name
        self.stop_event = stop_event or threading.Event()
        self._size: tuple[int, int] | None = None  # (w, h) frames are scaled to, set in open
        self._fast_switch = False  # holds FastGilSwitch from open to close
        self.uri = options.uri
        if self.uri.startswith(("sample:", "zoo:")):
            # A catalog name (the sample videos): resolved to the verified cached file.
            from models.catalog import resolve

            self.uri = str(resolve(self.uri))
        self.network = is_network_uri(self.uri)
        mode = options.reconnect
        if mode == "auto":
            mode = "never" if not self.network else (
                "on_error" if self.uri.lower().startswith(("http://", "https://")) else "always")
        self.reconnect_mode = mode
        self.container = None
        self.stream = None
        self.info: VideoInfo | None = None
        self.frames_out = 0
        self.reconnects = 0
        self.stopped_early: str | None = None  # why a file ended before its last frame

    # -- opening -------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.name}: {self.uri!r}"

    def _open_container(self):
        import av

        if not self.network and "://" not in self.uri:
            if not os.path.exists(self.uri):
                raise MediaError(f"{self._where()}: no such file")
            if os.path.isdir(self.uri):
                raise MediaError(f"{self._where()}: is a directory, not a video file")
            if not os.access(self.uri, os.R_OK):
                raise MediaError(f"{self._where()}: permission denied")
        t0 = time.monotonic()
        if self.stop_event.is_set():
            raise Stopped(f"{self._where()}: stopped before opening")
        try:
            with abortable(self.stop_event):  # a stop ends the open at FFmpeg's next poll
                container = av.open(self.uri, mode="r", options=dict(self.o.av_options),
                                    timeout=(self.o.open_timeout_s, self.o.read_timeout_s))
        except av.error.ExitError as e:
            if self.stop_event.is_set():
                raise Stopped(f"{self._where()}: stopped while opening") from e
            raise MediaError(f"{self._where()}: no answer within open_timeout_s={self.o.open_timeout_s}") from e
        except av.error.ProtocolNotFoundError as e:
            scheme = self.uri.partition("://")[0].lower()
            others = ", ".join(f"{p}://" for p in ("rtsp", "http(s)", "udp", "tcp", "rtmp") if not p.startswith(scheme))
            raise MediaError(
                f"{self._where()}: unsupported URL scheme {scheme!r}: the FFmpeg inside PyAV was built without "
                f"the {scheme} protocol; use a file path or another protocol ({others}), or a PyAV built "
                f"with {scheme}") from e
        except (av.error.FFmpegError, OSError) as e:
            if isinstance(e, av.error.FFmpegError) and time.monotonic() - t0 >= self.o.open_timeout_s:
                # The timeout cut a read short and the demuxer reported that as its own error
                # (rtsp: "Invalid data found"): say what happened.
                raise MediaError(f"{self._where()}: no answer within open_timeout_s={self.o.open_timeout_s} "
                                 f"(FFmpeg: {_describe(e)})") from e
            reason = None if self.network or "://" in self.uri else unreadable_file_reason(self.uri)
            if reason is None and isinstance(e, av.error.InvalidDataError):
                reason = f"not a video file FFmpeg can read ({e.strerror or 'invalid data'})"
            raise MediaError(f"{self._where()}: {reason or 'cannot open: ' + _describe(e)}") from e
        videos = container.streams.video
        if len(videos) <= self.o.stream_index:
            others = [f"{len(group)} {kind} stream{'s' if len(group) > 1 else ''}" for kind, group in (
                ("audio", container.streams.audio), ("subtitle", container.streams.subtitles),
                ("data", container.streams.data)) if group]
            holds = f"; it holds {' and '.join(others)}" if others else ""
            container.close()
            if not videos:
                raise MediaError(f"{self._where()}: the file has no video stream{holds}")
            raise MediaError(f"{self._where()}: only {len(videos)} video stream(s) (stream_index={self.o.stream_index})")
        stream = videos[self.o.stream_index]
        stream.thread_type = self.o.thread_type.upper()
        stream.codec_context.thread_count = self.o.threads
        return container, stream

    def open(self) -> VideoInfo:
        self.container, self.stream = self._open_container()
        if not self._fast_switch:  # the decoder gets the GIL back within 0.5 ms (common.FastGilSwitch)
            FastGilSwitch.acquire()
            self._fast_switch = True
        s = self.stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else None
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif self.container.duration is not None:
            duration = self.container.duration / 1e6
        self._size = tuple(self.o.size) if self.o.size else None
        width, height = (self.o.size if self.o.size else (s.codec_context.width, s.codec_context.height))
        if self.o.format == "I420" and (width % 2 or height % 2):
            # 4:2:0 needs even sizes: scale by the missing pixel, as VideoWriter does for its encoder.
            log.warning("%s: format I420 needs an even width and height; frames of %dx%d are scaled to %dx%d",
                        self._where(), width, height, width + width % 2, height + height % 2)
            width, height = width + width % 2, height + height % 2
            self._size = (width, height)
        self.info = VideoInfo(
            uri=self.uri, width=int(width), height=int(height), fps=fps,
            codec=s.codec_context.name, frame_count=int(s.frames) or None, duration_s=duration,
            live=self.network and duration is None, pixel_format=self.o.format,
        )
        self.timestamps = MonotonicTimestamps(int(1e6 / fps) if fps else 33_333)
        return self.info

    def close(self) -> None:
        if self._fast_switch:
            self._fast_switch = False
            FastGilSwitch.release()
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None

    # -- decoding ------------------------------------------------------------------------
    def _seek_start(self) -> None:
        if self.o.start_s:
            self.container.seek(int(self.o.start_s * 1_000_000))

    def _segment(self) -> Iterator[tuple[int, object]]:
        """Raw (pts_us, frame) of one pass over the open container; raises on read errors."""
        import av

        last = None
        demux = self.container.demux(self.stream)
        while True:
            with abortable(self.stop_event):  # a stop ends a blocked network read at once
                packet = next(demux, None)
            if packet is None:
                return
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError as e:
                log.warning("%s: skipping a corrupt packet at %s: %s", self._where(),
                            "?" if packet.pts is None else f"{_to_us(packet.pts, packet.time_base) / 1e6:.3f} s", e)
                continue
            for frame in decoded:
                if frame.pts is not None:
                    t = _to_us(frame.pts, frame.time_base)
                elif last is not None:
                    t = last + self.timestamps.interval_us
                else:
                    t = 0
                last = t
                yield t, frame
            if self.stop_event.is_set():
                return

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Decoded frames as (timestamp_us, array in the output format), until the end or a stop."""
        try:
            yield from self._frames()
        except Stopped:  # a stop while reopening or reconnecting
            return

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        import av

        if self.container is None:
            self.open()
        fmt = AV_FORMATS[self.o.format]
        size = dict(width=self._size[0], height=self._size[1]) if self._size else {}
        start_us = None if self.o.start_s is None else int(self.o.start_s * 1_000_000)
        stop_us = None if self.o.stop_s is None else int(self.o.stop_s * 1_000_000)
        plays = 0
        loop = self.o.loop
        max_plays = None if loop is True else (1 if loop is False or loop == 0 else int(loop))
        failures = 0
        self._seek_start()
        while not self.stop_event.is_set():
            plays += 1
            segment_frames = 0
            error: BaseException | None = None
            ended_by_stop = False
            try:
                for raw, frame in self._segment():
                    if start_us is not None and raw < start_us:
                        continue
                    if stop_us is not None and raw >= stop_us:
                        ended_by_stop = True
                        break
                    t = self.timestamps(raw)
                    data = frame.to_ndarray(format=fmt, **size)
                    segment_frames += 1
                    self.frames_out += 1
                    failures = 0
                    yield t, data
                    if self.stop_event.is_set():
                        return
            except (av.error.FFmpegError, OSError) as e:
                error = e
            if self.stop_event.is_set():
                return
            # Where did this pass end, and what comes next?
            if self.network and self.reconnect_mode != "never" and (
                    error is not None or (self.reconnect_mode == "always" and not ended_by_stop)):
                why = f"read failed: {_describe(error, self.o.read_timeout_s)}" if error is not None else "end of stream"
                if not self._reconnect(why, failures):
                    if self.stop_event.is_set():
                        return
                    raise MediaError(f"{self._where()}: stream lost ({why}); gave up after "
                                     f"max_reconnects={self.o.max_reconnects} attempts ({self._last_failure})") from error
                failures = 0
                continue
            if error is not None:
                where = self._position()
                msg = f"{self._where()}: stopped at {where}: {_describe(error, self.o.read_timeout_s)}"
                if self.o.strict or (self.frames_out == 0 and not self.network):
                    raise MediaError(msg) from error
                if self.network:
                    raise MediaError(msg) from error
                self.stopped_early = msg
                log.warning("%s (yielded %d frames)", msg, self.frames_out)
                return
            self._check_truncated(segment_frames, start_us, stop_us)
            if max_plays is not None and plays >= max_plays:
                return
            if segment_frames == 0:
                return  # nothing in range: looping would spin
            try:
                self.container.seek(start_us or 0)
            except (av.error.FFmpegError, OSError):
                # Not seekable (a pipe, a live file): reopen instead.
                self.close()
                self.container, self.stream = self._open_container()
                self._seek_start()
            self.timestamps.rebase()

    def _position(self) -> str:
        last = self.timestamps.last
        return (f"{last / 1e6:.3f} s (after frame {self.frames_out})" if last is not None
                else "the start (no frame decoded)")

    def _check_truncated(self, n: int, start_us, stop_us) -> None:
        expected = self.info.frame_count if self.info else None
        if expected and start_us is None and stop_us is None and n < expected and not self.network:
            msg = (f"{self._where()}: file ends early at {self._position()}: decoded {n} of the "
                   f"{expected} frames its header announces (truncated?)")
            if self.o.strict:
                raise MediaError(msg)
            self.stopped_early = msg
            log.warning(msg)

    def _reconnect(self, why: str, _failures: int) -> bool:
        """Closes and reopens the stream with backoff; False when stopping or out of attempts."""
        self.close()
        attempt = 0
        delay = self.o.backoff_s
        self._last_failure = "no attempt made"
        while not self.stop_event.is_set():
            attempt += 1
            if self.o.max_reconnects is not None and attempt > self.o.max_reconnects:
                log.error("%s: %s; giving up after %d reconnect attempts", self._where(), why, attempt - 1)
                return False
            log.warning("%s: %s; reconnecting in %.3g s (attempt %d)", self._where(), why, delay, attempt)
            if self.stop_event.wait(delay):
                return False
            try:
                self.container, self.stream = self._open_container()
            except MediaError as e:
                self._last_failure = f"last: {e.__cause__ or e}"
                why = f"reconnect failed: {e.__cause__ or e}"
                delay = min(delay * 2, self.o.max_backoff_s)
                continue
            self.reconnects += 1
            self.timestamps.rebase()
            log.warning("%s: reconnected (attempt %d)", self._where(), attempt)
            return True
        return False


@register
class VideoSource(Calculator):
    """Decodes a video file or network stream with PyAV (FFmpeg).

    Ports:
        FRAMES (Image): decoded frames in ``format`` (RGB by default).
    Side outputs:
        INFO (VideoInfo): width, height, fps, codec, frame count (None when unknown), duration,
        live or not; set in ``open`` before any frame.
    Options:
        uri: file path or URL (rtsp, http(s), udp, tcp, srt, rtmp: whatever FFmpeg opens).
        start_s / stop_s: presentation-time window (stop exclusive).
        loop: true repeats forever, n plays n times (timestamps keep increasing).
        pace: fast (default) or realtime (a file used as live input).
        threads: decoder threads (0: auto). thread_type: auto | frame | slice (slice: no frame
        threads, the least CPU per frame, for graphs whose other stages need the other cores; a
        stream coded in one slice then decodes on one thread). format: RGB | BGR | GRAY | I420 (the decoder's planar
        YUV 4:2:0 with no conversion at all: the fastest path to ``ImageToTensor``, ``Annotate``
        and ``VideoWriter``, which all take it natively; a video of odd width or height is scaled
        by one pixel to even, with a warning). size: [w, h] to scale.
        open_timeout_s / read_timeout_s: no read blocks longer (PyAV ``timeout=``).
        reconnect: auto | never | on_error | always, with backoff_s doubling up to max_backoff_s
        and max_reconnects consecutive attempts (null: forever); each drop and reconnect is logged.
        strict: a truncated/corrupt file raises instead of warning. av_options: FFmpeg options.
    Timestamps: presentation times in µs, strictly increasing (shifted after loops/reconnects).
    GIL: while a video is open the process's switch interval (``sys.setswitchinterval``) is at most
    0.5 ms, so that the decoder, which needs the GIL after each native call, is not held off 5 ms
    each time by a thread running Python; the last reader to close puts the old value back.
    Errors: a missing file, an unsupported URL scheme, a file with no video stream or that FFmpeg
    cannot read fail in ``open`` naming the path and the cause; a truncated file yields the
    frames it has and logs where it stopped.
    Example:
        - calculator: VideoSource
          outputs: {FRAMES: frames}
          options: {uri: "rtsp://127.0.0.1:8554/cam", av_options: {rtsp_transport: tcp}}
    """

    inputs: dict = {}
    outputs = {"FRAMES": Output(Image, doc="decoded frames")}
    side_outputs = {"INFO": SideOutput(VideoInfo, doc="stream info, set in open")}
    Options = VideoSourceOptions
    timestamp_offset = None

    def open(self, ctx):
        self.reader = VideoReader(ctx.options, name=f"{ctx.calculator} {ctx.node!r}",
                                  stop_event=ctx.stop_event)
        self.iter = None
        try:
            info = self.reader.open()
        except Stopped:  # the run was stopped while a network stream was opening
            return
        set_side_output(ctx, "INFO", info)
        self.pacer = Pacer(self.reader.stop_event) if ctx.options.pace == "realtime" else None
        self.iter = self.reader.frames()
        self.format = ctx.options.format

    def process(self, ctx):
        if ctx.stopping or self.iter is None:
            return STOP
        item = next(self.iter, None)
        if item is None:
            return STOP
        t, data = item
        if self.pacer is not None and not self.pacer.wait(t):
            return STOP
        ctx.outputs["FRAMES"].add(Image(data, self.format), t)
        return None

    def close(self, ctx):
        it = getattr(self, "iter", None)
        if it is not None:
            it.close()
        if getattr(self, "reader", None) is not None:
            self.reader.close()
