"""Region-of-interest geometry of MediaPipe's landmark solutions, in frame pixels (pure numpy).

Each function follows one MediaPipe calculator (mediapipe/calculators/util/, v0.10.21), computed in
pixels instead of normalised coordinates, which is the same arithmetic MediaPipe does once it has
multiplied by the image size:

- :func:`detections_to_rects`: DetectionsToRectsCalculator (box centre and size) and
  AlignmentPointsRectsCalculator (centre keypoint, size twice its distance to a scale keypoint),
  rotation from two keypoints (``target - atan2(-(y1 - y0), x1 - x0)``).
- :func:`transform_rects`: RectTransformationCalculator (shift along the rotated axes, square on
  the long or short side, scale).
- :func:`landmarks_to_rects`: LandmarksToDetectionCalculator + DetectionsToRects (``box``,
  ``alignment``) and HandLandmarksToRectCalculator (``rotated_box``: the box in the object's own
  rotated axes).
- :func:`associate_rects`: AssociationNormRectCalculator (axis-aligned IoU, later lists win).
- :func:`roi_matrix` / :func:`project_points`: ImageToTensorCalculator's rotated crop (rect corners
  onto tensor corners) and LandmarkProjectionCalculator (back through the same rect).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from calculators.types import Detections, Rects


def normalize_radians(angle):
    """Wraps angles to [-pi, pi) (MediaPipe's NormalizeRadians)."""
    return angle - 2 * math.pi * np.floor((angle + math.pi) / (2 * math.pi))


def rotation_between(p0: np.ndarray, p1: np.ndarray, target_degrees: float) -> np.ndarray:
    """Rotation that turns the vector p0 -> p1 (pixels, (N, 2)) to ``target_degrees`` (0: pointing
    right, 90: pointing up), as MediaPipe computes it."""
    target = math.pi * target_degrees / 180.0
    return normalize_radians(target - np.arctan2(-(p1[:, 1] - p0[:, 1]), p1[:, 0] - p0[:, 0]))


def _end_point(points: np.ndarray, end: Sequence[int], weights: Sequence[float] | None) -> np.ndarray:
    idx = list(end)
    w = np.full(len(idx), 1.0 / len(idx)) if weights is None else np.asarray(weights, np.float64)
    if len(w) != len(idx):
        raise ValueError(f"rotation_end_weights needs one weight per rotation_end index, got {len(w)} for {idx}")
    return np.tensordot(w, points[:, idx, :2].transpose(1, 0, 2), axes=1)


def detections_to_rects(det: Detections, frame_size: tuple[int, int], mode: str = "box",
                        rotation: tuple[int, int] | None = None, target_degrees: float = 0.0,
                        max_count: int = 0) -> Rects:
    """Rects from detections (frame pixels): ``box`` (the box's centre and size) or ``alignment``
    (centre at keypoint ``rotation[0]``, a square of twice its distance to keypoint ``rotation[1]``);
    rotated so that keypoint ``rotation[0]`` -> ``rotation[1]`` points at ``target_degrees``.
    ``max_count`` keeps the first N detections (MediaPipe's ClipDetectionVectorSize; 0: all)."""
    if max_count:
        det = det.select(np.arange(min(max_count, len(det))))
    n = len(det)
    if n == 0:
        return Rects.empty(frame_size)
    xyxy = det.xyxy.astype(np.float64)
    kp = None if det.keypoints is None else det.keypoints.astype(np.float64)
    if (rotation is not None or mode == "alignment") and (kp is None or kp.shape[1] <= max(rotation or (0, 0))):
        have = 0 if kp is None else kp.shape[1]
        raise ValueError(f"rotation keypoints {rotation} need detections with more keypoints, these have {have}")
    if mode == "box":
        cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    elif mode == "alignment":
        if rotation is None:
            raise ValueError("mode alignment needs rotation: [centre keypoint, scale keypoint]")
        c, s = kp[:, rotation[0]], kp[:, rotation[1]]
        cx, cy = c[:, 0], c[:, 1]
        w = h = np.hypot(*(s - c).T) * 2.0
    else:
        raise ValueError(f"mode must be box or alignment, got {mode!r}")
    r = np.zeros(n) if rotation is None else rotation_between(kp[:, rotation[0]], kp[:, rotation[1]], target_degrees)
    return Rects(np.stack([cx, cy, w, h, r], axis=1), frame_size)


def transform_rects(rects: Rects, scale: tuple[float, float] = (1.0, 1.0), shift: tuple[float, float] = (0.0, 0.0),
                    square: str | None = None, rotation_degrees: float = 0.0) -> Rects:
    """MediaPipe's RectTransformation: add ``rotation_degrees``, shift by ``shift`` x (width, height)
    along the rect's own axes, make it square on its ``long`` or ``short`` side, scale by ``scale``."""
    if len(rects) == 0:
        return rects
    if square not in (None, "long", "short"):
        raise ValueError(f"square must be long, short or null, got {square!r}")
    if len(rects) <= _FEW:
        return Rects(np.array([_transform_rect(row, scale, shift, square, rotation_degrees)
                               for row in rects.data.tolist()]), rects.frame_size)
    cx, cy, w, h, r = (rects.data[:, i].copy() for i in range(5))
    if rotation_degrees:
        r = normalize_radians(r + math.pi * rotation_degrees / 180.0)
    sx, sy = shift
    cx = cx + w * sx * np.cos(r) - h * sy * np.sin(r)
    cy = cy + w * sx * np.sin(r) + h * sy * np.cos(r)
    if square == "long":
        w = h = np.maximum(w, h)
    elif square == "short":
        w = h = np.minimum(w, h)
    return Rects(np.stack([cx, cy, w * scale[0], h * scale[1], r], axis=1), rects.frame_size)


# Up to this many rects (or objects), the rect functions work per rect on Python floats: for the
# one or two faces or hands of a tracking loop that is several times cheaper than numpy calls on
# tiny arrays. The same IEEE operations in the same order, so the same floats where numpy's float64
# cos/sin/arctan2 are the C library's (the AMD VM of 2026-12-01); where numpy's SIMD ones differ
# from libm's by an ulp (the Intel VM of 2026-12-02), the trigonometric results do too
# (tests/landmarks/test_fast_paths.py compares the paths within a few ulps).
_FEW = 4


def _max(a: float, b: float) -> float:
    """``np.maximum`` of two floats (NaN wins, as numpy's does)."""
    return a if a >= b or a != a else b


def _min(a: float, b: float) -> float:
    """``np.minimum`` of two floats (NaN wins)."""
    return a if a <= b or a != a else b


def _transform_rect(row: list, scale, shift, square, rotation_degrees: float) -> tuple:
    """:func:`transform_rects` for one rect (cx, cy, w, h, r), in the same operations."""
    cx, cy, w, h, r = row
    if rotation_degrees:
        r = _normalize_radians(r + math.pi * rotation_degrees / 180.0)
    sx, sy = shift
    c, s = math.cos(r), math.sin(r)
    cx = cx + w * sx * c - h * sy * s
    cy = cy + w * sx * s + h * sy * c
    if square == "long":
        w = h = _max(w, h)
    elif square == "short":
        w = h = _min(w, h)
    return cx, cy, w * scale[0], h * scale[1], r


def _normalize_radians(angle: float) -> float:
    """:func:`normalize_radians` of one float."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def landmarks_to_rects(points: np.ndarray, frame_size: tuple[int, int], mode: str = "box",
                       indices: Sequence[int] | None = None, rotation_start: int | None = None,
                       rotation_end: Sequence[int] | None = None, rotation_end_weights: Sequence[float] | None = None,
                       target_degrees: float = 0.0) -> Rects:
    """Rects around landmarks (N, K, 2+) in pixels.

    ``box``: the axis-aligned extent of the points (``indices``: a subset), rotated by the vector
    from point ``rotation_start`` to the (weighted) mean of ``rotation_end``; ``alignment``: centre at
    ``rotation_start``, size twice the distance to ``rotation_end``; ``rotated_box``: the extent
    measured in the axes turned by that rotation (MediaPipe's HandLandmarksToRect)."""
    points = np.asarray(points)
    n = points.shape[0]
    if n == 0:
        return Rects.empty(frame_size)
    if mode == "box" and n <= _FEW and (rotation_start is None or (rotation_end and len(rotation_end) == 1
                                                                   and rotation_end_weights is None)):
        return _boxes(points, frame_size, indices, rotation_start, rotation_end, target_degrees)
    pts = np.asarray(points, np.float64)
    sub = pts if indices is None else pts[:, list(indices)]
    r = np.zeros(n)
    p0 = p1 = None
    if rotation_start is not None:
        if not rotation_end:
            raise ValueError("rotation_start needs rotation_end")
        p0 = pts[:, rotation_start, :2]
        p1 = _end_point(pts, rotation_end, rotation_end_weights)
        r = rotation_between(p0, p1, target_degrees)
    if mode == "alignment":
        if p0 is None:
            raise ValueError("mode alignment needs rotation_start (centre) and rotation_end (scale point)")
        size = np.hypot(*(p1 - p0).T) * 2.0
        return Rects(np.stack([p0[:, 0], p0[:, 1], size, size, r], axis=1), frame_size)
    lo, hi = sub[..., :2].min(axis=1), sub[..., :2].max(axis=1)
    if mode == "box":
        c, wh = (lo + hi) / 2, hi - lo
        return Rects(np.stack([c[:, 0], c[:, 1], wh[:, 0], wh[:, 1], r], axis=1), frame_size)
    if mode != "rotated_box":
        raise ValueError(f"mode must be box, alignment or rotated_box, got {mode!r}")
    centre = (lo + hi) / 2
    rows = []
    for i in range(n):
        rev = normalize_radians(-r[i])
        d = sub[i, :, :2] - centre[i]
        cos, sin = math.cos(rev), math.sin(rev)
        px, py = d[:, 0] * cos - d[:, 1] * sin, d[:, 0] * sin + d[:, 1] * cos
        pcx, pcy = (px.max() + px.min()) / 2, (py.max() + py.min()) / 2
        cos, sin = math.cos(r[i]), math.sin(r[i])
        rows.append((pcx * cos - pcy * sin + centre[i, 0], pcx * sin + pcy * cos + centre[i, 1],
                     px.max() - px.min(), py.max() - py.min(), r[i]))
    return Rects(np.asarray(rows), frame_size)


def _boxes(points: np.ndarray, frame_size, indices, rotation_start, rotation_end, target_degrees: float) -> Rects:
    """:func:`landmarks_to_rects`' ``box`` mode for a few objects and one rotation end point: two
    numpy reductions for all objects, the rest on Python floats (the same values: a float32
    extreme converts to the float64 extreme exactly; one end point of weight 1 is itself)."""
    sub = points[..., :2] if indices is None else points[:, list(indices), :2]
    lo, hi = sub.min(axis=1).tolist(), sub.max(axis=1).tolist()
    if rotation_start is not None:
        start, end = points[:, rotation_start, :2].tolist(), points[:, rotation_end[0], :2].tolist()
        target = math.pi * target_degrees / 180.0
    rows = []
    for i, ((x0, y0), (x1, y1)) in enumerate(zip(lo, hi)):
        r = 0.0
        if rotation_start is not None:
            (ax, ay), (bx, by) = start[i], end[i]
            r = _normalize_radians(target - math.atan2(-(by - ay), bx - ax))
        rows.append(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, r))
    return Rects(np.array(rows), frame_size)


def rect_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two rects' axis-aligned boxes (rotation ignored, as MediaPipe's association does)."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def associate_rects(lists: Sequence[Rects], min_similarity: float = 0.5) -> Rects:
    """MediaPipe's AssociationNormRect: one list of non-overlapping rects from ``lists`` in increasing
    priority. Each new rect removes the rects already kept that overlap it by IoU above
    ``min_similarity`` and is appended, so a tracked rect (given last) replaces the detection of the
    same object, and the result lists surviving detections first."""
    kept: list[np.ndarray] = []
    frame_size = (0, 0)
    for rects in lists:
        if rects is None:
            continue
        frame_size = rects.frame_size if rects.frame_size != (0, 0) else frame_size
        for row in rects.data:
            kept = [k for k in kept if rect_iou(row, k) <= min_similarity]
            kept.append(row)
    return Rects(np.asarray(kept).reshape(-1, 5), frame_size)


