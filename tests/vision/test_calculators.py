"""Each vision calculator on its own, fed timestamped packets (pipeline.testing.run_calculator)."""

from __future__ import annotations

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.image.ops import fit_transform
from calculators.types import Detections, Image, Mask, Tensor, Tensors, Transform
from pipeline import GraphConfigError, GraphRunError
from pipeline.testing import run_calculator


def _frame(w=64, h=48, value=40):
    return Image(np.full((h, w, 3), value, np.uint8))


def test_image_to_tensor_emits_tensor_and_transform_at_input_timestamps():
    out = run_calculator("ImageToTensor", inputs={"IMAGE": [(0, _frame()), (33_366, _frame())]},
                         options={"size": [32, 32], "fit": "letterbox", "range": [0, 1], "layout": "NCHW"})
    assert [t for t, _ in out["TENSOR"]] == [0, 33_366] == [t for t, _ in out["TRANSFORM"]]
    tensor, transform = out["TENSOR"][0][1], out["TRANSFORM"][0][1]
    assert isinstance(tensor, Tensor) and tensor.shape == (1, 3, 32, 32) and tensor.layout == "NCHW"
    assert isinstance(transform, Transform) and transform.frame_size == (64, 48)


@pytest.mark.parametrize("options, message", [
    ({"size": [0, 32]}, "size must be positive"),
    ({"size": [32, 32], "range": [0, 1], "mean": [0, 0, 0]}, "either range or mean/std"),
    ({"size": [32, 32], "fit": "pad"}, "fit"),
    ({"size": [32, 32], "colour": "RGB"}, "colour"),
])
def test_image_to_tensor_rejects_bad_options_before_running(options, message):
    with pytest.raises(GraphConfigError, match=message):
        run_calculator("ImageToTensor", inputs={"IMAGE": [(0, _frame())]}, options=options)


def test_color_convert():
    out = run_calculator("ColorConvert", inputs={"IMAGE": [(5, _frame())]}, options={"format": "GRAY"})
    (t, img), = out["IMAGE"]
    assert t == 5 and img.format == "GRAY" and img.data.shape == (48, 64)


def test_crop_follows_roi_and_skips_empty_timestamps():
    roi = Detections(np.array([[8, 4, 24, 20]], np.float32), np.array([0.9]))
    out = run_calculator("Crop", inputs={"IMAGE": [(0, _frame()), (10, _frame())],
                                         "ROI": [(0, roi), (10, Detections.empty())]})
    assert [t for t, _ in out["IMAGE"]] == [0]
    assert out["IMAGE"][0][1].data.shape == (16, 16, 3)


def _blazeface_like_outputs(score_index=None):
    boxes = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -20.0, np.float32)
    if score_index is not None:
        boxes[0, score_index, 2:4] = 32.0
        scores[0, score_index, 0] = 5.0
    return Tensors([Tensor(boxes, name="regressors"), Tensor(scores, name="classificators")])


def test_ssd_decoder_nms_and_projection_chain_keep_timestamps():
    tensors = {0: _blazeface_like_outputs(600), 1000: _blazeface_like_outputs(None)}
    dec = run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": sorted(tensors.items())})
    assert [t for t, _ in dec["DETECTIONS"]] == [0, 1000]
    first, second = dec["DETECTIONS"][0][1], dec["DETECTIONS"][1][1]
    assert len(first) == 1 and len(second) == 0 and first.labels == ("face",)
    assert first.keypoints.shape == (1, 6, 2)
    w = first.xyxy[0, 2] - first.xyxy[0, 0]
    assert w == pytest.approx(32.0)  # 32/128 of the anchor width 1, in 128-pixel tensor units
    nms = run_calculator("NonMaxSuppression", inputs={"DETECTIONS": dec["DETECTIONS"]},
                         options={"method": "weighted", "iou_threshold": 0.3})
    transform = fit_transform((256, 128), (128, 128), "letterbox")
    proj = run_calculator("ProjectDetections", inputs={"DETECTIONS": nms["DETECTIONS"],
                                                       "TRANSFORM": [(0, transform), (1000, transform)]})
    assert [t for t, _ in proj["DETECTIONS"]] == [0, 1000]
    assert proj["DETECTIONS"][0][1].xyxy[0, 2] - proj["DETECTIONS"][0][1].xyxy[0, 0] == pytest.approx(64.0)


