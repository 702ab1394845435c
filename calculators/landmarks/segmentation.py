"""Segmentation from a landmark model: the mask a model gives for its crop, warped back into the
frame, and its smoothing over time (MediaPipe pose's TensorsToSegmentation + WarpAffine to the
frame, and SegmentationSmoothingCalculator).

- ``TensorsToRoiMask``: TENSORS (the landmark model's outputs, one row per rect), ROIS (Rects) ->
  MASK (Mask, frame-sized float32 in [0, 1]).
- ``MaskSmoothing``: MASK, PREVIOUS (Mask, optional: the previous smoothed mask, over a back edge
  through ``PreviousLoopback``) -> MASK.
Timestamps: one MASK per input timestamp that has one; no mask when no object was kept (the
bound advances).
Example nodes:
    - calculator: TensorsToRoiMask
      inputs: {TENSORS: raw, ROIS: rois}
      outputs: {MASK: roi_mask}
      options: {mask_output: 2, score_output: 1, min_score: 0.5, tensor_size: [256, 256]}
    - calculator: PreviousLoopback
      inputs: {MAIN: roi_mask, LOOP: {stream: mask, back_edge: true}}
      outputs: {PREV_LOOP: previous_mask}
    - calculator: MaskSmoothing
      inputs: {MASK: roi_mask, PREVIOUS: previous_mask}
      outputs: {MASK: mask}
      options: {combine_with_previous_ratio: 0.7}
"""

from __future__ import annotations

from typing import Literal, Optional

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from calculators.landmarks.decode import sigmoid
from calculators.landmarks.geometry import roi_matrix
from calculators.postprocess.tensors import output_arrays
from calculators.types import Mask, Rects
from pipeline import Any, Calculator, Input, Output, register


class TensorsToRoiMaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mask_output: int = Field(..., ge=0, description="position of the mask among the model's outputs (pose: 2)")
    tensor_size: tuple[int, int] = Field(..., description="the model input (width, height) the rects were cut to")
    activation: Literal["none", "sigmoid"] = Field("sigmoid", description="sigmoid: the mask is logits (pose)")
    score_output: Optional[int] = Field(None, ge=0, description="position of the presence score; an object whose "
                                                                "score is not above min_score gives no mask")
    score_activation: Literal["none", "sigmoid"] = "none"
    min_score: float = Field(0.5, description="presence threshold (min_tracking_confidence, as TensorsToLandmarks)")
    enabled: bool = Field(True, description="false: no mask at all, only the bound advances (pose's "
                                            "enable_segmentation false, as MediaPipe gates its segmentation nodes)")


