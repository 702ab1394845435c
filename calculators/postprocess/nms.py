"""Non-maximum suppression: hard (OpenCV's ``cv2.dnn.NMSBoxes``) and weighted (MediaPipe's).

Pure functions on (N, 4) xyxy boxes; no graph needed. ``weighted_nms`` follows MediaPipe's
NonMaxSuppressionCalculator with ``algorithm: WEIGHTED`` and ``overlap_type: INTERSECTION_OVER_UNION``:
the best remaining detection absorbs every detection overlapping it by more than the threshold
(itself included), and its box and keypoints become their score-weighted mean, its score stays its own.
"""

from __future__ import annotations

import cv2
import numpy as np

from calculators.types import Detections


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` against (N, 4) ``boxes`` (0 where they do not intersect)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    # np.maximum and a masked divide rather than np.clip and np.errstate + np.where: the same
    # values with a third of the calls' overhead (weighted NMS calls this once per kept detection);
    # the quotient at least float32, so that integer boxes divide too.
    inter = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    iou = np.divide(inter, union, out=np.zeros(np.shape(inter), np.result_type(inter, union, np.float32)),
                    where=union > 0)
    return iou.astype(np.float32)


def hard_nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, score_threshold: float = 0.0,
             max_detections: int = 0) -> np.ndarray:
    """Indices kept by classic NMS (``cv2.dnn.NMSBoxes``), best score first."""
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    xywh = np.asarray(xyxy, np.float32).copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), np.asarray(scores, np.float32).tolist(), float(score_threshold),
                            float(iou_threshold), top_k=int(max_detections))
    return np.asarray(keep, np.int64).reshape(-1)


def pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """(N, N) IoU of every pair of (N, 4) xyxy ``boxes``: row i is ``box_iou(boxes[i], boxes)``."""
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[:, None] + areas[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(np.shape(inter), np.result_type(inter, union, np.float32)),
                    where=union > 0)
    return iou.astype(np.float32)


# Between these many candidates the IoU of every pair is computed at once (N^2 floats); outside,
# one row per kept detection (fewer numpy calls for a handful, bounded memory for thousands).
_PAIRWISE_MIN, _PAIRWISE_MAX = 16, 512


def weighted_nms(det: Detections, iou_threshold: float = 0.3, max_detections: int = 0) -> Detections:
    """MediaPipe's weighted NMS. Returns new Detections, best score first."""
    if len(det) == 0:
        return det
    order = np.argsort(-det.scores, kind="stable")
    boxes, scores, kps = det.xyxy, det.scores, det.keypoints
    # Rows of IoU one at a time for a few candidates; all pairs at once when many would be kept.
    pairwise = pairwise_iou(boxes) if _PAIRWISE_MIN <= len(det) <= _PAIRWISE_MAX else None
    out_boxes, out_kps, picked = [], [], []
    remaining = order
    while remaining.size:
        top = remaining[0]
        iou = pairwise[top, remaining] if pairwise is not None else box_iou(boxes[top], boxes[remaining])
        overlap = iou > iou_threshold
        members = remaining[overlap]
        if members.size == 0:  # a degenerate (zero-area) top box overlaps nothing, not even itself
            members = remaining[:1]
        w = scores[members][:, None]
        total = float(w.sum())
        out_boxes.append((boxes[members] * w).sum(axis=0) / total)
        if kps is not None:
            out_kps.append((kps[members] * w[:, :, None]).sum(axis=0) / total)
        picked.append(top)
        remaining = remaining[iou <= iou_threshold]
        remaining = remaining[remaining != top]
        if max_detections and len(picked) >= max_detections:
            break
    idx = np.asarray(picked, np.int64)
    return Detections(np.asarray(out_boxes, np.float32), scores[idx], det.class_ids[idx],
                      tuple(det.labels[i] for i in picked),
                      None if kps is None else np.asarray(out_kps, np.float32),
                      None if det.tracker_ids is None else det.tracker_ids[idx])


def nms(det: Detections, iou_threshold: float, method: str = "hard", class_agnostic: bool = True,
        max_detections: int = 0) -> Detections:
    """NMS on Detections: ``method`` hard or weighted; per class unless ``class_agnostic``."""
    if method not in ("hard", "weighted"):
        raise ValueError(f"method must be 'hard' or 'weighted', got {method!r}")
    if len(det) == 0:
        return det
    if not class_agnostic:
        parts = [nms(det.select(det.class_ids == c), iou_threshold, method, True, 0)
                 for c in np.unique(det.class_ids)]
        merged = concat(parts)
        order = np.argsort(-merged.scores, kind="stable")
        if max_detections:
            order = order[:max_detections]
        return merged.select(order)
    if method == "weighted":
        return weighted_nms(det, iou_threshold, max_detections)
    return det.select(hard_nms(det.xyxy, det.scores, iou_threshold, max_detections=max_detections))


def concat(parts: list[Detections]) -> Detections:
    """One Detections holding all of ``parts`` (keypoints kept only when every part has them)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    kp = None
    if all(p.keypoints is not None for p in parts):
        kp = np.concatenate([p.keypoints for p in parts])
    tid = None
    if all(p.tracker_ids is not None for p in parts):
        tid = np.concatenate([p.tracker_ids for p in parts])
    return Detections(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.scores for p in parts]),
                      np.concatenate([p.class_ids for p in parts]), sum((p.labels for p in parts), ()),
                      kp, tid)
