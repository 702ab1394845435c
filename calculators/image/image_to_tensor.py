"""ImageToTensor: turns a frame into a model input tensor, and says how to map results back.

Ports: IMAGE (Image) -> TENSOR (Tensor), TRANSFORM (Transform, optional).
Timestamps: one TENSOR (and TRANSFORM) per IMAGE, at the IMAGE's timestamp.
Example node:
    - calculator: ImageToTensor
      inputs: {IMAGE: frames}
      outputs: {TENSOR: tensor, TRANSFORM: transform}
      options: {size: [128, 128], fit: letterbox, range: [-1, 1]}
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calculators.image.ops import image_to_tensor
from calculators.types import Image, Tensor, Transform
from pipeline import Calculator, Input, Output, register


class ImageToTensorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size: tuple[int, int] = Field(description="tensor (width, height) in pixels")
    fit: Literal["stretch", "letterbox", "crop"] = "letterbox"
    range: Optional[tuple[float, float]] = Field(
        None, description="map pixels 0..255 linearly onto [lo, hi]")
    mean: Optional[list[float]] = Field(None, description="per-channel mean on 0..255 pixels")
    std: Optional[list[float]] = Field(None, description="per-channel std on 0..255 pixels")
    layout: Literal["NHWC", "NCHW", "HWC", "CHW"] = "NHWC"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    format: Literal["RGB", "BGR", "GRAY"] = Field("RGB", description="channel order the model expects")
    border: float = Field(0, description="pixel value that fills letterbox padding")
    interpolation: Literal["linear", "area", "nearest", "cubic"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> "ImageToTensorOptions":
        if min(self.size) <= 0:
            raise ValueError(f"size must be positive (width, height), got {list(self.size)}")
        if self.range is not None and (self.mean is not None or self.std is not None):
            raise ValueError("give either range or mean/std, not both")
        if self.dtype == "uint8" and (self.range is not None or self.mean is not None or self.std is not None):
            raise ValueError("dtype uint8 keeps pixel values: range/mean/std need a float dtype")
        return self


@register
class ImageToTensor(Calculator):
    """Resizes, letterboxes or crops an image into a model input tensor.

    Ports: IMAGE (Image) -> TENSOR (Tensor), TRANSFORM (Transform: tensor pixels -> frame pixels).
    Options: size [w, h]; fit stretch|letterbox|crop (default letterbox, MediaPipe's geometry);
    range [lo, hi] or mean/std (on 0..255 pixels); layout NHWC|NCHW|HWC|CHW; dtype float32|float16|uint8;
    format RGB|BGR|GRAY (what the model expects; converted); border (padding pixel value);
    interpolation linear|area|nearest|cubic.
    Example node:
        - calculator: ImageToTensor
          inputs: {IMAGE: frames}
          outputs: {TENSOR: tensor, TRANSFORM: transform}
          options: {size: [128, 128], fit: letterbox, range: [-1, 1]}
    """

    inputs = {"IMAGE": Input(Image, doc="the frame")}
    outputs = {
        "TENSOR": Output(Tensor, doc="model input"),
        "TRANSFORM": Output(Transform, optional=True, doc="tensor pixels -> frame pixels"),
    }
    Options = ImageToTensorOptions

    def open(self, ctx) -> None:
        o = ctx.options
        self.kwargs = dict(value_range=o.range, mean=o.mean, std=o.std, layout=o.layout, dtype=o.dtype,
                           format=o.format, border=o.border, interpolation=o.interpolation)
        self.size, self.fit = tuple(o.size), o.fit

    def process(self, ctx) -> None:
        image = ctx.inputs["IMAGE"].value
        tensor, transform = image_to_tensor(image, self.size, self.fit, **self.kwargs)
        ctx.outputs["TENSOR"].add(tensor)
        ctx.outputs["TRANSFORM"].add(transform)  # a no-op when TRANSFORM is not wired
