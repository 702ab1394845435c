"""Segmentation calculators: a model's mask output -> a frame-sized Mask -> background effects.

- ``SegmentationMask``: TENSORS (model output), TRANSFORM -> MASK (Mask in frame pixels, float [0, 1]).
- ``BackgroundEffect``: IMAGE, MASK -> IMAGE (background blurred, or replaced by a colour).
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

from pydantic import BaseModel, ConfigDict, Field

from calculators.postprocess.masks import (blur_background, mask_from_tensor, mask_to_frame, refine_mask,
                                           replace_background)
from calculators.postprocess.tensors import named_or_first, output_arrays
from calculators.types import Image, Mask, Transform
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
    color: tuple[int, int, int] = Field((0, 255, 0), description="background colour, in the image's channel order")


@register
class BackgroundEffect(Calculator):
    """Blurs or replaces the background of an image outside a foreground mask (draws on a copy).

    Ports: IMAGE (Image), MASK (Mask, frame-sized) -> IMAGE (Image). A frame with no mask at its
    timestamp is passed on unchanged.
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
        if mask.data.shape != image.data.shape[:2]:
            raise ValueError(f"node {ctx.node}: mask {mask.data.shape} does not match the frame "
                             f"{image.data.shape[:2]} at timestamp {ctx.timestamp}; give SegmentationMask the TRANSFORM")
        if o.effect == "blur":
            out = blur_background(image.data, mask.data, o.kernel)
        else:
            out = replace_background(image.data, mask.data, o.color)
        ctx.outputs["IMAGE"].add(image.with_data(out))
