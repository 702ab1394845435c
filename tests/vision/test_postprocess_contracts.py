"""The post-processing calculators' contracts beyond the common case, written against the mutants
that survived the rest of the suite (scripts/mutation.py postprocess): output dtypes, the exact
boundaries (>= vs >), error messages, rotated transforms, clipping on every side, non-square
anchors, per-class NMS with a cap, and the tracker's matching order. Through the calculators
where a calculator reaches the code, so the tests survive a rewrite of the helpers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.postprocess.masks import blend, replace_background
from calculators.types import Detections, Mask, Tensor, Tensors, Transform
from pipeline import GraphRunError
from pipeline.testing import run_calculator


@pytest.fixture(autouse=True)
def _fresh_anchors():
    """Anchors computed in the test, not taken from ``ssd_anchors``' cache: a mutation tool's forked
    runs inherit the cache its clean run filled, which would hide a mutant of the anchor code."""
    from calculators.postprocess.ssd import ssd_anchors

    ssd_anchors.cache_clear()


def close(got, expected):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(expected, np.float64), rtol=1e-5, atol=1e-5)


def _one(calculator, inputs, **options):
    out = run_calculator(calculator, inputs={k: [(0, v)] for k, v in inputs.items()}, options=options)
    (values,) = [v for k, v in out.items() if v]
    return values[0][1]


# -- ProjectDetections -----------------------------------------------------------------------------

def test_project_through_a_rotation_takes_the_hull_of_the_corners():
    # tensor 10x20 rotated by 90 degrees into a 20x10 frame: (x, y) -> (20 - y, x)
    transform = Transform(np.array([[0.0, -1.0, 20.0], [1.0, 0.0, 0.0]]), (20, 10), (10, 20))
    det = Detections(np.array([[1, 2, 4, 8]], np.float32), np.array([0.9]),
                     keypoints=np.array([[[1, 2], [4, 8]]], np.float32))
    out = _one("ProjectDetections", {"DETECTIONS": det, "TRANSFORM": transform})
    assert out.xyxy.dtype == np.float32 and out.keypoints.dtype == np.float32
    assert out.xyxy.tolist() == [[12, 1, 18, 4]]
    assert out.keypoints.tolist() == [[[18, 1], [12, 4]]]


def test_project_clip_clamps_every_side_to_a_non_square_frame():
    transform = Transform.identity((30, 20))
    det = Detections(np.array([[-5, -3, 40, 25], [0.5, 0.25, 29.5, 19.5]], np.float32), np.array([0.9, 0.8]),
                     keypoints=np.array([[[-1, -2], [35, 24]], [[0.5, 0.25], [29.5, 19.5]]], np.float32))
    out = _one("ProjectDetections", {"DETECTIONS": det, "TRANSFORM": transform}, clip=True)
    assert out.xyxy.tolist() == [[0, 0, 30, 20], [0.5, 0.25, 29.5, 19.5]]
    assert out.keypoints.tolist() == [[[0, 0], [30, 20]], [[0.5, 0.25], [29.5, 19.5]]]
    assert out.xyxy.dtype == np.float32 and out.keypoints.dtype == np.float32


def test_project_without_a_transform_at_the_timestamp_says_what_to_connect():
    det = Detections(np.array([[1, 2, 4, 8]], np.float32), np.array([0.9]))
    with pytest.raises(GraphRunError, match=r"no TRANSFORM at timestamp 0 for the detections; connect the "
                                            r"TRANSFORM output of the ImageToTensor that made the tensor"):
        run_calculator("ProjectDetections", inputs={"DETECTIONS": [(0, det)],
                                                     "TRANSFORM": [(1, Transform.identity((30, 20)))]})


# -- SsdDetectionsDecoder --------------------------------------------------------------------------

# one 2x1 feature map of a 4x2 input: two anchors, non-square (w 0.5, h 0.25 of the tensor)
TINY_ANCHORS = {"input_size_width": 4, "input_size_height": 2, "num_layers": 1, "strides": [2],
                "min_scale": 0.2, "max_scale": 0.2, "fixed_anchor_size": True,
                "interpolated_scale_aspect_ratio": 0.0}


def _tiny(boxes, scores, **decode):
    d = {"num_boxes": 2, "num_coords": 8, "keypoint_coord_offset": 4, "num_keypoints": 2,
         "x_scale": 4.0, "y_scale": 2.0, "w_scale": 4.0, "h_scale": 2.0, "min_score_thresh": 0.5, **decode}
    tensors = Tensors([Tensor(np.asarray(boxes, np.float32)[None], name="boxes"),
                       Tensor(np.asarray(scores, np.float32)[None], name="scores")])
    return _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=None, anchors=TINY_ANCHORS, decode=d,
                labels=["a", "b"])


def test_ssd_decode_reads_x_y_w_h_and_keypoints_in_their_own_scales():
    # anchor 1: centre (0.75, 0.5) of a 4x2 tensor; fixed size 1x1 (the whole tensor)
    boxes = [[0] * 8, [1.0, 0.5, 2.0, 1.0, 2.0, 1.0, -1.0, -0.5]]
    det = _tiny(boxes, [[-9, -9], [-9, 3.0]])
    assert det.labels == ("b",) and det.class_ids.dtype == np.int32 and det.class_ids.tolist() == [1]
    assert det.scores.dtype == np.float32 and det.scores.tolist() == pytest.approx([1 / (1 + np.exp(-3.0))])
    # centre x = 0.75 + 1/4, y = 0.5 + 0.5/2; w = 2/4, h = 1/2; in tensor pixels (x4, x2)
    close(det.xyxy.dtype == np.float32 and det.xyxy, [[3.0, 1.0, 5.0, 2.0]])
    assert det.keypoints.dtype == np.float32
    close(det.keypoints, [[[5.0, 2.0], [2.0, 0.5]]])


def test_ssd_decode_y_first_order_and_raw_scores_at_the_threshold():
    boxes = [[0] * 8, [0.5, 1.0, 1.0, 2.0, 1.0, 2.0, -0.5, -1.0]]  # y, x, h, w; keypoints y, x
    det = _tiny(boxes, [[0, 0], [0.5, 0.2]], reverse_output_order=False, sigmoid_score=False)
    assert det.scores.tolist() == [0.5]  # kept at exactly min_score_thresh
    close(det.xyxy, [[3.0, 1.0, 5.0, 2.0]])
    close(det.keypoints, [[[5.0, 2.0], [2.0, 0.5]]])


def test_ssd_decode_clips_scores_before_the_sigmoid():
    det = _tiny([[0] * 8, [0] * 8], [[-500, -500], [500, -500]], score_clipping_thresh=2.0)
    assert det.scores.tolist() == pytest.approx([1 / (1 + np.exp(-2.0))])
    none = _tiny([[0] * 8, [0] * 8], [[-500, -500], [0.0, -500]], score_clipping_thresh=None, min_score_thresh=0.4)
    assert len(none) == 1


def test_ssd_anchor_count_mismatch_names_both_counts():
    tensors = Tensors([Tensor(np.zeros((1, 3, 8), np.float32), name="boxes"),
                       Tensor(np.zeros((1, 3, 2), np.float32), name="scores")])
    with pytest.raises(GraphRunError, match=r"expected 3 boxes and as many anchors, got 3 boxes and 2 anchors"):
        _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=None, anchors=TINY_ANCHORS,
             decode={"num_boxes": 3, "num_coords": 8, "num_keypoints": 2})


def test_ssd_decoder_gives_decode_ssd_scaled_to_tensor_pixels_bit_for_bit():
    # The node scales the decoded arrays itself (one Detections per frame): the same float32
    # arithmetic as decode_ssd followed by scale_detections.
    from calculators.postprocess.geometry import scale_detections
    from calculators.postprocess.ssd import BLAZEFACE_SHORT_ANCHORS, BLAZEFACE_SHORT_DECODE, decode_ssd, ssd_anchors

    rng = np.random.default_rng(11)
    boxes = rng.normal(0, 20, (1, 896, 16)).astype(np.float32)
    scores = rng.normal(-2, 3, (1, 896, 1)).astype(np.float32)
    got = _one("SsdDetectionsDecoder", {"TENSORS": Tensors([Tensor(boxes), Tensor(scores)])}, preset="blazeface_short")
    xyxy, s, c, kp = decode_ssd(boxes, scores, ssd_anchors(BLAZEFACE_SHORT_ANCHORS), BLAZEFACE_SHORT_DECODE)
    want = scale_detections(Detections(xyxy, s, c, ("face",) * len(s), kp), 128, 128)
    assert len(got) == len(want) > 10
    for name in ("xyxy", "scores", "class_ids", "keypoints"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.dtype == w.dtype and np.array_equal(g, w), name


@pytest.mark.parametrize("preset", ["blazeface_short", "blazeface_full", "pose_detection", "palm_detection"])
def test_ssd_preset_auto_is_the_preset_of_the_box_count(preset):
    from calculators.postprocess.ssd import PRESETS

    d = PRESETS[preset][1]
    rng = np.random.default_rng(d.num_boxes)
    boxes = rng.normal(0, 10, (1, d.num_boxes, d.num_coords)).astype(np.float32)
    scores = rng.normal(-1, 2, (1, d.num_boxes, 1)).astype(np.float32)
    # the scores first: auto reads the box count from the regressors, whatever their place
    for tensors in (Tensors([Tensor(scores), Tensor(boxes)]), Tensors([Tensor(scores[0]), Tensor(boxes[0])])):
        got = _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset="auto")
        want = _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=preset)
        assert len(got) == len(want) > 0
        assert np.array_equal(got.xyxy, want.xyxy) and np.array_equal(got.keypoints, want.keypoints)


def test_ssd_preset_auto_without_a_known_box_count_names_the_presets_and_shapes():
    # 896 boxes (short range's count) but 5 coordinates a box: no preset's regressors
    tensors = Tensors([Tensor(np.zeros((1, 896, 5), np.float32)), Tensor(np.zeros((1, 896, 1), np.float32))])
    with pytest.raises(GraphRunError, match=r"preset auto: no output has a box count of a known preset "
                                            r"\(blazeface_short: 896 boxes, blazeface_full: 2304 boxes, "
                                            r"pose_detection: 2254 boxes, palm_detection: 2016 boxes\); "
                                            r"got shapes \[\(1, 896, 5\), \(1, 896, 1\)\]"):
        _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset="auto")


def test_ssd_min_score_overrides_the_threshold_of_the_preset_and_of_decode():
    boxes = [[0] * 8, [0] * 8]
    scores = [[-9, -9], [np.log(3.0), -9]]  # a score of 0.75 (decode's own threshold 0.5 keeps it)
    tensors = Tensors([Tensor(np.asarray(boxes, np.float32)[None], name="boxes"),
                       Tensor(np.asarray(scores, np.float32)[None], name="scores")])
    d = {"num_boxes": 2, "num_coords": 8, "keypoint_coord_offset": 4, "num_keypoints": 2, "min_score_thresh": 0.5}

    def run(**options):
        return _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=None, anchors=TINY_ANCHORS, decode=d,
                    **options)

    assert run().scores.tolist() == pytest.approx([0.75])
    assert len(run(min_score=0.9)) == 0 and len(run(min_score=0.7)) == 1
    # over a preset's threshold too (blazeface_short's 0.5)
    rng = np.random.default_rng(5)
    blaze = Tensors([Tensor(rng.normal(0, 5, (1, 896, 16)).astype(np.float32)),
                     Tensor(rng.normal(0, 2, (1, 896, 1)).astype(np.float32))])
    every = _one("SsdDetectionsDecoder", {"TENSORS": blaze}, preset="blazeface_short")
    high = _one("SsdDetectionsDecoder", {"TENSORS": blaze}, preset="blazeface_short", min_score=0.9)
    assert every.scores.min() >= 0.5 and 0 < len(high) < len(every) and high.scores.min() >= 0.9


def test_ssd_decoder_errors_name_the_node_and_what_is_missing():
    tensors = Tensors([Tensor(np.zeros((1, 2, 8), np.float32), name="boxes"),
                       Tensor(np.zeros((1, 2, 2), np.float32), name="scores")])
    for given in ({"anchors": TINY_ANCHORS}, {"decode": {"num_boxes": 2, "num_coords": 8}}, {}):
        with pytest.raises(GraphRunError, match=r"ValueError: node SsdDetectionsDecoder: without a preset, give both "
                                                r"`anchors` and `decode` options"):
            _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=None, **given)
    with pytest.raises(GraphRunError, match=r"ValueError: node SsdDetectionsDecoder: preset auto: no output"):
        _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset="auto")
    with pytest.raises(GraphRunError, match=r"no model output named 'nope' for the scores; outputs are "):
        _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=None, anchors=TINY_ANCHORS,
             decode={"num_boxes": 2, "num_coords": 8}, scores_output="nope")


@pytest.mark.parametrize("layers, expect", [
    # one layer: the scale is the mean of min and max; the interpolated anchor sqrt(scale * 1)
    ({"num_layers": 1, "strides": [4], "min_scale": 0.2, "max_scale": 0.6}, [0.4, 0.4 ** 0.5]),
    # two layers of the same stride: scales 0.2 and 0.6, each followed by its interpolated partner
    ({"num_layers": 2, "strides": [4, 4], "min_scale": 0.2, "max_scale": 0.6}, [0.2, (0.2 * 0.6) ** 0.5, 0.6, 0.6 ** 0.5]),
    # three: the middle layer's scale is halfway, 0.4
    ({"num_layers": 3, "strides": [4, 4, 4], "min_scale": 0.2, "max_scale": 0.6},
     [0.2, (0.2 * 0.4) ** 0.5, 0.4, (0.4 * 0.6) ** 0.5, 0.6, 0.6 ** 0.5]),
])
def test_ssd_anchor_sizes_follow_mediapipe_scales(layers, expect):
    """Anchor sizes (not fixed) as MediaPipe's SsdAnchorsCalculator makes them, read back through
    the decoder: a regressor of w = w_scale decodes to its anchor's own width."""
    anchors = {"input_size_width": 4, "input_size_height": 4, "fixed_anchor_size": False,
               "interpolated_scale_aspect_ratio": 1.0, **layers}
    n = len(expect)
    # regressors x = y = 128 move the centre by one anchor size; w = h = 128 are the anchor's size
    tensors = Tensors([Tensor(np.full((1, n, 4), 128.0, np.float32), name="boxes"),  # w = h = the anchor's
                       Tensor(np.full((1, n, 1), 9.0, np.float32), name="scores")])
    det = _one("SsdDetectionsDecoder", {"TENSORS": tensors}, preset=None, anchors=anchors,
               decode={"num_boxes": n, "num_coords": 4, "num_keypoints": 0})
    widths = ((det.xyxy[:, 2] - det.xyxy[:, 0]) / 4).tolist()
    assert widths == pytest.approx(expect, rel=1e-5)


