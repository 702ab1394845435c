"""Each landmark calculator fed timestamped packets on its own (run_calculator), timestamps checked
as well as values; every option set by a test that fails if the option were ignored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calculators.types import Detections, Image, Landmarks, Rects, Tensor, Tensors
from pipeline import Graph, GraphRunError
from pipeline.testing import run_calculator

R = lambda rows, size=(100, 100): Rects(np.asarray(rows, np.float64).reshape(-1, 5), size)  # noqa: E731


# ------------------------------------------------------------------------------ the tracking loop
def test_previous_loopback_restamps_the_previous_frames_value():
    g = Graph.from_dict({"name": "loop", "inputs": ["main", "loop"], "nodes": [
        {"calculator": "PreviousLoopback", "inputs": {"MAIN": "main", "LOOP": {"stream": "loop", "back_edge": True}},
         "outputs": {"PREV_LOOP": "prev"}}]})
    got = []
    g.observe("prev", lambda p: got.append((p.timestamp, p.value)))
    g.start()
    g.add_packet("main", "f0", 10)
    g.add_packet("main", "f1", 20)   # waits: the loop value of 10 has not come back yet
    g.add_packet("loop", "r0", 10)
    g.add_packet("loop", "r1", 20)
    g.add_packet("main", "f2", 30)
    g.close_all_inputs()
    g.wait(10)
    assert got == [(20, "r0"), (30, "r1")]  # the first frame has no previous value: a bound only


def test_previous_loopback_answers_a_loop_bound_without_a_packet_at_once():
    # The loop drops frame 20's value (a Gate closed at 20): frame 30 gets a bound only, and a
    # node syncing on the previous value runs frame 30 without waiting for the end of the stream.
    g = Graph.from_dict({"name": "loop", "inputs": ["main", "loop_in", "allow"], "nodes": [
        {"calculator": "Gate", "inputs": {"IN:0": "loop_in", "ALLOW": "allow"}, "outputs": {"OUT:0": "loop"}},
        {"calculator": "PreviousLoopback", "inputs": {"MAIN": "main", "LOOP": {"stream": "loop", "back_edge": True}},
         "outputs": {"PREV_LOOP": "prev"}},
        {"calculator": "PassThrough", "inputs": {"IN:0": "main", "IN:1": "prev"},
         "outputs": {"OUT:0": "main_out", "OUT:1": "prev_out"}}]})
    seen = []
    g.observe("main_out", lambda p: seen.append(p.timestamp))
    g.start()
    for t, allow in ((10, True), (20, False)):
        g.add_packet("main", f"f{t}", t)
        g.add_packet("allow", allow, t)
        g.add_packet("loop_in", f"r{t}", t)
    g.add_packet("main", "f30", 30)
    g.wait_until_idle(10)
    assert seen == [10, 20, 30], "frame 30 must not wait for a loop value that will never come"
    g.close_all_inputs()
    g.wait(10)


def test_previous_loopback_follows_a_main_bound_without_a_packet():
    # MAIN skips frames 20 and 30 (a mask stream on frames without a person): PREV_LOOP's bound
    # follows MAIN's, so a node syncing on the previous value runs those frames at once, and the
    # next MAIN packet (40) still gets the loop value of the last MAIN packet (10).
    g = Graph.from_dict({"name": "loop", "inputs": ["frames", "allow", "loop"], "nodes": [
        {"calculator": "Gate", "inputs": {"IN:0": "frames", "ALLOW": "allow"}, "outputs": {"OUT:0": "main"}},
        {"calculator": "PreviousLoopback", "inputs": {"MAIN": "main", "LOOP": {"stream": "loop", "back_edge": True}},
         "outputs": {"PREV_LOOP": "prev"}},
        {"calculator": "PassThrough", "inputs": {"IN:0": "frames", "IN:1": "prev"},
         "outputs": {"OUT:0": "frames_out", "OUT:1": "prev_out"}}]})
    seen, prev = [], []
    g.observe("frames_out", lambda p: seen.append(p.timestamp))
    g.observe("prev_out", lambda p: prev.append((p.timestamp, p.value)))
    g.start()
    for t, allow in ((10, True), (20, False), (30, False)):
        g.add_packet("frames", f"f{t}", t)
        g.add_packet("allow", allow, t)
        if allow:
            g.add_packet("loop", f"r{t}", t)
    g.wait_until_idle(10)
    assert seen == [10, 20, 30], "frames 20 and 30 must not wait for MAIN packets that never come"
    g.add_packet("frames", "f40", 40)
    g.add_packet("allow", True, 40)
    g.close_all_inputs()
    g.wait(10)
    assert seen == [10, 20, 30, 40] and prev == [(40, "r10")]


def test_previous_loopback_disabled_sends_no_value():
    out = run_calculator("PreviousLoopback", inputs={"MAIN": [(10, "a"), (20, "b")], "LOOP": [(10, "x")]},
                         options={"disabled": True})
    assert out["PREV_LOOP"] == []


def test_detector_gate_passes_frames_while_too_few_are_tracked():
    img = Image(np.zeros((4, 4, 3), np.uint8))
    out = run_calculator("DetectorGate", inputs={"IMAGE": [(1, img), (2, img), (3, img)],
                                                 "ROIS": [(2, R([[1, 1, 1, 1, 0]])), (3, R([[1, 1, 1, 1, 0]] * 2))]},
                         options={"min_count": 2})
    assert [t for t, _ in out["IMAGE"]] == [1, 2]  # 1: nothing tracked; 2: one of two; 3: two tracked


# -------------------------------------------------------------------------------------- rects
@pytest.mark.parametrize("side, chosen", [
    ({"complexity": 0}, "lite.tflite"),
    ({"complexity": 1}, "full.tflite"),
    ({"complexity": 0, "model": "mine.tflite"}, "mine.tflite"),   # a model named outright wins
])
def test_model_choice_picks_the_model_by_complexity(side, chosen):
    def node(models):
        spec = {"calculator": "ModelChoice", "side_inputs": {"COMPLEXITY": "complexity"},
                "side_outputs": {"MODEL": "chosen"}, "options": {"models": models}}
        if "model" in side:
            spec["side_inputs"]["MODEL"] = "model"
        return Graph.from_dict({"name": "choice", "side_packets": {"complexity": 1, "model": None}, "nodes": [spec]})

    g = node({0: "lite.tflite", 1: "full.tflite"})
    g.run(side)
    assert g.side_packet("chosen") == chosen
    with pytest.raises(GraphRunError, match=r"ModelChoice\): model_complexity 1 has no model here; choose one of \[0, 2\]"):
        node({0: "lite.tflite", 2: "heavy.tflite"}).run({"complexity": 1})


@pytest.mark.parametrize("refine, chosen", [(False, "plain.tflite"), (True, "attention.tflite")])
def test_model_choice_picks_the_model_by_a_switch(refine, chosen):
    """SWITCH (face mesh's refine_landmarks): false is key 0, true key 1; one of SWITCH/COMPLEXITY."""
    def graph(side_inputs):
        return Graph.from_dict({"name": "choice", "side_packets": {"refine": False, "complexity": 1}, "nodes": [
            {"calculator": "ModelChoice", "side_inputs": side_inputs, "side_outputs": {"MODEL": "chosen"},
             "options": {"models": {0: "plain.tflite", 1: "attention.tflite"}}}]})

    g = graph({"SWITCH": "refine"})
    g.run({"refine": refine})
    assert g.side_packet("chosen") == chosen
    with pytest.raises(GraphRunError, match=r"ModelChoice\): connect one of the side inputs COMPLEXITY and SWITCH"):
        graph({"SWITCH": "refine", "COMPLEXITY": "complexity"}).run({})


def test_detections_to_rects_options_and_frame_size():
    det = Detections([[0, 0, 20, 10], [50, 50, 60, 60]], [0.9, 0.8], keypoints=[[[0, 5], [0, 0]], [[55, 55], [55, 50]]])
    img = Image(np.zeros((100, 200, 3), np.uint8))
    out = run_calculator("DetectionsToRects", inputs={"DETECTIONS": [(5, det)], "IMAGE": [(5, img)]},
                         options={"mode": "alignment", "rotation": [0, 1], "target_degrees": 90, "max_count": 1})
    (t, rects), = out["ROIS"]
    assert t == 5 and rects.frame_size == (200, 100) and len(rects) == 1
    assert np.allclose(rects.data[0], [0, 5, 10, 10, 0])
    box = run_calculator("DetectionsToRects", inputs={"DETECTIONS": [(5, det)]}, options={"rotation": [0, 1]})
    # keypoint 0 -> 1 points up; turned to 0 degrees (right) the rect rotates by -90 degrees
    assert np.allclose(box["ROIS"][0][1].data[0], [10, 5, 20, 10, -math.pi / 2]) and len(box["ROIS"][0][1]) == 2


def test_rect_transformation_options():
    out = run_calculator("RectTransformation", inputs={"ROIS": [(1, R([[10, 10, 4, 8, 0]]))]},
                         options={"scale": [2, 3], "shift": [0.5, 0], "square": "short", "rotation_degrees": 180})
    assert np.allclose(out["ROIS"][0][1].data[0], [8, 10, 8, 12, -math.pi])


def test_landmarks_to_rects_options():
    lm = Landmarks(np.array([[[0, 0, 0], [10, 0, 0], [10, 20, 0], [100, 100, 0]]], np.float32), frame_size=(200, 200))
    out = run_calculator("LandmarksToRects", inputs={"LANDMARKS": [(3, lm)]},
                         options={"mode": "box", "indices": [0, 1, 2], "rotation_start": 0, "rotation_end": [1, 2],
                                  "rotation_end_weights": [1.0, 0.0], "target_degrees": 90})
    (t, r), = out["ROIS"]
    assert t == 3 and np.allclose(r.data[0], [5, 10, 10, 20, math.pi / 2])
    empty = run_calculator("LandmarksToRects", inputs={"LANDMARKS": [(3, Landmarks.empty(4, (9, 9)))]})
    assert len(empty["ROIS"][0][1]) == 0  # always a packet: the loop never waits


def test_associate_rects_with_a_missing_input_and_min_similarity():
    a, b = R([[10, 10, 10, 10, 0]]), R([[12, 10, 10, 10, 0]])
    out = run_calculator("AssociateRects", inputs={"ROIS:0": [(1, a), (2, a)], "ROIS:1": [(2, b)]},
                         options={"min_similarity": 0.5})
    assert [(t, len(r)) for t, r in out["ROIS"]] == [(1, 1), (2, 1)]
    assert np.allclose(out["ROIS"][1][1].data[0, 0], 12)
    strict = run_calculator("AssociateRects", inputs={"ROIS:0": [(2, a)], "ROIS:1": [(2, b)]},
                            options={"min_similarity": 0.9})
    assert len(strict["ROIS"][0][1]) == 2


# ------------------------------------------------------------------------------- crops and model
def test_image_to_tensor_crops_each_roi_and_sends_nothing_without_one():
    yy, xx = np.mgrid[0:40, 0:60]
    img = Image(np.stack([xx * 4, yy * 6, xx + yy], -1).astype(np.uint8))
    rois = R([[30, 20, 10, 10, 0], [10, 10, 20, 20, 0.5], [0, 0, 10, 10, 0]], (60, 40))
    out = run_calculator("ImageToTensor", inputs={"IMAGE": [(1, img), (2, img)], "ROIS": [(1, rois), (2, R([]))]},
                         options={"size": [8, 8], "range": [0, 1], "layout": "NCHW", "roi_border": "constant",
                                  "border": 255}, outputs=["TENSOR"])
    (t, tensor), = out["TENSOR"]
    assert t == 1 and tensor.shape == (3, 3, 8, 8) and tensor.layout == "NCHW"
    assert np.isclose(tensor.data[2, :, 0, 0], 1.0).all()  # outside the frame: the constant border (255)
    rep = run_calculator("ImageToTensor", inputs={"IMAGE": [(1, img)], "ROIS": [(1, rois)]},
                         options={"size": [8, 8], "range": [0, 1]}, outputs=["TENSOR"])
    assert not np.isclose(rep["TENSOR"][0][1].data[2, 0, 0], 1.0).all()  # replicate (the default)


@pytest.fixture(scope="module")
def hand_model():
    from models.catalog import CatalogError, resolve

    try:
        return str(resolve("zoo:hand-landmark-full"))
    except CatalogError as e:
        pytest.skip(f"hand landmark model not available: {e}")


def test_inference_split_batch_runs_one_call_per_crop(hand_model):
    rng = np.random.default_rng(1)
    crops = rng.random((3, 224, 224, 3), np.float32)
    opts = {"model": hand_model, "engine": "openvino", "split_batch": True}
    both = run_calculator("Inference", inputs={"TENSORS": [(1, Tensor(crops, "NHWC"))]}, options=opts)
    one = run_calculator("Inference", inputs={"TENSORS": [(i, Tensor(crops[i:i + 1], "NHWC")) for i in range(3)]},
                         options=opts)
    out = both["TENSORS"][0][1]
    assert [o.shape for o in out] == [(3, 63), (3, 1), (3, 1), (3, 63)]
    for i in range(3):
        assert np.allclose(out[0].data[i], one["TENSORS"][i][1][0].data[0], atol=1e-5)
    from pipeline import GraphRunError

    with pytest.raises(GraphRunError, match="expected"):  # without split_batch a batch of 3 is a mismatch
        run_calculator("Inference", inputs={"TENSORS": [(1, Tensor(crops, "NHWC"))]},
                       options={"model": hand_model, "engine": "openvino"})


# ------------------------------------------------------------------------------------ decoding
def _outputs(n=2, k=3, d=5, score=(5.0, -5.0), hand=(0.8, 0.3), heat=False):
    lm = np.zeros((n, k * d), np.float32)
    for i in range(n):
        for j in range(k):
            lm[i, j * d:j * d + d] = [10 + j, 20, 4, 0.0, 100.0][:d]
    outs = [Tensor(lm, "", "landmarks"), Tensor(np.array(score, np.float32).reshape(n, 1), "", "flag"),
            Tensor(np.array(hand, np.float32).reshape(n, 1), "", "hand"),
            Tensor(np.ones((n, k * 3), np.float32), "", "world")]
    if heat:
        hm = np.full((n, 8, 8, k), -20.0, np.float32)
        hm[:, 4, 4, :] = 20.0
        outs.append(Tensor(hm, "", "heatmap"))
    return Tensors(outs)


def test_tensors_to_landmarks_presence_projection_and_outputs():
    rois = R([[50, 50, 40, 40, 0], [10, 10, 40, 40, 0]])
    out = run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(7, _outputs())], "ROIS": [(7, rois)]},
                         options={"num_landmarks": 3, "tensor_size": [40, 40], "score_activation": "sigmoid",
                                  "min_score": 0.5, "visibility_activation": "sigmoid", "world_output": 3,
                                  "handedness_output": 2, "class_labels": ["L", "R"], "normalize_z": 2.0,
                                  "keep": 2, "aux": [2, 3]},
                         outputs=["LANDMARKS", "ROIS", "AUX"])
    (t, lm), = out["LANDMARKS"]
    assert t == 7 and len(lm) == 1 and lm.num_points == 2  # the second crop scored sigmoid(-5) < 0.5
    # tensor (10, 20) in a 40-px crop of the 40-px rect at (50, 50): frame (40, 50); z 4 / 2 as x
    assert np.allclose(lm.points[0, 0], [40, 50, 2.0])
    assert lm.labels == ("L",) and np.isclose(lm.label_scores[0], 0.8)
    assert np.allclose(lm.visibility, 0.5) and np.allclose(lm.presence, 100.0)
    assert lm.world.shape == (1, 2, 3)
    assert np.allclose(out["ROIS"][0][1].data, rois.data[:1])
    assert out["AUX"][0][1].num_points == 1 and np.allclose(out["AUX"][0][1].points[0, 0, 0], 42)
    raw = run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(7, _outputs())], "ROIS": [(7, rois)]},
                         options={"num_landmarks": 3, "tensor_size": [40, 40], "min_score": 0.5,
                                  "label": "hand", "flip_horizontally": True})
    lm2 = raw["LANDMARKS"][0][1]
    assert len(lm2) == 1 and lm2.labels == ("hand",)  # logit 5 > 0.5 without sigmoid; -5 is not
    assert np.allclose(lm2.points[0, 0, 0], 50 + (40 - 10) - 20)  # flipped: x = 40 - 10 in the crop
    assert lm2.visibility is None or np.allclose(lm2.visibility, 0.0)
    none = run_calculator("TensorsToLandmarks", inputs={"ROIS": [(8, R([]))]},
                          options={"num_landmarks": 3, "tensor_size": [40, 40], "label": "face"})
    assert none["LANDMARKS"][0][0] == 8 and len(none["LANDMARKS"][0][1]) == 0


