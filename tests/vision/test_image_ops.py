"""ImageToTensor geometry and normalisation (pure functions and the calculator)."""

from __future__ import annotations

import numpy as np
import pytest

from calculators.image.ops import crop, fit_transform, image_to_tensor, normalize, roi_for_fit, to_layout
from calculators.types import Image


@pytest.mark.parametrize("frame, tensor, fit, roi", [
    # MediaPipe's letterbox of QCIF into 128x128: the ROI grows vertically to 176x176, centred.
    ((176, 144), (128, 128), "letterbox", (0.0, -16.0, 176.0, 176.0)),
    ((1280, 720), (128, 128), "letterbox", (0.0, -280.0, 1280.0, 1280.0)),
    ((720, 1280), (256, 128), "letterbox", (-920.0, 0.0, 2560.0, 1280.0)),
    ((1280, 720), (128, 128), "crop", (280.0, 0.0, 720.0, 720.0)),
    ((1280, 720), (128, 128), "stretch", (0.0, 0.0, 1280.0, 720.0)),
    ((640, 480), (320, 240), "letterbox", (0.0, 0.0, 640.0, 480.0)),
])
def test_roi_for_fit(frame, tensor, fit, roi):
    assert roi_for_fit(frame, tensor, fit) == pytest.approx(roi)


def test_bad_fit_names_the_choices():
    with pytest.raises(ValueError, match=r"fit must be one of \('stretch', 'letterbox', 'crop'\), got 'pad'"):
        roi_for_fit((10, 10), (5, 5), "pad")


def test_transform_maps_tensor_corners_to_roi_corners():
    t = fit_transform((176, 144), (128, 128), "letterbox")
    corners = t.to_frame(np.array([[0, 0], [128, 128], [64, 64]]))
    assert corners == pytest.approx(np.array([[0, -16], [176, 160], [88, 72]]))
    assert t.to_tensor(corners) == pytest.approx(np.array([[0, 0], [128, 128], [64, 64]]))


def test_letterbox_pads_with_border_and_keeps_content():
    # A frame that is white on the left half and black on the right, 200x100 into 64x64.
    data = np.zeros((100, 200, 3), np.uint8)
    data[:, :100] = 255
    tensor, transform = image_to_tensor(Image(data), (64, 64), "letterbox", value_range=(-1, 1))
    t = tensor.data
    assert t.shape == (1, 64, 64, 3) and t.dtype == np.float32
    assert tensor.layout == "NHWC"
    # rows 0..15 and 48..63 are padding (pixel 0 -> -1), the band in between holds the frame
    assert np.all(t[0, :15] == -1.0) and np.all(t[0, 49:] == -1.0)
    assert np.all(t[0, 20:44, 2:30] == 1.0) and np.all(t[0, 20:44, 34:62] == -1.0)
    assert transform.frame_size == (200, 100) and transform.tensor_size == (64, 64)


def test_stretch_of_whole_frame_is_a_resize():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    import cv2

    tensor, _ = image_to_tensor(Image(data), (80, 45), "stretch", dtype="uint8", interpolation="area")
    assert np.array_equal(tensor.data[0], cv2.resize(data, (80, 45), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("kwargs, pixel, expected", [
    ({"value_range": (-1, 1)}, 0, -1.0),
    ({"value_range": (-1, 1)}, 255, 1.0),
    ({"value_range": (0, 1)}, 51, 0.2),
    ({"mean": [127.5] * 3, "std": [127.5] * 3}, 255, 1.0),
    ({"mean": [100, 100, 100], "std": [2, 2, 2]}, 110, 5.0),
    ({}, 77, 77.0),
])
def test_normalize(kwargs, pixel, expected):
    out = normalize(np.full((2, 2, 3), pixel, np.uint8), **kwargs)
    assert out.dtype == np.float32 and out == pytest.approx(np.full((2, 2, 3), expected), abs=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"value_range": (0, 1), "mean": [0]}, "either range or mean/std"),
    ({"dtype": "uint8", "value_range": (0, 1)}, "dtype uint8 keeps pixel values"),
    ({"dtype": "int8"}, "dtype must be float32, float16 or uint8, got 'int8'"),
    ({"std": [1, 0, 1]}, "std must not contain 0"),
])
def test_normalize_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        normalize(np.zeros((2, 2, 3), np.uint8), **kwargs)


@pytest.mark.parametrize("layout, shape", [("NHWC", (1, 4, 6, 3)), ("NCHW", (1, 3, 4, 6)), ("HWC", (4, 6, 3)),
                                           ("CHW", (3, 4, 6))])
