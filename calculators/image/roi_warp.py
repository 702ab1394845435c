"""Rotated region-of-interest crops: one affine warp per rect, from RGB/BGR/GRAY or I420 planes.

MediaPipe's ImageToTensorCalculator (OpenCV converter) maps a rotated rect's corners onto the
tensor's corners (``cv::getPerspectiveTransform`` of ``cv::boxPoints``, then ``warpPerspective``,
bilinear, ``BORDER_REPLICATE`` unless told otherwise). For a rect that map is affine, so each crop
here is one warp. Bilinear crops of RGB/BGR/GRAY frames sample the positions MediaPipe's OpenCV 4
samples, to the bit (:func:`rect_maps`); other interpolations and I420 planes warp by
:func:`calculators.landmarks.geometry.roi_matrix` (:func:`calculators.image.ops.warp_affine`). An I420 frame
is cropped plane by plane (the half-size chroma planes through the halved map) and only the small
crop is converted to the model's format, as :func:`calculators.image.ops.warp_i420` does for the
whole frame.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from calculators.image.ops import _YUV_TO_RGB, INTERPOLATIONS, _fixed_point_maps, _fixed_point_maps_many, warp_affine
from calculators.landmarks.geometry import roi_matrix
from calculators.types import _Y_TO_GRAY, Image, Rects, rgb_to_yuv

BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def _box_points(cx: float, cy: float, w: float, h: float, angle_degrees: float) -> np.ndarray:
    """The rect's four corners as OpenCV 4's ``cv::RotatedRect::points`` computes them (float32,
    in its order of operations). OpenCV 5's ``cv2.boxPoints`` rounds about half of them
    differently in the last bit, enough to move some samples by a 1/32-pixel step."""
    f = np.float32
    cx, cy, w, h = f(cx), f(cy), f(w), f(h)
    angle = float(f(angle_degrees)) * math.pi / 180.0
    b, a = f(f(math.cos(angle)) * f(0.5)), f(f(math.sin(angle)) * f(0.5))
    x0, y0 = f(f(cx - f(a * h)) - f(b * w)), f(f(cy + f(b * h)) - f(a * w))
    x1, y1 = f(f(cx + f(a * h)) - f(b * w)), f(f(cy - f(b * h)) - f(a * w))
    two = f(2.0)
    return np.array([[x0, y0], [x1, y1], [f(two * cx) - x0, f(two * cy) - y0],
                     [f(two * cx) - x1, f(two * cy) - y1]], np.float32)


def rect_maps(rect: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap``'s fixed-point maps (CV_16SC2 positions, CV_16UC1 1/32-pixel fractions) of the
    crop of ``rect`` (cx, cy, w, h, rotation; frame pixels) onto ``size``, as mediapipe 0.10.21's
    ImageToTensorCalculator makes them: the rect in float32 (GetRoi), its corners
    (:func:`_box_points`) mapped onto the tensor's by ``getPerspectiveTransform``, and each tensor
    pixel's source position as OpenCV 4's ``warpPerspective`` computes it (the inverse matrix, in
    blocks of 64 columns, rounded half to even to 1/32 pixel). The analytic affine map
    (:func:`calculators.landmarks.geometry.roi_matrix`) differs from this one by ~1e-4 pixel, which
    changes a few samples per crop and, on bigbuckbunny, moved the hand landmarks by 0.003 pixel
    (median; 0.15 at most) on MediaPipe's own regions, which the tracking loop amplifies."""
    cx, cy, w, h, r = (float(v) for v in rect)
    f = np.float32
    angle = float(f(f(r) * f(180.0))) / math.pi  # roi.rotation * 180.f / M_PI, stored as float
    tw, th = int(size[0]), int(size[1])
    corners = np.array([[0, th], [0, 0], [tw, 0], [tw, th]], np.float32)
    m = cv2.getPerspectiveTransform(_box_points(cx, cy, w, h, float(f(angle))), corners)
    m = cv2.invert(m, flags=cv2.DECOMP_LU)[1].ravel()
    # warpPerspective walks the output in blocks (16 rows x 1024 // 16 columns for tensors this
    # size) and adds x - block start to the block's start value: the same sums, in the same order.
    block = min(1024 // min(16, th), tw)
    xs = np.arange(tw, dtype=np.float64)
    x0 = (xs // block) * block
    dx = xs - x0
    ys = np.arange(th, dtype=np.float64)[:, None]
    wgt = _row_plus_column(m[6], m[7], m[8], x0, dx, ys)
    if wgt.all():
        np.divide(32.0, wgt, out=wgt)
    else:  # a point at infinity: OpenCV's W = W ? INTER_TAB_SIZE / W : 0
        wgt = np.divide(32.0, wgt, out=np.zeros_like(wgt), where=wgt != 0)
    x = _row_plus_column(m[0], m[1], m[2], x0, dx, ys)
    y = _row_plus_column(m[3], m[4], m[5], x0, dx, ys)
    lim = 32767.0 * 32  # positions OpenCV keeps (saturated to int16 pixels); cvRound rounds half to even
    for v in (x, y):
        v *= wgt
        np.rint(v, out=v)
        if v.min() < -lim - 32 or v.max() > lim:
            np.clip(v, -lim - 32, lim, out=v)
    x, y = x.astype(np.int32), y.astype(np.int32)
    xy = cv2.merge([(x >> 5).astype(np.int16), (y >> 5).astype(np.int16)])
    return xy, ((y & 31) << 5 | (x & 31)).astype(np.uint16)


def _row_plus_column(a: float, b: float, c: float, x0: np.ndarray, dx: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``((a * x0 + b * y) + c) + a * dx`` over the tensor grid, in that order (OpenCV's sums), in place."""
    v = (a * x0)[None, :] + b * ys
    v += c
    v += a * dx
    return v


@lru_cache(maxsize=16)
def _border_yuv(border_value: float) -> tuple[tuple[float, ...], ...]:
    """The grey ``border_value``'s (Y, U, V) bytes, each as ``cv2.remap``'s four-value border."""
    return tuple((float(c),) * 4 for c in rgb_to_yuv((border_value,) * 3))


def warp_rect(image: Image, rect: np.ndarray, tensor_size: tuple[int, int], format: str = "RGB",
              border: str = "replicate", border_value: float = 0, interpolation: str = "linear",
              dst: np.ndarray | None = None) -> np.ndarray:
    """The pixels of ``rect`` (cx, cy, w, h, rotation in frame pixels) resampled to ``tensor_size``
    (width, height), HxWxC (HxW for GRAY) uint8 in ``format``; written into ``dst`` when given
    (an RGB crop of an I420 frame; other cases copy into it)."""
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
        maps = rect_maps(rect, size) if flags == cv2.INTER_LINEAR else None
        return _into(dst, warp_affine(src.data, m, size, flags, bmode, border_value, maps))
    y, u, v = image.planes()
    by, bu, bv = _border_yuv(float(border_value))
    # Chroma sample i covers luma pixels 2i and 2i+1: halve the frame side of the map. U and V share
    # one map (computing the fixed-point maps costs more than the remap itself).
    mc = m * 0.5
    if flags == cv2.INTER_LINEAR:  # a tracking loop's crop, every frame: both maps at once, cv2.remap
        if format == "GRAY":
            ys = cv2.remap(y, *_fixed_point_maps(m, size), cv2.INTER_LINEAR, borderMode=bmode, borderValue=by)
            return _into(dst, cv2.LUT(ys, _Y_TO_GRAY))
        (yxy, yfrac), (xy, frac) = _fixed_point_maps_many((m, mc), size)
        ys = cv2.remap(y, yxy, yfrac, cv2.INTER_LINEAR, borderMode=bmode, borderValue=by)
        us = cv2.remap(u, xy, frac, cv2.INTER_LINEAR, borderMode=bmode, borderValue=bu)
        vs = cv2.remap(v, xy, frac, cv2.INTER_LINEAR, borderMode=bmode, borderValue=bv)
    else:
        ys = warp_affine(y, m, size, flags, bmode, by)
        if format == "GRAY":
            return _into(dst, cv2.LUT(ys, _Y_TO_GRAY))
        us, vs = (warp_affine(p, mc, size, flags, bmode, b) for p, b in ((u, bu), (v, bv)))
    yuv = cv2.merge([ys, us, vs])
    if format == "RGB":
        return cv2.transform(yuv, _YUV_TO_RGB) if dst is None else cv2.transform(yuv, _YUV_TO_RGB, dst=dst)
    return _into(dst, Image(cv2.transform(yuv, _YUV_TO_RGB), "RGB").to(format).data)


def _into(dst: np.ndarray | None, pixels: np.ndarray) -> np.ndarray:
    if dst is None:
        return pixels
    dst[...] = pixels.reshape(dst.shape)
    return dst


def warp_rects(image: Image, rects: Rects, tensor_size: tuple[int, int], format: str = "RGB",
               border: str = "replicate", border_value: float = 0, interpolation: str = "linear") -> np.ndarray:
    """One crop per rect, stacked: (N, H, W, C) uint8 (C = 1 for GRAY)."""
    w, h = int(tensor_size[0]), int(tensor_size[1])
    c = 1 if format == "GRAY" else 3
    out = np.empty((len(rects), h, w, c), np.uint8)
    for i, rect in enumerate(rects.data):
        warp_rect(image, rect, tensor_size, format, border, border_value, interpolation, out[i])
    return out