# -- NonMaxSuppression -----------------------------------------------------------------------------

def _dets(boxes, scores, classes=None, **extra):
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                      None if classes is None else np.asarray(classes), **extra)


@pytest.mark.parametrize("method", ["hard", "weighted"])
def test_nms_per_class_keeps_the_best_overall_up_to_the_cap(method):
    det = _dets([[0, 0, 10, 10], [1, 0, 11, 10], [50, 0, 60, 10], [51, 0, 61, 10]], [0.6, 0.9, 0.8, 0.7],
                [0, 0, 1, 1], keypoints=np.arange(16, dtype=np.float32).reshape(4, 2, 2), tracker_ids=[4, 5, 6, 7],
                labels=("a", "a", "b", "b"))
    out = _one("NonMaxSuppression", {"DETECTIONS": det}, method=method, class_agnostic=False, max_detections=1,
               iou_threshold=0.3)
    assert out.scores.tolist() == pytest.approx([0.9]) and out.class_ids.tolist() == [0]
    both = _one("NonMaxSuppression", {"DETECTIONS": det}, method=method, class_agnostic=False, iou_threshold=0.3)
    assert sorted(both.scores.tolist()) == pytest.approx([0.8, 0.9])
    assert both.keypoints is not None and both.keypoints.shape == (2, 2, 2) and both.tracker_ids is not None
    # each class's survivor keeps its class, label, keypoints and track id through the merge
    assert both.class_ids.tolist() == [0, 1] and both.labels == ("a", "b")
    assert both.tracker_ids.tolist() == [5, 6]
    if method == "hard":
        assert both.keypoints.tolist() == det.keypoints[[1, 2]].tolist()
    assert both.xyxy.dtype == np.float32


