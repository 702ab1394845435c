"""CenterFace output decoding (pure numpy, no graph needed).

The math follows deface's ``centerface.py`` (CenterFace by Xu et al.): a stride-4 heatmap of face
centres, log box sizes, sub-cell centre offsets and five landmarks relative to the box corner.
Results are in the pixels of the network input (the tensor).
"""

from __future__ import annotations

import numpy as np

STRIDE = 4


def decode_centerface(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray,
                      threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decodes one image's CenterFace outputs.

    ``heatmap`` (1, 1, h, w), ``scale`` (1, 2, h, w), ``offset`` (1, 2, h, w), ``landmarks``
    (1, 10, h, w) (a missing batch axis is accepted). Returns (xyxy (M, 4), scores (M,),
    keypoints (M, 5, 2)) in tensor pixels (the input is (4h, 4w)), before NMS.
    """
    heat = np.asarray(heatmap, np.float32).reshape(heatmap.shape[-2:])
    h, w = heat.shape
    sc = np.asarray(scale, np.float32).reshape(2, h, w)
    off = np.asarray(offset, np.float32).reshape(2, h, w)
    lms = np.asarray(landmarks, np.float32).reshape(10, h, w)
    ys, xs = np.nonzero(heat > threshold)
    if ys.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    in_h, in_w = h * STRIDE, w * STRIDE
    bh = np.exp(sc[0, ys, xs]) * STRIDE
    bw = np.exp(sc[1, ys, xs]) * STRIDE
    x0 = np.clip((xs + off[1, ys, xs] + 0.5) * STRIDE - bw / 2, 0, in_w)
    y0 = np.clip((ys + off[0, ys, xs] + 0.5) * STRIDE - bh / 2, 0, in_h)
    xyxy = np.stack([x0, y0, np.minimum(x0 + bw, in_w), np.minimum(y0 + bh, in_h)], axis=1)
    kp = np.empty((ys.size, 5, 2), np.float32)
    kp[:, :, 0] = lms[1::2, ys, xs].T * bw[:, None] + x0[:, None]
    kp[:, :, 1] = lms[0::2, ys, xs].T * bh[:, None] + y0[:, None]
    return xyxy.astype(np.float32), heat[ys, xs].astype(np.float32), kp
