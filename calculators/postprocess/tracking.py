"""A simple IoU tracker that gives detections stable ids (pure numpy, no graph needed).

Each frame, detections are matched greedily (best IoU first) to the tracks alive in the previous
frames; a match above ``iou_threshold`` keeps the track's id, an unmatched detection starts a new
track, and a track unseen for more than ``max_age`` frames is forgotten. Matching is per class.
"""

from __future__ import annotations

import numpy as np

from calculators.postprocess.nms import box_iou
from calculators.types import Detections


class IouTracker:
    """Stateful tracker: ``update(detections) -> detections with tracker_ids``."""

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 5, min_hits: int = 1) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_age < 0 or min_hits < 1:
            raise ValueError(f"max_age must be >= 0 and min_hits >= 1, got {max_age}, {min_hits}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.min_hits = min_hits
        self._next_id = 1
        # per track: id, box, class id, frames since seen, hits
        self._tracks: list[dict] = []

    def update(self, det: Detections) -> Detections:
        """Assigns ids; detections of tracks younger than ``min_hits`` are dropped."""
        n = len(det)
        ids = np.full(n, -1, np.int64)
        pairs = []
        for ti, tr in enumerate(self._tracks):
            if n:
                iou = box_iou(tr["box"], det.xyxy)
                iou[det.class_ids != tr["cls"]] = 0.0
                for di in np.flatnonzero(iou > self.iou_threshold):
                    pairs.append((float(iou[di]), ti, int(di)))
        pairs.sort(key=lambda p: -p[0])
        used_t, used_d = set(), set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            tr = self._tracks[ti]
            tr.update(box=det.xyxy[di].copy(), age=0, hits=tr["hits"] + 1)
            ids[di] = tr["id"]
        for ti, tr in enumerate(self._tracks):
            if ti not in used_t:
                tr["age"] += 1
        self._tracks = [t for t in self._tracks if t["age"] <= self.max_age]
        for di in range(n):
            if di not in used_d:
                self._tracks.append({"id": self._next_id, "box": det.xyxy[di].copy(), "cls": int(det.class_ids[di]),
                                     "age": 0, "hits": 1})
                ids[di] = self._next_id
                self._next_id += 1
        hits = {t["id"]: t["hits"] for t in self._tracks}
        keep = np.array([hits[i] >= self.min_hits for i in ids], bool) if n else np.zeros(0, bool)
        return det.replace(tracker_ids=ids).select(keep)
