"""MediaWriter: one ``output`` for every kind of result; the path says which writer writes it.

| ``path``                                   | written by  | gives |
|--------------------------------------------|-------------|-------|
| a folder (ends with ``/``, or exists)      | ImageWriter | one image per frame, named after its source image (PATH): ``out/IMG_0042.jpg`` for ``photos/IMG_0042.jpg``; frames without one (video) as ``frame_000000.png``, ... |
| an image file (``.png``, ``.jpg``, ...)    | ImageWriter | that image (one frame); with ``{index}``/``{name}``/... fields, a pattern |
| anything else (``.mp4``, ``.mkv``, ...)    | VideoWriter | a video file |

Missing folders are created. Each writer keeps its own behaviour and errors.

Ports: IMAGE (Image) in; PATH (str, optional) in: the source file of each frame (MediaSource's PATH).
Timestamps: consumes its inputs; emits nothing.

Example node:
    - calculator: MediaWriter
      inputs: {IMAGE: annotated, PATH: paths}
      options: {path: $output}
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from calculators.sinks.files import ImageWriter, ImageWriterOptions
from calculators.sinks.video_writer import VideoWriter, VideoWriterOptions
from calculators.sources.images import IMAGE_EXTENSIONS
from calculators.sources.common import ChosenContext
from calculators.types import Image
from pipeline import Calculator, Input, register

OutputKind = Literal["folder", "images", "video"]


def output_kind(path: str) -> OutputKind:
    """Which writer an output ``path`` needs (see the module's table)."""
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return "folder"
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return "images"
    return "video"


class MediaWriterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a folder (out/: one image per frame, named after its source image), an image "
                                  "file (x.png: one image) or a video file (x.mp4)",
                      json_schema_extra={"file": "write"})
    threads: int = Field(0, ge=0, description="a video file: encoder threads (0: FFmpeg picks)")


@register
class MediaWriter(Calculator):
    """Writes frames where ``path`` says: a folder of images, one image, or a video file.

    Ports:
        IMAGE (Image): the frames to write.
        PATH (str, optional): each frame's source file, which names it in a folder.
    Options:
        path: ``out/`` (a folder: images named after their sources), ``x.png`` (one image, or a
        pattern with ``{index}``, ``{name}``, ...), or ``x.mp4`` (a video). Folders are created.
    Errors: those of ImageWriter (a second frame for one image file) and VideoWriter.
    Example:
        - calculator: MediaWriter
          inputs: {IMAGE: annotated, PATH: paths}
          options: {path: out/}
    """

    inputs = {"IMAGE": Input(Image, doc="frames to write"),
              "PATH": Input(str, optional=True, doc="the source file of each frame")}
    outputs: dict = {}
    Options = MediaWriterOptions

    def open(self, ctx):
        path = ctx.options.path
        self.kind = output_kind(path)
        if self.kind == "folder":
            inner, options = ImageWriter(), ImageWriterOptions(pattern=os.path.join(path, "{name}"))
        elif self.kind == "images":
            inner, options = ImageWriter(), ImageWriterOptions(pattern=path)
        else:
            inner, options = VideoWriter(), VideoWriterOptions(path=path, threads=ctx.options.threads)
        self.inner, self.inner_ctx = inner, ChosenContext(ctx, options)
        inner.open(self.inner_ctx)

    def process(self, ctx):
        self.inner.process(self.inner_ctx)

    def close(self, ctx):
        inner = getattr(self, "inner", None)
        if inner is not None and hasattr(inner, "close"):
            inner.close(self.inner_ctx)
