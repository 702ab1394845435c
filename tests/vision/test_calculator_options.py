"""Options of the vision calculators that no other test set, each checked by what changes when it
is set (a test here fails when its option is ignored)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.annotate.draw import FONT
from calculators.image.ops import fit_transform
from calculators.types import Detections, Image, Tensor, Tensors
from pipeline import GraphRunError
from pipeline.testing import run_calculator

# -- Annotate ------------------------------------------------------------------------------------

BG = 7  # a background value no drawing uses


def _annotated(**options):
    frame = Image(np.full((96, 96, 3), BG, np.uint8))
    det = Detections(np.array([[20, 40, 80, 80]], np.float32), np.array([0.9]), labels=["face"],
                     keypoints=np.array([[[50, 60]]], np.float32), tracker_ids=[3])
    out = run_calculator("Annotate", inputs={"IMAGE": [(0, frame)], "DETECTIONS": [(0, det)]},
                         options={"color": [200, 200, 200], **options})
    return out["IMAGE"][0][1].data


def _caption_width(img) -> int:
    """Width of the filled caption box above the box's top-left corner (row 34, inside it)."""
    cols = np.flatnonzero((img[34] != BG).any(axis=-1))
    return int(cols.max() - cols.min()) if len(cols) else 0


@pytest.mark.parametrize("options, caption", [
    ({}, "face 0.90 #3"),
    ({"show_labels": False}, "0.90 #3"),
    ({"show_scores": False}, "face #3"),
    ({"show_ids": False}, "face 0.90"),
    ({"show_labels": False, "show_scores": False, "show_ids": False}, ""),
])
def test_annotate_caption_parts_follow_show_labels_scores_ids(options, caption):
    width = cv2.getTextSize(caption, FONT, 0.4, 1)[0][0] if caption else 0
    assert _caption_width(_annotated(**options)) == pytest.approx(width, abs=1)


def test_annotate_show_keypoints():
    assert (_annotated()[60, 50] != BG).any()
    off = _annotated(show_keypoints=False)
    assert (off[60, 50] == BG).all()
    assert (off[40:81, 20] != BG).any()  # the box is still drawn


def test_annotate_thickness_widens_the_box_lines():
    def line_width(img):  # pixels of the left edge across row 60 (keypoints and captions off)
        return int((img[60, 5:35] != BG).any(axis=-1).sum())

    thin = line_width(_annotated(thickness=1, show_keypoints=False))
    thick = line_width(_annotated(thickness=7, show_keypoints=False))
    assert thin <= 3 and thick >= 7, (thin, thick)


# -- decoders ------------------------------------------------------------------------------------

def _ssd(index=None, boxes_value=32.0):
    boxes = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -20.0, np.float32)
    if index is not None:
        boxes[0, index, 2:4] = boxes_value
        scores[0, index, 0] = 5.0
    return boxes, scores


def test_ssd_decoder_boxes_output_picks_the_regressors_by_name():
    boxes, scores = _ssd(600)
    decoy, _ = _ssd(600, boxes_value=8.0)
    tensors = Tensors([Tensor(decoy, name="decoy"), Tensor(boxes, name="regressors"), Tensor(scores, name="scores")])
    with pytest.raises(GraphRunError, match="box regressors"):
        run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": [(0, tensors)]})
    for name, width in (("regressors", 32.0), ("decoy", 8.0)):
        (_, det), = run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": [(0, tensors)]},
                                   options={"boxes_output": name})["DETECTIONS"]
        assert det.xyxy[0, 2] - det.xyxy[0, 0] == pytest.approx(width)


def test_ssd_decoder_scores_output_picks_the_scores_by_name():
    boxes, scores = _ssd(600)
    silent = np.full_like(scores, -20.0)
    tensors = Tensors([Tensor(boxes, name="regressors"), Tensor(silent, name="silent"), Tensor(scores, name="scores")])
    with pytest.raises(GraphRunError, match="scores"):
        run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": [(0, tensors)]})
    for name, n in (("scores", 1), ("silent", 0)):
        (_, det), = run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": [(0, tensors)]},
                                   options={"scores_output": name})["DETECTIONS"]
        assert len(det) == n


