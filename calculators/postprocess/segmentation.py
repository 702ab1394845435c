"""Segmentation calculators: a model's mask output -> a frame-sized Mask -> background effects.

- ``SegmentationMask``: TENSORS (model output), TRANSFORM -> MASK (Mask in frame pixels, float [0, 1]).
- ``BackgroundEffect``: IMAGE, MASK -> IMAGE (background blurred, or replaced by a colour).
- ``MaskToImage``: MASK -> IMAGE (the mask as a GRAY picture, 255 = foreground, to write or show).
Timestamps: one output per input, same timestamp.
Example nodes:
    - calculator: SegmentationMask
      inputs: {TENSORS: raw, TRANSFORM: transform}
      outputs: {MASK: mask}
      options: {smooth: 5}
    - calculator: BackgroundEffect
      inputs: {IMAGE: frames, MASK: mask}
      outputs: {IMAGE: blurred}
      options: {effect: blur, kernel: 41}
"""

from __future__ import annotations

from typing import Literal, Optional

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from calculators.postprocess.masks import (blur_background, mask_from_tensor, mask_to_frame, refine_mask,
                                           replace_background)
from calculators.postprocess.tensors import named_or_first, output_arrays
from calculators.types import Image, Mask, Transform, i420_planes, rgb_to_yuv
from pipeline import Any, Calculator, Input, Output, register


class SegmentationMaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activation: Literal["none", "sigmoid", "softmax"] = Field(
        "none", description="none: the model emits probabilities; sigmoid/softmax: logits")
    channel: int = Field(0, ge=0, description="foreground channel")
    threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="hard mask at this value (default: soft)")
    smooth: int = Field(0, ge=0, description="feather the mask edge by this many pixels")
    output: Optional[str] = Field(None, description="name of the mask output (default: the first)")


@register
class SegmentationMask(Calculator):
    """Turns a segmentation model's output into a foreground Mask in frame pixels.

    Ports: TENSORS (model outputs), TRANSFORM (Transform, optional: without it the mask is
    stretched to the tensor's own size) -> MASK (Mask, float32 HxW in [0, 1]).
    Options: activation none|sigmoid|softmax; channel; threshold (hard mask; default soft); smooth
    (edge feathering in pixels); output (name of the mask output).
    Example node:
        - calculator: SegmentationMask
          inputs: {TENSORS: raw, TRANSFORM: transform}
          outputs: {MASK: mask}
    """

    inputs = {"TENSORS": Input(Any), "TRANSFORM": Input(Transform, optional=True)}
    outputs = {"MASK": Output(Mask)}
    Options = SegmentationMaskOptions

    def process(self, ctx) -> None:
        o = ctx.options
        arrays = output_arrays(ctx.inputs["TENSORS"].value)
        data = named_or_first(arrays, o.output, "the mask")
        mask = mask_from_tensor(data, o.activation, o.channel)
        transform = ctx.get("TRANSFORM")
        if transform is not None:
            mask = mask_to_frame(mask, transform)
        mask = refine_mask(mask, o.threshold, o.smooth)
        size = transform.frame_size if transform is not None else (mask.shape[1], mask.shape[0])
        ctx.outputs["MASK"].add(Mask(mask, tuple(size)))


class BackgroundEffectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effect: Literal["blur", "color"] = "blur"
    kernel: int = Field(31, ge=3, description="blur kernel size in pixels (odd)")
    color: tuple[int, int, int] = Field((0, 255, 0), description="background colour, in the image's channel order (RGB for I420)")


@register
class BackgroundEffect(Calculator):
    """Blurs or replaces the background of an image outside a foreground mask (draws on a copy).

    Ports: IMAGE (Image, any format; I420 is processed plane by plane), MASK (Mask, frame-sized)
    -> IMAGE (Image, same format). A frame with no mask at its timestamp is passed on unchanged.
    Options: effect blur|color; kernel (blur size, default 31); color (the replacement).
    Example node:
        - calculator: BackgroundEffect
          inputs: {IMAGE: frames, MASK: mask}
          outputs: {IMAGE: blurred}
          options: {effect: blur, kernel: 41}
    """

    inputs = {"IMAGE": Input(Image), "MASK": Input(Mask)}
    outputs = {"IMAGE": Output(Image)}
    Options = BackgroundEffectOptions

    def process(self, ctx) -> None:
        o = ctx.options
        image, mask = ctx.get("IMAGE"), ctx.get("MASK")
        if image is None:
            return
        if mask is None:
            ctx.outputs["IMAGE"].add(image)
            return
        if mask.data.shape != (image.height, image.width):
            raise ValueError(f"node {ctx.node}: mask {mask.data.shape} does not match the frame "
                             f"{(image.height, image.width)} at timestamp {ctx.timestamp}; give SegmentationMask the TRANSFORM")
        if image.format == "I420":
            ctx.outputs["IMAGE"].add(image.with_data(self._i420(image, mask.data, o)))
            return
        if o.effect == "blur":
            out = blur_background(image.data, mask.data, o.kernel)
        else:
            out = replace_background(image.data, mask.data, o.color)
        ctx.outputs["IMAGE"].add(image.with_data(out))

    @staticmethod
    def _i420(image: Image, mask: np.ndarray, o) -> np.ndarray:
        """The effect plane by plane: chroma with the mask and the blur kernel halved; the
        replacement colour (read as RGB) turned into its Y, U and V values."""
        out = np.empty_like(image.data)
        half = cv2.resize(mask.astype(np.float32), (image.width // 2, image.height // 2), interpolation=cv2.INTER_AREA)
        values = rgb_to_yuv(o.color)
        for i, (src, dst) in enumerate(zip(image.planes(), i420_planes(out))):
            m = mask if i == 0 else half
            if o.effect == "blur":
                dst[...] = blur_background(src, m, o.kernel if i == 0 else max(3, o.kernel // 2))
            else:
                dst[...] = replace_background(src, m, (values[i],))
        return out


class MaskToImageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="hard mask: 255 above this value, "
                                                                         "0 elsewhere (default: the soft mask, scaled)")


@register
class MaskToImage(Calculator):
    """A Mask as a GRAY image (0 background, 255 foreground), for a VideoWriter, a window or a preview.

    Ports: MASK (Mask, float HxW in [0, 1]) -> IMAGE (Image, GRAY uint8, the mask's size).
    Options: threshold (hard mask above it; default: round(mask * 255)).
    Example node:
        - calculator: MaskToImage
          inputs: {MASK: segmentation}
          outputs: {IMAGE: mask_frames}
    """

    inputs = {"MASK": Input(Mask)}
    outputs = {"IMAGE": Output(Image)}
    Options = MaskToImageOptions

    def process(self, ctx) -> None:
        data = ctx.inputs["MASK"].value.data
        t = ctx.options.threshold
        if t is None:
            gray = np.rint(np.clip(data, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            gray = np.where(data > t, 255, 0).astype(np.uint8)
        ctx.outputs["IMAGE"].add(Image(gray, "GRAY"))