def test_nms_boundaries_min_score_and_iou_exactly_at_the_threshold():
    det = _dets([[0, 0, 10, 10], [40, 0, 50, 10]], [0.5, 0.4])
    assert _one("NonMaxSuppression", {"DETECTIONS": det}, min_score=0.5).scores.tolist() == [0.5]
    # IoU of these two is exactly 1/3: at the threshold they are not the same object
    pair = _dets([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8])
    for method in ("hard", "weighted"):
        assert len(_one("NonMaxSuppression", {"DETECTIONS": pair}, method=method, iou_threshold=1 / 3 + 1e-6)) == 2
        assert len(_one("NonMaxSuppression", {"DETECTIONS": pair}, method=method, iou_threshold=0.3)) == 1


def test_weighted_nms_averages_keypoints_and_keeps_a_lone_zero_area_box():
    det = _dets([[0, 0, 10, 10], [2, 0, 12, 10], [30, 30, 30, 30]], [0.75, 0.25, 0.5],
                keypoints=np.array([[[0, 0]], [[4, 4]], [[30, 30]]], np.float32))
    out = _one("NonMaxSuppression", {"DETECTIONS": det}, method="weighted", iou_threshold=0.3)
    assert out.scores.tolist() == pytest.approx([0.75, 0.5])
    close(out.xyxy, [[0.5, 0, 10.5, 10], [30, 30, 30, 30]])
    close(out.keypoints, [[[1, 1]], [[30, 30]]])
    assert out.xyxy.dtype == np.float32 and out.keypoints.dtype == np.float32


