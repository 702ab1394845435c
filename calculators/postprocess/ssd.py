"""SSD anchors and box decoding as MediaPipe does them (pure numpy, no graph needed).

``ssd_anchors`` follows MediaPipe's SsdAnchorsCalculator and ``decode_ssd`` its
TensorsToDetectionsCalculator (sigmoid scores with clipping, boxes and keypoints relative to the
anchors). ``BLAZEFACE_SHORT`` holds the options that MediaPipe's face detector uses for the
short-range BlazeFace model (face_detector_graph.cc / face_detection_short_range.pbtxt); the other
presets are those of MediaPipe's full-range face, pose and palm detectors.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class SsdAnchorOptions(BaseModel):
    """MediaPipe's SsdAnchorsCalculatorOptions (the fields used by its detectors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size_width: int
    input_size_height: int
    num_layers: int
    strides: tuple[int, ...]
    min_scale: float
    max_scale: float
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    reduce_boxes_in_lowest_layer: bool = False
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = False


class SsdDecodeOptions(BaseModel):
    """MediaPipe's TensorsToDetectionsCalculatorOptions (the fields used by its SSD detectors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_boxes: int
    num_coords: int = 16
    box_coord_offset: int = 0
    keypoint_coord_offset: int = 4
    num_keypoints: int = 6
    num_values_per_keypoint: int = 2
    x_scale: float = 128.0
    y_scale: float = 128.0
    w_scale: float = 128.0
    h_scale: float = 128.0
    sigmoid_score: bool = True
    score_clipping_thresh: Optional[float] = 100.0
    reverse_output_order: bool = True
    min_score_thresh: float = Field(0.5, ge=0.0, le=1.0)


BLAZEFACE_SHORT_ANCHORS = SsdAnchorOptions(
    input_size_width=128, input_size_height=128, num_layers=4, strides=(8, 16, 16, 16),
    min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True, interpolated_scale_aspect_ratio=1.0,
)
BLAZEFACE_SHORT_DECODE = SsdDecodeOptions(num_boxes=896)
BLAZEFACE_FULL_ANCHORS = SsdAnchorOptions(
    input_size_width=192, input_size_height=192, num_layers=1, strides=(4,),
    min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True, interpolated_scale_aspect_ratio=0.0,
)
BLAZEFACE_FULL_DECODE = SsdDecodeOptions(num_boxes=2304, x_scale=192.0, y_scale=192.0, w_scale=192.0,
                                         h_scale=192.0, min_score_thresh=0.5)

# MediaPipe's pose detector (pose_detection_cpu.pbtxt) and palm detector (palm_detection_cpu.pbtxt).
POSE_DETECTION_ANCHORS = SsdAnchorOptions(
    input_size_width=224, input_size_height=224, num_layers=5, strides=(8, 16, 32, 32, 32),
    min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True,
)
POSE_DETECTION_DECODE = SsdDecodeOptions(num_boxes=2254, num_coords=12, num_keypoints=4, x_scale=224.0,
                                         y_scale=224.0, w_scale=224.0, h_scale=224.0)
PALM_DETECTION_ANCHORS = SsdAnchorOptions(
    input_size_width=192, input_size_height=192, num_layers=4, strides=(8, 16, 16, 16),
    min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True,
)
PALM_DETECTION_DECODE = SsdDecodeOptions(num_boxes=2016, num_coords=18, num_keypoints=7, x_scale=192.0,
                                         y_scale=192.0, w_scale=192.0, h_scale=192.0)

PRESETS = {
    "blazeface_short": (BLAZEFACE_SHORT_ANCHORS, BLAZEFACE_SHORT_DECODE),
    "blazeface_full": (BLAZEFACE_FULL_ANCHORS, BLAZEFACE_FULL_DECODE),
    "pose_detection": (POSE_DETECTION_ANCHORS, POSE_DETECTION_DECODE),
    "palm_detection": (PALM_DETECTION_ANCHORS, PALM_DETECTION_DECODE),
}


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


@lru_cache(maxsize=16)
def ssd_anchors(options: SsdAnchorOptions) -> np.ndarray:
    """(N, 4) float32 anchors (x_center, y_center, width, height), normalised to [0, 1]."""
    o = options
    if len(o.strides) != o.num_layers:
        raise ValueError(f"strides must have num_layers={o.num_layers} entries, got {list(o.strides)}")
    anchors: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < o.num_layers:
        heights, widths, ratios, scales = [], [], [], []
        last = layer
        while last < o.num_layers and o.strides[last] == o.strides[layer]:
            scale = _scale(o.min_scale, o.max_scale, last, len(o.strides))
            if last == 0 and o.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in o.aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                if o.interpolated_scale_aspect_ratio > 0.0:
                    nxt = 1.0 if last == len(o.strides) - 1 else _scale(o.min_scale, o.max_scale, last + 1,
                                                                        len(o.strides))
                    scales.append(math.sqrt(scale * nxt))
                    ratios.append(o.interpolated_scale_aspect_ratio)
            last += 1
        for ratio, scale in zip(ratios, scales):
            root = math.sqrt(ratio)
            heights.append(scale / root)
            widths.append(scale * root)
        stride = o.strides[layer]
        fm_h = int(math.ceil(o.input_size_height / stride))
        fm_w = int(math.ceil(o.input_size_width / stride))
        for y in range(fm_h):
            for x in range(fm_w):
                for k in range(len(heights)):
                    cx = (x + o.anchor_offset_x) / fm_w
                    cy = (y + o.anchor_offset_y) / fm_h
                    w, h = (1.0, 1.0) if o.fixed_anchor_size else (widths[k], heights[k])
                    anchors.append((cx, cy, w, h))
        layer = last
    out = np.asarray(anchors, dtype=np.float32)
    out.setflags(write=False)
    return out


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def decode_ssd(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
               options: SsdDecodeOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decodes SSD regressors and scores, keeping those at or above ``min_score_thresh``.

    ``raw_boxes``: (num_boxes, num_coords) (a leading batch of 1 is accepted); ``raw_scores``:
    (num_boxes, num_classes). Returns (xyxy (M, 4), scores (M,), class_ids (M,), keypoints
    (M, K, 2)), all normalised to the tensor ([0, 1] inside it).

    The sigmoid is monotonic, so the raw logits are compared with the threshold's logit first and
    only the few boxes near or above it are scored and decoded; the scores of those are computed
    exactly as MediaPipe does (clip, sigmoid), so the result is the same as scoring every box.
    """
    o = options
    boxes = np.asarray(raw_boxes, dtype=np.float32).reshape(-1, o.num_coords)
    n = boxes.shape[0]
    if n != o.num_boxes or anchors.shape[0] != n:
        raise ValueError(f"expected {o.num_boxes} boxes and as many anchors, got {n} boxes and "
                         f"{anchors.shape[0]} anchors")
    scores = np.asarray(raw_scores, dtype=np.float32).reshape(n, -1)
    t = o.min_score_thresh
    if o.sigmoid_score and 1e-4 < t < 1.0 - 1e-4:
        # A margin far wider than float32 rounding of the sigmoid keeps every box that could pass.
        top = scores[:, 0] if scores.shape[1] == 1 else scores.max(axis=1)
        near = np.flatnonzero(top >= _logit(t) - 1e-3)
    elif not o.sigmoid_score:
        near = np.flatnonzero((scores[:, 0] if scores.shape[1] == 1 else scores.max(axis=1)) >= t)
    else:
        near = np.arange(n)
    s = scores[near]
    if o.score_clipping_thresh is not None:
        s = np.clip(s, -o.score_clipping_thresh, o.score_clipping_thresh)
    if o.sigmoid_score:
        s = (1.0 / (1.0 + np.exp(-s.astype(np.float64)))).astype(np.float32)
    if s.shape[1] == 1:  # one class (BlazeFace, palms, poses): no argmax to take
        class_ids, best = np.zeros(len(near), np.intp), s[:, 0]
    else:
        class_ids = s.argmax(axis=1)
        best = s[np.arange(len(near)), class_ids]
    passed = best >= t
    keep = near[passed]
    best, class_ids = best[passed], class_ids[passed]
    b = boxes[keep]
    a = anchors[keep]
    anchor_xy, anchor_wh = a[:, 0:2], a[:, 2:4]
    off = o.box_coord_offset
    xy, wh = b[:, off:off + 2], b[:, off + 2:off + 4]
    k0 = o.keypoint_coord_offset
    kp = b[:, k0:k0 + o.num_keypoints * o.num_values_per_keypoint].reshape(
        len(keep), o.num_keypoints, o.num_values_per_keypoint)[:, :, :2]
    if not o.reverse_output_order:  # (y, x) and (h, w) order
        xy, wh, kp = xy[:, ::-1], wh[:, ::-1], kp[:, :, ::-1]
    xy_scale, wh_scale = _scales(o.x_scale, o.y_scale), _scales(o.w_scale, o.h_scale)
    centre = xy / xy_scale * anchor_wh + anchor_xy
    half = wh / wh_scale * anchor_wh / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    kp = kp / xy_scale * anchor_wh[:, None] + anchor_xy[:, None]
    return (xyxy.astype(np.float32, copy=False), best.astype(np.float32, copy=False), class_ids.astype(np.int32),
            kp.astype(np.float32, copy=False))


@lru_cache(maxsize=32)
def _scales(a: float, b: float) -> np.ndarray:
    """A (2,) float32 divisor pair, made once per pair of options (read-only, shared by calls)."""
    out = np.array([a, b], np.float32)
    out.setflags(write=False)
    return out