def test_tensors_to_landmarks_heatmap_refinement_and_wrong_model():
    rois = R([[20, 20, 40, 40, 0]])
    outs = _outputs(n=1, score=(5.0,), hand=(0.5,), heat=True)
    base = {"num_landmarks": 3, "tensor_size": [40, 40], "score_output": 1}
    out = run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, outs)], "ROIS": [(1, rois)]},
                         options={**base, "heatmap_output": 4, "heatmap_kernel": 9, "heatmap_min_confidence": 0.5})
    # points at (10..12, 20) of 40 -> heatmap cell (1, 4) of 8: the 9x9 window reaches the peak (4, 4)
    assert np.allclose(out["LANDMARKS"][0][1].points[0, :, :2], [[20, 20]] * 3, atol=1e-3)
    plain = run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, outs)], "ROIS": [(1, rois)]}, options=base)
    assert np.allclose(plain["LANDMARKS"][0][1].points[0, 0, :2], [10, 20])
    from pipeline import GraphRunError

    with pytest.raises(GraphRunError, match="not a multiple of num_landmarks=4: is this the right landmark model"):
        run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, outs)], "ROIS": [(1, rois)]},
                       options={**base, "num_landmarks": 4})
    with pytest.raises(GraphRunError, match="world landmarks is output 9, but the model has 5 outputs"):
        run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, outs)], "ROIS": [(1, rois)]},
                       options={**base, "world_output": 9})


