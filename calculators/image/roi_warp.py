"""Rotated region-of-interest crops: one affine warp per rect, from RGB/BGR/GRAY or I420 planes.

MediaPipe's ImageToTensorCalculator (OpenCV converter) maps a rotated rect's corners onto the
tensor's corners (``cv::getPerspectiveTransform`` of ``cv::boxPoints``, then ``warpPerspective``,
bilinear, ``BORDER_REPLICATE`` unless told otherwise). For a rect that map is affine, so each crop
here is one warp by :func:`calculators.landmarks.geometry.roi_matrix`, sampled as MediaPipe's
OpenCV does (:func:`calculators.image.ops.warp_affine`). An I420 frame
is cropped plane by plane (the half-size chroma planes through the halved map) and only the small
crop is converted to the model's format, as :func:`calculators.image.ops.warp_i420` does for the
whole frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from calculators.image.ops import _YUV_TO_RGB, INTERPOLATIONS, _fixed_point_maps, warp_affine
from calculators.landmarks.geometry import roi_matrix
from calculators.types import _Y_TO_GRAY, Image, Rects, rgb_to_yuv

BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def _warp(plane: np.ndarray, to_frame: np.ndarray, size: tuple[int, int], flags: int, border: int,
          value: float, maps=None) -> np.ndarray:
    return warp_affine(plane, to_frame, size, flags, border, value, maps)


def warp_rect(image: Image, rect: np.ndarray, tensor_size: tuple[int, int], format: str = "RGB",
              border: str = "replicate", border_value: float = 0, interpolation: str = "linear") -> np.ndarray:
    """The pixels of ``rect`` (cx, cy, w, h, rotation in frame pixels) resampled to ``tensor_size``
    (width, height), HxWxC (HxW for GRAY) uint8 in ``format``."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {tuple(BORDERS)}, got {border!r}")
    try:
        flags = INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {interpolation!r}") from None
    if flags == cv2.INTER_AREA:
        flags = cv2.INTER_LINEAR
    size = (int(tensor_size[0]), int(tensor_size[1]))
    m = roi_matrix(rect, size)
    bmode = BORDERS[border]
    if image.format != "I420":
        src = image if image.format == format else image.to(format)
        return _warp(src.data, m, size, flags, bmode, border_value)
    y, u, v = image.planes()
    by, bu, bv = rgb_to_yuv((float(border_value),) * 3)
    ys = _warp(y, m, size, flags, bmode, by)
    if format == "GRAY":
        return cv2.LUT(ys, _Y_TO_GRAY)
    # Chroma sample i covers luma pixels 2i and 2i+1: halve the frame side of the map. U and V share
    # one map (computing the fixed-point maps costs more than the remap itself).
    mc = m * 0.5
    maps = _fixed_point_maps(mc, size) if flags == cv2.INTER_LINEAR else None
    yuv = cv2.merge([ys, _warp(u, mc, size, flags, bmode, bu, maps), _warp(v, mc, size, flags, bmode, bv, maps)])
    rgb = cv2.transform(yuv, _YUV_TO_RGB)
    return rgb if format == "RGB" else Image(rgb, "RGB").to(format).data


def warp_rects(image: Image, rects: Rects, tensor_size: tuple[int, int], format: str = "RGB",
               border: str = "replicate", border_value: float = 0, interpolation: str = "linear") -> np.ndarray:
    """One crop per rect, stacked: (N, H, W, C) uint8 (C = 1 for GRAY)."""
    w, h = int(tensor_size[0]), int(tensor_size[1])
    c = 1 if format == "GRAY" else 3
    out = np.empty((len(rects), h, w, c), np.uint8)
    for i, rect in enumerate(rects.data):
        out[i] = warp_rect(image, rect, tensor_size, format, border, border_value, interpolation).reshape(h, w, c)
    return out
