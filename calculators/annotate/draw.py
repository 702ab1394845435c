"""Drawing detections, masks and text on frames with OpenCV (pure, no graph needed).

Every function draws on the array it is given: callers pass a copy (``Annotate`` does), never a
received payload.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from calculators.types import Detections

# A colour-blind-friendly palette (Okabe-Ito), RGB.
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (255, 255, 255))
FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for(index: int, fmt: str = "RGB") -> tuple[int, int, int]:
    r, g, b = PALETTE[int(index) % len(PALETTE)]
    return (b, g, r) if fmt.startswith("BGR") else (r, g, b)


def _text(canvas: np.ndarray, text: str, org: tuple[int, int], color, scale: float, thickness: int = 1) -> None:
    """Text on a filled box so it reads on any background."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    y = max(y, th + base)
    cv2.rectangle(canvas, (x, y - th - base), (x + tw, y), color, -1)
    lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if lum > 128 else (255, 255, 255)
    cv2.putText(canvas, text, (x, y - base), FONT, scale, ink, thickness, cv2.LINE_AA)


def draw_detections(canvas: np.ndarray, det: Detections, fmt: str = "RGB", thickness: int = 2,
                    labels: bool = True, scores: bool = True, keypoints: bool = True, ids: bool = True,
                    text_scale: float = 0.4, color: Sequence[int] | None = None) -> np.ndarray:
    """Boxes, "label score #id" captions and keypoints of ``det`` on ``canvas`` (in place)."""
    for i in range(len(det)):
        key = det.tracker_ids[i] if det.tracker_ids is not None else det.class_ids[i]
        c = tuple(int(v) for v in color) if color is not None else color_for(key, fmt)
        x0, y0, x1, y1 = (int(round(float(v))) for v in det.xyxy[i])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), c, thickness, cv2.LINE_AA)
        parts = []
        if labels and det.labels[i]:
            parts.append(det.labels[i])
        if scores:
            parts.append(f"{det.scores[i]:.2f}")
        if ids and det.tracker_ids is not None:
            parts.append(f"#{det.tracker_ids[i]}")
        if parts:
            _text(canvas, " ".join(parts), (x0, y0), c, text_scale)
        if keypoints and det.keypoints is not None:
            r = max(1, thickness)
            for x, y in det.keypoints[i]:
                cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), r, c, -1, cv2.LINE_AA)
    return canvas


def draw_mask(canvas: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float = 0.5) -> np.ndarray:
    """Tints ``canvas`` with ``color`` where ``mask`` (HxW in [0, 1]) is set (in place).

    ``color`` is three values in the canvas's channel order; a 4-channel canvas keeps its alpha
    and a GRAY one takes the colour's luminance (``color`` read as RGB).
    """
    if mask.shape != canvas.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the frame {canvas.shape[:2]}")
    m = mask.astype(np.float32) * alpha
    tint = np.asarray(color, np.float32)[:3]
    if canvas.ndim == 2:
        tint = np.float32(tint @ np.array([0.299, 0.587, 0.114], np.float32))
    else:
        m = m[:, :, None]
        if canvas.shape[2] == 4:
            m = np.concatenate([np.broadcast_to(m, (*m.shape[:2], 3)), np.zeros_like(m)], axis=2)
            tint = np.append(tint, 0.0)
    blended = canvas.astype(np.float32) * (1 - m) + tint * m
    canvas[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return canvas


def draw_lines(canvas: np.ndarray, lines: Sequence[str], text_scale: float = 0.45,
               color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Status lines (fps, latency) in the top-left corner (in place)."""
    (_, th), base = cv2.getTextSize("Ag", FONT, text_scale, 1)
    y = th + base + 2
    for line in lines:
        _text(canvas, line, (2, y), tuple(int(v) for v in color), text_scale)
        y += th + base + 4
    return canvas
