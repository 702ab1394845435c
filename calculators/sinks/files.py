"""ImageWriter and JsonlWriter: per-timestamp files and JSON lines.

ImageWriter — Ports: IMAGE (Image) in, PATH (str, optional) in. Writes one image file per
timestamp, named by a pattern with ``{index}`` (0, 1, ...), ``{timestamp}`` (µs), and ``{name}`` /
``{stem}``: the file name (and name without extension) of the frame's source image, from PATH; a
pattern without a field is one image file.
JsonlWriter — Ports: IN (any JSON-able value, or Detections) in, PATH (str, optional) in. Writes
one line per timestamp, ``{"timestamp_us": t, "path": source image, KEY: value}``, flushed per line
so a reader can tail it.
Timestamps: both keep their input's timestamps; neither emits packets.

Example nodes:
    - calculator: ImageWriter
      inputs: {IMAGE: annotated}
      options: {pattern: "out/frame_{index:06d}.jpg", quality: 90}
    - calculator: JsonlWriter
      inputs: {IN: detections}
      options: {path: out/detections.jsonl}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any as TypingAny

import numpy as np
from pydantic import BaseModel, Field

from calculators.sinks.video_writer import check_writable
from calculators.sources.common import MediaError, image_to_bgr
from calculators.types import Detections, Image
from pipeline import Any, Calculator, Input, register


class ImageWriterOptions(BaseModel):
    pattern: str = Field(description="file name pattern with {index}, {timestamp}, {name} or {stem} (the source "
                                     "image's file name, from PATH), e.g. out/f_{index:05d}.png or out/{name}; "
                                     "without a field: one image",
                         json_schema_extra={"file": "write"})
    quality: int = Field(95, ge=0, le=100, description="JPEG/WebP quality")
    make_dirs: bool = Field(True, description="create the pattern's folder when missing")


@register
class ImageWriter(Calculator):
    """Writes each frame to an image file named by a pattern (format from the extension).

    Ports:
        IMAGE (Image): frames to write.
        PATH (str, optional): the file each frame came from (``ImageSource``/``MediaSource`` PATH).
    Options:
        pattern: e.g. ``out/frame_{index:06d}.png``; fields ``index`` (0, 1, ...),
        ``timestamp`` (µs), ``name`` and ``stem`` (the PATH file's name, with and without its
        extension: ``out/{name}`` writes ``out/IMG_0042.jpg`` for ``photos/IMG_0042.jpg``; a frame
        without a PATH is named ``frame_{index:06d}.png`` there). A pattern without any field is
        one image file: a second frame is an error. quality: JPEG/WebP quality. make_dirs:
        create the folders.
    Errors: a bad field, an unknown extension, or a folder that cannot be written fail in
    ``open``; a failed write names the file.
    Example:
        - calculator: ImageWriter
          inputs: {IMAGE: frames}
          options: {pattern: "frames/{timestamp}.jpg"}
    """

    inputs = {"IMAGE": Input(Image), "PATH": Input(str, optional=True, doc="the source file of each frame")}
    outputs: dict = {}
    Options = ImageWriterOptions

    def open(self, ctx):
        import cv2

        o = ctx.options
        who = f"{ctx.calculator} {ctx.node!r}"
        self.who = who
        try:
            sample = o.pattern.format(index=0, timestamp=0, name="a.png", stem="a")
            again = o.pattern.format(index=1, timestamp=1, name="b.png", stem="b")
        except (KeyError, IndexError, ValueError) as e:
            raise MediaError(f"{who}: bad pattern {o.pattern!r}: {e!r} (fields: index, timestamp, name, stem)") from e
        self.single = sample == again  # no field: the pattern is one image file
        self.by_name = "{name" in o.pattern
        if not self.by_name and not cv2.haveImageWriter(sample):
            raise MediaError(f"{who}: OpenCV cannot write images of type {os.path.splitext(sample)[1]!r} ({o.pattern!r})")
        folder = os.path.dirname(os.path.abspath(sample))
        if o.make_dirs and not os.path.isdir(folder):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise MediaError(f"{who}: cannot create folder {folder!r}: {e.strerror or e}") from e
        check_writable(sample, who)
        # Each encoder takes only its own quality key (OpenCV warns about the others).
        self.params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, o.quality], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, o.quality],
                       ".webp": [cv2.IMWRITE_WEBP_QUALITY, max(1, o.quality)]}
        self.index = 0
        self.written: str | None = None

    def process(self, ctx):
        import cv2

        image = ctx.get("IMAGE")
        if image is None:
            return
        if self.single and self.written is not None:
            raise MediaError(f"{self.who}: {self.written!r} holds one image and a second frame arrived at "
                             f"{ctx.timestamp} µs; write to a folder (out/) or a pattern with {{index}} or {{name}}")
        source = ctx.get("PATH")
        name = os.path.basename(source) if source else f"frame_{self.index:06d}.png"
        path = ctx.options.pattern.format(index=self.index, timestamp=ctx.timestamp, name=name,
                                          stem=os.path.splitext(name)[0])
        folder = os.path.dirname(os.path.abspath(path))
        if ctx.options.make_dirs and not os.path.isdir(folder):  # a pattern with fields in its folders
            os.makedirs(folder, exist_ok=True)
        ext = os.path.splitext(path)[1]
        ok, buf = cv2.imencode(ext, image_to_bgr(image), self.params.get(ext.lower(), []))
        if not ok:
            raise MediaError(f"{self.who}: OpenCV could not encode {path!r}")
        try:
            with open(path, "wb") as f:
                f.write(buf.tobytes())
        except OSError as e:
            raise MediaError(f"{self.who}: cannot write {path!r}: {e.strerror or e}") from e
        self.index += 1
        self.written = path


class JsonlWriterOptions(BaseModel):
    path: str = Field(description="output .jsonl file (truncated at open unless append)",
                      json_schema_extra={"file": "write"})
    key: str | None = Field(None, description='the value\'s key; default "detections" for Detections, else "value"')
    append: bool = False
    make_dirs: bool = Field(True, description="create the file's folder when missing")


def to_jsonable(value: TypingAny) -> TypingAny:
    """``value`` as plain JSON types: numpy arrays and scalars, dataclasses, objects with to_json()."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "to_json") and callable(value.to_json):
        return to_jsonable(value.to_json())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, Image):
        raise TypeError("an Image is not JSON-able (write it with ImageWriter or VideoWriter)")
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump())
    raise TypeError(f"a {type(value).__name__} is not JSON-able")


