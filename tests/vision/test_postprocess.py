"""Decoders, NMS, projection, tracking and masks as pure functions (table-driven)."""

from __future__ import annotations

import re
import warnings

import cv2

import numpy as np
import pytest

from calculators.postprocess.centerface import decode_centerface
from calculators.postprocess.geometry import project_detections, scale_detections
from calculators.postprocess.masks import blur_background, mask_from_tensor, mask_to_frame, refine_mask
from calculators.postprocess.nms import box_iou, hard_nms, nms, pairwise_iou, weighted_nms
from calculators.postprocess.ssd import BLAZEFACE_SHORT_ANCHORS, BLAZEFACE_SHORT_DECODE, decode_ssd, ssd_anchors, ssd_layout
from calculators.postprocess.tracking import IouTracker
from calculators.postprocess.yolo import decode_yolo, detect_yolo_version
from calculators.image.ops import fit_transform
from calculators.types import Detections


def test_blazeface_anchors_match_mediapipe_layout():
    a = ssd_anchors(BLAZEFACE_SHORT_ANCHORS)
    assert a.shape == (896, 4)
    # stride 8: 16x16 cells x 2 anchors; strides 16,16,16 share one 8x8 grid with 6 anchors per cell
    assert a[0].tolist() == a[1].tolist() == [0.5 / 16, 0.5 / 16, 1.0, 1.0]
    assert a[2].tolist() == [1.5 / 16, 0.5 / 16, 1.0, 1.0]
    assert a[511].tolist() == [15.5 / 16, 15.5 / 16, 1.0, 1.0]
    assert a[512].tolist() == a[517].tolist() == [0.5 / 8, 0.5 / 8, 1.0, 1.0]
    assert a[-1].tolist() == [7.5 / 8, 7.5 / 8, 1.0, 1.0]


def test_decode_ssd_places_box_and_keypoints_relative_to_anchor():
    anchors = ssd_anchors(BLAZEFACE_SHORT_ANCHORS)
    raw = np.zeros((896, 16), np.float32)
    scores = np.full((896, 1), -10.0, np.float32)
    i = 600  # an anchor of the 8x8 grid
    raw[i, :4] = [12.8, -6.4, 32.0, 64.0]          # dx, dy, w, h in 1/128 units
    raw[i, 4:6] = [-12.8, 0.0]                     # first keypoint: 0.1 left of the anchor centre
    scores[i] = 2.0
    xyxy, s, c, kp = decode_ssd(raw[None], scores[None], anchors, BLAZEFACE_SHORT_DECODE)
    cx, cy = anchors[i, 0] + 0.1, anchors[i, 1] - 0.05
    assert xyxy.shape == (1, 4)
    assert xyxy[0].tolist() == pytest.approx([cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25], abs=1e-6)
    assert s.tolist() == pytest.approx([1 / (1 + np.exp(-2.0))])
    assert kp.shape == (1, 6, 2) and kp[0, 0].tolist() == pytest.approx([anchors[i, 0] - 0.1, anchors[i, 1]], abs=1e-6)
    assert c.tolist() == [0]


def test_decode_ssd_clips_scores_and_rejects_wrong_box_count():
    anchors = ssd_anchors(BLAZEFACE_SHORT_ANCHORS)
    scores = np.full((896, 1), -1e6, np.float32)
    scores[3] = 1e6  # clipped to 100 before the sigmoid: no overflow, score 1
    _, s, _, _ = decode_ssd(np.zeros((896, 16)), scores, anchors, BLAZEFACE_SHORT_DECODE)
    assert s.tolist() == [1.0]
    with pytest.raises(ValueError, match="expected 896 boxes and as many anchors, got 10 boxes"):
        decode_ssd(np.zeros((10, 16)), np.zeros((10, 1)), anchors, BLAZEFACE_SHORT_DECODE)


def _det(boxes, scores, kp=None):
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32),
                      keypoints=None if kp is None else np.array(kp, np.float32))


def test_weighted_nms_averages_the_cluster_by_score():
    det = _det([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.9, 0.6, 0.8],
               [[[2, 2]], [[4, 4]], [[55, 55]]])
    out = weighted_nms(det, 0.3)
    assert len(out) == 2
    assert out.scores.tolist() == pytest.approx([0.9, 0.8])  # the top score stays, not the mean
    assert out.xyxy[0].tolist() == pytest.approx([0.4, 0.4, 10.4, 10.4])  # (0*0.9 + 1*0.6) / 1.5
    assert out.keypoints[0, 0].tolist() == pytest.approx([2.8, 2.8])
    assert out.xyxy[1].tolist() == [50, 50, 60, 60]


