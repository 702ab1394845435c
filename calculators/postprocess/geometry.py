"""Mapping detections between tensor and frame coordinates (pure numpy, no graph needed)."""

from __future__ import annotations

import numpy as np

from calculators.types import Detections, Transform


def scale_detections(det: Detections, sx: float, sy: float) -> Detections:
    """Detections with x multiplied by ``sx`` and y by ``sy`` (e.g. normalised -> tensor pixels)."""
    s = np.array([sx, sy, sx, sy], np.float32)
    kp = None if det.keypoints is None else det.keypoints * np.array([sx, sy], np.float32)
    return det.replace(xyxy=det.xyxy * s, keypoints=kp)


def project_detections(det: Detections, transform: Transform, clip: bool = False) -> Detections:
    """Maps detections from tensor pixels to frame pixels through ``transform``.

    Boxes map through their four corners (the axis-aligned hull, exact for scale and translation);
    keypoints map as points. ``clip`` clamps boxes and keypoints to the frame.
    """
    if len(det) == 0:
        return det
    m = transform.matrix
    if m[0, 1] == 0 and m[1, 0] == 0:
        # No rotation (letterbox, crop, stretch): corners map on their own axis, so the hull is
        # the two mapped corners, in order (a negative scale swaps them).
        scale = np.array([m[0, 0], m[1, 1], m[0, 0], m[1, 1]])
        shift = np.array([m[0, 2], m[1, 2], m[0, 2], m[1, 2]])
        mapped = det.xyxy.astype(np.float64) * scale + shift
        xyxy = np.concatenate([np.minimum(mapped[:, :2], mapped[:, 2:]),
                               np.maximum(mapped[:, :2], mapped[:, 2:])], axis=1).astype(np.float32)
    else:
        x0, y0, x1, y1 = det.xyxy.T
        corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1),
                            np.stack([x0, y1], 1)], axis=1)
        mapped = transform.to_frame(corners)
        xyxy = np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1).astype(np.float32)
    kp = None if det.keypoints is None else transform.to_frame(det.keypoints).astype(np.float32)
    if clip:
        w, h = transform.frame_size
        xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, w)
        xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, h)
        if kp is not None:
            kp[..., 0] = np.clip(kp[..., 0], 0, w)
            kp[..., 1] = np.clip(kp[..., 1], 0, h)
    return det.replace(xyxy=xyxy, keypoints=kp)
