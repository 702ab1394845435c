"""YOLO output decoding, v5 and v8 styles (pure numpy, no graph needed).

- v5 (also v7, YOLOX-style exports): (1, N, 5 + C) rows of cx, cy, w, h, objectness, class scores;
  a row's score is objectness times its best class score.
- v8 (also v9/v11): (1, 4 + C, N) columns of cx, cy, w, h, class scores (no objectness).

Boxes come out in the pixels of the network input (the tensor), before NMS.
"""

from __future__ import annotations

import numpy as np


def detect_yolo_version(shape: tuple[int, ...], num_classes: int | None = None) -> str:
    """Guesses v5 or v8 from an output shape: v8 puts the (small) attribute axis first."""
    if len(shape) == 3:
        shape = shape[1:]
    if len(shape) != 2:
        raise ValueError(f"a YOLO output must be (1, N, 5+C) or (1, 4+C, N), got {shape}")
    a, b = shape
    if num_classes is not None:
        if b == 5 + num_classes:
            return "v5"
        if a == 4 + num_classes:
            return "v8"
        raise ValueError(f"output shape {shape} fits neither v5 (N, {5 + num_classes}) nor v8 "
                         f"({4 + num_classes}, N) for {num_classes} classes")
    return "v8" if a < b else "v5"


def decode_yolo(output: np.ndarray, version: str = "auto", score_threshold: float = 0.25,
                num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decodes one image's YOLO output. Returns (xyxy (M, 4), scores (M,), class_ids (M,))."""
    out = np.asarray(output, np.float32)
    if version == "auto":
        version = detect_yolo_version(out.shape, num_classes)
    if out.ndim == 3:
        if out.shape[0] != 1:
            raise ValueError(f"decode_yolo decodes one image; got a batch of {out.shape[0]}")
        out = out[0]
    if version == "v8":
        rows = out.T
        cls = rows[:, 4:]
        obj = None
    elif version == "v5":
        rows = out
        cls = rows[:, 5:]
        obj = rows[:, 4]
    else:
        raise ValueError(f"version must be v5, v8 or auto, got {version!r}")
    if cls.shape[1] == 0:
        raise ValueError(f"YOLO {version} output has no class columns: shape {output.shape}")
    class_ids = cls.argmax(axis=1)
    scores = cls[np.arange(len(rows)), class_ids]
    if obj is not None:
        scores = scores * obj
    keep = np.flatnonzero(scores >= score_threshold)
    r = rows[keep]
    half_w, half_h = r[:, 2] / 2, r[:, 3] / 2
    xyxy = np.stack([r[:, 0] - half_w, r[:, 1] - half_h, r[:, 0] + half_w, r[:, 1] + half_h], axis=1)
    return xyxy.astype(np.float32), scores[keep].astype(np.float32), class_ids[keep].astype(np.int32)
