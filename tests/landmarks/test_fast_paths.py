"""The tracking loop's cheaper code paths give the floats the plain numpy formulas give.

The face mesh loop runs the rect and projection functions once or twice per frame on one or two
objects, where numpy calls on tiny arrays cost more than the arithmetic (docs/benchmarks.md,
"Where face_mesh's frame goes now"); the cheaper paths must not move a landmark, since the loop
feeds each frame's rect into the next frame's crop. Arithmetic is compared bit for bit; what goes
through exp or the trigonometric functions within a few ulps, since numpy's SIMD versions and the
C library's (which the one-object paths call) agree bit for bit on some CPUs and differ in the
last bit on others.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calculators.image.ops import _fixed_point_maps, _fixed_point_maps_many
from calculators.image.roi_warp import warp_rect, warp_rects
from calculators.landmarks.decode import sigmoid, sigmoid_float
from calculators.landmarks.geometry import _FEW, landmarks_to_rects, project_points, roi_matrix, transform_rects
from calculators.types import Image, Rects


def _random_rects(rng, n: int) -> np.ndarray:
    return np.column_stack([rng.uniform(-100, 1400, n), rng.uniform(-100, 800, n), rng.uniform(5, 900, n),
                            rng.uniform(5, 900, n), rng.uniform(-4, 4, n)])


@pytest.mark.parametrize("args", [((1.5, 1.5), (0.0, 0.0), "long", 0.0), ((2.0, 2.1), (0.1, -0.5), "short", 90.0),
                                  ((1.0, 1.0), (0.0, -0.1), None, -45.0), ((1.25, 1.25), (0.0, 0.0), None, 0.0)])
def test_transform_rects_per_rect_equals_the_vectorised_path(args):
    rng = np.random.default_rng(3)
    many = _FEW + 3  # more than _FEW: numpy on whole columns
    for _ in range(40):
        data = _random_rects(rng, many)
        data[0, 2] = data[0, 3]  # a square one (long == short)
        whole = transform_rects(Rects(data, (1280, 720)), *args).data
        for i in range(many):
            one = transform_rects(Rects(data[i:i + 1], (1280, 720)), *args).data
            assert np.array_equal(one[0], whole[i]), (args, data[i].tolist(), one[0].tolist(), whole[i].tolist())
    with pytest.raises(ValueError, match="square must be"):
        transform_rects(Rects(data[:1], (1280, 720)), square="longest")


@pytest.mark.parametrize("options", [dict(rotation_start=33, rotation_end=[263]), dict(),
                                     dict(indices=[0, 5, 9, 33, 263], rotation_start=0, rotation_end=[9],
                                          target_degrees=90.0)])
def test_landmarks_to_rects_box_for_few_objects_equals_the_vectorised_path(options):
    rng = np.random.default_rng(4)
    many = _FEW + 2
    for _ in range(25):
        pts = (rng.normal(size=(many, 468, 3)) * rng.uniform(5, 200) + rng.uniform(0, 1000)).astype(np.float32)
        whole = landmarks_to_rects(pts, (1280, 720), "box", **options).data
        for i in range(many):
            one = landmarks_to_rects(pts[i:i + 1], (1280, 720), "box", **options).data
            # within a few ulps: numpy's SIMD math and Python's libm differ in the last bit on some CPUs
            np.testing.assert_array_max_ulp(one[0], whole[i], maxulp=8)


def test_roi_matrix_and_projection_are_the_matrix_products():
    """roi_matrix: the corners-onto-corners matrix as numpy's 2x2 product makes it; project_points:
    x, y through its 2x2 part plus the translation and z scaled as x, as the plain formulas give."""
    rng = np.random.default_rng(5)
    for k, rect in enumerate(_random_rects(rng, 600)):
        size = ((192, 192), (256, 256), (224, 160))[k % 3]
        cx, cy, w, h, r = rect
        tw, th = size
        c, s = math.cos(r), math.sin(r)
        a = np.array([[c * w / tw, -s * h / th], [s * w / tw, c * h / th]])
        want = np.hstack([a, (np.array([cx, cy]) - a @ np.array([tw / 2.0, th / 2.0]))[:, None]])
        m = roi_matrix(rect, size)
        assert np.array_equal(m, want), (rect.tolist(), size)
        if k % 10 == 0:
            pts = rng.uniform(-20, 260, (468, 3))
            expected = np.empty((468, 3))
            expected[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
            expected[:, 2] = pts[:, 2] * (w / tw)
            assert np.array_equal(project_points(pts, rect, size), expected), rect.tolist()


def test_fixed_point_maps_cast_as_written_equal_the_float64_grid():
    """The maps' positions cast to int32 inside the ufunc equal those of the whole float64 grid
    truncated afterwards (floor(32 v + 0.5) through the 2^21 offset), ties and clipped maps included."""
    rng = np.random.default_rng(6)
    off = 1 << 21
    for k in range(120):
        m = np.array([[rng.normal() * 3, rng.normal() * 3, rng.uniform(-500, 1500)],
                      [rng.normal() * 3, rng.normal() * 3, rng.uniform(-500, 1500)]])
        if k % 5 == 0:
            m = np.round(m * 4) / 4  # quarter pixels: exact halves in 1/32 units
        size = ((192, 192), (224, 160), (7, 3))[k % 3]
        w, h = size
        xy, frac = _fixed_point_maps(m, size)
        g = m * 32.0
        xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)[:, None]
        xi = (g[0, 0] * xs + (g[0, 1] * ys + (g[0, 2] + 0.5 + off))).astype(np.int32)
        yi = (g[1, 0] * xs + (g[1, 1] * ys + (g[1, 2] + 0.5 + off))).astype(np.int32)
        assert np.array_equal(xy[..., 0], (xi >> 5).astype(np.int16)), (k, m.tolist())
        assert np.array_equal(xy[..., 1], (yi >> 5).astype(np.int16)), (k, m.tolist())
        assert frac.dtype == np.uint16 and np.array_equal(frac, ((yi & 31) << 5 | (xi & 31)).astype(np.uint16))
        # an I420 crop's luma and chroma maps at once: each what it is alone (a clipped one too)
        other = m * (0.5 if k % 4 else 4000.0)
        for (got_xy, got_frac), alone in zip(_fixed_point_maps_many((m, other), size),
                                             (_fixed_point_maps(m, size), _fixed_point_maps(other, size))):
            assert np.array_equal(got_xy, alone[0]) and np.array_equal(got_frac, alone[1]), (k, m.tolist())


def test_sigmoid_float_is_numpys_sigmoid():
    xs = np.concatenate([np.random.default_rng(8).normal(size=2000) * 8, [0.0, -709.0, -710.0, -1e6, 1e6, 800.0]])
    with np.errstate(over="ignore"):
        for x in xs.tolist():
            # bit for bit on the AMD VM of 2026-12-01; on the Intel VM of 2026-12-02 numpy's SIMD exp
            # (AVX-512) and libm's differ by an ulp, so the check is a few ulps, not equality
            np.testing.assert_array_max_ulp(np.float64(sigmoid_float(x)), np.float64(sigmoid(x)), maxulp=4)
    assert math.isnan(sigmoid_float(float("nan")))


@pytest.mark.parametrize("fmt", ["RGB", "BGR", "GRAY"])
def test_warp_rect_writes_into_dst_what_it_returns(fmt):
    yy, xx = np.mgrid[0:120, 0:160]
    base = np.stack([xx, yy * 2, 255 - xx - yy], axis=-1).clip(0, 255).astype(np.uint8)
    for image in (Image(base, "RGB"), Image(base, "RGB").to("I420")):
        rects = Rects([[80.0, 60.0, 50.0, 40.0, 0.3], [20.0, 100.0, 60.0, 60.0, -2.0]], (160, 120))
        alone = [warp_rect(image, r, (24, 16), fmt) for r in rects.data]
        stack = warp_rects(image, rects, (24, 16), fmt)
        for i, crop in enumerate(alone):
            assert np.array_equal(stack[i], crop.reshape(stack[i].shape)), (image.format, fmt, i)
        dst = np.zeros((16, 24) + (() if fmt == "GRAY" else (3,)), np.uint8)
        assert warp_rect(image, rects.data[0], (24, 16), fmt, dst=dst) is dst
        assert np.array_equal(dst, alone[0]), (image.format, fmt)


def test_heatmap_refinement_reads_only_its_windows_as_float64():
    """The heatmap is not converted to float64 whole: the float32 map refines to the same floats
    as its float64 copy (pose: 39 windows of 7x7 out of a 64x64x39 map)."""
    from calculators.landmarks.decode import refine_from_heatmap

    rng = np.random.default_rng(9)
    for _ in range(20):
        hm = (rng.normal(size=(1, 64, 64, 39)) * 4).astype(np.float32)
        xy = rng.uniform(-0.05, 1.05, (39, 2))
        assert np.array_equal(refine_from_heatmap(xy, hm, 7, 0.5), refine_from_heatmap(xy, hm.astype(np.float64), 7, 0.5))


@pytest.mark.parametrize("d, flip, nz", [(5, False, 1.0), (5, True, 0.4), (3, True, 1.0), (3, False, 0.4), (2, False, 1.0)])
def test_decode_landmarks_takes_the_columns_as_the_plain_formulas(d, flip, nz):
    from calculators.landmarks.decode import decode_landmarks

    raw = (np.random.default_rng(10).normal(size=(1, 33 * d)) * 50).astype(np.float32)
    pts, vis, pres = decode_landmarks(raw, 33, (256, 256), visibility_activation="sigmoid", presence_activation="none",
                                      flip_horizontally=flip, normalize_z=nz)
    v = raw.astype(np.float64).reshape(33, d)
    want = np.zeros((33, 3))
    want[:, 0] = 256 - v[:, 0] if flip else v[:, 0]
    want[:, 1] = v[:, 1]
    if d > 2:
        want[:, 2] = v[:, 2] / nz
    assert np.array_equal(pts, want) and pts.flags.c_contiguous
    assert (vis is None) == (d < 4) and (pres is None) == (d < 5)
    if d == 5:
        assert np.array_equal(vis, sigmoid(v[:, 3])) and np.array_equal(pres, v[:, 4])
    with pytest.raises(ValueError, match="visibility_activation must be none or sigmoid"):
        decode_landmarks(raw, 33, (256, 256), visibility_activation="relu")


@pytest.mark.parametrize("beta, scale", [(80.0, None), (0.0, 0.01), (-3.0, None), (40.0, "none")])
def test_one_euro_on_arrays_equals_one_filter_per_value(beta, scale):
    """LandmarksSmoother steps all of an object's One Euro filters in numpy (OneEuroArray); each
    value must come out as OneEuroFilter gives it alone, bit for bit: timestamps starting at 0, a
    repeated one (passed through), irregular steps, and a negative beta (alphas outside [0, 1] keep
    the previous one, LowPassFilter's rule)."""
    from calculators.landmarks.filters import LandmarksSmoother, OneEuroFilter, object_scale

    rng = np.random.default_rng(5)
    params = dict(frequency=30.0, min_cutoff=0.05, beta=beta, derivate_cutoff=1.0)
    smoother = LandmarksSmoother("one_euro", **params, disable_value_scaling=scale == "none")
    one = [OneEuroFilter(**params) for _ in range(33 * 3)]
    stamps = [0, 33_333, 33_333, 70_000, 100_001, 133_000, 200_000]
    stamps += list(range(233_333, 233_333 + 33_333 * 30, 33_333))
    points = rng.uniform(0, 720, (33, 3))
    kept = 0
    for ts in stamps:
        points = points + rng.normal(0, 6, points.shape)
        got = smoother.apply(ts, points, None if scale in (None, "none") else scale)
        value_scale = 1.0 if scale == "none" else 1.0 / (object_scale(points) if scale is None else scale)
        want = np.array([f.apply(ts, value_scale, float(v)) for f, v in zip(one, points.reshape(-1))])
        want = want.reshape(points.shape)
        assert got.dtype == np.float64 and np.array_equal(got, want), (ts, np.abs(got - want).max())
        kept += int(np.any(got != points))
    assert kept >= len(stamps) - 3  # the filter did filter (all but the first and the repeated stamp)


def test_visibility_low_pass_on_arrays_equals_one_filter_per_value():
    """LandmarksSmoothing's visibility_alpha runs LowPassFilter on each object's visibility array:
    per value the floats of one LowPassFilter each, bit for bit."""
    from calculators.landmarks.landmarks import LandmarksSmoothing
    from calculators.landmarks.filters import LowPassFilter
    from calculators.types import Landmarks
    from pipeline.testing import run_calculator

    rng = np.random.default_rng(9)
    frames = [Landmarks(rng.uniform(0, 500, (2, 33, 3)), [0.9, 0.8],
                        visibility=rng.uniform(0, 1, (2, 33)).astype(np.float32), frame_size=(640, 480))
              for _ in range(6)]
    got = run_calculator(LandmarksSmoothing, {"LANDMARKS": [(i * 33_333, lm) for i, lm in enumerate(frames)]},
                         options={"visibility_alpha": 0.1})["LANDMARKS"]
    one = [[LowPassFilter(0.1) for _ in range(33)] for _ in range(2)]
    for (_, lm), src in zip(got, frames):
        want = np.array([[f.apply(float(v)) for f, v in zip(one[i], src.visibility[i])] for i in range(2)], np.float32)
        assert np.array_equal(lm.visibility, want)
    assert not np.array_equal(got[-1][1].visibility, frames[-1].visibility)