@pytest.mark.parametrize("boxes, scores, thr, kept", [
    ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8], 0.5, [0]),          # IoU 0.68 > 0.5: suppressed
    ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.5, [0, 1]),       # IoU 0.33: both kept
    ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.7, 0.8], 0.3, [1]),          # the better one wins
    ([], [], 0.5, []),
])
def test_hard_nms(boxes, scores, thr, kept):
    assert hard_nms(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores), thr).tolist() == kept


def test_nms_per_class_keeps_overlaps_of_different_classes():
    det = Detections(np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.8]), [0, 1])
    assert len(nms(det, 0.5, "hard", class_agnostic=True)) == 1
    assert len(nms(det, 0.5, "hard", class_agnostic=False)) == 2
    with pytest.raises(ValueError, match="method must be 'hard' or 'weighted', got 'soft'"):
        nms(det, 0.5, "soft")


def test_box_iou():
    assert box_iou(np.array([0, 0, 10, 10.0]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30.0]])).tolist() \
        == pytest.approx([1.0, 1 / 3, 0.0])


def test_iou_of_zero_area_boxes_is_zero_without_a_warning():
    # A zero union (two zero-area boxes) gives 0, not NaN, and numpy is not asked to divide by it.
    import warnings

    from calculators.postprocess.nms import pairwise_iou

    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [5, 5, 5, 9]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row, table = box_iou(boxes[0], boxes), pairwise_iou(boxes)
    assert row.dtype == np.float32 and row.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert table.dtype == np.float32 and table[2].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert np.array_equal(table[0], row)


def test_projection_through_letterbox_lands_on_the_frame():
    t = fit_transform((176, 144), (128, 128), "letterbox")
    det = _det([[0, 16 * 128 / 176, 128, 128 - 16 * 128 / 176]], [1.0], [[[64, 64]]])
    out = project_detections(det, t)
    assert out.xyxy[0].tolist() == pytest.approx([0, 0, 176, 144], abs=1e-4)
    assert out.keypoints[0, 0].tolist() == pytest.approx([88, 72])


def test_centerface_decode_one_peak():
    h, w = 8, 10
    heat = np.zeros((1, 1, h, w), np.float32)
    heat[0, 0, 3, 4] = 0.9
    scale = np.zeros((1, 2, h, w), np.float32)
    scale[0, :, 3, 4] = [np.log(6.0), np.log(4.0)]      # height 24 px, width 16 px
    offset = np.zeros((1, 2, h, w), np.float32)
    offset[0, :, 3, 4] = [0.25, 0.5]                     # y, x sub-cell offsets
    lms = np.zeros((1, 10, h, w), np.float32)
    lms[0, 0:2, 3, 4] = [0.5, 0.25]                      # first landmark: y=0.5 of h, x=0.25 of w
    xyxy, s, kp = decode_centerface(heat, scale, offset, lms, 0.5)
    cx, cy = (4 + 0.5 + 0.5) * 4, (3 + 0.25 + 0.5) * 4  # 20, 15
    assert xyxy.shape == (1, 4) and xyxy[0].tolist() == pytest.approx([cx - 8, cy - 12, cx + 8, cy + 12])
    assert s.tolist() == pytest.approx([0.9])
    assert kp[0, 0].tolist() == pytest.approx([cx - 8 + 0.25 * 16, cy - 12 + 0.5 * 24])
    assert decode_centerface(heat, scale, offset, lms, 0.95)[0].shape == (0, 4)


@pytest.mark.parametrize("version", ["v5", "v8"])
def test_yolo_decode(version):
    n, nc = 40, 3  # real exports have thousands of rows and a short attribute axis
    rows = np.zeros((n, 5 + nc), np.float32)
    rows[2, :4] = [50, 40, 20, 10]
    rows[2, 4] = 0.9          # objectness (v5 only)
    rows[2, 5 + 1] = 0.8      # class 1
    if version == "v5":
        out = rows[None]
        expected_score = 0.72
    else:
        out = np.concatenate([rows[:, :4], rows[:, 5:]], axis=1).T[None]   # (1, 4 + C, N)
        expected_score = 0.8
    assert detect_yolo_version(out.shape) == version
    xyxy, s, c = decode_yolo(out, "auto", 0.25)
    assert xyxy.tolist() == [[40, 35, 60, 45]] and c.tolist() == [1]
    assert s.tolist() == pytest.approx([expected_score])


