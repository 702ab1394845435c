"""ImageSource: still images from a file, a glob pattern or a folder, as a stream of frames.

Ports: FRAMES (Image) out; PATH (str) optional out, the file each frame came from;
INFO (VideoInfo) output side packet.
Timestamps: image i (in name order) at round(i * 1e6 / rate) microseconds; with ``loop`` the
indices keep counting so timestamps keep increasing.

Example node:
    - calculator: ImageSource
      outputs: {FRAMES: frames, PATH: paths}
      options: {path: "photos/*.jpg", rate: 10}
"""

from __future__ import annotations

import glob
import os
import re
from typing import Literal

from pydantic import BaseModel, Field

from calculators.sources.common import (
    MediaError, OutputFormat, Pacer, VideoInfo, bgr_to_image, set_side_output,
)
from calculators.types import Image
from pipeline import STOP, Calculator, Output, SideOutput, register

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageSourceOptions(BaseModel):
    path: str = Field(description="an image file, a folder (its images) or a glob pattern",
                      json_schema_extra={"file": "read"})
    rate: float = Field(30.0, gt=0, description="images per second of timestamps")
    order: Literal["name", "natural"] = Field(
        "name", description="name: sorted by file name; natural: numbers compared as numbers (img2 < img10)")
    loop: bool = False
    format: OutputFormat = "RGB"
    pace: Literal["fast", "realtime"] = "fast"
    extensions: tuple[str, ...] = Field(IMAGE_EXTENSIONS, description="file name endings taken from a folder or glob")


def _natural_key(path: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", os.path.basename(path))]


def list_images(path: str, order: str = "name", extensions=IMAGE_EXTENSIONS) -> list[str]:
    """The image files ``path`` names, in the stated order; raises MediaError when there are none."""
    exts = tuple(e.lower() for e in extensions)
    if any(ch in path for ch in "*?["):
        files = [f for f in glob.glob(path) if os.path.isfile(f) and f.lower().endswith(exts)]
        what = f"the glob {path!r}"
    elif os.path.isdir(path):
        files = [os.path.join(path, f) for f in os.listdir(path)
                 if f.lower().endswith(exts) and os.path.isfile(os.path.join(path, f))]
        what = f"the folder {path!r}"
    elif os.path.isfile(path):
        return [path]
    else:
        parent = os.path.dirname(path) or "."
        why = "no such file or folder" if os.path.isdir(parent) else f"folder {parent!r} does not exist"
        raise MediaError(f"ImageSource: {path!r}: {why}")
    if not files:
        raise MediaError(f"ImageSource: {what} holds no image files ({', '.join(exts)})")
    key = _natural_key if order == "natural" else (lambda f: (os.path.basename(f), f))
    return sorted(files, key=key)


def read_image(path: str, gray: bool = False):
    """The file as an 8-bit BGR array (or GRAY with ``gray``), decoded by OpenCV, which also
    drops alpha, scales 16-bit images to 8 bits and applies EXIF orientation; MediaError naming
    the file when it cannot."""
    import cv2
    import numpy as np

    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise MediaError(f"ImageSource: cannot read {path!r}: {e.strerror or e}") from e
    img = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) if raw.size else None
    if img is None:
        raise MediaError(f"ImageSource: {path!r} is not an image OpenCV can decode (empty, corrupt or unknown format)")
    return img


@register
class ImageSource(Calculator):
    """Still images from a file, a folder or a glob, sorted by name, at a given rate.

    Ports:
        FRAMES (Image): each image in ``format`` (RGB by default).
        PATH (str, optional): the file the image came from.
    Side outputs:
        INFO (VideoInfo): the first image's size, the rate and the number of images.
    Options:
        path: file, folder or glob. rate: images per second of timestamps (default 30).
        order: name (default) | natural. loop: repeat the list. format: RGB | BGR | GRAY.
        pace: fast | realtime. extensions: the endings taken from folders and globs.
    Timestamps: image i at round(i * 1e6 / rate) µs.
    Files: any OpenCV decodes; 16-bit images are scaled to 8 bits, alpha is dropped and EXIF
    orientation applied.
    Errors: a path that names nothing, a folder without images, and a file that does not decode
    are errors naming the path.
    Example:
        - calculator: ImageSource
          outputs: {FRAMES: frames}
          options: {path: dataset/images, order: natural, rate: 5}
    """

    inputs: dict = {}
    outputs = {"FRAMES": Output(Image), "PATH": Output(str, optional=True, doc="source file of each frame")}
    side_outputs = {"INFO": SideOutput(VideoInfo)}
    Options = ImageSourceOptions
    timestamp_offset = None

    def open(self, ctx):
        o = ctx.options
        self.files = list_images(o.path, o.order, o.extensions)
        self.gray = o.format == "GRAY"
        first = read_image(self.files[0], self.gray)
        self.index = 0
        self.pacer = Pacer(ctx.stop_event) if o.pace == "realtime" else None
        set_side_output(ctx, "INFO", VideoInfo(
            uri=o.path, width=first.shape[1], height=first.shape[0], fps=o.rate, codec=None,
            frame_count=len(self.files), duration_s=len(self.files) / o.rate, live=False, pixel_format=o.format,
        ))

    def process(self, ctx):
        o = ctx.options
        n = len(self.files)
        if ctx.stopping or (self.index >= n and not o.loop):
            return STOP
        path = self.files[self.index % n]
        t = int(round(self.index * 1_000_000 / o.rate))
        if self.pacer is not None and not self.pacer.wait(t):
            return STOP
        ctx.outputs["FRAMES"].add(bgr_to_image(read_image(path, self.gray), o.format), t)
        ctx.outputs["PATH"].add(path, t)  # a no-op when PATH is not connected
        self.index += 1
        return None
