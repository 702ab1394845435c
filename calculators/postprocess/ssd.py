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
from typing import NamedTuple, Optional

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


class SsdLayout(NamedTuple):
    """What ``decode_ssd`` derives from the options and anchors alone, made once
    (``ssd_layout``) instead of per frame: the regressor columns it reads, in the order
    (x, y, w, h, then x, y of each keypoint), and per anchor the divisor, factor and offset of
    each of those columns, so that one division, one product and one sum decode every kept box."""

    columns: np.ndarray   # (4 + 2K,) indices into a box's num_coords values
    divisor: np.ndarray   # (4 + 2K,) float32: x_scale, y_scale, w_scale, h_scale, x_scale, y_scale, ...
    factor: np.ndarray    # (N, 4 + 2K) float32: the anchor's width or height
    offset: np.ndarray    # (N, 4 + 2K) float32: the anchor's centre (0 for w and h)


def ssd_layout(anchors: np.ndarray, options: SsdDecodeOptions) -> SsdLayout:
    """The per-model constants of ``decode_ssd`` (pass the result as its ``layout``)."""
    o = options
    anchors = np.asarray(anchors, np.float32)
    off, k0, k = o.box_coord_offset, o.keypoint_coord_offset, o.num_keypoints
    pairs = [(off, off + 1), (off + 2, off + 3)] + [(k0 + i * o.num_values_per_keypoint,
                                                     k0 + i * o.num_values_per_keypoint + 1) for i in range(k)]
    if not o.reverse_output_order:  # (y, x) and (h, w) order
        pairs = [(b, a) for a, b in pairs]
    columns = np.array([c for pair in pairs for c in pair], np.intp)
    scale = _scales(o.x_scale, o.y_scale)
    divisor = np.concatenate([scale, _scales(o.w_scale, o.h_scale), np.tile(scale, k)]).astype(np.float32)
    wh = anchors[:, 2:4]
    factor = np.ascontiguousarray(np.tile(wh, (1, 2 + k)), np.float32)
    offset = np.ascontiguousarray(np.concatenate([anchors[:, 0:2], np.zeros_like(wh), np.tile(anchors[:, 0:2], (1, k))],
                                                 axis=1), np.float32)
    for a in (columns, divisor, factor, offset):
        a.setflags(write=False)
    return SsdLayout(columns, divisor, factor, offset)


def decode_ssd(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
               options: SsdDecodeOptions, layout: SsdLayout | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decodes SSD regressors and scores, keeping those at or above ``min_score_thresh``.

    ``raw_boxes``: (num_boxes, num_coords) (a leading batch of 1 is accepted); ``raw_scores``:
    (num_boxes, num_classes). Returns (xyxy (M, 4), scores (M,), class_ids (M,), keypoints
    (M, K, 2)), all normalised to the tensor ([0, 1] inside it). ``layout``: ``ssd_layout(anchors,
    options)``, made once by a caller that decodes many frames (made here when not given).

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
    if layout is None:
        layout = ssd_layout(anchors, o)
    scores = np.asarray(raw_scores, dtype=np.float32).reshape(n, -1)
    one = scores.shape[1] == 1
    top = scores[:, 0] if one else scores.max(axis=1)
    t = o.min_score_thresh
    if o.sigmoid_score and 1e-4 < t < 1.0 - 1e-4:
        # A margin far wider than float32 rounding of the sigmoid keeps every box that could pass.
        near = np.flatnonzero(top >= _logit(t) - 1e-3)
    elif not o.sigmoid_score:
        near = np.flatnonzero(top >= t)
    else:
        near = np.arange(n)
    s = top[near] if one else scores[near]  # one class (BlazeFace, palms, poses): no argmax to take
    if o.score_clipping_thresh is not None:
        s = np.clip(s, -o.score_clipping_thresh, o.score_clipping_thresh)
    if o.sigmoid_score:
        s = (1.0 / (1.0 + np.exp(-s.astype(np.float64)))).astype(np.float32)
    if one:
        passed = s >= t
        keep = near[passed]
        best, class_ids = s[passed], np.zeros(len(keep), np.int32)
    else:
        class_ids = s.argmax(axis=1)
        best = s[np.arange(len(near)), class_ids]
        passed = best >= t
        keep = near[passed]
        best, class_ids = best[passed], class_ids[passed].astype(np.int32)
    # every kept box's (x, y, w, h, keypoints) at once: value / scale * anchor size + anchor centre
    d = boxes[keep[:, None], layout.columns]
    d /= layout.divisor
    d *= layout.factor[keep]
    d += layout.offset[keep]
    centre, half = d[:, 0:2], d[:, 2:4] / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    return xyxy, best.astype(np.float32, copy=False), class_ids, d[:, 4:].reshape(len(keep), o.num_keypoints, 2)


@lru_cache(maxsize=32)
def _scales(a: float, b: float) -> np.ndarray:
    """A (2,) float32 divisor pair, made once per pair of options (read-only, shared by calls)."""
    out = np.array([a, b], np.float32)
    out.setflags(write=False)
    return out