def test_yolo_shape_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"fits neither v5 \(N, 85\) nor v8 \(84, N\)"):
        detect_yolo_version((1, 10, 20), num_classes=80)


def test_tracker_keeps_ids_and_starts_new_ones():
    tr = IouTracker(iou_threshold=0.3, max_age=1)
    a = tr.update(_det([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.9]))
    b = tr.update(_det([[52, 51, 62, 61], [1, 0, 11, 10]], [0.9, 0.9]))
    assert a.tracker_ids.tolist() == [1, 2] and b.tracker_ids.tolist() == [2, 1]
    tr.update(Detections.empty())
    tr.update(Detections.empty())          # unseen for 2 > max_age frames: forgotten
    c = tr.update(_det([[0, 0, 10, 10]], [0.9]))
    assert c.tracker_ids.tolist() == [3]


def test_mask_helpers():
    logits = np.full((1, 4, 4, 1), 10.0, np.float32)
    logits[0, :, :2] = -10.0
    m = mask_from_tensor(logits, "sigmoid")
    assert m.shape == (4, 4) and m[:, :2].max() < 1e-4 and m[:, 2:].min() > 0.9999
    two = np.stack([np.zeros((4, 4)), np.ones((4, 4)) * 5], 0)[None]   # (1, 2, H, W) logits
    assert mask_from_tensor(two, "softmax", channel=1).min() > 0.99
    t = fit_transform((8, 4), (4, 4), "letterbox")     # the 8x4 frame fills tensor rows 1..2
    framed = mask_to_frame(np.ascontiguousarray(m), t)
    assert framed.shape == (4, 8)
    assert refine_mask(framed, threshold=0.5)[:, 6].tolist() == [1, 1, 1, 1]
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, ::2] = 255
    out = blur_background(image, refine_mask(framed, threshold=0.5), kernel=3)
    assert np.array_equal(out[:, 4:7], image[:, 4:7]) and not np.array_equal(out[:, :3], image[:, :3])


def test_empty_detections_keep_their_keypoint_count():
    assert Detections.empty(21).keypoints.shape == (0, 21, 2)
    assert Detections.empty().keypoints is None
    assert Detections(np.zeros((0, 4)), np.zeros(0), keypoints=[]).keypoints.shape == (0, 0, 2)


# -- the fast paths give what the plain computation gives, bit for bit ----------------------------
def _decode_ssd_every_box(raw_boxes, raw_scores, anchors, o):
    """MediaPipe's decoding written plainly: score every box, then keep those at the threshold."""
    boxes = np.asarray(raw_boxes, np.float32).reshape(-1, o.num_coords)
    scores = np.asarray(raw_scores, np.float32).reshape(boxes.shape[0], -1)
    if o.score_clipping_thresh is not None:
        scores = np.clip(scores, -o.score_clipping_thresh, o.score_clipping_thresh)
    if o.sigmoid_score:
        scores = (1.0 / (1.0 + np.exp(-scores.astype(np.float64)))).astype(np.float32)
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), cls]
    keep = np.flatnonzero(best >= o.min_score_thresh)
    b, a = boxes[keep], anchors[keep]
    x, y, w, h = (b[:, 0], b[:, 1], b[:, 2], b[:, 3]) if o.reverse_output_order else (b[:, 1], b[:, 0], b[:, 3], b[:, 2])
    cx, cy = x / o.x_scale * a[:, 2] + a[:, 0], y / o.y_scale * a[:, 3] + a[:, 1]
    w, h = w / o.w_scale * a[:, 2], h / o.h_scale * a[:, 3]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = np.zeros((len(keep), o.num_keypoints, 2), np.float32)
    for k in range(o.num_keypoints):
        i = o.keypoint_coord_offset + k * o.num_values_per_keypoint
        kx, ky = (b[:, i], b[:, i + 1]) if o.reverse_output_order else (b[:, i + 1], b[:, i])
        kp[:, k, 0], kp[:, k, 1] = kx / o.x_scale * a[:, 2] + a[:, 0], ky / o.y_scale * a[:, 3] + a[:, 1]
    return xyxy.astype(np.float32), best[keep].astype(np.float32), cls[keep].astype(np.int32), kp