def test_ssd_decoder_names_the_outputs_it_could_not_tell_apart():
    bad = Tensors([Tensor(np.zeros((1, 896, 16), np.float32), name="a"), Tensor(np.zeros((1, 896, 16), np.float32), name="b")])
    with pytest.raises(GraphRunError, match=r"cannot tell which model output holds the box regressors"):
        run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": [(0, bad)]})


def test_project_without_transform_says_what_to_connect():
    det = Detections(np.array([[0, 0, 1, 1]], np.float32), np.array([1.0]))
    with pytest.raises(GraphRunError, match="no TRANSFORM at timestamp 7"):
        run_calculator("ProjectDetections", inputs={"DETECTIONS": [(7, det)],
                                                    "TRANSFORM": [(8, Transform.identity((4, 4)))]})


def test_annotate_draws_on_a_copy_never_on_the_received_frame():
    frame = _frame(value=10)
    before = frame.data.copy()
    det = Detections(np.array([[5, 5, 40, 30]], np.float32), np.array([0.9]), labels=["face"],
                     keypoints=np.array([[[10, 10]]], np.float32), tracker_ids=[3])
    mask = Mask(np.ones((48, 64), np.float32), (64, 48))
    out = run_calculator("Annotate", inputs={"IMAGE": [(0, frame), (1, frame)], "DETECTIONS": [(0, det)],
                                             "MASK": [(1, mask)]}, options={"show_fps": True})
    assert np.array_equal(frame.data, before), "Annotate modified the frame it received"
    (t0, a0), (t1, a1) = out["IMAGE"]
    assert (t0, t1) == (0, 1)
    assert a0.data is not frame.data and not np.array_equal(a0.data, before)
    assert np.abs(a0.data.astype(int) - before)[5:31, 5:41].sum() > 0        # the box was drawn
    assert np.array_equal(a0.data[40:, 50:], before[40:, 50:])               # far from it: untouched
    assert a1.data.mean() > before.mean() + 20                               # the mask tint


def test_tracking_calculator_gives_stable_ids():
    d = lambda x: Detections(np.array([[x, 0, x + 10, 10]], np.float32), np.array([0.9]))  # noqa: E731
    out = run_calculator("IouTracking", inputs={"DETECTIONS": [(0, d(0)), (1, d(1)), (2, d(2)), (3, d(80))]})
    assert [v.tracker_ids.tolist() for _, v in out["DETECTIONS"]] == [[1], [1], [1], [2]]


def test_segmentation_mask_and_background_effect():
    logits = np.full((1, 16, 16, 1), -8.0, np.float32)
    logits[0, :, 8:] = 8.0
    transform = fit_transform((64, 48), (16, 16), "stretch")
    masks = run_calculator("SegmentationMask", inputs={"TENSORS": [(0, Tensor(logits))], "TRANSFORM": [(0, transform)]},
                           options={"activation": "sigmoid", "threshold": 0.5})
    mask = masks["MASK"][0][1]
    assert mask.data.shape == (48, 64) and mask.data[:, 40:].min() == 1.0 and mask.data[:, :24].max() == 0.0
    frame = Image(np.zeros((48, 64, 3), np.uint8))
    out = run_calculator("BackgroundEffect", inputs={"IMAGE": [(0, frame)], "MASK": [(0, mask)]},
                         options={"effect": "color", "color": [0, 255, 0]})
    img = out["IMAGE"][0][1].data
    assert img[:, :24, 1].min() == 255 and img[:, 40:].max() == 0


# --- options and paths the tests above do not reach -------------------------------------------------

