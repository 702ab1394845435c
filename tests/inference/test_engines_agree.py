"""Every engine that runs here runs a real model in a graph on real frames, and they agree at f32.

CenterFace (ONNX) on ONNX Runtime, OpenVINO and ncnn (converted by pnnx); BlazeFace (TFLite) on
OpenVINO's TFLite reader against MediaPipe Tasks' FaceDetector; frames from ``sample:carphone``.
"""

from __future__ import annotations

import numpy as np
import pytest

from calculators.types import Detections, Tensors

from .conftest import needs_mp, needs_ncnn, needs_ort, needs_ov, run_graph, video_source

# Stated tolerances (max abs difference of raw outputs at f32, on 640x480 carphone frames). ORT vs
# OpenVINO measured 1.2e-5..3.2e-5; ncnn (pnnx-converted, its own kernels) 2.8e-5..5.9e-5.
ATOL = {"openvino": 1e-4, "ncnn": 5e-4}
FRAMES = 4


def _centerface_graph(uri, engines: dict[str, dict]) -> dict:
    nodes = [
        video_source(uri, FRAMES),
        # CenterFace takes BGR 0..255 NCHW; 640x480 (multiples of 32) from the 176x144 video.
        {"calculator": "ImageToTensor", "inputs": {"IMAGE": "frames"}, "outputs": {"TENSOR": "tensor"},
         "options": {"size": [640, 480], "fit": "stretch", "range": [0, 255], "layout": "NCHW", "format": "BGR"}},
    ]
    for name, opts in engines.items():
        nodes.append({"calculator": "Inference", "name": f"infer_{name}", "inputs": {"TENSORS": "tensor"},
                      "outputs": {"TENSORS": f"raw_{name}"}, "options": opts})
    return {"name": "centerface_engines", "nodes": nodes}


@needs_ort
@needs_ov
@needs_ncnn
def test_centerface_onnxruntime_openvino_ncnn_agree(carphone, centerface, centerface_ncnn):
    engines = {
        "onnxruntime": {"model": str(centerface), "engine": "onnxruntime"},
        "openvino": {"model": str(centerface), "engine": "openvino"},
        "ncnn": {"model": str(centerface_ncnn), "engine": "ncnn"},
    }
    got = run_graph(_centerface_graph(carphone, engines), [f"raw_{n}" for n in engines])
    ref = got["raw_onnxruntime"]
    assert len(ref) == FRAMES, f"expected {FRAMES} frames, got {len(ref)}"
    ts = [t for t, _ in ref]
    assert ts == sorted(ts) and len(set(ts)) == FRAMES
    for t, out in ref:
        assert isinstance(out, Tensors) and [o.shape for o in out] == [
            (1, 1, 120, 160), (1, 2, 120, 160), (1, 2, 120, 160), (1, 10, 120, 160)]
        # Carphone shows a face: the heatmap must peak well above background.
        assert out[0].data.max() > 0.5, f"no face found at t={t}: heatmap max {out[0].data.max():.3f}"
    for name in ("openvino", "ncnn"):
        other = got[f"raw_{name}"]
        assert [t for t, _ in other] == ts, f"{name}: timestamps differ"
        for (t, a), (_, b) in zip(ref, other):
            for x, y in zip(a, b):
                err = float(np.abs(x.data - y.data).max())
                assert err <= ATOL[name], f"{name} vs onnxruntime, output {x.name} at t={t}: max abs error {err:.3g} > {ATOL[name]}"


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@needs_ov
@needs_mp
def test_blazeface_openvino_tflite_agrees_with_mediapipe_tasks(carphone, blazeface):
    """The same .tflite run two ways: raw tensors on OpenVINO + the project's decoder/NMS/projection,
    and MediaPipe Tasks' FaceDetector (its own pre/post-processing). Boxes IoU >= 0.9, scores within
    0.02, keypoints within 2 px (frames are 176x144)."""
    config = {"name": "blazeface_two_ways", "nodes": [
        video_source(carphone, FRAMES),
        {"calculator": "ImageToTensor", "inputs": {"IMAGE": "frames"},
         "outputs": {"TENSOR": "tensor", "TRANSFORM": "transform"},
         "options": {"size": [128, 128], "fit": "letterbox", "range": [-1, 1], "layout": "NHWC"}},
        {"calculator": "Inference", "inputs": {"TENSORS": "tensor"}, "outputs": {"TENSORS": "raw"},
         "options": {"model": str(blazeface), "engine": "openvino"}},
        {"calculator": "SsdDetectionsDecoder", "inputs": {"TENSORS": "raw"}, "outputs": {"DETECTIONS": "candidates"},
         "options": {"preset": "blazeface_short"}},
        {"calculator": "NonMaxSuppression", "inputs": {"DETECTIONS": "candidates"}, "outputs": {"DETECTIONS": "kept"},
         "options": {"method": "weighted", "iou_threshold": 0.3}},
        {"calculator": "ProjectDetections", "inputs": {"DETECTIONS": "kept", "TRANSFORM": "transform"},
         "outputs": {"DETECTIONS": "ov_faces"}},
        {"calculator": "MediaPipeFaceDetector", "inputs": {"IMAGE": "frames"}, "outputs": {"DETECTIONS": "mp_faces"},
         "options": {"model": str(blazeface)}},
    ]}
    got = run_graph(config, ["ov_faces", "mp_faces"])
    assert len(got["mp_faces"]) == FRAMES and len(got["ov_faces"]) == FRAMES
    for (t, ov), (t2, mp) in zip(got["ov_faces"], got["mp_faces"]):
        assert t == t2
        assert isinstance(ov, Detections) and isinstance(mp, Detections)
        assert len(mp) == 1, f"MediaPipe found {len(mp)} faces at t={t} (carphone shows one)"
        assert len(ov) == len(mp), f"t={t}: OpenVINO path found {len(ov)} faces, MediaPipe {len(mp)}"
        iou = _iou(ov.xyxy[0], mp.xyxy[0])
        assert iou >= 0.9, f"t={t}: box IoU {iou:.3f} (ov {ov.xyxy[0]}, mp {mp.xyxy[0]})"
        assert abs(float(ov.scores[0]) - float(mp.scores[0])) <= 0.02, f"t={t}: scores {ov.scores[0]} vs {mp.scores[0]}"
        kp_err = float(np.abs(ov.keypoints[0] - mp.keypoints[0]).max())
        assert kp_err <= 2.0, f"t={t}: keypoints differ by {kp_err:.2f} px"
