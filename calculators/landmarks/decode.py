"""Landmark model outputs -> landmarks (pure numpy), as MediaPipe's tensor calculators do (v0.10.21).

- :func:`decode_landmarks`: TensorsToLandmarksCalculator (x, y, z, visibility, presence per point,
  optional sigmoid, horizontal flip, ``normalize_z``).
- :func:`refine_from_heatmap`: RefineLandmarksFromHeatmapCalculator (the confidence-weighted mean
  of a ``kernel`` x ``kernel`` window of the sigmoid heatmap around each point).
- :func:`rotate_world`: WorldLandmarkProjectionCalculator (world x, y turned by the ROI's rotation).
"""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def sigmoid_float(x: float) -> float:
    """:func:`sigmoid` of one float, without numpy: the C library's exp, which numpy's float64 exp
    equals on some CPUs and differs from by an ulp on others (numpy's SIMD exp on AVX-512)."""
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:  # exp(-x) is inf: numpy's 1 / (1 + inf)
        return 0.0


def decode_landmarks(raw: np.ndarray, num_landmarks: int, tensor_size: tuple[int, int], *,
                     visibility_activation: str = "none", presence_activation: str = "none",
                     flip_horizontally: bool = False, normalize_z: float = 1.0):
    """One object's landmark tensor -> (points (K, 3) in tensor pixels, z scaled like x and divided
    by ``normalize_z``; visibility (K,) or None; presence (K,) or None)."""
    for name, act in (("visibility_activation", visibility_activation), ("presence_activation", presence_activation)):
        if act not in ("none", "sigmoid"):
            raise ValueError(f"{name} must be none or sigmoid, got {act!r}")
    flat = np.array(raw, np.float64).reshape(-1)  # a copy: the points returned are the caller's
    if flat.size % num_landmarks:
        raise ValueError(f"a landmark tensor of {flat.size} values does not split into {num_landmarks} landmarks")
    d = flat.size // num_landmarks
    v = flat.reshape(num_landmarks, d)
    if d == 3 and not flip_horizontally and normalize_z == 1.0:
        # x, y, z as they are (the face mesh): the float64 copy itself, no per-column copies
        # (this runs per object on a tracking loop's path)
        return v, None, None
    if d >= 3:  # the first three columns at once (the same values as column by column)
        pts = v[:, :3].copy()
        if flip_horizontally:
            pts[:, 0] = tensor_size[0] - v[:, 0]
        if normalize_z != 1.0:
            pts[:, 2] /= normalize_z
    else:
        pts = np.zeros((num_landmarks, 3))
        pts[:, 0] = tensor_size[0] - v[:, 0] if flip_horizontally else v[:, 0]
        if d > 1:
            pts[:, 1] = v[:, 1]
    vis = (sigmoid(v[:, 3]) if visibility_activation == "sigmoid" else v[:, 3]) if d > 3 else None
    pres = (sigmoid(v[:, 4]) if presence_activation == "sigmoid" else v[:, 4]) if d > 4 else None
    return pts, vis, pres


def refine_from_heatmap(xy_norm: np.ndarray, heatmap: np.ndarray, kernel: int = 7,
                        min_confidence: float = 0.5) -> np.ndarray:
    """Refined (K, 2) coordinates normalised to the tensor, from an (H, W, K) heatmap of logits."""
    hm = np.asarray(heatmap)  # in its own dtype: only the windows' cells are converted (sigmoid's
    if hm.ndim == 4:          # float64, the same values), not the whole (H, W, K) map (pose: 1.3 MB)
        hm = hm[0]
    h, w, k = hm.shape
    if k != xy_norm.shape[0]:
        raise ValueError(f"the heatmap has {k} layers for {xy_norm.shape[0]} landmarks")
    out = xy_norm.copy()
    off = (kernel - 1) // 2
    # All K windows at once (this runs on the tracking loop's path: a loop over the points cost
    # ~45 us each): each window's rows and columns, clipped to the heatmap, as index grids; cells
    # outside a clipped window are masked out of the sums.
    cols = np.trunc(xy_norm[:, 0] * w).astype(np.int64)  # truncation, as C++'s int()
    rows = np.trunc(xy_norm[:, 1] * h).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    d = np.arange(-off, off + 1)
    rr, cc = rows[:, None] + d, cols[:, None] + d                       # (K, kernel) each
    rv, cv = (rr >= 0) & (rr < h), (cc >= 0) & (cc < w)
    valid = (rv[:, :, None] & cv[:, None, :]) & inside[:, None, None]    # (K, kernel, kernel)
    r_i, c_i = np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)
    layer = np.arange(k)[:, None, None]
    conf = np.where(valid, sigmoid(hm[r_i[:, :, None], c_i[:, None, :], layer]), 0.0)
    total = conf.sum(axis=(1, 2))
    ok = inside & (conf.max(axis=(1, 2)) >= min_confidence) & (total > 0)
    if ok.any():
        safe = np.where(ok, total, 1.0)
        out[ok, 0] = ((cc[:, None, :] * conf).sum(axis=(1, 2)) / w / safe)[ok]
        out[ok, 1] = ((rr[:, :, None] * conf).sum(axis=(1, 2)) / h / safe)[ok]
    return out


def rotate_world(world: np.ndarray, rotation: float) -> np.ndarray:
    """(K, 3) world landmarks with x, y turned by the ROI rotation (z unchanged)."""
    c, s = math.cos(rotation), math.sin(rotation)
    out = world.copy()
    out[:, 0] = c * world[:, 0] - s * world[:, 1]
    out[:, 1] = s * world[:, 0] + c * world[:, 1]
    return out