def test_nms_of_one_and_of_none():
    one = _dets([[0, 0, 10, 10]], [0.9])
    for method in ("hard", "weighted"):
        assert _one("NonMaxSuppression", {"DETECTIONS": one}, method=method).scores.tolist() == pytest.approx([0.9])
        assert len(_one("NonMaxSuppression", {"DETECTIONS": Detections.empty()}, method=method)) == 0


def test_nms_equal_scores_keep_the_first():
    det = _dets([[0, 0, 10, 10], [1, 0, 11, 10]], [0.5, 0.5], [0, 1])
    out = _one("NonMaxSuppression", {"DETECTIONS": det}, iou_threshold=0.3)
    assert out.class_ids.tolist() == [0]


# -- CenterFaceDecoder -----------------------------------------------------------------------------

def _centerface(heat_value=0.9, at=(3, 4), scale=(0.0, 0.0), offset=(0.0, 0.0), h=8, w=10):
    heat = np.zeros((1, 1, h, w), np.float32)
    heat[0, 0, at[0], at[1]] = heat_value
    sc = np.zeros((1, 2, h, w), np.float32)
    sc[0, :, at[0], at[1]] = scale
    off = np.zeros((1, 2, h, w), np.float32)
    off[0, :, at[0], at[1]] = offset
    lms = np.zeros((1, 10, h, w), np.float32)
    lms[0, 0::2, at[0], at[1]] = 0.5  # y of the 5 landmarks: half the box down
    lms[0, 1::2, at[0], at[1]] = 0.25  # x: a quarter across
    return Tensors([Tensor(heat), Tensor(sc), Tensor(off), Tensor(lms)])


def test_centerface_box_and_landmarks_from_scale_offset_and_landmark_maps():
    # box size exp(scale) * 4 = 16 x 8; centre ((4 + 0.5 + 0.5) * 4, (3 + 0.5 + 0.25) * 4) = (20, 15)
    det = _one("CenterFaceDecoder", {"TENSORS": _centerface(scale=(np.log(2.0), np.log(4.0)), offset=(0.25, 0.5))})
    assert det.xyxy.dtype == np.float32 and det.scores.dtype == np.float32 and det.keypoints.dtype == np.float32
    close(det.xyxy, [[12, 11, 28, 19]])
    close(det.keypoints[0], [[16, 15]] * 5)


