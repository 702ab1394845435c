"""Drawing detections, masks and text on frames with OpenCV (pure, no graph needed).

Every function draws on the array it is given: callers pass a copy (``Annotate`` does), never a
received payload. Colours are given in the canvas's channel order (RGB for RGB/RGBA/GRAY/I420
canvases). An ``I420`` canvas (planar YUV 4:2:0, see :class:`~calculators.types.Image`) is drawn on
natively: each shape goes on the Y plane in the colour's luma and on the half-size U and V planes in
its chroma, so a frame decoded as I420 is annotated and encoded without any colour conversion.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from calculators.types import Detections, i420_planes, rgb_to_yuv

# A colour-blind-friendly palette (Okabe-Ito), RGB.
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (255, 255, 255))
FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for(index: int, fmt: str = "RGB") -> tuple[int, int, int]:
    r, g, b = PALETTE[int(index) % len(PALETTE)]
    return (b, g, r) if fmt.startswith("BGR") else (r, g, b)


def _targets(canvas: np.ndarray, fmt: str, color) -> list[tuple[np.ndarray, float, tuple]]:
    """(array, coordinate scale, colour) for each plane a shape is drawn on."""
    if fmt != "I420":
        return [(canvas, 1.0, tuple(color))]
    y, u, v = i420_planes(canvas)
    cy, cu, cv = rgb_to_yuv(color)
    return [(y, 1.0, (cy,)), (u, 0.5, (cu,)), (v, 0.5, (cv,))]


def _pt(x: float, y: float, s: float) -> tuple[int, int]:
    return int(round(x * s)), int(round(y * s))


def _text(canvas: np.ndarray, text: str, org: tuple[int, int], color, scale: float, thickness: int = 1,
          fmt: str = "RGB") -> None:
    """Text on a filled box so it reads on any background."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    y = max(y, th + base)
    lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if lum > 128 else (255, 255, 255)
    for plane, s, c in _targets(canvas, fmt, color):
        cv2.rectangle(plane, _pt(x, y - th - base, s), _pt(x + tw, y, s), c, -1)
    for plane, s, c in _targets(canvas, fmt, ink):
        if s == 1.0:
            cv2.putText(plane, text, (x, y - base), FONT, scale, c, thickness, cv2.LINE_AA)
        else:  # the ink's neutral chroma under the glyphs, so they do not take the box's tint
            cv2.putText(plane, text, _pt(x, y - base, s), FONT, scale * s, c, thickness, cv2.LINE_AA)


def draw_detections(canvas: np.ndarray, det: Detections, fmt: str = "RGB", thickness: int = 2,
                    labels: bool = True, scores: bool = True, keypoints: bool = True, ids: bool = True,
                    text_scale: float = 0.4, color: Sequence[int] | None = None) -> np.ndarray:
    """Boxes, "label score #id" captions and keypoints of ``det`` on ``canvas`` (in place)."""
    for i in range(len(det)):
        key = det.tracker_ids[i] if det.tracker_ids is not None else det.class_ids[i]
        c = tuple(int(v) for v in color) if color is not None else color_for(key, fmt)
        x0, y0, x1, y1 = (float(v) for v in det.xyxy[i])
        for plane, s, pc in _targets(canvas, fmt, c):
            cv2.rectangle(plane, _pt(x0, y0, s), _pt(x1, y1, s), pc, max(1, round(thickness * s)), cv2.LINE_AA)
        parts = []
        if labels and det.labels[i]:
            parts.append(det.labels[i])
        if scores:
            parts.append(f"{det.scores[i]:.2f}")
        if ids and det.tracker_ids is not None:
            parts.append(f"#{det.tracker_ids[i]}")
        if parts:
            _text(canvas, " ".join(parts), _pt(x0, y0, 1.0), c, text_scale, fmt=fmt)
        if keypoints and det.keypoints is not None:
            r = max(1, thickness)
            for plane, s, pc in _targets(canvas, fmt, c):
                for x, y in det.keypoints[i]:
                    cv2.circle(plane, _pt(float(x), float(y), s), max(1, round(r * s)), pc, -1, cv2.LINE_AA)
    return canvas


def draw_mask(canvas: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float = 0.5,
              fmt: str = "RGB") -> np.ndarray:
    """Tints ``canvas`` with ``color`` where ``mask`` (HxW in [0, 1]) is set (in place).

    ``color`` is three values in the canvas's channel order; a 4-channel canvas keeps its alpha
    and a GRAY one takes the colour's luminance (``color`` read as RGB); an I420 one is tinted
    plane by plane (the mask halved for U and V).
    """
    if fmt == "I420":
        y, u, v = i420_planes(canvas)
        if mask.shape != y.shape:
            raise ValueError(f"mask shape {mask.shape} does not match the frame {y.shape}")
        half = cv2.resize(mask.astype(np.float32), (u.shape[1], u.shape[0]), interpolation=cv2.INTER_AREA)
        for plane, m, value in zip((y, u, v), (mask, half, half), rgb_to_yuv(color)):
            draw_mask(plane, m, (value, value, value), alpha, "GRAY1")
        return canvas
    if mask.shape != canvas.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the frame {canvas.shape[:2]}")
    m = mask.astype(np.float32) * alpha
    tint = np.asarray(color, np.float32)[:3]
    if canvas.ndim == 2:  # GRAY takes the luminance; "GRAY1" (one I420 plane) the value as given
        tint = tint[0] if fmt == "GRAY1" else np.float32(tint @ np.array([0.299, 0.587, 0.114], np.float32))
    else:
        m = m[:, :, None]
        if canvas.shape[2] == 4:
            m = np.concatenate([np.broadcast_to(m, (*m.shape[:2], 3)), np.zeros_like(m)], axis=2)
            tint = np.append(tint, 0.0)
    blended = canvas.astype(np.float32) * (1 - m) + tint * m
    canvas[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return canvas


def draw_lines(canvas: np.ndarray, lines: Sequence[str], text_scale: float = 0.45,
               color: Sequence[int] = (0, 0, 0), fmt: str = "RGB") -> np.ndarray:
    """Status lines (fps, latency) in the top-left corner (in place)."""
    (_, th), base = cv2.getTextSize("Ag", FONT, text_scale, 1)
    y = th + base + 2
    for line in lines:
        _text(canvas, line, (2, y), tuple(int(v) for v in color), text_scale, fmt=fmt)
        y += th + base + 4
    return canvas


def draw_landmarks(canvas: np.ndarray, points: np.ndarray, edges: np.ndarray | None, fmt: str = "RGB",
                   thickness: int = 1, radius: int = 2, color: Sequence[int] = (0, 255, 0),
                   point_color: Sequence[int] = (255, 48, 48)) -> np.ndarray:
    """One object's landmarks (K, 2+) on ``canvas`` (in place): ``edges`` (E, 2) index pairs as
    lines, then the points as dots (``radius`` 0: no dots). Colours in the canvas's channel order."""
    xy = np.asarray(points, np.float64)[:, :2]
    for plane, s, pc in _targets(canvas, fmt, tuple(int(v) for v in color)):
        if edges is not None and len(edges):
            segs = np.round(xy[np.asarray(edges)] * s).astype(np.int32)
            cv2.polylines(plane, list(segs), False, pc, max(1, round(thickness * s)), cv2.LINE_AA)
    if radius > 0:
        for plane, s, pc in _targets(canvas, fmt, tuple(int(v) for v in point_color)):
            r = max(1, round(radius * s))
            for x, y in xy:
                cv2.circle(plane, _pt(x, y, s), r, pc, -1, cv2.LINE_AA)
    return canvas
