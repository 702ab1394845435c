"""The landmark graphs on every CPU engine: ``--set engine=openvino|onnxruntime|ncnn`` on the same
short real clips, landmarks compared with OpenVINO's (which reads the .tflite files; ONNX Runtime and
ncnn run the project's checked conversions of them, models/convert.py).

Error: per object, the largest point distance over the object's box size (the larger side of the
extent of OpenVINO's points). Measured (load ~16 on a shared 2-core machine; timings vary, errors
do not): face_mesh on carphone (30 frames, tracking) max 7.8e-4 on ONNX Runtime, 9.4e-4 on ncnn;
pose max 6.2e-4 / 1.28e-3; hands on bigbuckbunny frames 108-131 with static_image_mode (the palm
detector on every frame, no loop) max 3.0e-4 / 4.6e-4. Bounds: about twice those.

hands in tracking mode: the same hand on the same frames on every engine, but the difference grows
along the track (0.0 on the detected frame, then each frame's region comes from the previous
frame's landmarks, and on this cartoon paw the model's answer moves a lot with its crop): the mean
point error reached 6.3 % (ONNX Runtime) and 4.8 % (ncnn) of the box by the 20th tracked frame."""

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

ENGINES = ("onnxruntime", "ncnn")


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
    # carphone: a face and a torso on every frame; bigbuckbunny: a paw the palm detector finds from
    # frame 112 on (frames 108-131: 4 without, 20 with)
    return {"carphone": _cut(_sample("carphone"), d / "carphone30.mp4", 0, 30),
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


CASES = {  # graph, stream, clip, side packets, bound on the largest point error (onnxruntime, ncnn)
    "face_mesh": ("face_mesh", "faces", "carphone", {}, (1.5e-3, 2e-3)),
    "pose": ("pose", "poses", "carphone", {}, (1.5e-3, 2.5e-3)),
    "hands static": ("hands", "hands", "bigbuckbunny", {"static_image_mode": True}, (1e-3, 1e-3)),
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
    assert [len(lm) for _, lm in ref] == [0] * 4 + [1] * 20
    for engine in ENGINES:
        worst, mean = _errors(ref, runs[engine].frames)
        print(f"\nhands (tracking) on {engine}: mean point error over the box, first detected frame "
              f"{mean[0]:.2e}, worst frame {max(mean):.2%}")
        assert mean[0] <= 1e-3, "the detected frame: the same crop, the same landmarks"
        assert max(mean) <= 0.10, (engine, max(mean))