def test_ssd_decoder_anchors_and_decode_override_the_preset():
    boxes, scores = _ssd(600)
    tensors = Tensors([Tensor(boxes, name="regressors"), Tensor(scores, name="scores")])

    def box(**options):
        (_, det), = run_calculator("SsdDetectionsDecoder", inputs={"TENSORS": [(0, tensors)]},
                                   options=options)["DETECTIONS"]
        return det.xyxy[0].tolist() if len(det) else None

    def width(**options):
        b = box(**options)
        return b and b[2] - b[0]

    def centre_x(**options):
        b = box(**options)
        return (b[0] + b[2]) / 2

    assert width() == pytest.approx(32.0)
    # anchor 600 is cell (6, 1) of the 8x8 layer: its centre moves by half a 16-pixel cell
    assert centre_x() - centre_x(anchors={"anchor_offset_x": 0.0}) == pytest.approx(8.0)
    assert width(decode={"w_scale": 256.0}) == pytest.approx(16.0)  # regressors read on a 256 scale
    assert box(decode={"min_score_thresh": 0.999}) is None  # sigmoid(5) = 0.993
    # without a preset, both are needed and are all there is
    from calculators.postprocess.ssd import BLAZEFACE_SHORT_ANCHORS, BLAZEFACE_SHORT_DECODE

    assert width(preset=None, anchors=BLAZEFACE_SHORT_ANCHORS.model_dump(),
                 decode=BLAZEFACE_SHORT_DECODE.model_dump()) == pytest.approx(32.0)


def test_yolo_decoder_score_threshold():
    rows = np.zeros((1, 4, 7), np.float32)  # v5: cx, cy, w, h, objectness, 2 classes
    rows[0, 0] = [50, 40, 20, 10, 1.0, 0.5, 0.1]
    tensors = Tensors([Tensor(rows)])

    def count(**options):
        (_, det), = run_calculator("YoloDecoder", inputs={"TENSORS": [(0, tensors)]},
                                   options={"version": "v5", **options})["DETECTIONS"]
        return len(det)

    assert count() == 1  # 0.5 >= 0.25 (the default)
    assert count(score_threshold=0.6) == 0
    assert count(score_threshold=0.45) == 1


def test_yolo_decoder_version_decides_the_layout_of_an_ambiguous_output():
    out = np.zeros((1, 8, 8), np.float32)  # v5: 8 rows of 5+3; v8: 4+4 rows of 8 candidates
    out[0, 2] = [50, 40, 20, 10, 1.0, 0.9, 0.0, 0.0]  # a v5 row (candidate 2)
    out[0, :5, 0] = [30, 30, 50, 10, 0.8]  # a v8 column (candidate 0): cx, cy, w (set above), h, class 0
    tensors = Tensors([Tensor(out)])
    (_, v5), = run_calculator("YoloDecoder", inputs={"TENSORS": [(0, tensors)]},
                              options={"version": "v5"})["DETECTIONS"]
    (_, v8), = run_calculator("YoloDecoder", inputs={"TENSORS": [(0, tensors)]},
                              options={"version": "v8"})["DETECTIONS"]
    assert v5.xyxy.tolist() == [[40, 35, 60, 45]]
    assert v8.xyxy.tolist() == [[5, 25, 55, 35]]


def test_centerface_decoder_label():
    heat = np.zeros((1, 1, 8, 10), np.float32)
    heat[0, 0, 3, 4] = 0.9
    maps = Tensors([Tensor(heat), Tensor(np.zeros((1, 2, 8, 10), np.float32)),
                    Tensor(np.zeros((1, 2, 8, 10), np.float32)), Tensor(np.zeros((1, 10, 8, 10), np.float32))])
    (_, det), = run_calculator("CenterFaceDecoder", inputs={"TENSORS": [(0, maps)]},
                               options={"label": "person"})["DETECTIONS"]
    assert det.labels == ("person",)


# -- filters ---------------------------------------------------------------------------------------

def test_project_detections_clip():
    det = Detections(np.array([[-10, 20, 140, 100]], np.float32), np.array([0.9]),
                     keypoints=np.array([[[-5, 50], [130, 50]]], np.float32))
    transform = fit_transform((128, 128), (128, 128), "stretch")
    (_, free), = run_calculator("ProjectDetections", inputs={"DETECTIONS": [(0, det)], "TRANSFORM": [(0, transform)]})[
        "DETECTIONS"]
    (_, clipped), = run_calculator("ProjectDetections", inputs={"DETECTIONS": [(0, det)], "TRANSFORM": [(0, transform)]},
                                   options={"clip": True})["DETECTIONS"]
    assert free.xyxy.tolist() == [[-10, 20, 140, 100]]
    assert clipped.xyxy.tolist() == [[0, 20, 128, 100]]
    assert clipped.keypoints[0, :, 0].tolist() == [0, 128]