def test_tensors_to_landmarks_takes_the_one_listed_count_that_fits():
    """num_landmarks [468, 478]: the face mesh with or without refine_landmarks, read per packet."""
    rois = R([[50, 50, 40, 40, 0]])
    opts = {"num_landmarks": [4, 5], "tensor_size": [40, 40], "score_output": 1}
    for k in (4, 5):
        pts = np.tile(np.array([10, 20, 4], np.float32), k).reshape(1, k * 3)
        outs = Tensors([Tensor(pts, "", "landmarks"), Tensor(np.array([[5.0]], np.float32), "", "flag")])
        lm = run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, outs)], "ROIS": [(1, rois)]},
                            options=opts)["LANDMARKS"][0][1]
        assert lm.num_points == k and np.allclose(lm.points[0, -1], [40, 50, 4])
    both = Tensors([Tensor(np.zeros((1, 60), np.float32), "", "landmarks"), Tensor(np.array([[5.0]], np.float32), "", "f")])
    with pytest.raises(GraphRunError, match=r"60 values per crop, which splits into each of \[4, 5, 6\] landmarks"):
        run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, both)], "ROIS": [(1, rois)]},
                       options={**opts, "num_landmarks": [4, 5, 6]})
    none = Tensors([Tensor(np.zeros((1, 7), np.float32), "", "landmarks"), Tensor(np.array([[5.0]], np.float32), "", "f")])
    with pytest.raises(GraphRunError, match=r"7 values per crop, not a multiple of num_landmarks=\[4, 5\]"):
        run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, none)], "ROIS": [(1, rois)]}, options=opts)


