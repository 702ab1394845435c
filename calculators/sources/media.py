"""MediaSource: one ``source`` for every kind of input; it picks the right reader itself.

What ``source`` is decides which of the built-in sources reads it (each keeps its own behaviour,
options and errors):

| ``source``                                             | read by        | live |
|--------------------------------------------------------|----------------|------|
| a camera index (``0``, ``"1"``) or a ``/dev/video*`` device | CameraSource (newest frame only) | yes |
| a stream URL (``rtsp://``, ``udp://``, ``http(s)://``, ...) | VideoSource (reconnects) | when it has no duration |
| an image file, a folder of images, a glob (``"shots/*.jpg"``) | ImageSource (name order) | no |
| anything else: a video file, ``sample:NAME``            | VideoSource    | no   |

The INFO side output (``VideoInfo``) says which: its ``live`` field is what a ``FlowLimiter``
given it as its INFO side input reads to drop frames for live sources and never for files.
PATH carries each image's file (images only), so sinks can name their outputs after their inputs.

Ports: FRAMES (Image) out; PATH (str, optional) out; INFO (VideoInfo) output side packet.
Timestamps: those of the chosen source (presentation times, capture times, or image i at
i / 30 s).

Example node:
    - calculator: MediaSource
      outputs: {FRAMES: frames, PATH: paths}
      side_outputs: {INFO: source_info}
      options: {source: $source, format: I420, pace: $pace, loop: $loop}
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from calculators.sources.camera import CameraSource, CameraSourceOptions
from calculators.sources.common import ChosenContext, VideoInfo, VideoOutputFormat, is_network_uri
from calculators.sources.images import IMAGE_EXTENSIONS, ImageSource, ImageSourceOptions
from calculators.sources.video import VideoSource, VideoSourceOptions
from calculators.types import Image
from pipeline import Calculator, Output, SideOutput, register

SourceKind = Literal["camera", "stream", "images", "video"]


def source_kind(source: int | str) -> SourceKind:
    """Which reader a ``source`` value needs (see the module's table)."""
    if isinstance(source, bool):
        raise ValueError(f"source {source!r} is neither a camera index nor a path or URL")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return "camera"
    text = str(source)
    if text.startswith("/dev/video"):
        return "camera"
    if is_network_uri(text):
        return "stream"
    if text.startswith(("sample:", "zoo:")):
        return "video"
    if any(ch in text for ch in "*?[") or os.path.isdir(text) or text.lower().endswith(IMAGE_EXTENSIONS):
        return "images"
    return "video"


class MediaSourceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: int | str = Field(description="a video file, sample:NAME, a stream URL, a camera index or device, "
                                          "an image file, a folder of images or a glob",
                              json_schema_extra={"file": "read"})
    format: VideoOutputFormat = Field(
        "RGB", description="pixel format of the frames; I420 (no conversion) where the decoder gives it: "
                           "video files and streams; cameras and images give RGB then")
    pace: Literal["fast", "realtime"] = Field(
        "fast", description="files and images: fast (as fast as the graph takes them) or realtime "
                            "(at the rate of their timestamps, as a live source would); live sources are realtime")
    loop: bool = Field(False, description="files and images: start again at the end, for ever")
    thread_type: Literal["auto", "frame", "slice"] = Field(
        "auto", description="video files and streams: the decoder's threading (VideoSource's thread_type)")
    threads: int = Field(0, ge=0, description="video files and streams: decoder threads (0: FFmpeg picks)")


@register
class MediaSource(Calculator):
    """Reads any ``source``: camera, stream URL, video file, image file, folder or glob of images.

    Ports:
        FRAMES (Image): the frames, in ``format``.
        PATH (str, optional): the file each frame came from (image sources only).
    Side outputs:
        INFO (VideoInfo): size, fps, frame count, and ``live`` (cameras, live streams).
    Options:
        source: what to read (its kind picks CameraSource, VideoSource or ImageSource).
        format: RGB | BGR | GRAY | I420 (I420 only for video files and streams; others give RGB).
        pace: fast | realtime (files and images). loop: repeat files and images for ever.
        thread_type: auto | frame | slice, the decoder's threading (video files and streams).
    Timestamps: those of the chosen source.
    Errors: those of the chosen source, naming the source (a missing file, a camera that does not
    open, a folder without images).
    Example:
        - calculator: MediaSource
          outputs: {FRAMES: frames, PATH: paths}
          side_outputs: {INFO: source_info}
          options: {source: "photos/*.jpg"}
    """

    inputs: dict = {}
    outputs = {"FRAMES": Output(Image, doc="frames from the source"),
               "PATH": Output(str, optional=True, doc="the image file of each frame (image sources)")}
    side_outputs = {"INFO": SideOutput(VideoInfo, doc="stream info, live or not; set in open")}
    Options = MediaSourceOptions
    timestamp_offset = None

    def open(self, ctx):
        o: MediaSourceOptions = ctx.options
        self.kind = source_kind(o.source)
        plain = o.format if o.format != "I420" else "RGB"
        if self.kind == "camera":
            device = int(o.source) if str(o.source).strip().isdigit() else str(o.source)
            inner, options = CameraSource(), CameraSourceOptions(device=device, format=plain)
        elif self.kind == "images":
            inner, options = ImageSource(), ImageSourceOptions(path=str(o.source), format=plain, pace=o.pace,
                                                               loop=o.loop)
        else:
            inner, options = VideoSource(), VideoSourceOptions(uri=str(o.source), format=o.format, pace=o.pace,
                                                               loop=o.loop, thread_type=o.thread_type,
                                                               threads=o.threads)
        self.inner, self.inner_ctx = inner, ChosenContext(ctx, options)
        self.path_open = self.kind == "images"
        inner.open(self.inner_ctx)

    def process(self, ctx):
        if not self.path_open:
            # Only images have files: PATH is closed at once, so that a consumer synced on it
            # (a writer naming its outputs) never waits for a path that will not come.
            ctx.outputs["PATH"].close()
            self.path_open = True
        return self.inner.process(self.inner_ctx)

    def close(self, ctx):
        inner = getattr(self, "inner", None)
        if inner is not None:
            inner.close(self.inner_ctx)
