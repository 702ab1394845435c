"""Crop: cuts a region of interest out of a frame, optionally resampled to a fixed size.

Ports: IMAGE (Image), ROI (Detections, optional: the first box is the region) -> IMAGE (Image),
TRANSFORM (Transform, optional: crop pixels -> frame pixels).
Timestamps: one output per input at the same timestamp; nothing is emitted when ROI is given but
holds no box at that timestamp (the framework advances the bound).
Example node:
    - calculator: Crop
      inputs: {IMAGE: frames, ROI: faces}
      outputs: {IMAGE: face, TRANSFORM: face_transform}
      options: {size: [192, 192], fit: letterbox, margin: 0.25}
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from calculators.image.ops import crop
from calculators.types import Detections, Image, Transform
from pipeline import Calculator, Input, Output, register


class CropOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    box: Optional[tuple[float, float, float, float]] = Field(
        None, description="fixed (x0, y0, x1, y1) box in pixels; used when no ROI input is connected")
    size: Optional[tuple[int, int]] = Field(None, description="resample to (width, height)")
    fit: Literal["stretch", "letterbox", "crop"] = "stretch"
    margin: float = Field(0.0, ge=0.0, description="grow the box by this fraction of its size on each side")
    border: float = 0


@register
class Crop(Calculator):
    """Crops a box out of a frame (fixed by option, or the first box of a ROI detection stream).

    Ports: IMAGE (Image), ROI (Detections, optional) -> IMAGE (Image), TRANSFORM (Transform, optional).
    Options: box (x0, y0, x1, y1) when ROI is not connected; size (w, h) to resample; fit
    stretch|letterbox|crop; margin (fraction added on each side); border (padding value).
    Example node:
        - calculator: Crop
          inputs: {IMAGE: frames}
          outputs: {IMAGE: top_left}
          options: {box: [0, 0, 64, 64]}
    """

    inputs = {"IMAGE": Input(Image), "ROI": Input(Detections, optional=True)}
    outputs = {"IMAGE": Output(Image), "TRANSFORM": Output(Transform, optional=True)}
    Options = CropOptions

    def open(self, ctx) -> None:
        self.o = ctx.options

    def process(self, ctx) -> None:
        image = ctx.inputs["IMAGE"].value
        box = self.o.box
        if "ROI" in ctx.inputs:
            roi = ctx.get("ROI")
            if roi is None or len(roi) == 0:
                return
            box = tuple(float(v) for v in roi.xyxy[0])
        elif box is None:
            raise ValueError(f"node {ctx.node}: Crop needs either the option `box` or a ROI input")
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) * self.o.margin, (y1 - y0) * self.o.margin
        out, transform = crop(image, (x0 - mx, y0 - my, x1 + mx, y1 + my), self.o.size, self.o.fit, self.o.border)
        ctx.outputs["IMAGE"].add(out)
        ctx.outputs["TRANSFORM"].add(transform)  # a no-op when TRANSFORM is not wired
