"""Face detection throughput on carphone scaled to 1280x720 (made here from the sample clip).

Two comparisons, each measured in the same process, interleaved, median of ``--repeats`` runs:

1. decode + detect: the graph (VideoSource -> face_detector subgraph, frames decoded with PyAV into
   I420 as the ready graph does and detected with BlazeFace on OpenVINO, stages in parallel)
   against MediaPipe Tasks' ``FaceDetector`` fed the same frames already decoded into memory as
   RGB (its detect calls alone are timed), and against the serial Tasks loop that decodes each
   frame to RGB (what Tasks needs) and detects it.
2. full graph (``graphs/face_detection.yaml``: decode, detect, annotate, H.264 encode) against two
   hand-written serial loops calling the same functions (PyAV decode, ``image_to_tensor``, the same
   shared OpenVINO engine, ``decode_ssd``, ``weighted_nms``, ``project_detections``,
   ``draw_detections`` on a copy, ``video_frame`` + PyAV libx264 encode with VideoWriter's
   settings): one on RGB frames (the loop users write), one on I420 frames like the graph (the
   same work as the graph, so its ratio is the win of running stages in parallel alone).

Two floors are measured too: PyAV decoding alone (no detector can be faster than its decoder) and
decode -> x264 encode alone (the full graph cannot beat the two stages that bound it). Ratios are
the median of per-round ratios (both sides measured in the same round), with their spread.

    python tests/bench/bench_face_detection.py [--repeats 5] [--loops 2] [--json out/bench/face_detection.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from _meta import write_json  # noqa: E402  (tests/bench: machine, versions, command in the JSON)

SIZE = (1280, 720)


def make_720p(src: Path, dst: Path, loops: int) -> int:
    """carphone scaled to 1280x720, repeated ``loops`` times, H.264 (made once, then reused)."""
    import av
    import cv2

    if dst.exists():
        with av.open(str(dst)) as c:
            return c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
    frames = []
    with av.open(str(src)) as c:
        for f in c.decode(video=0):
            frames.append(cv2.resize(f.to_ndarray(format="rgb24"), SIZE, interpolation=cv2.INTER_LINEAR))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        n = 0
        for _ in range(loops):
            for rgb in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(p)
                n += 1
        for p in s.encode():
            out.mux(p)
    tmp.replace(dst)
    return n


def decode_all(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)]


# --------------------------------------------------------------------------- 1. decode + detect
def graph_detect(video: Path, model: Path) -> tuple[float, int]:
    from pipeline import Graph

    data = {"name": "decode_detect", "side_packets": {"model": str(model), "engine": "openvino"},
            "outputs": ["faces"],
            "nodes": [
                {"calculator": "VideoSource", "outputs": {"FRAMES": "frames"},
                 "options": {"uri": str(video), "format": "I420"}},
                {"subgraph": "face_detector", "name": "detector", "inputs": {"FRAMES": "frames"},
                 "outputs": {"DETECTIONS": "faces"}, "side_inputs": {"model": "model", "engine": "engine"}},
            ]}
    graph = Graph.from_dict(data, search_paths=[ROOT / "graphs"])
    n = [0]
    graph.observe("faces", lambda p: n.__setitem__(0, n[0] + 1))
    t0 = time.perf_counter()
    graph.run({"model": str(model), "engine": "openvino"})
    return time.perf_counter() - t0, n[0]


def tasks_detect(frames: list[np.ndarray], model: Path) -> tuple[float, int]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    det = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(model))))
    try:
        det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=frames[0]))  # warm-up
        t0 = time.perf_counter()
        for rgb in frames:
            det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        return time.perf_counter() - t0, len(frames)
    finally:
        det.close()


def tasks_decode_detect(video: Path, model: Path) -> tuple[float, int]:
    import av
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    det = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(model))))
    try:
        t0 = time.perf_counter()
        n = 0
        with av.open(str(video)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for f in c.decode(s):
                det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=f.to_ndarray(format="rgb24")))
                n += 1
        return time.perf_counter() - t0, n
    finally:
        det.close()


def serial_decode(video: Path, encode_to: Path | None = None) -> tuple[float, int]:
    """The floor of both comparisons: PyAV decode into I420 alone, or decode -> x264 encode alone."""
    import av

    from calculators.sinks.video_writer import video_frame
    from calculators.types import Image

    t0 = time.perf_counter()
    n = 0
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        o = av.open(str(encode_to), "w") if encode_to else None
        try:
            if o is not None:
                enc = o.add_stream("libx264", rate=30)
                enc.width, enc.height, enc.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
                enc.options = {"crf": "23", "preset": "veryfast"}
            for f in c.decode(s):
                image = Image(f.to_ndarray(format="yuv420p"), "I420")
                if o is not None:
                    for p in enc.encode(video_frame(image)):
                        o.mux(p)
                n += 1
            if o is not None:
                for p in enc.encode():
                    o.mux(p)
        finally:
            if o is not None:
                o.close()
    return time.perf_counter() - t0, n


# --------------------------------------------------------------------------- 2. full graph
def graph_full(video: Path, model: Path, out: Path) -> tuple[float, int]:
    from apps.demo import build_graph

    side = {"source": str(video), "model": str(model), "engine": "openvino", "output": str(out)}
    graph = build_graph("face_detection")
    n = [0]
    graph.observe("annotated", lambda p: n.__setitem__(0, n[0] + 1))
    t0 = time.perf_counter()
    graph.run(side)
    return time.perf_counter() - t0, n[0]


def serial_full(video: Path, model: Path, out: Path, fmt: str = "RGB") -> tuple[float, int]:
    import av

    from calculators.annotate.draw import draw_detections
    from calculators.image.ops import image_to_tensor
    from calculators.inference import model_cache
    from calculators.inference.engine import EngineOptions
    from calculators.postprocess.geometry import project_detections, scale_detections
    from calculators.postprocess.nms import weighted_nms
    from calculators.postprocess.ssd import BLAZEFACE_SHORT_ANCHORS, BLAZEFACE_SHORT_DECODE, decode_ssd, ssd_anchors
    from calculators.sinks.video_writer import video_frame
    from calculators.types import Detections, Image

    shared = model_cache.acquire(model, "openvino", EngineOptions(threads=1))  # as graphs/face_detector.yaml
    anchors = ssd_anchors(BLAZEFACE_SHORT_ANCHORS)
    av_fmt = {"RGB": "rgb24", "I420": "yuv420p"}[fmt]
    try:
        t0 = time.perf_counter()
        n = 0
        with av.open(str(video)) as c, av.open(str(out), "w") as o:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            enc = o.add_stream("libx264", rate=30)
            enc.width, enc.height, enc.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
            enc.options = {"crf": "23", "preset": "veryfast"}
            for f in c.decode(s):
                image = Image(f.to_ndarray(format=av_fmt), fmt)
                tensor, transform = image_to_tensor(image, (128, 128), "letterbox", value_range=(-1, 1))
                raw = shared.engine.infer([tensor.data])
                boxes, scores = (raw[0], raw[1]) if raw[0].shape[-1] == 16 else (raw[1], raw[0])
                xyxy, sc, cid, kp = decode_ssd(boxes, scores, anchors, BLAZEFACE_SHORT_DECODE)
                det = weighted_nms(Detections(xyxy, sc, cid, ("face",) * len(sc), kp), 0.3)
                det = project_detections(scale_detections(det, 128, 128), transform)
                canvas = draw_detections(image.data.copy(), det, fmt)
                for p in enc.encode(video_frame(Image(canvas, fmt))):
                    o.mux(p)
                n += 1
            for p in enc.encode():
                o.mux(p)
        return time.perf_counter() - t0, n
    finally:
        model_cache.release(shared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loops", type=int, default=2, help="times the 120-frame clip is repeated in the 720p file")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "face_detection.json"))
    args = ap.parse_args()

    import calculators  # noqa: F401
    from models.catalog import resolve

    model = resolve("zoo:blazeface-short")
    video = ROOT / "out" / "bench" / f"carphone_720p_x{args.loops}.mp4"
    frames_total = make_720p(resolve("sample:carphone"), video, args.loops)
    frames = decode_all(video)
    tmp = Path(tempfile.mkdtemp(prefix="vpipe_bench_"))

    cases = {
        "graph_detect": lambda: graph_detect(video, model),
        "tasks_detect": lambda: tasks_detect(frames, model),
        "tasks_decode_detect": lambda: tasks_decode_detect(video, model),
        "decode_only": lambda: serial_decode(video),
        "graph_full": lambda: graph_full(video, model, tmp / "g.mp4"),
        "serial_full": lambda: serial_full(video, model, tmp / "s.mp4"),
        "serial_full_i420": lambda: serial_full(video, model, tmp / "i.mp4", "I420"),
        "decode_encode_only": lambda: serial_decode(video, tmp / "e.mp4"),
    }
    runs: dict[str, list[float]] = {k: [] for k in cases}
    # warm-up: load the models, fill the caches
    graph_detect(video, model)
    serial_full(video, model, tmp / "w.mp4")
    for _ in range(args.repeats):  # interleaved, so load changes hit all alike
        for key, fn in cases.items():
            secs, n = fn()
            if n != len(frames):
                raise SystemExit(f"{key} handled {n} frames, expected {len(frames)}")
            runs[key].append(n / secs)
    fps = {k: statistics.median(v) for k, v in runs.items()}

    def ratio(a: str, b: str) -> tuple[float, float, float]:
        """Median, min and max over the rounds of a/b measured in the same round (drift cancels)."""
        per_round = [x / y for x, y in zip(runs[a], runs[b])]
        return statistics.median(per_round), min(per_round), max(per_round)

    rows = [
        ("decode+detect: graph (I420)", "graph_detect", ("graph_detect", "tasks_decode_detect"), "Tasks: decode to RGB + detect, serial"),
        ("  Tasks decode+detect serial", "tasks_decode_detect", None, ""),
        ("  graph vs Tasks on decoded frames", "graph_detect", ("graph_detect", "tasks_detect"), "Tasks detect only (frames in memory)"),
        ("  Tasks FaceDetector, decoded frames", "tasks_detect", None, ""),
        ("  PyAV decode alone (I420)", "decode_only", ("decode_only", "tasks_detect"), "Tasks detect only"),
        ("full graph (annotate + H.264)", "graph_full", ("graph_full", "serial_full"), "serial loop, RGB frames"),
        ("  serial loop, RGB frames", "serial_full", None, ""),
        ("  full graph vs serial I420 loop", "graph_full", ("graph_full", "serial_full_i420"), "serial loop, I420 (same work)"),
        ("  serial loop, I420 frames", "serial_full_i420", None, ""),
        ("  full graph vs decode + encode alone", "graph_full", ("graph_full", "decode_encode_only"), "decode -> x264, nothing else"),
        ("  decode + encode alone", "decode_encode_only", None, ""),
    ]
    print(f"\nface detection on carphone 1280x720, {len(frames)} frames, {args.repeats} interleaved rounds "
          f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}); frames/s: median; "
          f"ratio: median of the per-round ratios [min-max]")
    print(f"{'measurement':40s} {'frames/s':>9s} {'ratio':>7s} {'spread':>13s}  baseline")
    ratios = {}
    for name, key, pair, base in rows:
        if pair is None:
            print(f"{name:40s} {fps[key]:9.1f}")
            continue
        med, lo, hi = ratio(*pair)
        ratios[f"{pair[0]}_vs_{pair[1]}"] = {"median": med, "min": lo, "max": hi}
        print(f"{name:40s} {fps[key]:9.1f} {med:6.2f}x [{lo:.2f}-{hi:.2f}]  {base}")
    result = {
        "frames": len(frames), "size": list(SIZE), "repeats": args.repeats,
        "fps_median": fps, "fps_runs": runs,
        "ratios": ratios,
    }
    write_json(args.json, "face_detection", result, libraries=["av", "mediapipe", "openvino"])
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