def test_tensors_to_landmarks_output_positions_and_presence_activation():
    rois = R([[50, 50, 40, 40, 0]])
    outs = list(_outputs(n=1, score=(5.0,), hand=(0.5,)))
    swapped = Tensors([outs[1], outs[0]] + outs[2:])  # the score first, the landmarks second
    base = {"num_landmarks": 3, "tensor_size": [40, 40]}
    out = run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, swapped)], "ROIS": [(1, rois)]},
                         options={**base, "landmarks_output": 1, "score_output": 0,
                                  "presence_activation": "sigmoid"})
    lm = out["LANDMARKS"][0][1]
    assert len(lm) == 1 and np.allclose(lm.points[0, 0], [40, 50, 4])  # read from output 1
    assert np.allclose(lm.presence, 1.0)  # sigmoid(100); 100 without the activation
    with pytest.raises(Exception, match="num_landmarks"):  # output 0 (the score) is no landmark tensor
        run_calculator("TensorsToLandmarks", inputs={"TENSORS": [(1, swapped)], "ROIS": [(1, rois)]},
                       options={**base, "score_output": 0})


# ------------------------------------------------------------------------------------ smoothing
def _track(n=4, k=2, step=5.0, world=True):
    out = []
    for i in range(n):
        pts = np.array([[[0 + i * step, 0, 0], [100 + i * step, 100, 0]]], np.float32)[:, :k]
        out.append((1_000_000 + i * 33_333, Landmarks(pts, visibility=[[float(i % 2)] * k],
                                                     world=pts / 100 if world else None, frame_size=(200, 200))))
    return out


