"""MediaPipe's landmark connection lists (which points a drawing joins), as data.

``connections.json`` holds the index pairs of mediapipe==0.10.21's
``mediapipe/python/solutions/{face_mesh,hands,pose}_connections.py`` (Apache-2.0):
``face_mesh_tesselation`` (2556 edges of the 468-point mesh), ``face_mesh_contours`` (lips, eyes,
brows, oval), ``face_mesh_irises`` (478-point model), ``hand`` (21 points), ``pose`` (33 points).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

NAMES = ("face_mesh_tesselation", "face_mesh_contours", "face_mesh_irises", "hand", "pose")


@lru_cache(maxsize=None)
def connections(name: str) -> np.ndarray:
    """(E, 2) int32 index pairs of the named list (one of ``NAMES``)."""
    if name not in NAMES:
        raise ValueError(f"connections must be one of {NAMES}, got {name!r}")
    data = json.loads((Path(__file__).with_name("connections.json")).read_text())
    arr = np.asarray(data[name], np.int32).reshape(-1, 2)
    arr.setflags(write=False)
    return arr