def test_color_convert_passes_an_image_already_in_the_format_on_as_it_is():
    frame = _frame()
    out = run_calculator("ColorConvert", inputs={"IMAGE": [(0, frame)]}, options={"format": "RGB"})
    assert out["IMAGE"][0][1] is frame
    rgb = Image(np.dstack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3)]))
    bgr = run_calculator("ColorConvert", inputs={"IMAGE": [(0, rgb)]}, options={"format": "BGR"})["IMAGE"][0][1]
    assert bgr.format == "BGR" and bgr.data[0, 0].tolist() == [3, 2, 1]


def test_crop_by_box_option_with_margin_size_and_transform():
    data = np.zeros((48, 64, 3), np.uint8)
    data[10:20, 20:40] = 200
    out = run_calculator("Crop", inputs={"IMAGE": [(3, Image(data))]},
                         options={"box": [20, 10, 40, 20], "margin": 0.5, "size": [40, 20], "fit": "stretch"})
    (t, img), = out["IMAGE"]
    (_, transform), = out["TRANSFORM"]
    assert t == 3 and img.data.shape == (20, 40, 3)
    # the box grew by half its size on each side: (10, 5, 50, 25), stretched onto 40x20
    assert transform.to_frame(np.array([[0, 0], [40, 20]])) == pytest.approx(np.array([[10, 5], [50, 25]]))
    assert img.data[10, 20].tolist() == [200] * 3 and img.data[1, 1].tolist() == [0] * 3


def test_crop_without_box_or_roi_says_what_it_needs():
    with pytest.raises(GraphRunError, match="Crop needs either the option `box` or a ROI input"):
        run_calculator("Crop", inputs={"IMAGE": [(0, _frame())]})


@pytest.mark.parametrize("options, kept", [
    ({}, [0.9, 0.85, 0.8, 0.2]),
    ({"min_score": 0.75}, [0.9, 0.85, 0.8]),
    ({"max_detections": 2}, [0.9, 0.85]),
])
def test_nms_min_score_and_max_detections(options, kept):
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], np.float32)
    det = Detections(boxes, np.array([0.9, 0.2, 0.8, 0.85]))
    out = run_calculator("NonMaxSuppression", inputs={"DETECTIONS": [(0, det)]}, options=options)
    assert out["DETECTIONS"][0][1].scores.tolist() == pytest.approx(kept)


def test_tracking_min_hits_holds_back_new_tracks():
    d = lambda x: Detections(np.array([[x, 0, x + 10, 10]], np.float32), np.array([0.9]))  # noqa: E731
    out = run_calculator("IouTracking", inputs={"DETECTIONS": [(0, d(0)), (1, d(1)), (2, d(2))]},
                         options={"min_hits": 2})
    assert [v.tracker_ids.tolist() for _, v in out["DETECTIONS"]] == [[], [1], [1]]


def test_yolo_decoder_reads_the_named_output_and_labels_classes():
    rows = np.zeros((1, 40, 7), np.float32)      # v5: cx, cy, w, h, objectness, 2 classes
    rows[0, 3] = [50, 40, 20, 10, 1.0, 0.1, 0.9]
    other = Tensor(np.ones((1, 3), np.float32), name="aux")
    out = run_calculator("YoloDecoder", inputs={"TENSORS": [(9, Tensors([other, Tensor(rows, name="det")]))]},
                         options={"output": "det", "labels": ["cat", "dog"]})
    (t, det), = out["DETECTIONS"]
    assert t == 9 and det.labels == ("dog",) and det.xyxy.tolist() == [[40, 35, 60, 45]]
    with pytest.raises(GraphRunError, match=r"no model output named 'dets' for the detections; outputs are "
                                            r"\[\('aux', \(1, 3\)\), \('det', \(1, 40, 7\)\)\]"):
        run_calculator("YoloDecoder", inputs={"TENSORS": [(0, Tensors([other, Tensor(rows, name="det")]))]},
                       options={"output": "dets"})


