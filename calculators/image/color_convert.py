"""ColorConvert: converts an image to another pixel format (RGB, BGR, GRAY, RGBA, BGRA).

Ports: IMAGE (Image) -> IMAGE (Image). Timestamps: one output per input, same timestamp.
An image already in the wanted format is passed on as it is (no copy).
Example node:
    - calculator: ColorConvert
      inputs: {IMAGE: frames}
      outputs: {IMAGE: bgr}
      options: {format: BGR}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from calculators.types import Image
from pipeline import Calculator, Input, Output, register


class ColorConvertOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["RGB", "BGR", "GRAY", "RGBA", "BGRA"]


@register
class ColorConvert(Calculator):
    """Converts an image to another pixel format with OpenCV.

    Ports: IMAGE (Image) -> IMAGE (Image). Options: format (RGB|BGR|GRAY|RGBA|BGRA).
    Example node:
        - calculator: ColorConvert
          inputs: {IMAGE: frames}
          outputs: {IMAGE: gray}
          options: {format: GRAY}
    """

    inputs = {"IMAGE": Input(Image)}
    outputs = {"IMAGE": Output(Image)}
    Options = ColorConvertOptions

    def process(self, ctx) -> None:
        ctx.outputs["IMAGE"].add(ctx.inputs["IMAGE"].value.to(ctx.options.format))