def test_nms_class_agnostic():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], np.float32)
    det = Detections(boxes, np.array([0.9, 0.8]), class_ids=np.array([0, 1]))

    def kept(**options):
        return len(run_calculator("NonMaxSuppression", inputs={"DETECTIONS": [(0, det)]},
                                  options={"method": "hard", **options})["DETECTIONS"][0][1])

    assert kept() == 1  # class_agnostic by default: the overlap suppresses across classes
    assert kept(class_agnostic=False) == 2


def test_iou_tracking_max_age():
    d = lambda x: Detections(np.array([[x, 0, x + 10, 10]], np.float32), np.array([0.9]))  # noqa: E731
    empty = Detections.empty()
    seq = [(0, d(0)), (1, empty), (2, empty), (3, d(0))]  # unseen for 2 frames, then back

    def ids(**options):
        out = run_calculator("IouTracking", inputs={"DETECTIONS": seq}, options=options)
        return [v.tracker_ids.tolist() for _, v in out["DETECTIONS"]]

    assert ids() == [[1], [], [], [1]]  # max_age 5: the track survives
    assert ids(max_age=1) == [[1], [], [], [2]]  # gone after 1 unseen frame: a new id


def test_segmentation_mask_smooth_feathers_the_edge():
    probs = np.zeros((1, 16, 16, 1), np.float32)
    probs[0, :, 8:] = 1.0

    def mask(**options):
        return run_calculator("SegmentationMask", inputs={"TENSORS": [(0, Tensor(probs))]},
                              options=options)["MASK"][0][1].data

    hard = mask()
    soft = mask(smooth=5)
    assert set(np.unique(hard).tolist()) == {0.0, 1.0}
    assert 0.0 < soft[8, 7] < 0.5 < soft[8, 8] < 1.0  # the edge is feathered on both sides
    assert soft[8, 0] == pytest.approx(0.0) and soft[8, 15] == pytest.approx(1.0)


def test_segmentation_mask_channel():
    probs = np.zeros((1, 4, 4, 2), np.float32)
    probs[0, :, :2, 0] = 1.0
    probs[0, :, 2:, 1] = 1.0

    def mask(**options):
        return run_calculator("SegmentationMask", inputs={"TENSORS": [(0, Tensor(probs))]},
                              options=options)["MASK"][0][1].data

    assert mask()[0].tolist() == [1, 1, 0, 0]
    assert mask(channel=1)[0].tolist() == [0, 0, 1, 1]


# -- image ---------------------------------------------------------------------------------------

def _tensor(image, **options):
    return run_calculator("ImageToTensor", inputs={"IMAGE": [(0, image)]},
                          options={"size": [4, 4], **options})["TENSOR"][0][1].data


def test_image_to_tensor_std_dtype_border():
    img = Image(np.full((2, 4, 3), 100, np.uint8))  # letterboxed into 4x4: rows 0 and 3 are padding
    assert _tensor(img, mean=[50, 50, 50], std=[25, 25, 25])[0, 1, 1].tolist() == [2.0] * 3
    assert _tensor(img, mean=[50, 50, 50], std=[50, 50, 50])[0, 1, 1].tolist() == [1.0] * 3
    assert _tensor(img, dtype="float16").dtype == np.float16
    u8 = _tensor(img, dtype="uint8")
    assert u8.dtype == np.uint8 and u8[0, 1, 1].tolist() == [100] * 3
    assert _tensor(img, dtype="uint8", border=33)[0, 0, 0].tolist() == [33] * 3
    assert _tensor(img, dtype="uint8")[0, 0, 0].tolist() == [0] * 3


def test_image_to_tensor_interpolation():
    data = np.zeros((8, 8, 3), np.uint8)
    data[:, 1::2] = 255  # stripes: nearest picks one column, area averages them
    img = Image(data)
    nearest = _tensor(img, dtype="uint8", interpolation="nearest", fit="stretch")
    area = _tensor(img, dtype="uint8", interpolation="area", fit="stretch")
    assert set(np.unique(nearest).tolist()) <= {0, 255}
    assert np.all(np.abs(area.astype(int) - 128) <= 1)


def test_crop_border_fills_the_letterbox_padding():
    img = Image(np.full((10, 10, 3), 50, np.uint8))
    def crop(**options):
        out = run_calculator("Crop", inputs={"IMAGE": [(0, img)]},
                             options={"box": [0, 0, 10, 5], "size": [10, 10], "fit": "letterbox", **options})
        return out["IMAGE"][0][1].data

    # a 10x5 box letterboxed into 10x10: rows 0-1 and 8-9 are padding
    assert crop(border=200)[0, 5].tolist() == [200] * 3 and crop(border=200)[5, 5].tolist() == [50] * 3
    assert crop()[0, 5].tolist() == [0] * 3