def _centerface_maps(h=8, w=10):
    heat = np.zeros((1, 1, h, w), np.float32)
    heat[0, 0, 3, 4] = 0.9
    return [Tensor(heat), Tensor(np.zeros((1, 2, h, w), np.float32)), Tensor(np.zeros((1, 2, h, w), np.float32)),
            Tensor(np.zeros((1, 10, h, w), np.float32))]


def test_centerface_decoder_tells_the_maps_apart_by_channels():
    maps = _centerface_maps()
    out = run_calculator("CenterFaceDecoder", inputs={"TENSORS": [(0, Tensors(maps[::-1]))]})  # any order
    (_, det), = out["DETECTIONS"]
    assert len(det) == 1 and det.labels == ("face",) and det.keypoints.shape == (1, 5, 2)
    assert det.scores.tolist() == pytest.approx([0.9])
    with pytest.raises(GraphRunError, match="CenterFace outputs must be 1, 2, 2 and 10 channel maps"):
        run_calculator("CenterFaceDecoder", inputs={"TENSORS": [(0, Tensors(maps[:3]))]})
    with pytest.raises(GraphConfigError, match="outputs"):
        run_calculator("CenterFaceDecoder", inputs={"TENSORS": [(0, Tensors(maps))]},
                       options={"outputs": ["heat", "scale"]})


def test_segmentation_mask_without_transform_is_tensor_sized():
    probs = np.zeros((1, 6, 8, 1), np.float32)
    probs[0, :, 4:] = 1.0
    out = run_calculator("SegmentationMask", inputs={"TENSORS": [(4, Tensor(probs))]})
    (t, mask), = out["MASK"]
    assert t == 4 and mask.data.shape == (6, 8) and mask.frame_size == (8, 6)
    assert mask.data[:, 4:].min() == 1.0 and mask.data[:, :4].max() == 0.0


def test_background_effect_passes_frames_without_a_mask_and_refuses_a_mismatched_one():
    frame = _frame()
    out = run_calculator("BackgroundEffect", inputs={"IMAGE": [(0, frame)], "MASK": [(1, Mask(np.ones((48, 64))))]})
    assert [t for t, _ in out["IMAGE"]] == [0] and out["IMAGE"][0][1] is frame
    with pytest.raises(GraphRunError, match=r"mask \(4, 4\) does not match the frame \(48, 64\) at timestamp 0"):
        run_calculator("BackgroundEffect", inputs={"IMAGE": [(0, frame)], "MASK": [(0, Mask(np.ones((4, 4))))]})


def test_annotate_show_latency_writes_the_lag_in_the_corner():
    frames = [(t, _frame(value=200)) for t in (0, 33_333)]
    plain = run_calculator("Annotate", inputs={"IMAGE": frames})["IMAGE"]
    lag = run_calculator("Annotate", inputs={"IMAGE": frames}, options={"show_latency": True})["IMAGE"]
    assert np.array_equal(plain[0][1].data, frames[0][1].data)
    corner = (slice(0, 12), slice(0, 40))
    assert not np.array_equal(lag[0][1].data[corner], plain[0][1].data[corner])
    assert np.array_equal(lag[0][1].data[30:], plain[0][1].data[30:])


@pytest.mark.parametrize("fmt, shape", [("GRAY", (48, 64)), ("RGBA", (48, 64, 4)), ("BGR", (48, 64, 3))])
def test_annotate_tints_the_mask_on_every_pixel_format(fmt, shape):
    frame = Image(np.zeros(shape, np.uint8), fmt)
    mask = np.zeros((48, 64), np.float32)
    mask[:, 32:] = 1.0
    out = run_calculator("Annotate", inputs={"IMAGE": [(0, frame)], "MASK": [(0, Mask(mask))]},
                         options={"mask_color": [200, 100, 0], "mask_alpha": 0.5})
    data = out["IMAGE"][0][1].data
    assert data.shape == shape and data[:, :32].max() == 0
    tinted = data[10, 40].tolist()
    assert tinted == {"GRAY": 59, "RGBA": [100, 50, 0, 0], "BGR": [0, 50, 100]}[fmt]