def test_landmarks_smoothing_options():
    track = _track()
    base = {"min_cutoff": 0.05, "beta": 0.0}
    smoothed = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track}, options=base)["LANDMARKS"]
    assert [t for t, _ in smoothed] == [t for t, _ in track]
    last = smoothed[-1][1].points[0, 0, 0]
    assert 0 < last < track[-1][1].points[0, 0, 0]  # lags behind the moving points
    off = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track}, options={**base, "enabled": False})
    assert off["LANDMARKS"][-1][1] is track[-1][1]
    vel = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track},
                         options={"filter": "velocity", "window_size": 2, "velocity_scale": 0.01})
    assert not np.isclose(vel["LANDMARKS"][-1][1].points[0, 0, 0], last)
    vis = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track}, options={**base, "visibility_alpha": 0.1})
    assert np.allclose(vis["LANDMARKS"][1][1].visibility, 0.1)  # 0 then 1, low-passed at 0.1
    world = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track},
                           options={**base, "target": "world", "disable_value_scaling": True})
    w = world["LANDMARKS"][-1][1]
    assert np.array_equal(w.points, track[-1][1].points) and w.world[0, 0, 0] < track[-1][1].world[0, 0, 0]
    freq = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track[:2]},
                          options={**base, "frequency": 1.0, "derivate_cutoff": 5.0})
    assert freq["LANDMARKS"][1][1].points[0, 0, 0] == smoothed[1][1].points[0, 0, 0]  # the timestamps set the rate
    # The object scale: a big rect makes a small value scale (a slow filter when beta > 0).
    fast = {"min_cutoff": 0.05, "beta": 80.0}
    small = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track}, options=fast)["LANDMARKS"]
    big = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track, "ROIS": [(t, R([[0, 0, 1e5, 1e5, 0]]))
                                                                                   for t, _ in track]},
                         options={**fast, "min_allowed_object_scale": 1e-6})["LANDMARKS"]
    assert big[-1][1].points[0, 0, 0] < small[-1][1].points[0, 0, 0]
    huge = run_calculator("LandmarksSmoothing", inputs={"LANDMARKS": track},
                          options={**base, "min_allowed_object_scale": 1e9})["LANDMARKS"]
    assert np.allclose(huge[-1][1].points, track[-1][1].points)  # below the minimum scale: unfiltered


