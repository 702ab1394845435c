"""VideoWriter: encodes frames to a video file with PyAV (H.264 by default).

The frames' timestamps become the file's presentation times (a microsecond time base), so
variable frame rates and gaps survive. ``close`` always flushes the encoder and closes the
container, so the file is playable after a normal end, an error elsewhere, a cancel or Ctrl-C.

Ports: IMAGE (Image) in. Nothing out.
Timestamps: pts = the packet's timestamp (µs); the first frame may start at any time.

Example node:
    - calculator: VideoWriter
      inputs: {IMAGE: annotated}
      options: {path: out/annotated.mp4, crf: 20, preset: veryfast}
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import numpy as np
from pydantic import BaseModel, Field

from calculators.sources.common import AV_FORMATS, MediaError
from calculators.types import Image
from pipeline import Calculator, Input, register

log = logging.getLogger("vpipe.sinks.video")

MICROSECONDS = Fraction(1, 1_000_000)
# Tried in order by codec: auto. mpeg4 is FFmpeg's own encoder and is always built in.
AUTO_CODECS = ("libx264", "libopenh264", "h264", "mpeg4")
SHORT_TIME_BASE = ("mpeg4", "h263", "h263p", "msmpeg4", "msmpeg4v2", "flv")


class VideoWriterOptions(BaseModel):
    path: str = Field(description="output file; the container comes from the extension (.mp4, .mkv, .mov, .avi, .ts)",
                      json_schema_extra={"file": "write"})
    codec: str = Field("auto", description="auto: libx264, else libopenh264, else mpeg4 (logged); or any FFmpeg encoder name")
    crf: int | None = Field(23, ge=0, le=63, description="constant quality (x264: 0 lossless .. 51); ignored when bitrate is set")
    bitrate: int | None = Field(None, gt=0, description="target bits per second (instead of crf)")
    preset: str | None = Field("veryfast", description="x264 speed/size preset (ultrafast .. veryslow)")
    fps: float = Field(30.0, gt=0, description="nominal rate stored in the header; timestamps decide the real timing")
    pix_fmt: str = Field("yuv420p", description="encoder pixel format (yuv420p plays everywhere)")
    gop: int | None = Field(None, gt=0, description="keyframe interval in frames")
    threads: int = Field(0, ge=0, description="encoder threads (0: FFmpeg picks)")
    fragmented: bool = Field(False, description="MP4 fragments: a file killed with SIGKILL still plays up to the last fragment")
    codec_options: dict[str, str] = Field(default_factory=dict, description="extra encoder options")
    make_dirs: bool = Field(True, description="create the file's folder when missing")


def check_writable(path: str, who: str, make_dirs: bool = False) -> None:
    """Fails now, naming the path and why, when ``path`` cannot be created or written; with
    ``make_dirs`` its missing folders are created first."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MediaError(f"{who}: cannot write {path!r}: it is a directory")
    if make_dirs and not os.path.exists(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise MediaError(f"{who}: cannot create folder {parent!r}: {e.strerror or e}") from e
    if not os.path.isdir(parent):
        why = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise MediaError(f"{who}: cannot write {path!r}: folder {parent!r} {why}")
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        raise MediaError(f"{who}: cannot write {path!r}: {e.strerror or e}") from e
    if not existed:
        os.unlink(path)


def pick_codec(requested: str) -> str:
    import av

    if requested != "auto":
        try:
            av.codec.Codec(requested, "w")
        except Exception as e:
            raise MediaError(f"VideoWriter: FFmpeg has no encoder {requested!r} ({e}); use codec: auto") from e
        return requested
    for name in AUTO_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:
            continue
        if name != AUTO_CODECS[0]:
            log.warning("VideoWriter: libx264 is not available in this FFmpeg build; encoding with %s", name)
        return name
    raise MediaError("VideoWriter: no H.264 or MPEG-4 encoder in this FFmpeg build")


class VideoFileWriter:
    """Encodes Images with their timestamps into one file; no graph involved.

    The container is created at the first frame (its size fixes the stream's size); later
    frames of another size are scaled to it. ``close`` flushes and finalizes, and is safe to
    call more than once.
    """

    def __init__(self, options: VideoWriterOptions, who: str = "VideoWriter") -> None:
        self.o = options
        self.who = who
        check_writable(options.path, who, options.make_dirs)
        self.codec = pick_codec(options.codec)
        self._check_pix_fmt()
        self.container = None
        self.stream = None
        self.frames = 0
        self.last_ts: int | None = None
        self._warned_resize = False

    def _check_pix_fmt(self) -> None:
        """An unknown pixel format, or one the encoder does not take, fails here (before any
        frame) naming the ones it takes."""
        import av

        try:
            av.VideoFormat(self.o.pix_fmt)
        except ValueError:
            raise MediaError(f"{self.who}: pix_fmt {self.o.pix_fmt!r} is not a pixel format FFmpeg knows "
                             f"(e.g. yuv420p, yuv444p, nv12)") from None
        codec = av.codec.Codec(self.codec, "w")
        takes = [f.name for f in (codec.video_formats or ())]
        if takes and self.o.pix_fmt not in takes:
            raise MediaError(f"{self.who}: encoder {self.codec} does not take pix_fmt {self.o.pix_fmt!r}; "
                             f"it takes {', '.join(takes)}")

    def _start(self, width: int, height: int) -> None:
        import av

        o = self.o
        # Fragments at each keyframe, each flushed to disk as it is written (flush_packets), so a
        # killed process leaves a file that plays up to its last fragment; delay_moov writes the
        # header after the first fragment so the encoder delay (B-frames) gets its edit list and
        # timestamps start where the frames did.
        opts = ({"movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof", "flush_packets": "1"}
                if o.fragmented else {})
        try:
            self.container = av.open(o.path, mode="w", options=opts)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise MediaError(f"{self.who}: cannot create {o.path!r}: {e}") from e
        rate = Fraction(o.fps).limit_denominator(1001)
        s = self.container.add_stream(self.codec, rate=rate)
        s.width, s.height = width, height
        s.pix_fmt = o.pix_fmt
        s.time_base = MICROSECONDS
        # MPEG-4 part 2 stores the time base in 16 bits: 1/60000 s is the finest it takes
        # (PyAV rescales the µs pts; 30, 60, 25 and 50 fps stay exact).
        s.codec_context.time_base = Fraction(1, 60000) if self.codec in SHORT_TIME_BASE else MICROSECONDS
        s.codec_context.thread_count = o.threads
        if o.gop:
            s.codec_context.gop_size = o.gop
        codec_opts = dict(o.codec_options)
        if o.bitrate:
            s.bit_rate = o.bitrate
        elif o.crf is not None and self.codec in ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"):
            codec_opts.setdefault("crf", str(o.crf))
        elif o.crf is not None and self.codec == "mpeg4":
            # mpeg4 has no crf: a fixed quantiser scale stands in (2 best .. 31 worst).
            s.codec_context.qmin = s.codec_context.qmax = max(2, min(31, 2 + o.crf * 29 // 51))
        if o.preset and self.codec in ("libx264", "libx265"):
            codec_opts.setdefault("preset", o.preset)
        s.options = codec_opts
        self.stream = s

    def write(self, image: Image, timestamp_us: int) -> None:
        import av

        if self.stream is None:
            w, h = image.width, image.height
            if self.o.pix_fmt in ("yuv420p", "nv12", "yuvj420p") and (w % 2 or h % 2):
                w, h = w + w % 2, h + h % 2
                log.warning("%s: %s needs even sizes; frames of %dx%d are scaled to %dx%d",
                            self.who, self.o.pix_fmt, image.width, image.height, w, h)
            self._start(w, h)
        if self.last_ts is not None and timestamp_us <= self.last_ts:
            raise MediaError(f"{self.who}: timestamp {timestamp_us} is not after the previous one {self.last_ts}")
        frame = video_frame(image, self.o.pix_fmt)
        if (frame.width, frame.height) != (self.stream.width, self.stream.height):
            if not self._warned_resize and (image.width, image.height) != (self.stream.width - self.stream.width % 2,
                                                                           self.stream.height - self.stream.height % 2):
                log.warning("%s: frame size changed to %dx%d at %d µs; scaled to %dx%d", self.who,
                            image.width, image.height, timestamp_us, self.stream.width, self.stream.height)
                self._warned_resize = True
            frame = frame.reformat(width=self.stream.width, height=self.stream.height)
        frame.pts = int(timestamp_us)
        frame.time_base = MICROSECONDS
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise MediaError(f"{self.who}: writing {self.o.path!r} failed at {timestamp_us} µs: {e}") from e
        self.frames += 1
        self.last_ts = int(timestamp_us)

    def close(self) -> None:
        """Flushes the encoder and writes the trailer; the file is complete afterwards."""
        import av

        if self.container is None:
            return
        container, self.container = self.container, None
        try:
            for packet in self.stream.encode(None):
                container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            log.error("%s: flushing %r failed: %s", self.who, self.o.path, e)
            raise
        finally:
            container.close()
        log.info("%s: wrote %d frames to %s", self.who, self.frames, self.o.path)


def video_frame(image: Image, pix_fmt: str = "yuv420p"):
    """A PyAV ``VideoFrame`` of ``image`` for an encoder taking ``pix_fmt``.

    I420 images are wrapped as they are (yuv420p). Packed RGB/BGR(A) images bound for a yuv420p
    encoder are converted with OpenCV (same BT.601 limited-range matrix as FFmpeg, several times
    faster than the encoder's own swscale conversion on this kind of machine); anything else is left
    to the encoder.
    """
    import av

    data, fmt = image.data, image.format
    if pix_fmt == "yuv420p" and fmt in ("RGB", "BGR", "RGBA", "BGRA") and not (image.width % 2 or image.height % 2):
        data, fmt = image.to("I420").data, "I420"
    if fmt == "I420" and data.flags.c_contiguous:
        # The encoder reads the planes where they are: no copy (payloads are never written to after
        # they are sent; FFmpeg holds a reference to the array until it is done with the frame).
        return av.VideoFrame.from_numpy_buffer(data, format="yuv420p")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(data), format=AV_FORMATS[fmt])


@register
class VideoWriter(Calculator):
    """Writes frames to a video file (PyAV; H.264 via libx264, mpeg4 where no H.264 encoder exists).

    Ports:
        IMAGE (Image): frames to encode (RGB, BGR, GRAY, RGBA, BGRA or I420). I420 frames go to a
        yuv420p encoder as they are; packed RGB/BGR frames are converted with OpenCV.
    Options:
        path: output file (container from the extension). codec: auto | FFmpeg encoder name.
        crf (default 23) or bitrate; preset (default veryfast); fps: nominal header rate;
        pix_fmt (default yuv420p); gop; threads; fragmented (MP4 that survives SIGKILL);
        codec_options: extra encoder options. make_dirs (default true): create missing folders.
    Timestamps: each frame's pts is its packet timestamp in µs (variable frame rate is kept).
    Finalization: ``close`` flushes the encoder and closes the file after a normal end, an
    error elsewhere in the graph, cancel and Ctrl-C; every frame received is in the file.
    Errors: an output folder that does not exist or cannot be written fails in ``open``.
    Example:
        - calculator: VideoWriter
          inputs: {IMAGE: annotated}
          options: {path: out/result.mp4, crf: 18, preset: medium}
    """

    inputs = {"IMAGE": Input(Image, doc="frames to encode")}
    outputs: dict = {}
    Options = VideoWriterOptions

    def open(self, ctx):
        self.writer = VideoFileWriter(ctx.options, who=f"{ctx.calculator} {ctx.node!r}")

    def process(self, ctx):
        image = ctx.get("IMAGE")
        if image is not None:
            self.writer.write(image, ctx.timestamp)

    def close(self, ctx):
        if getattr(self, "writer", None) is not None:
            self.writer.close()