def test_layouts(layout, shape):
    data = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    out = to_layout(data, layout)
    assert out.shape == shape and out.flags.c_contiguous
    if layout in ("NCHW", "CHW"):
        assert out.reshape(3, 4, 6)[2, 1, 5] == data[1, 5, 2]


def test_color_order_is_converted_for_the_model():
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue in BGR
    tensor, _ = image_to_tensor(Image(bgr, "BGR"), (8, 8), "stretch", dtype="uint8", format="RGB")
    assert tensor.data[0, 0, 0].tolist() == [0, 0, 200]


def test_image_to_tensor_never_touches_its_input():
    data = np.full((30, 40, 3), 7, np.uint8)
    before = data.copy()
    image_to_tensor(Image(data), (16, 16), "letterbox", value_range=(0, 1))
    assert np.array_equal(data, before)


def test_crop_without_size_keeps_pixels_and_offsets_transform():
    data = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    out, t = crop(Image(data), (5, 4, 15, 10))
    assert np.array_equal(out.data, data[4:10, 5:15])
    assert t.to_frame(np.array([[0, 0]])) == pytest.approx(np.array([[5, 4]]))
    with pytest.raises(ValueError, match="lies outside the 30x20 frame"):
        crop(Image(data), (40, 40, 50, 50))


@pytest.mark.parametrize("src", ["RGB", "BGR", "GRAY", "RGBA", "BGRA"])
@pytest.mark.parametrize("dst", ["RGB", "BGR", "GRAY", "RGBA", "BGRA"])
def test_image_converts_between_every_pixel_format(src, dst):
    from calculators.types import Image

    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red
    base = Image(rgb, "RGB")
    img = base.to(src).to(dst)
    assert img.format == dst
    assert img.data.shape[:2] == (2, 3)
    assert img.data.ndim == (2 if dst == "GRAY" else 3)
    if src != "GRAY" and dst in ("RGB", "RGBA"):
        assert img.data[0, 0, 0] == 200 and img.data[0, 0, 2] == 0
    if src != "GRAY" and dst in ("BGR", "BGRA"):
        assert img.data[0, 0, 2] == 200 and img.data[0, 0, 0] == 0


def test_whole_frame_transform_is_made_once_per_size_and_read_only():
    # A video's frames share one letterbox transform (its matrix cannot be changed by a consumer);
    # an ROI still gets its own.
    frame = Image(np.zeros((144, 176, 3), np.uint8))
    _, a = image_to_tensor(frame, (128, 128), "letterbox")
    _, b = image_to_tensor(Image(np.ones((144, 176, 3), np.uint8)), (128, 128), "letterbox")
    assert a is b and not a.matrix.flags.writeable
    assert np.array_equal(a.matrix, fit_transform((176, 144), (128, 128), "letterbox").matrix)
    _, c = image_to_tensor(frame, (128, 128), "crop")
    _, d = image_to_tensor(frame, (128, 128), "letterbox", roi=(0, 0, 88, 72))
    assert c is not a and d is not a and d.frame_size == (176, 144)


@pytest.mark.parametrize("frame_wh, tensor_wh, fit, channels, border, gathers", [
    ((1280, 720), (128, 128), "letterbox", 1, 16.0, True),    # scale 10, offset -280: whole pixels
    ((640, 360), (128, 128), "letterbox", 1, 128.0, True),    # its chroma plane (scale 5)
    ((640, 480), (128, 128), "letterbox", 3, 0.0, True),      # 4:3, three channels
    ((720, 1280), (128, 128), "letterbox", 1, 0.0, True),     # portrait: border columns
    ((1920, 1080), (128, 128), "letterbox", 1, 16.0, True),   # scale 15
    ((960, 540), (128, 128), "letterbox", 1, 128.0, False),   # 1080p's chroma: scale 7.5
    ((1280, 720), (128, 128), "crop", 1, 0.0, False),         # 720 / 128: a fraction
    ((1280, 720), (256, 144), "stretch", 1, 0.0, True),       # scale 5 both ways, no border
    ((1281, 721), (128, 128), "letterbox", 1, 16.0, False),   # odd sizes
    ((64, 64), (128, 128), "letterbox", 1, 0.0, False),       # upscaled: half pixels
])
def test_whole_pixel_grid_is_a_strided_slice_bit_for_bit(frame_wh, tensor_wh, fit, channels, border, gathers):
    # A whole-frame fit whose positions are whole pixels samples each tensor pixel at one frame
    # pixel: the remap becomes a strided slice into the border-filled tensor. Against the plain
    # formula (OpenCV's fixed-point remap of the whole grid), to the bit, with values at the
    # frame's edges that a tap past the edge would show.
    import cv2

    from calculators.image.ops import _FixedRemap, warp_affine

    rng = np.random.default_rng(11)
    shape = (frame_wh[1], frame_wh[0]) + ((channels,) if channels > 1 else ())
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    transform = fit_transform(frame_wh, tensor_wh, fit)
    value = (border,) * 4
    expected = warp_affine(data, transform.matrix, tensor_wh, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT, value)
    remap = _FixedRemap(transform.matrix, tensor_wh, frame_wh)
    assert (remap.gather is not None) == gathers and remap.gathers(data) == gathers
    got = remap(data, value)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert not remap.gathers(data.astype(np.float32)), "only uint8 is sampled by slicing"
    assert np.array_equal(remap(data.astype(np.float32), value),
                          warp_affine(data.astype(np.float32), transform.matrix, tensor_wh, cv2.INTER_LINEAR,
                                      cv2.BORDER_CONSTANT, value))


