"""ImageToTensor: turns a frame into a model input tensor, and says how to map results back.

Ports: IMAGE (Image), ROIS (Rects, optional) -> TENSOR (Tensor), TRANSFORM (Transform, optional).
Side input MODEL (optional): without a ``size`` option, the tensor takes the size of that model's input.
Timestamps: one TENSOR (and TRANSFORM) per IMAGE, at the IMAGE's timestamp. With ROIS: one crop
per rect, stacked on the batch axis, and no TENSOR when there is no rect (the bound advances).
Example node:
    - calculator: ImageToTensor
      inputs: {IMAGE: frames}
      outputs: {TENSOR: tensor, TRANSFORM: transform}
      options: {size: [128, 128], fit: letterbox, range: [-1, 1]}
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calculators.image.ops import image_to_tensor, normalize
from calculators.image.roi_warp import warp_rects
from calculators.types import Image, Rects, Tensor, Transform
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
    roi_border: Literal["replicate", "constant"] = Field(
        "replicate", description="with ROIS: how pixels outside the frame are filled (constant: `border`)")

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
    interpolation linear|area|nearest|cubic; roi_border replicate|constant.
    With ROIS (rotated rects in frame pixels), each rect is cropped by one affine warp, its corners
    onto the tensor's corners (MediaPipe's ROI crop; make rects square for square tensors), and the
    crops are stacked: TENSOR is (N, H, W, C) for N rects, nothing when N is 0; the rects themselves
    are the map back (``TensorsToLandmarks`` projects through them) and TRANSFORM is not sent.
    Example node:
        - calculator: ImageToTensor
          inputs: {IMAGE: frames}
          outputs: {TENSOR: tensor, TRANSFORM: transform}
          options: {size: [128, 128], fit: letterbox, range: [-1, 1]}
    """

    inputs = {"IMAGE": Input(Image, doc="the frame"),
              "ROIS": Input(Rects, optional=True, doc="regions to crop (rotated rects, frame pixels)")}
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
        self.rois = any(i.tag == "ROIS" for i in ctx._node.spec.inputs)

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
        if self.rois:
            self._crops(ctx, image)
            return
        tensor, transform = image_to_tensor(image, self.size, self.fit, **self.kwargs)
        ctx.outputs["TENSOR"].add(tensor)
        ctx.outputs["TRANSFORM"].add(transform)  # a no-op when TRANSFORM is not wired

    def _crops(self, ctx, image: Image) -> None:
        rects = ctx.inputs.get("ROIS")
        if rects is None or len(rects.value) == 0:
            return
        o = ctx.options
        pixels = warp_rects(image, rects.value, self.size, o.format, o.roi_border, o.border, o.interpolation)
        data = normalize(pixels, o.range, o.mean, o.std, o.dtype)
        if o.layout in ("NCHW", "CHW"):
            data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
        ctx.outputs["TENSOR"].add(Tensor(data, o.layout if o.layout.startswith("N") else "N" + o.layout))