def mask_to_frame(mask: np.ndarray, rect: np.ndarray, tensor_size: tuple[int, int],
                  frame_size: tuple[int, int]) -> np.ndarray:
    """A crop-sized float mask put back into the frame through ``rect`` (bilinear, zero outside)."""
    mh, mw = mask.shape
    tw, th = tensor_size
    # mask pixel -> tensor pixel (the mask may be smaller than the tensor) -> frame pixel
    to_frame = roi_matrix(rect, tensor_size) @ np.array([[tw / mw, 0, 0], [0, th / mh, 0], [0, 0, 1.0]])
    return cv2.warpAffine(np.ascontiguousarray(mask, np.float32), to_frame, (int(frame_size[0]), int(frame_size[1])),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@register
class TensorsToRoiMask(Calculator):
    """A landmark model's segmentation output as one frame-sized mask (the objects' masks merged by max).

    Ports: TENSORS (model outputs for the crops, one row per rect), ROIS (Rects) -> MASK (Mask,
    float32 HxW in [0, 1], frame-sized). No mask when no rect, when every object's presence score
    is not above ``min_score``, or when ``enabled`` is false (the graph's drawing and writing nodes
    stay connected and simply receive no mask).
    Options: mask_output; tensor_size; activation sigmoid|none; score_output; score_activation;
    min_score; enabled.
    Example node:
        - calculator: TensorsToRoiMask
          inputs: {TENSORS: raw, ROIS: rois}
          outputs: {MASK: roi_mask}
          options: {mask_output: 2, score_output: 1, tensor_size: [256, 256]}
    """

    inputs = {"TENSORS": Input(Any, optional=True), "ROIS": Input(Rects)}
    outputs = {"MASK": Output(Mask)}
    Options = TensorsToRoiMaskOptions

    def process(self, ctx) -> None:
        o = ctx.options
        rects: Rects = ctx.inputs["ROIS"].value
        packet = ctx.inputs.get("TENSORS")
        if not o.enabled or len(rects) == 0 or packet is None:
            return
        arrays = output_arrays(packet.value)
        for index, what in ((o.mask_output, "the mask"), (o.score_output, "the presence score")):
            if index is not None and index >= len(arrays):
                raise ValueError(f"node {ctx.node!r} (TensorsToRoiMask): {what} is output {index}, but the model has "
                                 f"{len(arrays)} outputs {[(name, a.shape) for name, a in arrays]}")
        masks = arrays[o.mask_output][1]
        if masks.shape[0] != len(rects):
            raise ValueError(f"node {ctx.node!r} (TensorsToRoiMask): the mask has batch {masks.shape[0]} for {len(rects)} rects")
        out = None
        for i, rect in enumerate(rects.data):
            if o.score_output is not None:
                score = float(np.asarray(arrays[o.score_output][1][i]).reshape(-1)[0])
                score = float(sigmoid(score)) if o.score_activation == "sigmoid" else score
                if not score > o.min_score:
                    continue
            m = np.asarray(masks[i], np.float32)
            m = m.reshape(m.shape[-3], m.shape[-2]) if m.ndim == 3 else m.reshape(m.shape[-2:])
            if o.activation == "sigmoid":
                m = sigmoid(np.clip(m, -80.0, 80.0)).astype(np.float32)  # no overflow in exp
            frame = mask_to_frame(m, rect, o.tensor_size, rects.frame_size)
            out = frame if out is None else np.maximum(out, frame)
        if out is not None:
            ctx.outputs["MASK"].add(Mask(out, tuple(rects.frame_size)))


class MaskSmoothingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: pass the masks through (smooth_segmentation false)")
    combine_with_previous_ratio: float = Field(0.7, ge=0.0, le=1.0, description="how much of the previous mask an "
                                                                              "uncertain pixel keeps")


def smooth_mask(current: np.ndarray, previous: np.ndarray, ratio: float) -> np.ndarray:
    """MediaPipe's SegmentationSmoothing: each pixel keeps ``ratio`` of the previous value, scaled
    by how uncertain the current one is (1 at 0.5, 0 near 0 and 1; their polynomial of the entropy)."""
    t = current - np.float32(0.5)
    x = t * t
    poly = x * (5.68842 + x * (-0.748699 + x * (-57.8051 + x * (291.309 + x * -624.717))))
    uncertainty = np.float32(1.0) - np.minimum(np.float32(1.0), poly.astype(np.float32))
    return (current + (previous - current) * (uncertainty * np.float32(ratio))).astype(np.float32)


@register
class MaskSmoothing(Calculator):
    """Blends each mask with the previous smoothed one where it is uncertain (MediaPipe's
    SegmentationSmoothingCalculator, ``combine_with_previous_ratio`` 0.7 in pose).

    Ports: MASK (Mask), PREVIOUS (Mask, optional: the previous output, over a back edge through
    ``PreviousLoopback``) -> MASK (Mask). Without a previous mask (the first, or after a frame with
    none) the mask passes unchanged.
    Options: enabled; combine_with_previous_ratio.
    Example node:
        - calculator: MaskSmoothing
          inputs: {MASK: roi_mask, PREVIOUS: previous_mask}
          outputs: {MASK: mask}
    """

    inputs = {"MASK": Input(Mask), "PREVIOUS": Input(Mask, optional=True)}
    outputs = {"MASK": Output(Mask)}
    Options = MaskSmoothingOptions

    def process(self, ctx) -> None:
        mask = ctx.get("MASK")
        if mask is None:
            return
        prev = ctx.get("PREVIOUS")
        o = ctx.options
        if not o.enabled or prev is None or prev.data.shape != mask.data.shape:
            ctx.outputs["MASK"].add(mask)
            return
        ctx.outputs["MASK"].add(Mask(smooth_mask(mask.data, prev.data, o.combine_with_previous_ratio), mask.frame_size))
