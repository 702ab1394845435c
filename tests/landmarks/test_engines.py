"""The landmark graphs on every CPU engine: ``--set engine=openvino|onnxruntime|ncnn|litert`` on the
same short real clips, landmarks compared with OpenVINO's (which reads the .tflite files, as LiteRT
does; ONNX Runtime and ncnn run the project's checked conversions of them, models/convert.py).

LiteRT (measured 2026-12-01, load ~20): face_mesh max 1.6e-3 (mean 4.8e-4), pose static 2.8e-5,
pose tracking 4.7e-4, hands static 2.9e-4; hands tracking first detected frame 5.2e-5, worst frame
0.57 %. Bounds about twice those.

Error: per object, the largest point distance over the object's box size (the larger side of the
extent of OpenVINO's points). Measured (load ~16 on a shared 2-core machine; timings vary, errors
do not): face_mesh on carphone (30 frames, tracking) max 7.8e-4 on ONNX Runtime, 9.4e-4 on ncnn;
pose on carphone's first 15 frames with static_image_mode (the detector on every frame, no loop) max
3.9e-5 / 2.3e-5; hands on bigbuckbunny frames 108-131 with static_image_mode and min_detection_confidence
0.3 (19 hands) max 3.3e-4 / 5.2e-4. Bounds: about twice those.

pose in tracking mode (carphone, 30 frames, the detector on the first): largest point error max 6.0e-3
on ONNX Runtime, 7.6e-4 on ncnn (mean over the frames 2.6e-3 / 3.7e-4); bounds 1.5e-2 / 3e-3.

pose and hands are also compared without their loop because the loop amplifies the engines' 1e-5 differences:
each frame's crop comes from the previous frame's (smoothed) landmarks, and with crops sampled as
MediaPipe's OpenCV 4 does (positions rounded to 1/32 pixel, calculators/image/ops.warp_affine) the
tracks drift apart further than with OpenCV 5's float warp: pose in tracking mode on carphone (30
frames) went from 1.2e-5 on the detected frame to 6.0e-3 by frame 28 on ONNX Runtime (under 6.2e-4
with the float warp; 9.2e-5 at most on the same 30 frames without the loop).

hands in tracking mode: the same hand on the same frames on every engine, with mediapipe 0.10.21's
own counts on these frames (0 hands on 108-111, one from 112, the paw found a second time on 129);
the difference grows along the track (about 5e-5 on the detected frame, then each frame's region
comes from the previous frame's landmarks): the mean point error reached 0.57 % (ONNX Runtime) and
0.71 % (ncnn) of the box at worst (crops sampled at MediaPipe's positions, roi_warp.rect_maps;
0.43 % / 0.55 % with the analytic affine map)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.landmarks.conftest import _sample, run_graph

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in
                               ("openvino", "onnxruntime", "ncnn", "pnnx", "tflite2onnx", "ai_edge_litert")),
                       reason="needs every CPU engine and the convert extra (openvino, onnxruntime, ncnn, pnnx, "
                              "tflite2onnx, ai-edge-litert)"),
]

ENGINES = ("onnxruntime", "ncnn", "litert")


def _cut(src: Path, dst: Path, start: int, count: int) -> Path:
    """Frames ``start`` .. ``start + count - 1`` of ``src``, encoded near-lossless (H.264, crf 12)."""
    import av

    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        s = c.streams.video[0]
        o = out.add_stream("libx264", rate=s.average_rate or 30)
        o.width, o.height, o.pix_fmt = s.width, s.height, "yuv420p"
        o.options = {"crf": "12", "preset": "veryfast"}
        for i, f in enumerate(c.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                for p in o.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")):
                    out.mux(p)
        for p in o.encode():
            out.mux(p)
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("engine_clips")
    # carphone: a face and a torso on every frame; bigbuckbunny: frames 108-131, a paw whose palm score
    # sits between 0.3 and 0.5 on most frames from 112 on (at MediaPipe's 0.5 the detector alone finds
    # it on 2 of the 24, as MediaPipe 0.10.21 does on these RGB frames; at 0.3 on 19, frames 112-130)
    # carphone15: pose detects on every frame (static_image_mode), at about twice a tracked frame's cost
    return {"carphone": _cut(_sample("carphone"), d / "carphone30.mp4", 0, 30),
            "carphone15": _cut(_sample("carphone"), d / "carphone15.mp4", 0, 15),
            "bigbuckbunny": _cut(_sample("bigbuckbunny"), d / "bigbuckbunny24.mp4", 108, 24)}


def _errors(ref: list, got: list) -> tuple[list[float], list[float]]:
    """Per frame, per object: (largest, mean) point distance over the reference object's box."""
    assert [t for t, _ in got] == [t for t, _ in ref], "one packet per frame, same timestamps"
    assert [len(lm) for _, lm in got] == [len(lm) for _, lm in ref], "the same objects on the same frames"
    worst, mean = [], []
    for (_, a), (_, b) in zip(ref, got):
        for i in range(len(a)):
            pa, pb = a.points[i, :, :2], b.points[i, :, :2]
            box = max(np.ptp(pa[:, 0]), np.ptp(pa[:, 1]))
            d = np.linalg.norm(pa - pb, axis=1) / box
            worst.append(float(d.max()))
            mean.append(float(d.mean()))
    return worst, mean