@pytest.mark.parametrize("changes, classes", [
    ({}, 1),
    ({"min_score_thresh": 0.0}, 1),       # everything passes: no prefilter
    ({"min_score_thresh": 0.9}, 1),
    ({"min_score_thresh": 1.0}, 1),       # only scores that round to 1.0 in float32
    ({"reverse_output_order": False}, 1),
    ({"sigmoid_score": False, "min_score_thresh": 0.3}, 1),
    ({"score_clipping_thresh": None}, 1),
    ({}, 3),                              # several classes: the best one per box
    ({"num_keypoints": 4, "num_values_per_keypoint": 3}, 1),  # (x, y, extra) per keypoint: the extra skipped
    ({"x_scale": 128.0, "y_scale": 64.0, "w_scale": 32.0, "h_scale": 16.0}, 1),  # each scale to its column
    ({"x_scale": 128.0, "y_scale": 64.0, "w_scale": 32.0, "h_scale": 16.0, "reverse_output_order": False}, 1),
    ({"num_keypoints": 4, "num_values_per_keypoint": 3, "reverse_output_order": False}, 1),
])
def test_decode_ssd_scores_only_boxes_near_the_threshold_with_the_same_result(changes, classes):
    anchors = ssd_anchors(BLAZEFACE_SHORT_ANCHORS)
    o = BLAZEFACE_SHORT_DECODE.model_copy(update=changes)
    layout = ssd_layout(anchors, o)  # made once, as SsdDetectionsDecoder does
    rng = np.random.default_rng(7)
    for _ in range(40):
        boxes = rng.normal(0, 20, (1, 896, 16)).astype(np.float32)
        scores = rng.normal(-3, 3, (1, 896, classes)).astype(np.float32)
        scores[0, rng.integers(0, 896, 6), 0] = [0.0, 1e-8, -1e-8, 150.0, -150.0, 17.0]  # edges, clipping
        want = _decode_ssd_every_box(boxes, scores, anchors, o)
        for got in (decode_ssd(boxes, scores, anchors, o), decode_ssd(boxes, scores, anchors, o, layout)):
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and np.array_equal(g, w)


def _weighted_nms_row_by_row(det, thr):
    order = np.argsort(-det.scores, kind="stable")
    boxes, out_b, out_k, picked = det.xyxy, [], [], []
    while order.size:
        top = order[0]
        iou = box_iou(boxes[top], boxes[order])
        members = order[iou > thr]
        if members.size == 0:
            members = order[:1]
        w = det.scores[members][:, None]
        out_b.append((boxes[members] * w).sum(axis=0) / float(w.sum()))
        out_k.append((det.keypoints[members] * w[:, :, None]).sum(axis=0) / float(w.sum()))
        picked.append(top)
        order = order[iou <= thr]
        order = order[order != top]
    return np.asarray(out_b, np.float32), det.scores[picked], np.asarray(out_k, np.float32)


@pytest.mark.parametrize("n", [1, 7, 40, 600])  # 16..512 candidates take the all-pairs IoU path
def test_weighted_nms_matches_the_row_by_row_computation(n):
    rng = np.random.default_rng(n)
    centres = rng.uniform(20, 100, (n, 2)) + rng.normal(0, 1, (n, 2))
    sizes = rng.uniform(5, 30, (n, 2))
    det = Detections(np.concatenate([centres - sizes / 2, centres + sizes / 2], 1), rng.uniform(0.5, 1, n),
                     keypoints=rng.uniform(0, 128, (n, 6, 2)))
    got = weighted_nms(det, 0.3)
    boxes, scores, kps = _weighted_nms_row_by_row(det, 0.3)
    assert np.array_equal(got.xyxy, boxes) and np.array_equal(got.scores, scores)
    assert np.array_equal(got.keypoints, kps) and got.labels == ("",) * len(got)


@pytest.mark.parametrize("matrix", [
    [[10.0, 0, 0], [0, 10.0, -280.0]],      # letterbox 1280x720 -> 128x128
    [[-2.0, 0, 500.0], [0, 3.3, -7.0]],     # a mirror: the corners swap
    [[1.0, 0.2, 5.0], [0.1, 1.1, 3.0]],     # sheared: the hull of the four corners
])
def test_projection_of_boxes_is_the_hull_of_their_mapped_corners(matrix):
    from calculators.types import Transform

    rng = np.random.default_rng(3)
    tr = Transform(np.array(matrix), (640, 480), (128, 128))
    det = Detections(rng.uniform(-10, 140, (9, 4)), rng.random(9), keypoints=rng.uniform(0, 128, (9, 6, 2)))
    x0, y0, x1, y1 = det.xyxy.T
    corners = tr.to_frame(np.stack([np.stack(c, 1) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], axis=1))
    got = project_detections(det, tr)
    assert np.array_equal(got.xyxy, np.concatenate([corners.min(axis=1), corners.max(axis=1)], 1).astype(np.float32))
    assert np.array_equal(got.keypoints, tr.to_frame(det.keypoints).astype(np.float32))


