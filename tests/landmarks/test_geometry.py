"""The landmark family's pure functions against values worked out by hand from MediaPipe's formulas."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from calculators.image.roi_warp import warp_rect, warp_rects
from calculators.landmarks.decode import decode_landmarks, refine_from_heatmap, rotate_world
from calculators.landmarks.filters import LandmarksSmoother, LowPassFilter, OneEuroFilter, RelativeVelocityFilter
from calculators.landmarks.geometry import (associate_rects, detections_to_rects, landmarks_to_rects,
                                            normalize_radians, project_points, rect_iou, roi_matrix,
                                            transform_rects)
from calculators.types import Detections, Image, Landmarks, Rects


def test_normalize_radians_wraps_to_minus_pi_pi():
    got = normalize_radians(np.array([0.0, math.pi, -math.pi, 3 * math.pi / 2, -3 * math.pi / 2]))
    assert np.allclose(got, [0.0, -math.pi, -math.pi, -math.pi / 2, math.pi / 2])


def test_detections_to_rects_box_and_rotation():
    # Eyes level: rotation 0; eyes on a 45-degree line (right eye lower-left): rotation -45 deg...
    det = Detections([[10, 20, 50, 80], [0, 0, 10, 10]], [0.9, 0.8],
                     keypoints=[[[20, 40], [40, 40]], [[0, 10], [10, 0]]])
    r = detections_to_rects(det, (100, 100), "box", rotation=(0, 1), target_degrees=0)
    assert np.allclose(r.data[0], [30, 50, 40, 60, 0])
    # vector (10, -10) points up-right at 45 deg; turning it to 0 deg needs -(+45 deg)... MediaPipe:
    # rotation = target - atan2(-(y1 - y0), x1 - x0) = 0 - atan2(10, 10) = -pi/4
    assert np.isclose(r.data[1, 4], -math.pi / 4)
    assert r.frame_size == (100, 100)
    assert len(detections_to_rects(det, (100, 100), max_count=1)) == 1


def test_detections_to_rects_alignment_is_centred_on_the_first_keypoint():
    det = Detections([[0, 0, 1, 1]], [1.0], keypoints=[[[50, 60], [50, 20]]])  # scale point straight up
    r = detections_to_rects(det, (100, 100), "alignment", rotation=(0, 1), target_degrees=90)
    assert np.allclose(r.data[0], [50, 60, 80, 80, 0])  # size twice the distance; up is already 90 deg


def test_detections_to_rects_needs_the_keypoints_it_is_told_to_use():
    det = Detections([[0, 0, 1, 1]], [1.0], keypoints=[[[1, 1]]])
    with pytest.raises(ValueError, match="need detections with more keypoints"):
        detections_to_rects(det, (10, 10), rotation=(0, 2))


def test_transform_rects_shifts_along_the_rotated_axes_then_squares_and_scales():
    r = Rects([[100, 100, 20, 40, math.pi / 2]], (200, 200))
    # shift_y -0.5 of the height (40) along the rect's y axis turned by 90 deg: x += 20 (-sin * h * sy).
    t = transform_rects(r, scale=(2.0, 2.0), shift=(0.0, -0.5), square="long")
    assert np.allclose(t.data[0], [120, 100, 80, 80, math.pi / 2])
    assert np.allclose(transform_rects(r, square="short").data[0, 2:4], [20, 20])
    assert np.isclose(transform_rects(r, rotation_degrees=-90).data[0, 4], 0.0)


def test_landmarks_to_rects_box_alignment_and_rotated_box():
    pts = np.array([[[0, 0], [10, 0], [10, 20], [0, 20]]], np.float64)
    box = landmarks_to_rects(pts, (50, 50), "box")
    assert np.allclose(box.data[0], [5, 10, 10, 20, 0])
    al = landmarks_to_rects(pts, (50, 50), "alignment", rotation_start=0, rotation_end=[1], target_degrees=0)
    assert np.allclose(al.data[0], [0, 0, 20, 20, 0])
    # A square turned by 45 deg: its rotated box (in its own axes) is the square itself, not the hull.
    sq = np.array([[[0, -10], [10, 0], [0, 10], [-10, 0]]], np.float64)
    rot = landmarks_to_rects(sq, (50, 50), "rotated_box", rotation_start=3, rotation_end=[2], target_degrees=0)
    # vector (-10,0)->(0,10): up-right on screen is (10, 10) down-right: atan2(-10, 10) = -45 deg -> r = +45 deg
    assert np.isclose(rot.data[0, 4], math.pi / 4)
    assert np.allclose(rot.data[0, 2:4], [math.hypot(10, 10)] * 2)
    weighted = landmarks_to_rects(pts, (50, 50), "box", rotation_start=0, rotation_end=[1, 3],
                                  rotation_end_weights=[0.5, 0.5])
    # end = (5, 10): vector (5, 10) -> r = 0 - atan2(-10, 5)
    assert np.isclose(weighted.data[0, 4], -math.atan2(-10, 5))


def test_associate_rects_keeps_one_rect_per_object_and_the_later_list_wins():
    detected = Rects([[10, 10, 10, 10, 0], [50, 50, 10, 10, 0]], (100, 100))
    tracked = Rects([[11, 10, 10, 10, 0.3]], (100, 100))
    out = associate_rects([detected, tracked], 0.5)
    assert len(out) == 2
    assert np.allclose(out.data[0], [50, 50, 10, 10, 0])   # surviving detections first
    assert np.allclose(out.data[1], [11, 10, 10, 10, 0.3])  # the tracked rect replaced its detection
    assert np.isclose(rect_iou(detected.data[0], tracked.data[0]), 90 / 110)
    assert len(associate_rects([detected, tracked], 0.95)) == 3


def test_roi_matrix_maps_tensor_corners_to_rect_corners_and_back():
    rect = np.array([40.0, 30.0, 20.0, 20.0, math.pi / 2])
    m = roi_matrix(rect, (100, 100))
    corners = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], np.float64) @ m[:, :2].T + m[:, 2]
    assert np.allclose(corners, Rects([rect], (80, 60)).corners()[0])
    pts = project_points(np.array([[50.0, 50.0, 10.0], [100.0, 50.0, 0.0]]), rect, (100, 100))
    assert np.allclose(pts[0], [40, 30, 2.0])  # the centre; z scaled as x (20 / 100)
    assert np.allclose(pts[1, :2], [40, 40])   # the right edge turned 90 deg clockwise points down


def test_warp_rect_crops_the_rotated_region_from_rgb_and_i420_alike():
    yy, xx = np.mgrid[0:60, 0:80]
    base = np.stack([xx * 3, yy * 4, 255 - xx * 2 - yy], axis=-1).clip(0, 255).astype(np.uint8)  # smooth
    image = Image(base, "RGB")
    rect = np.array([40.0, 30.0, 16.0, 16.0, 0.0])
    crop = warp_rect(image, rect, (16, 16))
    assert np.array_equal(crop, base[22:38, 32:48])  # axis-aligned, pixel-aligned: an exact cut
    turned = warp_rect(image, np.array([40.0, 30.0, 16.0, 16.0, math.pi]), (16, 16))
    # Corners map onto corners (MediaPipe's convention), so turned by 180 deg the tensor's pixel u
    # samples frame x = 48 - u: the region one pixel right/down of the unturned cut, reversed.
    assert np.array_equal(turned, base[23:39, 33:49][::-1, ::-1])
    i420 = warp_rect(image.to("I420"), rect, (16, 16))
    assert np.abs(i420.astype(int) - crop).max() <= 4  # the same region from the planes (chroma subsampled)
    outside = warp_rect(image, np.array([0.0, 0.0, 8.0, 8.0, 0.0]), (8, 8), border="replicate")
    assert np.array_equal(outside[0, 0], base[0, 0])
    stack = warp_rects(image, Rects([rect, rect], (80, 60)), (16, 16), "GRAY")
    assert stack.shape == (2, 16, 16, 1)


_OPENCV4_CROPS = """
import math, sys, numpy as np, cv2
rects, sizes, img = np.load(sys.argv[1]), [(224, 224), (256, 256), (192, 192), (48, 32), (100, 70)], np.load(sys.argv[2])
out = {}
for i, (cx, cy, w, h, r) in enumerate(rects):
    f = np.float32  # ImageToTensorCalculator: GetRoi in float, RotatedRect(centre, size, rotation * 180.f / M_PI)
    box = ((float(f(cx)), float(f(cy))), (float(f(w)), float(f(h))), float(f(float(f(r) * f(180.0)) / math.pi)))
    tw, th = sizes[i % len(sizes)]
    m = cv2.getPerspectiveTransform(cv2.boxPoints(box), np.array([[0, th], [0, 0], [tw, 0], [tw, th]], np.float32))
    out[str(i)] = cv2.warpPerspective(img, m, (tw, th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
np.savez(sys.argv[3], **out)
print(cv2.__version__)
"""


def test_warp_rect_samples_as_mediapipe_opencv4_to_the_bit(tmp_path):
    """Bilinear rect crops equal, bit for bit, what mediapipe 0.10.21's ImageToTensorCalculator makes
    (its OpenCV 4 code path: boxPoints, getPerspectiveTransform, warpPerspective, replicated border),
    run by OpenCV 4 in the mediapipe 0.10.21 environment, over rotations, sizes and rects leaving
    the frame. The analytic affine map, sampled with the same fixed-point weights, differs on a few
    pixels of most crops (which moves hand landmarks along a tracking loop)."""
    import subprocess

    from calculators.image.ops import warp_affine
    from tests.landmarks.conftest import mp_python

    py = mp_python()
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (360, 640, 3), np.uint8)
    rects = np.stack([rng.uniform(-50, 690, 60), rng.uniform(-50, 410, 60), rng.uniform(10, 500, 60),
                      rng.uniform(10, 500, 60), rng.uniform(-4, 4, 60)], axis=1)
    np.save(tmp_path / "rects.npy", rects)
    np.save(tmp_path / "img.npy", img)
    proc = subprocess.run([str(py), "-c", _OPENCV4_CROPS, str(tmp_path / "rects.npy"), str(tmp_path / "img.npy"),
                           str(tmp_path / "crops.npz")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("4."), f"the reference needs OpenCV 4 (mediapipe 0.10.21's), got {proc.stdout}"
    ref = np.load(tmp_path / "crops.npz")
    sizes = [(224, 224), (256, 256), (192, 192), (48, 32), (100, 70)]
    frame = Image(img, "RGB")
    affine_differs = 0
    for i, rect in enumerate(rects):
        size = sizes[i % len(sizes)]
        want = ref[str(i)]
        got = warp_rect(frame, rect, size, border="replicate")
        assert np.array_equal(got, want), f"rect {i} {rect.round(3).tolist()} -> {size}: " \
            f"{int((got != want).any(-1).sum())} pixels differ"
        affine = warp_affine(img, roi_matrix(rect, size), size, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
        affine_differs += not np.array_equal(affine, want)
    assert affine_differs > 10, "the test must tell the two samplings apart"


def test_decode_landmarks_sigmoid_flip_and_normalize_z():
    raw = np.array([[10.0, 20.0, 4.0, 0.0, 2.0]])
    pts, vis, pres = decode_landmarks(raw, 1, (100, 50), visibility_activation="sigmoid",
                                      presence_activation="none", flip_horizontally=True, normalize_z=0.4)
    assert np.allclose(pts, [[90, 20, 10]]) and np.allclose(vis, [0.5]) and np.allclose(pres, [2.0])
    with pytest.raises(ValueError, match="does not split"):
        decode_landmarks(np.zeros(7), 2, (10, 10))


def test_refine_from_heatmap_moves_points_to_the_weighted_peak():
    hm = np.full((8, 8, 1), -20.0)
    hm[2, 5, 0] = 20.0  # one confident cell at column 5, row 2
    got = refine_from_heatmap(np.array([[4.5 / 8, 2.5 / 8]]), hm, kernel=3, min_confidence=0.5)
    assert np.allclose(got, [[5 / 8, 2 / 8]], atol=1e-6)
    weak = refine_from_heatmap(np.array([[4.5 / 8, 2.5 / 8]]), np.full((8, 8, 1), -3.0), kernel=3)
    assert np.allclose(weak, [[4.5 / 8, 2.5 / 8]])  # below min_confidence: unchanged


def test_rotate_world_turns_x_y_only():
    assert np.allclose(rotate_world(np.array([[1.0, 0.0, 3.0]]), math.pi / 2), [[0, 1, 3]])


def test_one_euro_filter_follows_mediapipe_arithmetic():
    f = OneEuroFilter(frequency=30.0, min_cutoff=1.0, beta=0.0, derivate_cutoff=1.0)
    assert f.apply(1_000_000, 1.0, 10.0) == 10.0  # first value passes
    # 100 ms later: frequency 10 Hz, alpha = 1 / (1 + tau / te) with tau = 1 / (2 pi), te = 0.1
    alpha = 1.0 / (1.0 + (1.0 / (2 * math.pi)) / 0.1)
    assert math.isclose(f.apply(1_100_000, 1.0, 20.0), 10 + alpha * 10, rel_tol=1e-12)
    assert f.apply(1_100_000, 1.0, 99.0) == 99.0  # a repeated timestamp is passed through


def test_velocity_filter_and_low_pass():
    lp = LowPassFilter(0.25)
    assert lp.apply(4.0) == 4.0 and lp.apply(8.0) == 5.0
    v = RelativeVelocityFilter(window_size=5, velocity_scale=10.0)
    assert v.apply(0, 1.0, 1.0) == 1.0
    # distance 1 over 33 ms -> velocity ~30/s, alpha = 1 - 1 / (1 + 300)
    got = v.apply(33_333, 1.0, 2.0)
    alpha = 1 - 1 / (1 + 10 * (1.0 / 0.033333))
    assert math.isclose(got, 1.0 + alpha, rel_tol=1e-4)


def test_landmarks_smoother_uses_the_object_scale():
    s = LandmarksSmoother("one_euro", min_cutoff=0.05, beta=0.0)
    pts = np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 0.0]])
    assert np.allclose(s.apply(1_000_000, pts), pts)  # (MediaPipe passes a value at timestamp 0 unfiltered)
    moved = s.apply(1_033_333, pts + 10.0)
    assert np.all(moved[:, :2] > pts[:, :2]) and np.all(moved[:, :2] < pts[:, :2] + 1.0)  # heavy smoothing
    fast = LandmarksSmoother("one_euro", min_cutoff=0.05, beta=80.0)
    fast.apply(1_000_000, pts)
    assert np.all(fast.apply(1_033_333, pts + 10.0)[:, :2] > pts[:, :2] + 8.0)  # speed opens the filter
    tiny = LandmarksSmoother("one_euro", min_allowed_object_scale=1000.0)
    assert np.allclose(tiny.apply(1_000_000, pts), pts) and np.allclose(tiny.apply(1_033_333, pts + 5), pts + 5)


def test_payloads_convert_to_and_from_mediapipe_normalised_form():
    lm = Landmarks(np.array([[[10.0, 20.0, 5.0]]]), [0.9], visibility=[[0.5]], presence=[[0.7]],
                   labels=["face"], frame_size=(100, 200))
    norm = lm.to_normalized()
    assert norm == [[{"x": 0.1, "y": 0.1, "z": 0.05, "visibility": 0.5, "presence": pytest.approx(0.7)}]]
    back = Landmarks.from_normalized(norm, (100, 200), labels=["face"])
    assert np.allclose(back.points, lm.points) and np.allclose(back.visibility, lm.visibility)
    assert lm.to_json()[0]["landmarks"] == [[10.0, 20.0, 5.0]]
    assert np.allclose(lm.to_detections().xyxy, [[10, 20, 10, 20]])
    r = Rects([[10, 20, 30, 40, 0.5]], (100, 200))
    assert np.allclose(Rects.from_normalized(r.to_normalized(), (100, 200)).data, r.data)
    with pytest.raises(ValueError, match=r"must have shape \(N, K, 3\)"):
        Landmarks(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"must have shape \(N, 5\)"):
        Rects(np.zeros((2, 4)))
