"""ImageToTensor: turns a frame into a model input tensor, and says how to map results back.

Ports: IMAGE (Image) -> TENSOR (Tensor), TRANSFORM (Transform, optional). Side input MODEL
(optional): without a ``size`` option, the tensor takes the size of that model's input.
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
from pipeline import Calculator, Input, Output, SideInput, register


class ImageToTensorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size: Optional[tuple[int, int]] = Field(
        None, description="tensor (width, height) in pixels; default: the input size of the MODEL side input's model")
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
        if self.size is not None and min(self.size) <= 0:
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
    Side inputs: MODEL (str, optional): a model (``zoo:NAME`` or path) whose input size is the
    tensor's when ``size`` is not given (read for the ``layout``: NHWC [1, h, w, c], NCHW [1, c, h, w]).
    Options: size [w, h] (or from MODEL); fit stretch|letterbox|crop (default letterbox, MediaPipe's geometry);
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
    side_inputs = {"MODEL": SideInput(str, optional=True, doc="a model whose input size the tensor takes")}
    Options = ImageToTensorOptions

    def open(self, ctx) -> None:
        o = ctx.options
        self.kwargs = dict(value_range=o.range, mean=o.mean, std=o.std, layout=o.layout, dtype=o.dtype,
                           format=o.format, border=o.border, interpolation=o.interpolation)
        self.size, self.fit = (tuple(o.size) if o.size is not None else self._model_size(ctx)), o.fit

    @staticmethod
    def _model_size(ctx) -> tuple[int, int]:
        o = ctx.options
        model = (ctx.side or {}).get("MODEL")
        if model is None:
            raise ValueError(f"node {ctx.node!r} (ImageToTensor): give the tensor `size`, or a MODEL side input to take it from")
        from calculators.inference.calculator import model_input_shape

        shape = model_input_shape(str(model))
        dims = shape[-3:] if len(shape) >= 3 else ()
        hw = dims[0:2] if o.layout in ("NHWC", "HWC") else dims[1:3]
        if len(hw) != 2 or any(d is None for d in hw):
            raise ValueError(f"node {ctx.node!r} (ImageToTensor): model {model} has input shape {list(shape)}, "
                             f"which gives no fixed {o.layout} height and width; give the tensor `size`")
        return int(hw[1]), int(hw[0])

    def process(self, ctx) -> None:
        image = ctx.inputs["IMAGE"].value
        tensor, transform = image_to_tensor(image, self.size, self.fit, **self.kwargs)
        ctx.outputs["TENSOR"].add(tensor)
        ctx.outputs["TRANSFORM"].add(transform)  # a no-op when TRANSFORM is not wired