# -- the public helpers' own contracts (written against mutants that survived the calculators' tests)

def test_blur_background_default_kernel_is_31():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    mask = np.zeros((40, 48), np.float32)
    mask[:, 24:] = 1.0
    want = image.copy()
    want[:, :24] = cv2.GaussianBlur(image, (31, 31), 0)[:, :24]
    assert np.array_equal(blur_background(image, mask), want)


def test_scale_detections_multiplies_in_float32_with_or_without_keypoints():
    # the decoders scale in float32 themselves and say it is scale_detections' arithmetic
    xyxy = np.array([[1.0, 2.0, 3.0, 5.0], [0.7, 0.1, 9.3, 7.7]], np.float32)
    kp = np.array([[[1.1, 2.3]], [[4.9, 0.3]]], np.float32)
    third = np.float32(1 / 3)
    got = scale_detections(Detections(xyxy, [0.9, 0.8], keypoints=kp), 1 / 3, 0.1)
    assert np.array_equal(got.xyxy, xyxy * np.array([third, np.float32(0.1)] * 2, np.float32))
    assert np.array_equal(got.keypoints, kp * np.array([third, np.float32(0.1)], np.float32))
    plain = scale_detections(Detections(xyxy, [0.9, 0.8]), 2, 3)
    assert plain.keypoints is None and np.array_equal(plain.xyxy, xyxy * np.float32([2, 3, 2, 3]))


def test_yolo_auto_reads_a_square_output_as_v5():
    # (1, 6, 6) without a class count: the attribute axis is not the shorter one, so v5 rows
    assert detect_yolo_version((1, 6, 6)) == "v5"
    assert detect_yolo_version((6, 7)) == "v8" and detect_yolo_version((7, 6)) == "v5"


def test_centerface_default_threshold_and_a_missing_batch_axis():
    h, w = 4, 6
    heat = np.zeros((h, w), np.float32)
    heat[1, 2], heat[2, 4] = 0.6, 0.4   # one above the default 0.5, one below
    maps = [heat[None], np.zeros((2, h, w), np.float32), np.zeros((2, h, w), np.float32),
            np.zeros((10, h, w), np.float32)]   # (C, h, w): no batch axis
    xyxy, s, kp = decode_centerface(*maps)
    assert s.tolist() == pytest.approx([0.6]) and kp.shape == (1, 5, 2)
    # exp(0) * 4 = a 4x4 box around the cell centre (2.5, 1.5) * 4
    assert xyxy.tolist() == [[8, 4, 12, 8]]


def test_pairwise_iou_rows_are_box_iou_and_degenerate_pairs_are_quiet():
    rng = np.random.default_rng(9)
    boxes = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(0, 50, (30, 2))], 1)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(0, 20, (30, 2))
    boxes[0] = [5, 5, 5, 5]              # zero area: 0 against itself and every box
    boxes[1] = [5, 5, 5, 5]
    boxes[2] = [0.1, 0.1, 0.4, 0.3]      # smaller than a pixel: a union under 1
    boxes[3] = [0.2, 0.2, 0.5, 0.4]
    boxes[4] = [100, 100, 110, 110]      # apart from every box in both x and y
    boxes = boxes.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # 0 / 0 of two empty boxes is no RuntimeWarning for the user
        all_pairs = pairwise_iou(boxes)
        rows = [box_iou(b, boxes) for b in boxes]
    assert all_pairs.dtype == np.float32 and rows[0].dtype == np.float32
    for i, row in enumerate(rows):
        assert np.array_equal(all_pairs[i], row), i
    assert all_pairs[0].tolist() == [0.0] * 30 and all_pairs[4, 5:].max() == 0.0
    assert all_pairs[2, 3] == pytest.approx(0.02 / 0.1) and np.diag(all_pairs)[2:].min() == pytest.approx(1.0)