def roi_matrix(rect: np.ndarray, tensor_size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine map from tensor pixels to frame pixels for one rect (cx, cy, w, h, rotation):
    the rect's corners land on the tensor's corners (ImageToTensorCalculator's rotated crop)."""
    cx, cy, w, h, r = (float(v) for v in rect)
    tw, th = tensor_size
    c, s = math.cos(r), math.sin(r)
    # frame = centre + R @ ((u / tw - 0.5) * w, (v / th - 0.5) * h). Few numpy calls (this runs per
    # crop and per projection on a tracking loop's path); the product stays numpy's (its float64
    # matrix-vector product fuses a multiply-add, which Python's floats cannot).
    m = np.empty((2, 3))
    a = m[:, :2]
    a[...] = ((c * w / tw, -s * h / th), (s * w / tw, c * h / th))
    t = a @ np.array((tw / 2.0, th / 2.0))
    m[0, 2], m[1, 2] = cx - float(t[0]), cy - float(t[1])
    return m


def project_points(points: np.ndarray, rect: np.ndarray, tensor_size: tuple[int, int]) -> np.ndarray:
    """Maps (K, 3) tensor-pixel landmarks (x, y, z with z in tensor pixels like x) to frame pixels
    through ``rect``: x, y by :func:`roi_matrix`, z scaled as x (MediaPipe's LandmarkProjection)."""
    m = roi_matrix(rect, tensor_size)
    # One (K, 3) x (3, 3) product and one add (x, y through the rect, z scaled): twice as fast as
    # the 2x2 product on the x, y columns plus a z column, and the same floats (tests/landmarks/
    # test_fast_paths.py checks it against them)
    (a, b, c), (d, e, f) = m.tolist()
    linear = np.array(((a, d, 0.0), (b, e, 0.0), (0.0, 0.0, float(rect[2]) / tensor_size[0])))
    out = np.asarray(points, np.float64)[:, :3] @ linear
    out += (c, f, 0.0)
    return out