@register
class JsonlWriter(Calculator):
    """Writes one JSON line per timestamp, flushed as it is written.

    Ports:
        IN (any): a JSON-able value (numpy arrays and scalars, dataclasses, dicts, lists) or
        Detections (written with ``to_json()``).
        PATH (str, optional): the source image of the timestamp, written as ``"path"``.
    Options:
        path: output file. key: the value's key (default ``detections`` for Detections, else
        ``value``). append: keep what the file holds. make_dirs (default true): create its folder.
    Lines: ``{"timestamp_us": t, "detections": [{"box": [...], "score": s, "label": l}, ...]}``,
    with ``"path": "photos/IMG_0042.jpg"`` after the timestamp when PATH has a packet at t.
    Errors: an unwritable path fails in ``open``; a value that is not JSON-able names its type
    and timestamp.
    Example:
        - calculator: JsonlWriter
          inputs: {IN: detections}
          options: {path: out/detections.jsonl}
    """

    inputs = {"IN": Input(Any, doc="value to write"),
              "PATH": Input(str, optional=True, doc="the source image of each timestamp")}
    outputs: dict = {}
    Options = JsonlWriterOptions

    def open(self, ctx):
        o = ctx.options
        self.who = f"{ctx.calculator} {ctx.node!r}"
        check_writable(o.path, self.who, o.make_dirs)
        try:
            self.file = open(o.path, "a" if o.append else "w", encoding="utf-8")
        except OSError as e:
            raise MediaError(f"{self.who}: cannot write {o.path!r}: {e.strerror or e}") from e

    def process(self, ctx):
        packet = ctx.inputs["IN"]
        if packet is None:
            return
        value = packet.value
        is_det = isinstance(value, Detections)
        key = ctx.options.key or ("detections" if is_det else "value")
        record = {"timestamp_us": int(ctx.timestamp)}
        source = ctx.get("PATH")
        if source is not None:
            record["path"] = source
        try:
            line = None
            if is_det:  # to_json() is plain JSON already, unless a value is not finite
                try:
                    line = json.dumps({**record, key: value.to_json()}, allow_nan=False)
                except ValueError:
                    pass
            if line is None:
                line = json.dumps({**record, key: to_jsonable(value)}, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{self.who}: value at {ctx.timestamp} µs cannot be written as JSON: {e}") from e
        self.file.write(line + "\n")
        self.file.flush()

    def close(self, ctx):
        f = getattr(self, "file", None)
        if f is not None:
            f.close()
            self.file = None