# ------------------------------------------------------------------------------------ drawing
def test_annotate_draws_landmark_connections_sized_to_the_frame():
    lm = Landmarks(np.array([[[10, 10, 0], [90, 10, 0], [90, 90, 0]] + [[50, 50, 0]] * 18], np.float32),
                   frame_size=(100, 100))
    img = Image(np.zeros((100, 100, 3), np.uint8))
    opts = {"connections": ["hand"], "landmark_color": [0, 255, 0], "point_color": [255, 0, 0], "point_radius": 0,
            "thickness": 1}
    out = run_calculator("Annotate", inputs={"IMAGE": [(1, img)], "LANDMARKS": [(1, lm)]}, options=opts)
    canvas = out["IMAGE"][0][1].data
    assert canvas[10, 50, 1] > 100  # edge 0-1 of the hand connections drawn in green
    assert canvas[:, :, 0].max() == 0  # no dots (radius 0), nothing red
    dots = run_calculator("Annotate", inputs={"IMAGE": [(1, img)], "LANDMARKS": [(1, lm)]},
                          options={**opts, "point_radius": 3})["IMAGE"][0][1].data
    assert dots[90, 90, 0] > 100
    big = Image(np.zeros((960, 960, 3), np.uint8))
    lm_big = lm.replace(points=lm.points * 9.6, frame_size=(960, 960))
    thin = run_calculator("Annotate", inputs={"IMAGE": [(1, big)], "LANDMARKS": [(1, lm_big)]}, options=opts)
    wide = run_calculator("Annotate", inputs={"IMAGE": [(1, big)], "LANDMARKS": [(1, lm_big)]},
                          options={**opts, "relative_size": True})
    col = lambda c: int((c["IMAGE"][0][1].data[:, 480, 1] > 100).sum())  # noqa: E731
    assert col(wide) >= 2 * col(thin)  # 960 lines: twice the 480-line thickness
    from pipeline import GraphConfigError, GraphRunError

    with pytest.raises(GraphRunError, match="connections 'pose' join points up to 32, these landmarks have 21"):
        run_calculator("Annotate", inputs={"IMAGE": [(1, img)], "LANDMARKS": [(1, lm)]},
                       options={**opts, "connections": ["pose"]})

    with pytest.raises(GraphConfigError, match="tentacles"):
        run_calculator("Annotate", inputs={"IMAGE": [(1, img)]}, options={"connections": ["tentacles"]})