def test_decode_yolo_defaults_and_its_version_error():
    rows = np.zeros((1, 12, 7), np.float32)         # v5 rows: auto tells them by shape
    rows[0, 0] = [50, 40, 20, 10, 1.0, 0.25, 0.0]   # exactly the default threshold 0.25: kept
    rows[0, 1] = [50, 40, 20, 10, 1.0, 0.0, 0.24]   # below it
    xyxy, s, c = decode_yolo(rows)
    assert s.tolist() == [0.25] and c.tolist() == [0] and xyxy.tolist() == [[40, 35, 60, 45]]
    with pytest.raises(ValueError, match=r"^version must be v5, v8 or auto, got 'v9'$"):
        decode_yolo(rows, "v9")


@pytest.mark.parametrize("version", ["v5", "v8"])
def test_decode_yolo_reads_half_precision_outputs_as_float32(version):
    rng = np.random.default_rng(4)
    rows = np.concatenate([rng.uniform(10, 600, (50, 4)), rng.uniform(0, 1, (50, 4))], 1)
    out = (rows if version == "v5" else np.delete(rows, 4, axis=1).T)[None].astype(np.float16)
    got = decode_yolo(out, version, 0.2)
    want = decode_yolo(out.astype(np.float32), version, 0.2)
    assert len(want[0]) > 5
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


def test_hard_nms_of_no_boxes_gives_indices_that_index():
    keep = hard_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert keep.dtype == np.int64 and np.zeros((0, 4))[keep].shape == (0, 4)


@pytest.mark.parametrize("options, message", [
    ({"iou_threshold": 1.5}, r"^iou_threshold must be in \[0, 1\], got 1.5$"),
    ({"iou_threshold": -0.1}, r"^iou_threshold must be in \[0, 1\], got -0.1$"),
    ({"max_age": -1}, r"^max_age must be >= 0 and min_hits >= 1, got -1, 1$"),
    ({"min_hits": 0}, r"^max_age must be >= 0 and min_hits >= 1, got 5, 0$"),
])
def test_iou_tracker_refuses_out_of_range_settings(options, message):
    with pytest.raises(ValueError, match=message):
        IouTracker(**options)
    IouTracker(iou_threshold=1.0, max_age=0, min_hits=1)  # the bounds themselves are fine


@pytest.mark.parametrize("matrix", [
    [[1.0, 1.0, 0], [0, 1.0, 0]],       # shear in x only: not the axis-aligned fast path
    [[1.0, 0, 0], [1.0, 1.0, 0]],       # shear in y only
    [[1.0, 0, 0], [0.5, 1.0, 0]],
    [[2.0, 0, 3.0], [0, 0.5, 1.0]],     # scale and shift, no keypoints
])
def test_projection_through_a_one_sided_shear_and_without_keypoints(matrix):
    from calculators.types import Transform

    rng = np.random.default_rng(8)
    tr = Transform(np.array(matrix), (640, 480), (128, 128))
    det = Detections(rng.uniform(0, 120, (6, 4)), rng.random(6))
    x0, y0, x1, y1 = det.xyxy.T
    corners = tr.to_frame(np.stack([np.stack(c, 1) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], axis=1))
    got = project_detections(det, tr)
    assert got.keypoints is None
    assert np.allclose(got.xyxy, np.concatenate([corners.min(axis=1), corners.max(axis=1)], 1), atol=1e-4)


def test_mask_from_tensor_softmax_is_stable_and_half_precision_is_read_as_float32():
    logits = np.zeros((3, 3, 2), np.float32)  # H, W, C
    logits[0, 0], logits[0, 1] = [200.0, 0.0], [-200.0, -300.0]
    probs = mask_from_tensor(logits, "softmax", channel=0)
    # no overflow and no 0 / 0 for logits far apart or far below the others
    assert probs[0].tolist() == [1.0, 1.0, 0.5] and probs[1:].tolist() == [[0.5] * 3] * 2
    half = np.random.default_rng(3).normal(0, 3, (1, 6, 8, 1)).astype(np.float16)
    for activation in ("sigmoid", "none"):
        got = mask_from_tensor(half, activation)
        assert got.dtype == np.float32
        assert np.array_equal(got, mask_from_tensor(half.astype(np.float32), activation)), activation
    with pytest.raises(ValueError, match=r"^activation must be none, sigmoid or softmax, got 'relu'$"):
        mask_from_tensor(half, "relu")


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 1), (1, 6, 8, 1), (1, 1, 6, 8)])
def test_softmax_over_a_single_channel_is_refused(shape):
    # one channel normalised over itself is 1.0 everywhere: a model file / option mismatch, said plainly
    with pytest.raises(ValueError, match=r"^softmax needs a mask output with two or more channels, got "
                                         + re.escape(str(shape)) + r": a single-channel output takes "
                                         r"activation sigmoid \(logits\) or none$"):
        mask_from_tensor(np.zeros(shape, np.float32), "softmax")