@pytest.mark.parametrize("xs, ys, frac, frame, found", [
    ([0, 10, 20, 30], [-20, -10, 0, 10], 0, (40, 12), (2, 4, 0, 4, slice(0, 11, 10), slice(0, 31, 10))),
    ([-1, 4, 9, 14], [0, 5, 10, 15], 0, (12, 12), (0, 3, 1, 3, slice(0, 11, 5), slice(4, 10, 5))),  # -1, 14, 15 outside
    ([0, 10, 20, 30], [0, 10, 20, 30], 1, (40, 40), None),                                      # a fraction
    ([0, 10, 25, 30], [0, 10, 20, 30], 0, (40, 40), None),                                      # uneven steps
    ([0, 0, 1, 1], [0, 1, 2, 3], 0, (40, 40), None),                                            # step 0 (upscaled)
    ([20, 21, 22, 23], [0, 1, 2, 3], 0, (12, 12), None),                                        # no column in the frame
])
def test_grid_gather_finds_the_slices_of_whole_pixel_maps(xs, ys, frac, frame, found):
    from calculators.image.ops import _grid_gather

    x = np.tile(np.int32(xs), (4, 1))
    y = np.tile(np.int32(ys)[:, None], (1, 4))
    f = np.zeros((4, 4), np.uint16)
    f[1, 2] = frac
    assert _grid_gather(x, y, f, frame) == found
    if found is not None:  # not a grid when one row (or column) differs
        x[3, 0] += 1
        assert _grid_gather(x, y, f, frame) is None
        x[3, 0] -= 1
        y[0, 3] += 1
        assert _grid_gather(x, y, f, frame) is None


@pytest.mark.parametrize("frame_wh, tensor_wh, fit, channels, border", [
    ((1280, 720), (128, 128), "letterbox", 1, 16.0),     # 16:9 into a square: rows of border above and below
    ((640, 360), (128, 128), "letterbox", 1, 128.0),     # its chroma plane
    ((720, 1280), (128, 128), "letterbox", 3, 0.0),      # portrait: columns of border left and right
    ((176, 144), (192, 192), "letterbox", 3, 127.6),     # upscaled, a border OpenCV rounds
    ((1281, 721), (128, 128), "letterbox", 1, 16.0),     # odd sizes
    ((1280, 720), (128, 128), "stretch", 3, 0.0),        # no border: the whole grid
    ((1280, 720), (224, 224), "crop", 3, 0.0),
])
def test_whole_frame_remap_skips_the_border_bit_for_bit(frame_wh, tensor_wh, fit, channels, border):
    # The cached remap of a whole-frame fit samples only the box of tensor pixels whose taps touch
    # the frame and fills the rest with the border: the result must be the full grid's, to the bit.
    import cv2

    from calculators.image.ops import _FixedRemap, warp, warp_affine

    rng = np.random.default_rng(7)
    shape = (frame_wh[1], frame_wh[0]) + ((channels,) if channels > 1 else ())
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    transform = fit_transform(frame_wh, tensor_wh, fit)
    value = (border,) * 4
    expected = warp_affine(data, transform.matrix, tensor_wh, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT, value)
    remap = _FixedRemap(transform.matrix, tensor_wh, frame_wh)
    got = remap(data, value)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
    if fit != "stretch":  # (warp makes a pure scale of the whole frame a cv2.resize)
        assert np.array_equal(warp(data, transform, border), expected)
    r0, r1, c0, c1 = remap.box
    if fit == "letterbox" and frame_wh[0] > frame_wh[1]:
        assert r0 > 0 and r1 < tensor_wh[1] and (c0, c1) == (0, tensor_wh[0])   # the band was left out
    if fit == "letterbox" and frame_wh[0] < frame_wh[1]:
        assert c0 > 0 and c1 < tensor_wh[0] and (r0, r1) == (0, tensor_wh[1])
    if fit == "stretch":
        assert remap.whole