CASES = {  # graph, stream, clip, side packets, bound on the largest point error (onnxruntime, ncnn, litert)
    "face_mesh": ("face_mesh", "faces", "carphone", {}, (1.5e-3, 2e-3, 3e-3)),
    "pose": ("pose", "poses", "carphone15", {"static_image_mode": True}, (8e-5, 5e-5, 6e-5)),
    "pose tracking": ("pose", "poses", "carphone", {}, (1.5e-2, 3e-3, 1e-3)),
    "hands static": ("hands", "hands", "bigbuckbunny", {"static_image_mode": True, "min_detection_confidence": 0.3},
                     (7e-4, 1e-3, 6e-4)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_graph_gives_the_same_landmarks_on_every_engine(clips, case):
    graph, stream, clip, options, bounds = CASES[case]
    runs = {e: run_graph(graph, stream, {"source": str(clips[clip]), "engine": e, **options})
            for e in ("openvino",) + ENGINES}
    ref = runs["openvino"].frames
    assert sum(len(lm) for _, lm in ref) >= 3, "the clip shows the object (else the test proves nothing)"
    for engine, bound in zip(ENGINES, bounds):
        worst, _ = _errors(ref, runs[engine].frames)
        print(f"\n{case} on {engine}: {len(worst)} objects, largest point error over the box: "
              f"mean {np.mean(worst):.2e} max {max(worst):.2e} (bound {bound:g})")
        assert max(worst) <= bound, (case, engine, max(worst))


def test_hands_tracking_on_every_engine_follows_the_same_hand(clips):
    runs = {e: run_graph("hands", "hands", {"source": str(clips["bigbuckbunny"]), "engine": e})
            for e in ("openvino",) + ENGINES}
    ref = runs["openvino"].frames
    # MediaPipe 0.10.21 on the same frames: no hand on 108-111, then one, found twice on 129
    assert [len(lm) for _, lm in ref] == [0] * 4 + [1] * 17 + [2] + [1] * 2
    for engine in ENGINES:
        worst, mean = _errors(ref, runs[engine].frames)
        print(f"\nhands (tracking) on {engine}: mean point error over the box, first detected frame "
              f"{mean[0]:.2e}, worst frame {max(mean):.2%}")
        assert mean[0] <= 1.5e-4, "the detected frame: the same crop, the same landmarks"
        assert max(mean) <= 0.01, (engine, max(mean))


# ---------------------------------------------------------------- refine_landmarks (478 points)


def test_refine_landmarks_agrees_with_mediapipe_on_carphone(carphone_clip):
    """``vpipe run face_mesh --set refine_landmarks=true``: the ready graph (ModelChoice picks the
    face mesh with attention, its custom ops on OpenVINO, calculators/inference/mediapipe_ops.py;
    RefineFaceLandmarks merges its outputs) against mediapipe 0.10.21's face_mesh with
    refine_landmarks. Measured (carphone, 120 frames): 100 % same presence, error mean 0.21 %, p95
    0.31 % of the face box over all 478 points; the irises alone (points 468-477) mean 0.22 %, p95
    0.34 %. refine_landmarks false (the default) runs the plain model: 468 points."""
    from tests.landmarks.conftest import compare, reference

    clip = carphone_clip
    run = run_graph("face_mesh", "faces", {"source": str(clip.path), "refine_landmarks": True, "engine": "openvino"})
    assert run.side["chosen_landmark_model"] == "zoo:face-landmark-with-attention"
    got = run.frames
    assert sum(1 for _, lm in got if len(lm)) > 0.9 * clip.count
    assert all(lm.points.shape[1:] == (478, 3) for _, lm in got if len(lm))
    ref = reference("face_mesh", clip, {"refine_landmarks": True})
    assert len(ref["frames"][0][0]["landmarks"]) == 478
    m = compare(ref["frames"], got, clip.size)
    w, h = clip.size
    iris = []
    for r, (_, lm) in zip(ref["frames"], got):
        if r and len(lm):
            a = np.asarray(r[0]["landmarks"])[:, :2] * (w, h)
            box = max(np.ptp(a[:, 0]), np.ptp(a[:, 1]))
            iris.append(float(np.linalg.norm(a[468:] - lm.points[0, 468:, :2], axis=1).mean() / box))
    print(f"\nrefine_landmarks on carphone: same presence {m['same_presence']:.1%}, error mean {m['mean']:.2%} "
          f"p95 {m['p95']:.2%}; irises mean {np.mean(iris):.2%} p95 {np.percentile(iris, 95):.2%}")
    assert m["same_presence"] >= 0.95 and m["ref_present"] > 0.9 * clip.count, m
    assert m["mean"] <= 0.02 and m["p95"] <= 0.05, m
    assert np.mean(iris) <= 0.02 and np.percentile(iris, 95) <= 0.05
    plain = run_graph("face_mesh", "faces", {"source": str(clip.path), "refine_landmarks": False})
    assert plain.side["chosen_landmark_model"] == "zoo:face-landmark"
    assert sum(1 for _, lm in plain.frames if len(lm)) > 0.9 * clip.count
    assert all(lm.points.shape[1:] == (468, 3) for _, lm in plain.frames if len(lm))


def test_refinement_places_each_part_as_mediapipe_does():
    from calculators.landmarks.face_refinement import LEFT_EYE, LIPS, RIGHT_EYE, refine_face_landmarks

    rng = np.random.default_rng(3)
    mesh = rng.uniform(0, 192, (2, 1, 1, 1404)).astype(np.float32)
    parts = [rng.uniform(0, 192, (2, 1, 1, k)).astype(np.float32) for k in (160, 142, 142, 10, 10)]
    out = refine_face_landmarks(mesh, *parts)
    m = mesh.reshape(2, 468, 3)
    assert out.shape == (2, 478, 3)
    untouched = sorted(set(range(468)) - set(LIPS) - set(LEFT_EYE) - set(RIGHT_EYE))
    np.testing.assert_array_equal(out[:, untouched], m[:, untouched])
    for idx, part in zip((LIPS, LEFT_EYE, RIGHT_EYE), parts[:3]):
        np.testing.assert_array_equal(out[:, idx, :2], part.reshape(2, -1, 2))
        np.testing.assert_array_equal(out[:, idx, 2], m[:, idx, 2])  # z stays the mesh's
    for start, part, eye in ((468, parts[3], LEFT_EYE), (473, parts[4], RIGHT_EYE)):
        np.testing.assert_array_equal(out[:, start:start + 5, :2], part.reshape(2, 5, 2))
        np.testing.assert_allclose(out[:, start:start + 5, 2], np.repeat(m[:, eye[:16], 2].mean(1, keepdims=True), 5, 1),
                                   rtol=1e-6)


def test_refinement_passes_the_plain_model_through_and_refuses_other_models():
    """The plain face mesh's two outputs pass unchanged (one chain serves refine_landmarks on and
    off); any other model's outputs are an error naming the node and both models."""
    from calculators.types import Tensor, Tensors
    from pipeline import GraphRunError
    from pipeline.testing import run_calculator

    rng = np.random.default_rng(5)
    mesh, flag = rng.uniform(0, 192, (2, 1, 1, 1404)).astype(np.float32), np.array([[[[2.0]]], [[[-1.0]]]], np.float32)
    out = run_calculator("RefineFaceLandmarks", inputs={"TENSORS": [(3, Tensors([Tensor(mesh), Tensor(flag)]))]})
    (t, got), = out["TENSORS"]
    assert t == 3 and [x.name for x in got] == ["landmarks", "face_flag"]
    np.testing.assert_array_equal(got[0].data, mesh.reshape(2, 1404))
    np.testing.assert_array_equal(got[1].data, flag.reshape(2, 1))
    pose = Tensors([Tensor(np.zeros((1, 195), np.float32)), Tensor(np.zeros((1, 1), np.float32))])
    with pytest.raises(GraphRunError, match=r"RefineFaceLandmarks.*expected the face mesh with attention's outputs.*"
                                            r"got \[195, 1\].*zoo:face-landmark-with-attention or zoo:face-landmark"):
        run_calculator("RefineFaceLandmarks", inputs={"TENSORS": [(1, pose)]})


def test_mediapipe_ops_sample_and_map_as_defined():
    """TransformTensorBilinear on a matrix that maps the 4x4 grid onto the map's pixels 2..5 reads
    them back exactly (zero outside); TransformLandmarks applies rows 0 and 1; the matrix of an
    upright square of landmarks is its centre, shifted by half the grid, scaled to its size."""
    from calculators.inference.mediapipe_ops import (
        landmarks_to_transform_matrix, transform_landmarks, transform_tensor_bilinear)

    data = np.arange(8 * 8 * 2, dtype=np.float32).reshape(1, 8, 8, 2)
    shift = np.eye(4, dtype=np.float32)[None]
    shift[0, 0, 3] = shift[0, 1, 3] = 2.0
    np.testing.assert_array_equal(transform_tensor_bilinear(data, shift, 4, 4), data[:, 2:6, 2:6])
    shift[0, 0, 3] = 6.0  # columns 6, 7 inside, 8 and 9 outside: zero
    got = transform_tensor_bilinear(data, shift, 4, 4)
    np.testing.assert_array_equal(got[:, :, :2], data[:, 2:6, 6:8])
    assert not got[:, :, 2:].any()
    pts = np.array([[[1.0, 2.0], [3.0, -1.0]]], dtype=np.float32)
    m = np.array([[[2, 0, 0, 5], [0, 3, 0, -1], [0, 0, 1, 0], [0, 0, 0, 1]]], dtype=np.float32)
    np.testing.assert_allclose(transform_landmarks(pts, m), [[[7.0, 5.0], [11.0, -4.0]]])
    lm = np.zeros((1, 4, 3), dtype=np.float32)
    lm[0, :, :2] = [[10, 20], [30, 20], [30, 60], [10, 60]]  # 20 wide, 40 tall, centre (20, 40), upright
    o = {"left_rotation_idx": 0, "right_rotation_idx": 1, "target_rotation_radians": 0.0,
         "subset_idxs": [[0, 1], [2, 3]], "output_width": 16, "output_height": 16, "scale_x": 1.5, "scale_y": 1.5}
    sx, sy = 1.5 * 20 / 16, 1.5 * 40 / 16
    np.testing.assert_allclose(landmarks_to_transform_matrix(lm, o)[0],
                               [[sx, 0, 0, 20 - 8 * sx], [0, sy, 0, 40 - 8 * sy], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-5)


def test_refine_landmarks_on_litert_fails_before_any_frame_naming_openvino(carphone_clip):
    """LiteRT has not MediaPipe's custom ops (engine auto gives the attention mesh to OpenVINO)."""
    from pipeline import GraphRunError

    with pytest.raises(GraphRunError, match=r"mesh/landmark_model.*litert: face_landmark_with_attention\.tflite uses "
                                            r"MediaPipe's custom ops \(Landmarks2TransformMatrix.*; engine openvino "
                                            r"runs it \(--set engine=openvino\)$"):
        run_graph("face_mesh", "faces", {"source": str(carphone_clip.path), "engine": "litert",
                                         "refine_landmarks": True})