def test_centerface_clips_boxes_at_the_tensor_edge_and_threshold_is_strict():
    det = _one("CenterFaceDecoder", {"TENSORS": _centerface(at=(0, 0), scale=(np.log(4.0), np.log(4.0)))})
    assert det.xyxy[0, :2].tolist() == [0, 0]  # would start at -6, -6
    assert det.xyxy[0, 2:].tolist() == pytest.approx([16, 16])  # x0 + the 16-pixel size
    assert len(_one("CenterFaceDecoder", {"TENSORS": _centerface(heat_value=0.5)})) == 0  # not > 0.5
    empty = _one("CenterFaceDecoder", {"TENSORS": _centerface(heat_value=0.1)})
    assert empty.xyxy.shape == (0, 4) and empty.keypoints.shape == (0, 5, 2) and empty.xyxy.dtype == np.float32


def test_centerface_box_starting_past_the_tensor_edge_is_clipped_to_it():
    # an offset of 3 cells pushes the centre of the last cell past the right (bottom) edge
    det = _one("CenterFaceDecoder", {"TENSORS": _centerface(at=(7, 9), offset=(3.0, 3.0))})
    assert det.xyxy.tolist() == [[40, 32, 40, 32]]  # a 40x32 tensor; x0, y0 clipped as x1, y1 are


def test_centerface_threshold_option_and_outputs_by_name():
    maps = _centerface(heat_value=0.4, scale=(np.log(2.0), np.log(4.0)), offset=(0.25, 0.5))
    assert len(_one("CenterFaceDecoder", {"TENSORS": maps})) == 0  # below the default 0.5
    low = _one("CenterFaceDecoder", {"TENSORS": maps}, threshold=0.3)
    assert low.scores.tolist() == pytest.approx([0.4])
    # named: given in another order than the model's, and with two maps of 2 channels told apart
    heat, scale, offset, lms = (t.data for t in maps)
    named = {"lm": lms, "off": offset, "sc": scale, "hm": heat}
    det = _one("CenterFaceDecoder", {"TENSORS": named}, threshold=0.3, outputs=["hm", "sc", "off", "lm"])
    close(det.xyxy, low.xyxy)
    close(det.xyxy, [[12, 11, 28, 19]])
    swapped = _one("CenterFaceDecoder", {"TENSORS": named}, threshold=0.3, outputs=["hm", "off", "sc", "lm"])
    assert not np.allclose(swapped.xyxy, det.xyxy)
    with pytest.raises(GraphRunError, match=r"no model output named 'heat' for heat; outputs are \[\('lm'"):
        _one("CenterFaceDecoder", {"TENSORS": named}, outputs=["heat", "sc", "off", "lm"])


@pytest.mark.parametrize("drop, extra", [(None, 1), (None, 2), (1, None), (0, None)])
def test_centerface_outputs_must_be_one_of_each_by_channels(drop, extra):
    maps = list(_centerface())
    if extra is not None:  # a second map of 1 (or a third of 2) channels: which is which is unknown
        maps.append(Tensor(np.zeros((1, extra, 8, 10), np.float32)))
    if drop is not None:
        maps.pop(drop)
    with pytest.raises(GraphRunError, match=r"CenterFace outputs must be 1, 2, 2 and 10 channel maps"):
        _one("CenterFaceDecoder", {"TENSORS": Tensors(maps)})