def test_annotate_draws_optional_connections_only_where_the_points_exist():
    """optional_connections [face_mesh_irises]: drawn on 478 points, skipped (no error) on 468."""
    img = Image(np.zeros((200, 200, 3), np.uint8))
    opts = {"connections": [], "optional_connections": ["face_mesh_irises"], "landmark_color": [0, 255, 0],
            "point_radius": 0, "thickness": 1}
    pts = np.full((1, 478, 3), 5.0, np.float32)
    pts[0, 469:473, :2] = [[100, 60], [140, 100], [100, 140], [60, 100]]  # left iris: a diamond
    lit = lambda lm: int((run_calculator("Annotate", inputs={"IMAGE": [(1, img)], "LANDMARKS": [(1, lm)]},  # noqa: E731
                                         options=opts)["IMAGE"][0][1].data[:, :, 1] > 100).sum())
    assert lit(Landmarks(pts, frame_size=(200, 200))) > 100  # the iris edges 469-470-471-472 drawn
    assert lit(Landmarks(pts[:, :468], frame_size=(200, 200))) == 0  # no irises: nothing, no error


# ------------------------------------------------------------------------------ segmentation
def _mask_outputs(scores=(0.9, 0.2)):
    """Two crops: a mask output (8x8 logits, +10 on the left half) and presence scores."""
    m = np.full((2, 8, 8, 1), -10.0, np.float32)
    m[:, :, :4] = 10.0
    return Tensors([Tensor(np.asarray(scores, np.float32).reshape(2, 1), "", "flag"), Tensor(m, "", "mask")])