def test_iou_of_integer_boxes():
    """Integer boxes (a user's own, or rounded ones) divide as floats (a masked divide into an
    integer array would refuse them)."""
    ints = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 20, 20]])
    third = float(np.float32(1 / 3))
    assert pairwise_iou(ints).tolist() == [[1.0, third, 0.0], [third, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert pairwise_iou(ints).dtype == np.float32 and box_iou(ints[0], ints).tolist() == [1.0, third, 0.0]


def _dets(boxes, scores, classes=None):
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                      None if classes is None else np.asarray(classes))


def test_nms_is_class_agnostic_by_default_and_per_class_keeps_each_class_whole():
    same_place = [[0, 0, 10, 10]] * 3
    det = _dets(same_place, [0.9, 0.8, 0.7], [0, 1, 2])
    assert nms(det, 0.3).scores.tolist() == pytest.approx([0.9])  # one object, whatever the classes
    for method in ("hard", "weighted"):
        per_class = nms(det, 0.3, method, class_agnostic=False)
        assert per_class.class_ids.tolist() == [0, 1, 2], method  # three classes: each its own best
        apart = _dets([[0, 0, 10, 10], [50, 0, 60, 10], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [0, 0, 1])
        assert nms(apart, 0.3, method, class_agnostic=False).scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
        # the cap applies to a class-agnostic weighted run as well
        three = _dets([[0, 0, 10, 10], [50, 0, 60, 10], [100, 0, 110, 10]], [0.9, 0.8, 0.7])
        assert nms(three, 0.3, method, max_detections=2).scores.tolist() == pytest.approx([0.9, 0.8]), method


def test_per_class_nms_keeps_equal_scores_in_class_then_input_order():
    """Ties (scores of a few levels, as a quantized model gives) keep the order of the classes'
    results, each in input order: a sort that is not stable would shuffle them."""
    rng = np.random.default_rng(40)
    scores = rng.choice([0.5, 0.6, 0.7], 40)
    classes = [i % 2 for i in range(40)]
    det = _dets([[20 * i, 0, 20 * i + 10, 10] for i in range(40)], scores, classes)  # none overlap
    out = nms(det, 0.3, "weighted", class_agnostic=False)
    ranked = sorted(range(40), key=lambda i: (-np.float32(scores[i]), classes[i], i))
    assert out.xyxy[:, 0].tolist() == pytest.approx([20.0 * i for i in ranked], abs=1e-3)


def test_hard_nms_drops_a_zero_score_alone_or_among_others():
    """OpenCV's NMSBoxes keeps scores above its threshold (0): a score of 0 is dropped, one
    detection or several."""
    assert len(nms(_dets([[0, 0, 10, 10]], [0.0]), 0.5)) == 0
    assert nms(_dets([[0, 0, 10, 10], [50, 0, 60, 10]], [0.0, 0.5]), 0.5).scores.tolist() == [0.5]


def test_mask_from_tensor_takes_probabilities_by_default():
    probs = np.array([[0.25, 0.75], [0.0, 1.0]], np.float32)
    assert mask_from_tensor(probs).tolist() == probs.tolist()
    assert mask_from_tensor(probs[None, :, :, None]).tolist() == probs.tolist()


def test_weighted_nms_threshold_default_boundary_and_a_degenerate_top_box():
    half = _dets([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8])  # IoU exactly 0.5
    assert len(weighted_nms(half)) == 1  # the default threshold 0.3: one object
    apart = _dets([[0, 0, 10, 10], [0, 8, 10, 18]], [0.9, 0.8])  # IoU 20 / 180
    assert len(weighted_nms(apart)) == 2
    # at the threshold exactly: not the same object, and not suppressed either
    at = weighted_nms(half, 0.5)
    assert at.xyxy.tolist() == [[0, 0, 10, 10], [0, 0, 10, 5]] and at.scores.tolist() == pytest.approx([0.9, 0.8])
    # a zero-area best box overlaps nothing: it stands alone, and the next box is left to itself
    dot = weighted_nms(_dets([[5, 5, 5, 5], [0, 0, 10, 10], [1, 1, 10, 10]], [0.9, 0.8, 0.7]), 0.3)
    assert dot.xyxy[0].tolist() == [5, 5, 5, 5] and len(dot) == 2
    assert dot.xyxy[1].tolist() == pytest.approx([(0 * 0.8 + 1 * 0.7) / 1.5, (0 * 0.8 + 1 * 0.7) / 1.5, 10, 10])


@pytest.mark.parametrize("n", [12, 40])  # one IoU row at a time, and all pairs at once
def test_weighted_nms_keeps_equal_scores_in_input_order(n):
    rng = np.random.default_rng(n)
    scores = rng.choice([0.5, 0.6, 0.7], n)
    out = weighted_nms(_dets([[20 * i, 0, 20 * i + 10, 10] for i in range(n)], scores), 0.3)
    ranked = sorted(range(n), key=lambda i: (-np.float32(scores[i]), i))
    assert out.xyxy[:, 0].tolist() == pytest.approx([20.0 * i for i in ranked], abs=1e-3)


def test_weighted_nms_without_keypoints_gives_none():
    out = weighted_nms(_dets([[0, 0, 10, 10], [1, 0, 11, 10], [50, 0, 60, 10]], [0.9, 0.8, 0.7]), 0.3)
    assert out.keypoints is None and out.tracker_ids is None and len(out) == 2
    assert out.xyxy.dtype == np.float32 and out.scores.dtype == np.float32


def test_iou_of_empty_boxes_is_zero_whatever_memory_held_before():
    """The pairs with no union are written as 0, not left as whatever the freshly allocated result
    held (a masked divide leaves them alone): memory of the same size is dirtied first."""
    dots = np.full((1000, 4), 5.0, np.float32)
    for _ in range(5):
        dirty = np.full(1000, 7.0, np.float32)
        del dirty
        assert not box_iou(dots[0], dots).any()
        dirty = np.full((40, 40), 7.0, np.float32)
        del dirty
        assert not pairwise_iou(dots[:40]).any()


def test_hard_nms_score_threshold_and_index_dtype():
    boxes = np.array([[0, 0, 10, 10], [50, 0, 60, 10]], np.float32)
    keep = hard_nms(boxes, np.array([0.9, 0.55], np.float32), 0.5)
    assert keep.tolist() == [0, 1] and keep.dtype == np.int64
    assert hard_nms(boxes, np.array([0.9, 0.55], np.float32), 0.5, score_threshold=0.6).tolist() == [0]


def test_decode_yolo_gives_float32_boxes_and_scores():
    rows = np.zeros((1, 12, 7), np.float64)  # float64 model outputs too
    rows[0, 0] = [50, 40, 20, 10, 1.0, 0.9, 0.0]
    xyxy, s, c = decode_yolo(rows)
    assert xyxy.dtype == np.float32 and s.dtype == np.float32 and c.dtype == np.int32 and len(s) == 1


def test_output_arrays_of_a_mapping_of_plain_values():
    from calculators.postprocess.tensors import output_arrays

    got = output_arrays({"boxes": [[1.0, 2.0]], 7: np.arange(3, dtype=np.float32)})
    assert [name for name, _ in got] == ["boxes", "7"]
    assert all(type(a) is np.ndarray for _, a in got)
    np.testing.assert_array_equal(got[0][1], [[1.0, 2.0]])
    np.testing.assert_array_equal(got[1][1], [0, 1, 2])


def test_ssd_layout_is_read_only():
    # made once per model and shared by every frame's decode: nobody can change it by mistake
    layout = ssd_layout(ssd_anchors(BLAZEFACE_SHORT_ANCHORS), BLAZEFACE_SHORT_DECODE)
    for name, a in layout._asdict().items():
        with pytest.raises(ValueError, match="read-only"):
            a.flat[0] = 0


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_decode_ssd_of_half_or_double_outputs_is_that_of_their_float32_values(dtype):
    # a half-precision export, or outputs a caller made float64: decoded as their float32 values
    # (float32 results, no arithmetic in float16)
    anchors = ssd_anchors(BLAZEFACE_SHORT_ANCHORS)
    rng = np.random.default_rng(11)
    boxes = rng.normal(0, 20, (896, 16)).astype(dtype)
    scores = rng.normal(0, 3, (896, 1)).astype(dtype)
    want = decode_ssd(boxes.astype(np.float32), scores.astype(np.float32), anchors, BLAZEFACE_SHORT_DECODE)
    got = decode_ssd(boxes, scores, anchors, BLAZEFACE_SHORT_DECODE)
    assert len(want[0]) > 100
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