def test_centerface_half_precision_maps_decode_as_their_float32_values():
    # a half-precision export gives float16 maps: decoded in float32, as the float32 maps are
    maps = _centerface(scale=(np.log(3.0), np.log(5.0)), offset=(0.3, 0.7))
    half = Tensors([Tensor(t.data.astype(np.float16)) for t in maps])
    as32 = Tensors([Tensor(t.data.astype(np.float16).astype(np.float32)) for t in maps])
    got, want = _one("CenterFaceDecoder", {"TENSORS": half}), _one("CenterFaceDecoder", {"TENSORS": as32})
    for name in ("xyxy", "scores", "keypoints"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_decode_centerface_returns_float32_found_or_not():
    from calculators.postprocess.centerface import decode_centerface

    maps = [t.data for t in _centerface(scale=(np.log(3.0), np.log(5.0)), offset=(0.3, 0.7))]
    for threshold in (0.5, 0.95):   # one face, none
        out = decode_centerface(*maps, threshold=threshold)
        assert [a.dtype for a in out] == [np.float32] * 3 and [a.shape[1:] for a in out] == [(4,), (), (5, 2)]


# -- YoloDecoder -----------------------------------------------------------------------------------

def test_yolo_threshold_is_inclusive_and_dtypes_are_fixed():
    rows = np.zeros((1, 3, 7), np.float32)
    rows[0, 0] = [50, 40, 20, 10, 1.0, 0.25, 0.0]
    det = _one("YoloDecoder", {"TENSORS": Tensors([Tensor(rows)])}, version="v5")
    assert det.scores.tolist() == [0.25] and det.xyxy.dtype == np.float32 and det.scores.dtype == np.float32


def test_yolo_auto_uses_the_label_count_to_tell_v8_from_v5():
    # (1, 6, 6): with 2 labels, 4 + 2 = 6 rows is v8
    out = np.zeros((1, 6, 6), np.float32)
    out[0, :, 1] = [30, 30, 10, 10, 0.0, 0.9]
    det = _one("YoloDecoder", {"TENSORS": Tensors([Tensor(out)])}, labels=["a", "b"])
    assert det.labels == ("b",) and det.xyxy.tolist() == [[25, 25, 35, 35]]


@pytest.mark.parametrize("shape, options, message", [
    ((2, 4, 7), {}, r"decode_yolo decodes one image; got a batch of 2"),
    ((1, 4, 5), {"version": "v5"}, r"YOLO v5 output has no class columns: shape \(1, 4, 5\)"),
    ((4,), {}, r"a YOLO output must be \(1, N, 5\+C\) or \(1, 4\+C, N\), got \(4,\)"),
])
def test_yolo_errors_say_what_was_expected(shape, options, message):
    with pytest.raises(GraphRunError, match=message):
        _one("YoloDecoder", {"TENSORS": Tensors([Tensor(np.zeros(shape, np.float32))])}, **options)


def test_yolo_labels_beyond_the_list_are_the_class_id():
    rows = np.zeros((1, 2, 8), np.float32)
    rows[0, 0] = [50, 40, 20, 10, 1.0, 0.0, 0.0, 0.9]
    det = _one("YoloDecoder", {"TENSORS": Tensors([Tensor(rows)])}, labels=["a", "b"], version="v5")
    assert det.labels == ("2",) and det.class_ids.tolist() == [2]


# -- model outputs ---------------------------------------------------------------------------------

def test_outputs_as_a_dict_of_arrays_or_tensors_and_a_bad_payload():
    probs = np.zeros((1, 2, 2, 1), np.float32)
    probs[0, 0, 0, 0] = 1.0
    for payload in ({"mask": probs}, {"mask": Tensor(probs)}):
        assert _one("SegmentationMask", {"TENSORS": payload}, output="mask").data.tolist() == [[1, 0], [0, 0]]
    with pytest.raises(GraphRunError, match=r"expected model outputs \(Tensor, Tensors, list or dict of arrays\), got str"):
        _one("SegmentationMask", {"TENSORS": "mask"})
    with pytest.raises(GraphRunError, match=r"the model gave no outputs to read the mask from"):
        _one("SegmentationMask", {"TENSORS": []})


# -- SegmentationMask / masks ----------------------------------------------------------------------

def test_segmentation_softmax_sigmoid_and_chw():
    logits = np.zeros((1, 2, 2, 2), np.float32)  # NHWC, 2 classes
    logits[0, 0, 0] = [0.0, np.log(3.0)]  # softmax: 0.25, 0.75
    soft = _one("SegmentationMask", {"TENSORS": Tensor(logits)}, activation="softmax", channel=1).data
    assert soft.dtype == np.float32 and soft[0, 0] == pytest.approx(0.75) and soft[1, 1] == pytest.approx(0.5)
    sig = _one("SegmentationMask", {"TENSORS": Tensor(np.full((1, 2, 2, 1), np.log(3.0), np.float32))},
               activation="sigmoid").data
    close(sig, [[0.75, 0.75], [0.75, 0.75]])
    chw = np.zeros((1, 2, 3, 3), np.float32)  # NCHW with 2 channels of 3x3
    chw[0, 1, 0, :] = 1.0
    assert _one("SegmentationMask", {"TENSORS": Tensor(chw)}, channel=1).data[0].tolist() == [1, 1, 1]


@pytest.mark.parametrize("shape, options, message", [
    ((2, 4, 4, 1), {}, r"mask_from_tensor takes one image, got a batch of 2"),
    ((1, 1, 1, 4, 4), {}, r"a mask output must be \(1, H, W, C\), \(1, C, H, W\), \(H, W, C\) or \(H, W\), got \(1, 1, 1, 4, 4\)"),
])
def test_segmentation_mask_errors(shape, options, message):
    with pytest.raises(GraphRunError, match=message):
        _one("SegmentationMask", {"TENSORS": Tensor(np.zeros(shape, np.float32))}, **options)


def test_segmentation_threshold_is_inclusive_and_smooth_is_a_gaussian_of_odd_size():
    probs = np.zeros((1, 9, 9, 1), np.float32)
    probs[0, :, 4:] = 0.5
    hard = _one("SegmentationMask", {"TENSORS": Tensor(probs)}, threshold=0.5).data
    assert hard.dtype == np.float32 and hard[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    for smooth in (2, 5):
        got = _one("SegmentationMask", {"TENSORS": Tensor(probs)}, threshold=0.5, smooth=smooth).data
        k = smooth | 1
        assert np.allclose(got, cv2.GaussianBlur(hard, (k, k), 0)), smooth
    assert np.array_equal(_one("SegmentationMask", {"TENSORS": Tensor(probs)}, threshold=0.5, smooth=1).data, hard)


def test_segmentation_mask_to_a_frame_replicates_the_edge():
    probs = np.ones((1, 4, 4, 1), np.float32)
    transform = Transform(np.array([[2.0, 0, 0], [0, 2.0, 0]]), (8, 8), (4, 4))
    mask = _one("SegmentationMask", {"TENSORS": Tensor(probs), "TRANSFORM": transform})
    assert mask.frame_size == (8, 8) and mask.data.shape == (8, 8) and mask.data.min() == pytest.approx(1.0)


def test_segmentation_mask_is_clamped_to_0_1_and_output_picks_the_named_array():
    probs = np.array([[-0.5, 0.25], [1.0, 1.5]], np.float32)[None, :, :, None]  # no activation: as given
    mask = _one("SegmentationMask", {"TENSORS": Tensor(probs)}).data
    assert mask.dtype == np.float32 and mask.tolist() == [[0.0, 0.25], [1.0, 1.0]]
    other = np.full((1, 2, 2, 1), 0.75, np.float32)
    named = _one("SegmentationMask", {"TENSORS": {"other": other, "mask": probs}}, output="mask").data
    assert named.tolist() == [[0.0, 0.25], [1.0, 1.0]]


def test_replace_background_refuses_a_colour_beyond_a_byte():
    img = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(OverflowError, match="300"):  # not wrapped around to another colour (44)
        replace_background(img, np.zeros((2, 2), np.float32), (300, 0, 0))


def test_blend_and_replace_background_helpers():
    img = np.full((4, 6, 3), 200, np.uint8)
    mask = np.zeros((4, 6), np.float32)
    mask[:, 3:] = 1.0
    out = replace_background(img, mask, (10, 20, 30))
    assert out.dtype == np.uint8 and out[0, 0].tolist() == [10, 20, 30] and out[0, 5].tolist() == [200] * 3
    bg = np.zeros((2, 3, 3), np.uint8)
    bg[..., 0] = 255  # an image background, resized to the frame
    out = replace_background(img, mask, bg)
    assert out.shape == img.shape and out[3, 0].tolist() == [255, 0, 0]
    gray_bg = np.full((2, 3), 50, np.uint8)
    assert replace_background(img[..., 0], mask, gray_bg)[0, 0] == 50
    half = blend(np.full((1, 1, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8), np.full((1, 1), 0.5, np.float32))
    assert half.tolist() == [[[128, 128, 128]]]
    with pytest.raises(ValueError, match=r"mask shape \(2, 2\) does not match the image \(4, 6\)"):
        blend(img, img, np.zeros((2, 2), np.float32))


def test_background_blur_kernel_is_odd_and_at_least_3():
    img = np.zeros((9, 9, 3), np.uint8)
    img[4, 4] = 255
    mask = Mask(np.zeros((9, 9), np.float32))
    from calculators.types import Image

    out = _one("BackgroundEffect", {"IMAGE": Image(img), "MASK": mask}, kernel=4).data
    assert np.array_equal(out, cv2.GaussianBlur(img, (5, 5), 0))


@pytest.mark.parametrize("kernel", [5, 31])
def test_background_blur_of_i420_blurs_chroma_with_half_the_mask_and_half_the_kernel(kernel):
    from calculators.postprocess.masks import blur_background
    from calculators.types import Image

    rng = np.random.default_rng(kernel)
    h, w = 24, 32
    data = rng.integers(0, 256, (h * 3 // 2, w)).astype(np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[4:20, 10:26] = 1.0
    mask = cv2.GaussianBlur(mask, (5, 5), 0)
    image = Image(data, "I420")
    out = _one("BackgroundEffect", {"IMAGE": image, "MASK": Mask(mask)}, kernel=kernel)
    assert out.format == "I420"
    y, u, v = out.planes()
    src_y, src_u, src_v = image.planes()
    assert np.array_equal(y, blur_background(src_y, mask, kernel))
    half = cv2.resize(mask, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    for got, src in ((u, src_u), (v, src_v)):
        assert np.array_equal(got, blur_background(src, half, max(3, kernel // 2)))


# -- IouTracking -----------------------------------------------------------------------------------

def _track(seq, **options):
    out = run_calculator("IouTracking", inputs={"DETECTIONS": list(enumerate(seq))}, options=options)
    return [v.tracker_ids.tolist() for _, v in out["DETECTIONS"]]


def test_tracking_matches_by_best_iou_and_only_within_a_class():
    a = _dets([[0, 0, 10, 10], [20, 0, 30, 10]], [0.9, 0.9], [0, 0])
    # next frame: one box overlapping the first track a little and the second a lot
    b = _dets([[15, 0, 25, 10]], [0.9], [0])
    assert _track([a, b]) == [[1, 2], [2]]
    other_class = _dets([[20, 0, 30, 10]], [0.9], [1])
    assert _track([a, other_class]) == [[1, 2], [3]]


def test_tracking_two_detections_one_track_and_ages():
    a = _dets([[0, 0, 10, 10]], [0.9])
    two = _dets([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8])
    assert _track([a, two]) == [[1], [1, 2]]  # one track takes one detection; the other starts anew
    empty = Detections.empty()
    assert _track([a, empty, a], max_age=1) == [[1], [], [1]]  # unseen once: still within max_age
    assert _track([a, empty, a], max_age=0) == [[1], [], [2]]
    assert _track([a, a, a], min_hits=3) == [[], [], [1]]
    ids = run_calculator("IouTracking", inputs={"DETECTIONS": [(0, a)]})["DETECTIONS"][0][1].tracker_ids
    assert ids.dtype == np.int64


def test_tracking_threshold_is_strict_and_the_best_pair_goes_first():
    a = _dets([[0, 0, 10, 10]], [0.9])
    half = _dets([[0, 0, 10, 5]], [0.9])  # IoU exactly 0.5
    assert _track([a, half], iou_threshold=0.5) == [[1], [2]]  # not above: a new track
    assert _track([a, half], iou_threshold=0.49) == [[1], [1]]
    # two tracks over one detection: the better overlap wins, whichever track came first
    two = _dets([[4, 0, 14, 10], [0, 0, 10, 10]], [0.9, 0.9])
    between = _dets([[3, 0, 13, 10]], [0.9])  # IoU 0.82 with track 1, 0.54 with track 2
    assert _track([two, between]) == [[1, 2], [1]]


def test_tracking_a_taken_detection_does_not_end_the_matching():
    # pairs by IoU: (track 1, d0) 1.0, (track 2, d0) 0.67 - d0 taken -, (track 2, d1) 0.43
    first = _dets([[0, 0, 10, 10], [2, 0, 12, 10]], [0.9, 0.9])
    second = _dets([[0, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.9])
    assert _track([first, second]) == [[1, 2], [1, 2]]


def test_tracking_follows_a_moving_box_and_a_match_resets_its_age():
    # each step overlaps the last position (IoU 0.43) but not the first (0.11)
    steps = [_dets([[x, 0, x + 10, 10]], [0.9]) for x in (0, 4, 8)]
    assert _track(steps) == [[1], [1], [1]]
    a, empty = _dets([[0, 0, 10, 10]], [0.9]), Detections.empty()
    assert _track([a, empty, a, empty, a], max_age=1) == [[1], [], [1], [], [1]]
    assert _track([a, a, empty, a], max_age=1) == [[1], [1], [], [1]]
    assert _track([a, a, a], max_age=0) == [[1], [1], [1]]


@pytest.mark.parametrize("options, ok", [
    ({"iou_threshold": 0.0}, True), ({"iou_threshold": 1.0}, True), ({"max_age": 0}, True),
    ({"iou_threshold": 1.5}, False), ({"max_age": -1}, False), ({"min_hits": 0}, False),
])
def test_tracking_option_bounds(options, ok):
    det = _dets([[0, 0, 10, 10]], [0.9])
    if ok:
        assert _track([det], **options) in ([[1]], [[]])
    else:
        with pytest.raises(Exception, match="iou_threshold|max_age|min_hits"):
            _track([det], **options)


def test_nms_without_min_score_leaves_every_score_to_nms():
    """min_score 0 (the default) filters nothing first: a detector's negative scores (logits, a
    user's own calculator) still reach the NMS, which keeps the best of each cluster."""
    det = _dets([[0, 0, 10, 10], [40, 0, 50, 10]], [-0.5, -2.0])
    out = _one("NonMaxSuppression", {"DETECTIONS": det}, method="weighted")
    assert out.scores.tolist() == [-0.5, -2.0]
    assert _one("NonMaxSuppression", {"DETECTIONS": det}, method="weighted", min_score=0.1).scores.tolist() == []


def test_blend_saturates_a_mask_outside_zero_one():
    """A mask past [0, 1] (an unclamped model output) extrapolates and saturates at 0 and 255,
    not wrapping around."""
    fg, bg = np.full((1, 3), 200, np.uint8), np.full((1, 3), 100, np.uint8)
    got = blend(fg, bg, np.array([[2.0, -2.0, 1.0]], np.float32))
    assert got.dtype == np.uint8 and got.tolist() == [[255, 0, 200]]


def test_mask_to_image_clamps_rounds_and_thresholds_strictly():
    mask = Mask(np.array([[-0.5, 0.002, 0.5, 1.5], [0.25, 0.75, 0.0, 1.0]], np.float32), (4, 2))
    soft = _one("MaskToImage", {"MASK": mask})
    assert soft.format == "GRAY" and soft.data.dtype == np.uint8 and soft.data.shape == (2, 4)
    # clamped to [0, 1], then rounded to the nearest level (0.002 * 255 = 0.51 -> 1; 0.25 -> 63.75 -> 64)
    assert soft.data.tolist() == [[0, 1, 128, 255], [64, 191, 0, 255]]
    hard = _one("MaskToImage", {"MASK": mask}, threshold=0.5)  # above, not at, the threshold
    assert hard.format == "GRAY" and hard.data.dtype == np.uint8
    assert hard.data.tolist() == [[0, 0, 0, 255], [0, 255, 0, 255]]
    assert _one("MaskToImage", {"MASK": mask}, threshold=0.0).data.tolist() == [[0, 255, 255, 255], [255, 255, 0, 255]]