def test_tensors_to_roi_mask_warps_each_kept_crops_mask_into_the_frame():
    rois = R([[50, 50, 40, 40, 0], [20, 20, 20, 20, 0]])
    out = run_calculator("TensorsToRoiMask", inputs={"TENSORS": [(5, _mask_outputs())], "ROIS": [(5, rois)]},
                         options={"mask_output": 1, "tensor_size": [16, 16], "activation": "sigmoid",
                                  "score_output": 0, "min_score": 0.5})
    (t, mask), = out["MASK"]
    assert t == 5 and mask.data.shape == (100, 100) and mask.frame_size == (100, 100)
    # crop 0 (score 0.9) covers x 30..70, its left half is foreground; crop 1 (0.2) is dropped
    assert mask.data[50, 40] > 0.99 and mask.data[50, 60] < 0.01 and mask.data[20, 15] == 0.0
    assert mask.data[5, 5] == 0.0, "zero outside the rects"
    raw = run_calculator("TensorsToRoiMask", inputs={"TENSORS": [(5, _mask_outputs())], "ROIS": [(5, rois)]},
                         options={"mask_output": 1, "tensor_size": [16, 16], "activation": "none"})
    assert raw["MASK"][0][1].data.max() > 9.0, "activation none keeps the values"
    assert raw["MASK"][0][1].data[20, 15] > 9.0, "without score_output every crop is kept"
    logits = run_calculator("TensorsToRoiMask", inputs={"TENSORS": [(5, _mask_outputs((3.0, -3.0)))], "ROIS": [(5, rois)]},
                            options={"mask_output": 1, "tensor_size": [16, 16], "score_output": 0,
                                     "score_activation": "sigmoid", "min_score": 0.9})
    m = logits["MASK"][0][1].data
    assert m[50, 40] > 0.99 and m[20, 15] == 0.0  # sigmoid(3) = 0.95 > 0.9 kept, sigmoid(-3) not
    with pytest.raises(GraphRunError, match=r"the mask is output 4, but the model has 2 outputs"):
        run_calculator("TensorsToRoiMask", inputs={"TENSORS": [(5, _mask_outputs())], "ROIS": [(5, rois)]},
                       options={"mask_output": 4, "tensor_size": [16, 16]})
    off = run_calculator("TensorsToRoiMask", inputs={"TENSORS": [(5, _mask_outputs())], "ROIS": [(5, rois)]},
                         options={"mask_output": 1, "tensor_size": [16, 16], "enabled": False})
    assert off["MASK"] == [], "enabled false: no mask, the bound only"


def test_mask_to_image_scales_or_thresholds_the_mask():
    from calculators.types import Mask

    mask = Mask(np.array([[0.0, 0.3, 0.5, 1.0]], np.float32), (4, 1))
    soft = run_calculator("MaskToImage", inputs={"MASK": [(7, mask)]})["IMAGE"]
    assert soft[0][0] == 7 and soft[0][1].format == "GRAY"
    assert soft[0][1].data.tolist() == [[0, 76, 128, 255]]
    hard = run_calculator("MaskToImage", inputs={"MASK": [(7, mask)]}, options={"threshold": 0.4})["IMAGE"]
    assert hard[0][1].data.tolist() == [[0, 0, 255, 255]]


def test_mask_smoothing_blends_uncertain_pixels_with_the_previous_mask():
    from calculators.types import Mask

    cur = Mask(np.array([[0.5, 1.0]], np.float32), (2, 1))
    prev = Mask(np.array([[0.0, 0.0]], np.float32), (2, 1))
    out = run_calculator("MaskSmoothing", inputs={"MASK": [(1, cur)], "PREVIOUS": [(1, prev)]},
                         options={"combine_with_previous_ratio": 0.7})
    got = out["MASK"][0][1].data
    # 0.5 is fully uncertain: keeps 0.7 of the previous (0.5 - 0.7 * 0.5); 1.0 is certain: unchanged
    assert np.allclose(got, [[0.15, 1.0]], atol=1e-4)  # (the polynomial leaves 1.0 at 0.99997)
    half = run_calculator("MaskSmoothing", inputs={"MASK": [(1, cur)], "PREVIOUS": [(1, prev)]},
                          options={"combine_with_previous_ratio": 0.2})
    assert np.allclose(half["MASK"][0][1].data, [[0.4, 1.0]], atol=1e-4)
    off = run_calculator("MaskSmoothing", inputs={"MASK": [(1, cur)], "PREVIOUS": [(1, prev)]},
                         options={"enabled": False})
    assert off["MASK"][0][1] is cur
