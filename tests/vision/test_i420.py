"""I420 frames (planar YUV 4:2:0) from decoder to encoder: the Image format, its conversions against
FFmpeg's, ImageToTensor, Annotate, VideoSource and VideoWriter on real carphone frames."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.annotate.draw import draw_detections, draw_lines, draw_mask
from calculators.image.ops import crop, image_to_tensor
from calculators.types import Detections, Image, Mask, rgb_to_yuv
from pipeline.testing import run_calculator

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def yuv_and_rgb(carphone_path):
    """[(I420 array, RGB array)] of a few carphone frames, both straight from PyAV (FFmpeg)."""
    out = []
    with av.open(str(carphone_path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 30 == 0:
                out.append((f.to_ndarray(format="yuv420p"), f.to_ndarray(format="rgb24")))
    assert len(out) >= 4
    return out


def _diff(a, b) -> tuple[float, int]:
    d = np.abs(np.asarray(a, np.int32) - np.asarray(b, np.int32))
    return float(d.mean()), int(d.max())


def test_i420_image_shape_checks_and_plane_views():
    data = np.zeros((144 * 3 // 2, 176), np.uint8)
    img = Image(data, "I420")
    assert img.size == (176, 144)
    y, u, v = img.planes()
    assert (y.shape, u.shape, v.shape) == ((144, 176), (72, 88), (72, 88))
    u[...] = 7
    assert np.all(data[144:144 + 36] == 7) and np.all(data[144 + 36:] == 0)  # views, U then V
    for bad in (np.zeros((144, 176, 3), np.uint8), np.zeros((100, 176), np.uint8), np.zeros((216, 175), np.uint8)):
        with pytest.raises(ValueError, match="I420 image is a"):
            Image(bad, "I420")
    with pytest.raises(ValueError, match="planes\\(\\) needs an I420 image"):
        Image(np.zeros((4, 4, 3), np.uint8)).planes()
    with pytest.raises(ValueError, match="even width and height"):
        Image(np.zeros((5, 4, 3), np.uint8)).to("I420")


def test_i420_conversions_match_ffmpeg(yuv_and_rgb):
    for yuv, rgb in yuv_and_rgb:
        mean, top = _diff(Image(yuv, "I420").to("RGB").data, rgb)
        assert mean < 1.5 and top <= 4, f"I420 -> RGB differs from FFmpeg's by {mean:.2f} on average, {top} at most"
        assert np.array_equal(Image(yuv, "I420").to("BGR").data, Image(yuv, "I420").to("RGB").data[..., ::-1])
        back = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        mean, top = _diff(Image(rgb).to("I420").data, back)
        assert mean < 0.3 and top <= 8, f"RGB -> I420 differs from FFmpeg's by {mean:.2f} on average, {top} at most"
        mean, top = _diff(Image(yuv, "I420").to("GRAY").data, Image(rgb).to("GRAY").data)
        assert mean < 2.0 and top <= 6, "I420 -> GRAY must give full-range luminance like RGB -> GRAY"
    assert Image(yuv, "I420").to("RGBA").data.shape == (*rgb.shape[:2], 4)
    assert Image(Image(rgb).to("GRAY").data, "GRAY").to("I420").size == (rgb.shape[1], rgb.shape[0])
    # Colours map with FFmpeg's BT.601 limited-range matrix.
    assert rgb_to_yuv((0, 0, 0)) == (16, 128, 128) and rgb_to_yuv((255, 255, 255)) == (235, 128, 128)


@pytest.mark.parametrize("size, fit, roi", [((128, 128), "letterbox", None), ((128, 128), "stretch", None),
                                            ((128, 128), "crop", None), ((97, 61), "letterbox", None),
                                            ((64, 64), "stretch", (40, 20, 120, 110))])
@pytest.mark.parametrize("fmt", ["RGB", "BGR", "GRAY"])
def test_image_to_tensor_from_i420_matches_the_rgb_path(yuv_and_rgb, size, fit, roi, fmt):
    for yuv, rgb in yuv_and_rgb:
        frame = Image(yuv, "I420")
        before = yuv.copy()
        a, ta = image_to_tensor(Image(rgb), size, fit, value_range=(0, 255), format=fmt, roi=roi)
        b, tb = image_to_tensor(frame, size, fit, value_range=(0, 255), format=fmt, roi=roi)
        assert np.array_equal(yuv, before), "image_to_tensor must not touch its input"
        assert a.shape == b.shape and np.allclose(ta.matrix, tb.matrix)
        mean, top = _diff(a.data, b.data)
        # Chroma is resampled from the half-size planes: sharp colour edges (the red bow tie) differ most.
        assert mean < 2.0 and top <= 40, f"{fit} {size} {fmt}: I420 path differs by {mean:.2f} on average, {top} at most"
    if fit == "letterbox" and size == (128, 128):  # the padding is the border value (black), not green
        assert np.abs(b.data[0, :10]).max() <= 1


@pytest.mark.parametrize("fit, roi, border", [("letterbox", None, 0), ("letterbox", None, 255), ("crop", None, 0),
                                               ("stretch", None, 0), ("letterbox", (20, 10, 150, 120), 0)])
def test_i420_warp_reuses_its_plane_maps_with_the_same_pixels(yuv_and_rgb, fit, roi, border):
    # warp_i420 keeps each plane's OpenCV arguments per transform; the pixels are those of warping
    # every plane afresh (luma through the transform, chroma through the halved one).
    import cv2

    from calculators.image.ops import _YUV_TO_RGB, fit_transform, warp, warp_i420
    from calculators.types import Transform

    for yuv, _ in yuv_and_rgb:
        image = Image(yuv, "I420")
        tr = fit_transform(image.size, (128, 96), fit, roi)
        y, u, v = image.planes()
        by, bu, bv = rgb_to_yuv((border,) * 3)
        chroma = Transform(tr.matrix * 0.5, (image.width // 2, image.height // 2), tr.tensor_size)
        planes = cv2.merge([warp(y, tr, by), warp(u, chroma, bu), warp(v, chroma, bv)])
        want = cv2.transform(planes, _YUV_TO_RGB)
        for _ in range(2):  # computed, then from the cache
            assert np.array_equal(warp_i420(image, tr, "RGB", border), want)


@pytest.mark.parametrize("size, gathered", [((1280, 720), (True, True, True)), ((640, 480), (True, False, False)),
                                           ((1920, 1080), (True, False, False)), ((854, 480), (False, False, False))])
@pytest.mark.parametrize("fmt", ["RGB", "BGR", "GRAY"])
def test_i420_whole_pixel_letterbox_writes_the_planes_straight_into_the_tensor(yuv_and_rgb, size, gathered, fmt):
    # A letterbox whose scale is a whole number of pixels samples each plane by a strided slice
    # into one border-filled YUV array (chroma too when its halved scale is whole): the same
    # bytes as the plain formula, each plane remapped by OpenCV, merged and converted.
    import cv2

    from calculators.image.ops import _YUV_TO_RGB, _Y_TO_GRAY, _i420_warps, fit_transform, warp_affine, warp_i420
    from calculators.types import Transform

    yuv = cv2.cvtColor(cv2.resize(cv2.cvtColor(yuv_and_rgb[1][0], cv2.COLOR_YUV2RGB_I420), size), cv2.COLOR_RGB2YUV_I420)
    image = Image(yuv, "I420")
    for border in (0.0, 255.0):
        tr = fit_transform(image.size, (128, 128), "letterbox")
        warps = _i420_warps(tr.matrix.tobytes(), image.size, (128, 128), border, "linear")
        assert tuple(p.remap.gather is not None for p in (warps.luma, warps.chroma_u, warps.chroma_v)) == gathered
        y, u, v = image.planes()
        chroma = Transform(tr.matrix * 0.5, (image.width // 2, image.height // 2), tr.tensor_size)
        by, bu, bv = rgb_to_yuv((border,) * 3)
        planes = [warp_affine(p, t.matrix, (128, 128), cv2.INTER_LINEAR, cv2.BORDER_CONSTANT, (float(b),) * 4)
                  for p, t, b in ((y, tr, by), (u, chroma, bu), (v, chroma, bv))]
        rgb = cv2.transform(cv2.merge(planes), _YUV_TO_RGB)
        want = {"RGB": rgb, "BGR": rgb[..., ::-1], "GRAY": cv2.LUT(planes[0], _Y_TO_GRAY)}[fmt]
        got = warp_i420(image, tr, fmt, border)
        assert np.array_equal(got, want)
        tensor, _ = image_to_tensor(image, (128, 128), "letterbox", value_range=(-1, 1), format=fmt, border=border)
        assert np.array_equal(tensor.data[0] if fmt != "GRAY" else tensor.data[0, ..., 0],
                              np.multiply(want, np.float32(2 / 255), dtype=np.float32) - np.float32(1))


def test_crop_of_an_i420_frame_is_rgb(yuv_and_rgb):
    yuv, rgb = yuv_and_rgb[0]
    out, _ = crop(Image(yuv, "I420"), (10, 20, 60, 80))
    assert out.format == "RGB" and out.data.shape == (60, 50, 3)
    assert _diff(out.data, rgb[20:80, 10:60])[0] < 1.5


def test_drawing_on_i420_matches_drawing_on_rgb(yuv_and_rgb):
    yuv, rgb = yuv_and_rgb[1]
    det = Detections(np.array([[40, 20, 130, 120]], np.float32), np.array([0.93], np.float32),
                     np.array([0], np.int32), ("face",), np.array([[[70, 60], [100, 60], [85, 90]]], np.float32))
    mask = np.zeros(rgb.shape[:2], np.float32)
    mask[:, :60] = 1.0
    a, b = rgb.copy(), yuv.copy()
    for canvas, fmt in ((a, "RGB"), (b, "I420")):
        draw_mask(canvas, mask, (0, 114, 178), 0.5, fmt)
        draw_detections(canvas, det, fmt, text_scale=0.4)
        draw_lines(canvas, ["30.0 fps"], 0.45, fmt=fmt)
    drawn = Image(b, "I420").to("RGB").data
    reference = Image(yuv, "I420").to("RGB").data  # same frame as `rgb`, through the same conversion
    changed = np.abs(a.astype(int) - rgb).sum(axis=2) > 30
    assert changed.mean() > 0.2, "the RGB drawing should cover the mask and the box"
    mean, _ = _diff(drawn[changed], a[changed])
    assert mean < 12, f"I420 drawing differs from the RGB drawing by {mean:.1f} on average where it drew"
    assert _diff(drawn[~changed], reference[~changed])[0] < 1.0, "I420 drawing spilled where RGB drew nothing"
    box = drawn[20:121, 40]  # the box's left edge has the box colour (Okabe-Ito orange for class 0)
    assert np.abs(box.astype(int).mean(axis=0) - (230, 159, 0)).max() < 40


def test_annotate_calculator_takes_i420_and_keeps_the_received_frame(yuv_and_rgb):
    yuv, _ = yuv_and_rgb[2]
    frame = Image(yuv.copy(), "I420")
    det = Detections(np.array([[40, 20, 130, 120]], np.float32), np.array([0.9], np.float32),
                     np.array([0], np.int32), ("face",))
    mask = np.zeros(frame.size[::-1], np.float32)
    mask[:40] = 1.0
    out = run_calculator("Annotate", inputs={"IMAGE": [(0, frame)], "DETECTIONS": [(0, det)], "MASK": [(0, Mask(mask))]},
                         options={"show_fps": True})
    drawn = out["IMAGE"][0][1]
    assert drawn.format == "I420" and drawn.size == frame.size
    assert np.array_equal(frame.data, yuv), "Annotate drew on the received frame"
    assert not np.array_equal(drawn.data, yuv)


def test_video_source_i420_gives_the_decoders_planes(carphone_path, yuv_and_rgb):
    out = run_calculator("VideoSource", options={"uri": str(carphone_path), "format": "I420", "stop_s": 1.05})
    frames = [img for _, img in out["FRAMES"]]
    assert len(frames) >= 30 and all(f.format == "I420" and f.size == (176, 144) for f in frames)
    assert np.array_equal(frames[0].data, yuv_and_rgb[0][0])
    assert np.array_equal(frames[30].data, yuv_and_rgb[1][0])


def test_video_source_i420_scales_odd_sizes_to_even(tmp_path, caplog):
    path = tmp_path / "odd.mov"
    rgb = np.random.default_rng(0).integers(0, 255, (43, 61, 3), np.uint8)
    with av.open(str(path), "w") as out:  # a lossless codec that takes odd sizes
        s = out.add_stream("png", rate=10)
        s.width, s.height, s.pix_fmt = 61, 43, "rgb24"
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    with caplog.at_level(logging.WARNING, logger="vpipe.sources.video"):
        out = run_calculator("VideoSource", options={"uri": str(path), "format": "I420"})
    assert [img.size for _, img in out["FRAMES"]] == [(62, 44)] * 3
    assert "frames of 61x43 are scaled to 62x44" in caplog.text


def test_video_writer_encodes_i420_and_rgb_alike(tmp_path, yuv_and_rgb):
    from calculators.sinks.video_writer import video_frame

    yuvs = [y for y, _ in yuv_and_rgb]
    rgbs = [r for _, r in yuv_and_rgb]
    # RGB -> yuv420p by OpenCV for the encoder: the planes FFmpeg's own conversion makes, within a few levels.
    f = video_frame(Image(rgbs[0]))
    assert f.format.name == "yuv420p"
    ref = av.VideoFrame.from_ndarray(rgbs[0], format="rgb24").reformat(format="yuv420p").to_ndarray()
    mean, top = _diff(f.to_ndarray(), ref)
    assert mean < 0.3 and top <= 8
    assert video_frame(Image(yuvs[0], "I420")).format.name == "yuv420p"
    results = {}
    for fmt, images in (("I420", [Image(y, "I420") for y in yuvs]), ("RGB", [Image(r) for r in rgbs])):
        path = tmp_path / f"{fmt}.mp4"
        run_calculator("VideoWriter", inputs={"IMAGE": [(i * 33_333, im) for i, im in enumerate(images)]},
                       options={"path": str(path), "crf": 12})
        with av.open(str(path)) as c:
            results[fmt] = [fr.to_ndarray(format="yuv420p") for fr in c.decode(video=0)]
    assert len(results["I420"]) == len(results["RGB"]) == len(yuvs)
    for got, want in zip(results["I420"], yuvs):
        assert _diff(got, want)[0] < 2.0, "an I420 frame must come back out of the encoder as it went in"
    for a, b in zip(results["I420"], results["RGB"]):
        assert _diff(a, b)[0] < 1.5


@pytest.mark.parametrize("options", [{"effect": "blur", "kernel": 21}, {"effect": "color", "color": [0, 200, 0]}])
def test_background_effect_on_i420_matches_the_rgb_path(yuv_and_rgb, options):
    yuv, _ = yuv_and_rgb[3]
    rgb = Image(yuv, "I420").to("RGB").data  # the same pixels in both paths
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[:, w // 3: 2 * w // 3] = 1.0
    outs = {}
    for frame in (Image(yuv, "I420"), Image(rgb)):
        before = frame.data.copy()
        out = run_calculator("BackgroundEffect", inputs={"IMAGE": [(0, frame)], "MASK": [(0, Mask(mask))]},
                             options=options)["IMAGE"][0][1]
        assert out.format == frame.format and np.array_equal(frame.data, before)
        outs[frame.format] = out.to("RGB").data
    inside = outs["RGB"][:, w // 3 + 8: 2 * w // 3 - 8]
    assert _diff(outs["I420"][:, w // 3 + 8: 2 * w // 3 - 8], inside)[0] < 1.5, "the foreground must be untouched"
    background = (slice(None), slice(0, w // 3 - 8))
    assert _diff(outs["I420"][background], rgb[background])[0] > 3, "the background must change"
    mean, _ = _diff(outs["I420"][background], outs["RGB"][background])
    assert mean < 4, f"I420 background differs from the RGB path's by {mean:.1f} on average"
