"""Face detection throughput on carphone scaled to 1280x720 (made here from the sample clip).

Default mode (``--mode whole``), the user's command at the machine's limit:

- whole process: ``vpipe run face_detection`` with only ``detections`` (and
  ``face_detection_centerface``, ``selfie_segmentation`` with ``output``), each alternated in
  ``--rounds`` rounds with the loops of ``face_loops.py`` (MediaPipe Tasks' loop, the hand-written
  two-thread loop, the bare-engine loops), on a long and a short clip (their difference is the
  steady state); wall time and the child's CPU time of every process;
- CPU per stage: each graph once in process, every calculator's ``process`` on its thread's CPU
  clock and every thread's CPU from /proc (scheduling = vpipe's threads outside ``process``,
  native threads = FFmpeg's and the runtimes'), beside the floor of the same stage measured in the
  loop in the same rounds;
- the GIL check: PyAV decoding alone, beside a thread busy in native code, beside one busy in Python.

    python tests/bench/bench_face_detection.py [--rounds 5] [--graphs face_detection,...] [--frames 1200]

``--mode in-process``: the earlier comparisons, each measured in the same process, interleaved,
median of ``--repeats`` runs:

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

    python tests/bench/bench_face_detection.py --mode in-process [--repeats 5] [--loops 2]
"""

from __future__ import annotations

import argparse
import json
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

from _meta import whole_process as run_process, write_json  # noqa: E402  (tests/bench: machine, versions, command in the JSON)

SIZE = (1280, 720)


def make_720p(src: Path, dst: Path, loops: int, limit: int | None = None) -> int:
    """carphone scaled to 1280x720, repeated ``loops`` times (cut at ``limit`` frames), H.264
    (made once, then reused)."""
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
                if limit is not None and n >= limit:
                    break
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


def in_process(args) -> None:
    """The in-process comparisons (decode + detect, full graph against serial loops)."""
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
    write_json(args.json, "face_detection_in_process", result, libraries=["av", "mediapipe", "openvino"])
    print(f"written: {args.json}")


# --------------------------------------------------------------------- 3. whole process
# Each ready graph as the user runs it (``vpipe run``, a process of its own) against the loops of
# face_loops.py, alternated in rounds on the same files. ``long`` and ``short`` are the same clip
# cut at two lengths: (long - short) is the steady state, with the process start and the model
# compile taken out.
CASES = {
    "face_detection": {
        "graph": lambda v, o: ["run", "face_detection", "--set", f"source={v}", "--set", f"detections={o}.jsonl"],
        # the floor: the hand loop on the engine `vpipe run` picks (auto: LiteRT for the .tflite);
        # the OpenVINO loop (the issue's) and the best hand loop (slice threads, strided planes)
        # are shown beside it
        "loops": ["tasks", "hand_blazeface", "hand_blazeface_litert", "hand_blazeface_litert_best"],
        "floor": "hand_blazeface_litert", "also": ["hand_blazeface", "hand_blazeface_litert_best"],
        # the stage run on the engine auto picks, then again on these (a second graph column)
        "engines": ["openvino"],
        "stages": {"decode": ["MediaSource"], "tensor": ["detector/ImageToTensor"],
                   "inference": ["detector/Inference"],
                   "post": ["detector/SsdDetectionsDecoder", "detector/NonMaxSuppression", "detector/ProjectDetections"],
                   "sink": ["JsonlWriter"]},
        "side": lambda v, o: {"source": str(v), "detections": f"{o}.jsonl"},
    },
    "face_detection_centerface": {
        "graph": lambda v, o: ["run", "face_detection_centerface", "--set", f"source={v}", "--set",
                               f"detections={o}.jsonl"],
        "loops": ["bare_centerface"], "floor": "bare_centerface",
        "stages": {"decode": ["MediaSource"], "tensor": ["ImageToTensor"], "inference": ["Inference"],
                   "post": ["CenterFaceDecoder", "NonMaxSuppression", "ProjectDetections"], "sink": ["JsonlWriter"]},
        "side": lambda v, o: {"source": str(v), "detections": f"{o}.jsonl"},
    },
    "selfie_segmentation": {
        "graph": lambda v, o: ["run", "selfie_segmentation", "--set", f"source={v}", "--set", f"output={o}.mp4"],
        "loops": ["bare_selfie"], "floor": "bare_selfie",
        "stages": {"decode": ["MediaSource"], "inference": ["MediaPipeImageSegmenter"], "post": ["BackgroundEffect"],
                   "sink": ["MediaWriter"]},
        "side": lambda v, o: {"source": str(v), "output": f"{o}.mp4"},
    },
}


def whole_process(args, graphs: list[str]) -> dict:
    from models.catalog import resolve

    src = resolve("sample:carphone")
    bench = ROOT / "out" / "bench"
    videos = {}
    for name in graphs:
        n = args.frames if name == "face_detection" else args.frames_other
        short = args.short if name == "face_detection" else args.short_other
        videos[name] = {"long": (bench / f"carphone_720p_{n}.mp4", n),
                        "short": (bench / f"carphone_720p_{short}.mp4", short)}
        for path, frames in videos[name].values():
            make_720p(src, path, -(-frames // 120), frames)
    tmp = Path(tempfile.mkdtemp(prefix="vpipe_bench_whole_"))
    py = sys.executable
    runs: dict = {}
    stages: dict = {}
    for rnd in range(args.rounds):
        for name in graphs:
            case = CASES[name]
            for length, (video, frames) in videos[name].items():
                who = {"vpipe": [py, "-m", "apps.cli", *case["graph"](video, tmp / f"{name}_vpipe"), "-q"]}
                for loop in case["loops"]:
                    who[loop] = [py, str(Path(__file__).with_name("face_loops.py")), loop, str(video),
                                 str(tmp / f"{name}_{loop}.out")]
                order = list(who) if rnd % 2 == 0 else list(reversed(who))  # alternate who goes first
                for key in order:
                    wall, cpu = run_process(who[key], ROOT)
                    runs.setdefault(name, {}).setdefault(length, {}).setdefault(key, []).append((wall, cpu))
                    if key != "vpipe":
                        st = json.loads(Path(f"{tmp / f'{name}_{key}.out'}.stages.json").read_text())
                        assert st["frames"] == frames, (name, key, st["frames"], frames)
                        if length == "long":
                            stages.setdefault(name, {}).setdefault(key, []).append(st)
                    print(f"round {rnd + 1} {name} {length:5s} {key:15s} wall {wall:6.2f} s  cpu {cpu:6.2f} s",
                          flush=True)
    return {"runs": runs, "loop_stages": stages,
            "frames": {n: {k: v[1] for k, v in vs.items()} for n, vs in videos.items()}}


def per_round(runs: dict, name: str, num: str, den: str, steady: bool, idx: int = 0) -> list[float]:
    """num/den speed ratio (den's time over num's) per round; ``steady``: long minus short."""
    r = runs[name]
    out = []
    for i in range(len(r["long"][num])):
        a = r["long"][num][i][idx] - (r["short"][num][i][idx] if steady else 0.0)
        b = r["long"][den][i][idx] - (r["short"][den][i][idx] if steady else 0.0)
        out.append(b / a if a > 0 else float("nan"))
    return out


# ------------------------------------------------------------ 4. CPU per stage, in process
def stage_cpu(name: str, video: Path, out: Path, engine: str | None = None) -> dict:
    """One in-process run of the ready graph with every calculator's ``process`` timed on its own
    thread's CPU clock, and every thread's CPU read from /proc: CPU microseconds per frame per
    node, the vpipe threads' CPU outside ``process`` (the scheduler's own cost), and the native
    threads' (FFmpeg's, the runtime's). ``engine``: the graph's ``engine`` side packet (None: the
    graph's own, ``auto``); the engine that ran is in the result."""
    import threading

    import calculators  # noqa: F401
    from pipeline import Graph, registry

    case = CASES[name]
    graph = Graph.from_yaml(ROOT / "graphs" / f"{name}.yaml")
    side = case["side"](video, out)
    if engine is not None:
        side["engine"] = engine
    ran = engine_that_runs(graph, side)
    names = {ns.name for ns in graph.spec.nodes}
    missing = sorted(n for nodes in case["stages"].values() for n in nodes if n not in names)
    if missing:  # the ready graph changed: say so before the run, not with a KeyError after it
        raise SystemExit(f"bench_face_detection: CASES[{name!r}] names nodes the graph does not have: "
                         f"{', '.join(missing)}; its nodes are {', '.join(sorted(names))}")
    node_cpu: dict[str, float] = {}
    thread_cpu: dict[int, float] = {}
    patched: dict[type, object] = {}
    nested = threading.local()  # per thread: CPU of the calls made inside the running call
    for ns in graph.spec.nodes:
        cls = registry.get(ns.calculator)
        if cls in patched:
            continue
        patched[cls] = orig = cls.__dict__["process"]

        def process(self, ctx, _orig=orig):
            # Exclusive time: a direct hop (pipeline/node.py, ``call_direct``) runs the consumer's
            # ``process`` inside its producer's, so the time of the calls nested in this one is
            # taken out of it (else the consumer's time counts twice and the remainder, the
            # scheduling row, comes out negative). What the hop itself costs inside the producer's
            # call (``ctx.output`` up to the consumer's ``process``) stays with the producer.
            t0 = time.thread_time()
            outer = nested.__dict__.get("ns", 0.0)
            nested.ns = 0.0
            try:
                return _orig(self, ctx)
            finally:
                t1 = time.thread_time()
                inner = nested.ns
                nested.ns = outer + t1 - t0
                node_cpu[ctx.node] = node_cpu.get(ctx.node, 0.0) + t1 - t0 - inner
                thread_cpu[threading.get_native_id()] = t1

        cls.process = process
    seen: dict[int, tuple[str, float]] = {}
    stop = threading.Event()
    tick = os.sysconf("SC_CLK_TCK")

    python_ids: set[int] = set()  # every thread the interpreter started (vpipe's, its opening threads)

    def sample() -> None:
        while True:
            python_ids.update(t.native_id for t in threading.enumerate())
            for task in os.listdir("/proc/self/task"):
                try:
                    stat = Path(f"/proc/self/task/{task}/stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                seen[int(task)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
            # Five times a second: each sweep is Python holding the GIL (~1 ms under load); at
            # 20 Hz the sampler took 1.6 s of CPU in a 1200-frame run, beside the decoder it
            # measures. A native thread's CPU after its last sweep (< 0.2 s) goes uncounted.
            if stop.wait(0.2):
                return

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    c0 = time.process_time()
    try:
        graph.run(side)
    finally:
        cpu_total = time.process_time() - c0
        stop.set()
        sampler.join()
        for cls, orig in patched.items():
            cls.process = orig  # the class's own again
    frames = graph.stats()[case["stages"]["decode"][0]]["count"] - 1  # the last call says STOP
    py_threads = set(thread_cpu) | {threading.main_thread().native_id, sampler.native_id}
    # Threads the interpreter did not start are native (FFmpeg's slice workers, the runtimes'
    # pools); Python threads that never called process (concurrent opening: the model compile)
    # are start-up, reported apart.
    native = sum(cpu for tid, (_, cpu) in seen.items() if tid not in py_threads | python_ids)
    opening = sum(cpu for tid, (_, cpu) in seen.items() if tid in python_ids - py_threads)
    by_name: dict[str, float] = {}
    for tid, (comm, cpu) in seen.items():
        if tid not in py_threads | python_ids:
            by_name[comm] = by_name.get(comm, 0.0) + cpu
    in_workers = sum(thread_cpu.values())
    us = {stage: 1e6 * sum(node_cpu.get(n, 0.0) for n in nodes) / frames for stage, nodes in case["stages"].items()}
    staged = {n for nodes in case["stages"].values() for n in nodes}
    # nodes no stage names (FlowLimiter): their own process time, apart from the scheduling
    us["other nodes"] = 1e6 * sum(v for k, v in node_cpu.items() if k not in staged) / frames
    # vpipe's threads outside every process call: each worker thread's CPU clock at its last call
    # (exact, every call measured by the wrapper above) minus the exclusive times of the calls
    us["scheduling"] = 1e6 * (in_workers - sum(node_cpu.values())) / frames
    us["native threads"] = 1e6 * native / frames
    return {"frames": frames, "engine": ran, "us_per_frame": us, "cpu_total_s": cpu_total, "rows_s": sum(us.values()) * frames / 1e6, "opening_threads_cpu_s": opening, "left_out": list(graph.left_out),
            "nodes_us_per_frame": {k: 1e6 * v / frames for k, v in node_cpu.items()},
            "native_threads_us_per_frame": {k: 1e6 * v / frames for k, v in by_name.items()}}


def engine_that_runs(graph, side: dict) -> str | None:
    """The engine of the graph's ``engine`` side packet as it will run (``auto`` resolved for the
    model the way the Inference calculator resolves it), None for a graph without one."""
    from calculators.inference.selection import pick_engine
    from models.catalog import resolve

    values = {**(graph.spec.side_packets or {}), **side}
    engine = values.get("engine")
    if engine is None:
        return None
    return pick_engine(Path(resolve(str(values["model"])))) if engine == "auto" else str(engine)


def gil_check(video: Path) -> dict:
    """PyAV decoding (one thread) alone, beside a thread busy in native code without the GIL
    (hashing: the same competition for the cores), beside a thread busy in Python (holding the
    GIL): the difference between the last two is what the GIL costs the decoder; then beside
    vpipe's face_detector subgraph kept busy (its workers' real mix of Python and native code),
    at the default switch interval and at ``SHORT_SWITCH_S``: whether vpipe's workers starve the
    decoder, and whether a shorter interval would give it back."""
    import hashlib
    import threading

    import av

    def decode(n_max: int = 300) -> tuple[float, float]:
        with av.open(str(video)) as c:
            s = c.streams.video[0]
            s.thread_type = "SLICE"
            s.codec_context.thread_count = 1
            t0, c0, n = time.perf_counter(), time.thread_time(), 0
            for f in c.decode(s):
                f.to_ndarray(format="yuv420p")
                n += 1
                if n >= n_max:
                    break
            return n / (time.perf_counter() - t0), 1e6 * (time.thread_time() - c0) / n

    def beside(work) -> tuple[float, float]:
        stop = threading.Event()
        t = threading.Thread(target=work, args=(stop,), daemon=True)
        t.start()
        try:
            return decode()
        finally:
            stop.set()
            t.join()

    def python_loop(stop) -> None:
        x = 0
        while not stop.is_set():
            x += 1

    def native_loop(stop) -> None:
        block = bytes(1 << 22)  # hashlib drops the GIL for large buffers
        while not stop.is_set():
            hashlib.sha256(block).digest()

    def detector_graph(stop) -> None:
        # vpipe's own workers busy beside the decoder: the face_detector subgraph (the ready
        # graph's detections path, on its `inference` thread) fed one decoded I420 frame over
        # and over, as fast as it takes them.
        from calculators.types import Image
        from models.catalog import resolve
        from pipeline import Graph

        with av.open(str(video)) as c:
            frame = Image(next(c.decode(video=0)).to_ndarray(format="yuv420p"), "I420")
        frame.data.flags.writeable = False
        model = str(resolve("zoo:blazeface-short"))
        graph = Graph.from_dict({
            "name": "gil_detector", "inputs": ["frames"], "outputs": ["faces"],
            "side_packets": {"model": model, "engine": "auto"},  # as `vpipe run` (LiteRT)
            "nodes": [{"subgraph": "face_detector", "name": "detector", "inputs": {"FRAMES": "frames"},
                       "outputs": {"DETECTIONS": "faces"}, "side_inputs": {"model": "model", "engine": "engine"}}]},
            search_paths=[ROOT / "graphs"])
        graph.observe("faces", lambda p: None)
        graph.start()
        try:
            t = 0
            ready.set()
            while not stop.is_set():
                graph.add_packet("frames", frame, t)  # blocks while the detector's queue is full
                t += 33_333
        finally:
            graph.close_input("frames")
            graph.wait()

    ready = threading.Event()

    def beside_detector(interval: float) -> tuple[float, float]:
        previous = sys.getswitchinterval()
        stop = threading.Event()
        ready.clear()
        t = threading.Thread(target=detector_graph, args=(stop,), daemon=True)
        t.start()
        try:
            if not ready.wait(60):
                raise SystemExit("gil_check: the detector graph did not start within 60 s")
            sys.setswitchinterval(interval)
            return decode()
        finally:
            sys.setswitchinterval(previous)
            stop.set()
            t.join()

    out = {}
    default = sys.getswitchinterval()
    for name, fn in (("alone", decode), ("native", lambda: beside(native_loop)), ("python", lambda: beside(python_loop)),
                     ("detector", lambda: beside_detector(default)),
                     ("detector_short_switch", lambda: beside_detector(SHORT_SWITCH_S))):
        fps, cpu = fn()
        out[f"{name}_fps"], out[f"{name}_cpu_us"] = fps, cpu
    out["switch_interval_s"] = default
    out["short_switch_interval_s"] = SHORT_SWITCH_S
    return out


SHORT_SWITCH_S = 0.0005  # the GIL check's second detector case: a 10x shorter switch interval


def report(args, graphs: list[str], whole: dict, stage: dict, gil: dict | None) -> dict:
    med = statistics.median
    summary: dict = {}
    if graphs:
        print(f"\nwhole process, {args.rounds} alternated rounds ({os.cpu_count()} CPUs; the machine may be shared): "
              "speed ratio = baseline time / vpipe time, median of the per-round ratios [min-max]")
        print(f"{'graph':28s} {'against':16s} {'whole':>18s} {'steady':>18s} {'cpu s vpipe':>12s} {'cpu s base':>11s}")
    for name in graphs:
        case = CASES[name]
        for base in case["loops"]:
            w = per_round(whole["runs"], name, "vpipe", base, False)
            st = per_round(whole["runs"], name, "vpipe", base, True)
            cv = med(x[1] for x in whole["runs"][name]["long"]["vpipe"])
            cb = med(x[1] for x in whole["runs"][name]["long"][base])
            summary[f"{name}_vs_{base}"] = {"whole": {"median": med(w), "min": min(w), "max": max(w)},
                                            "steady": {"median": med(st), "min": min(st), "max": max(st)},
                                            "cpu_s_vpipe": cv, "cpu_s_baseline": cb}
            print(f"{name:28s} {base:16s} {med(w):6.2f}x [{min(w):.2f}-{max(w):.2f}] "
                  f"{med(st):6.2f}x [{min(st):.2f}-{max(st):.2f}] {cv:12.2f} {cb:11.2f}")
        # The bound: where each hand-written loop stands against the Tasks loop in the same rounds
        # (the best the graph could reach against Tasks, were it as fast as that loop).
        if "tasks" in case["loops"]:
            for loop in (x for x in case["loops"] if x != "tasks"):
                w = per_round(whole["runs"], name, loop, "tasks", False)
                st = per_round(whole["runs"], name, loop, "tasks", True)
                summary[f"{name}_{loop}_vs_tasks"] = {"whole": {"median": med(w), "min": min(w), "max": max(w)},
                                                       "steady": {"median": med(st), "min": min(st), "max": max(st)}}
                print(f"{'  ' + loop:28s} {'tasks':16s} {med(w):6.2f}x [{min(w):.2f}-{max(w):.2f}] "
                      f"{med(st):6.2f}x [{min(st):.2f}-{max(st):.2f}]")
    for name in graphs:
        case = CASES[name]
        floor = whole["loop_stages"][name][case["floor"]]
        fl = {k: med(1e6 * r["cpu_s"].get(k, 0.0) / r["frames"] for r in floor) for k in case["stages"]}
        also = {a: {k: med(1e6 * r["cpu_s"].get(k, 0.0) / r["frames"] for r in whole["loop_stages"][name][a])
                    for k in case["stages"]} for a in case.get("also", [])}
        g = stage[name]["us_per_frame"]
        more = {e: stage[f"{name}@{e}"]["us_per_frame"] for e in case.get("engines", []) if f"{name}@{e}" in stage}
        ran = stage[name].get("engine")
        print(f"\n{name}: CPU microseconds per frame, graph in process ({stage[name]['frames']} frames, engine "
              f"{ran}{''.join(f', again on {e}' for e in more)}; left out: "
              f"{', '.join(stage[name]['left_out']) or 'none'}) beside the floor measured in {case['floor']} "
              f"(same rounds, median){''.join(f', and in {a}' for a in also)}")
        print(f"{'stage':16s} {'graph':>8s}" + "".join(f" {'graph ' + e:>15s}" for e in more) + f" {'floor':>8s}"
              + "".join(f" {a.replace('hand_blazeface_', ''):>14s}" for a in also))
        for k in (*case["stages"], "other nodes", "scheduling", "native threads"):
            row = (f"{k:16s} {g[k]:8.0f}" + "".join(f" {v[k]:15.0f}" for v in more.values()) + " "
                   + (f"{fl[k]:8.0f}" if k in fl else f"{'-':>8s}"))
            print(row + "".join(f" {v[k]:14.0f}" if k in v else f" {'-':>14s}" for v in also.values()))
        print(f"  opening threads (model compile beside the source's open): "
              f"{stage[name].get('opening_threads_cpu_s', 0.0):.2f} s CPU in all, not per frame")
        print(f"  the rows add up to {stage[name]['rows_s']:.2f} s of the run's {stage[name]['cpu_total_s']:.2f} s "
              "of process CPU (the rest: opening threads, the main thread, the benchmark's sampler)")
        print("  native threads by name: " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(stage[name]["native_threads_us_per_frame"].items(), key=lambda kv: -kv[1])))
        summary[f"{name}_stages"] = {"graph_engine": ran, "graph_us": g, "floor": case["floor"], "floor_us": fl,
                                     **{f"graph_{e}_us": v for e, v in more.items()},
                                     **{f"{a}_us": v for a, v in also.items()}}
    if gil:
        print(f"\nGIL check, PyAV decoding on one thread: alone {gil['alone_fps']:.0f} frames/s "
              f"({gil['alone_cpu_us']:.0f} us CPU/frame); beside a thread busy in native code "
              f"{gil['native_fps']:.0f} frames/s ({gil['native_cpu_us']:.0f} us); beside a thread busy in "
              f"Python {gil['python_fps']:.0f} frames/s ({gil['python_cpu_us']:.0f} us); beside vpipe's "
              f"face_detector subgraph busy on frames in memory {gil['detector_fps']:.0f} frames/s "
              f"({gil['detector_cpu_us']:.0f} us), the same with a switch interval of "
              f"{1e3 * gil['short_switch_interval_s']:g} ms instead of {1e3 * gil['switch_interval_s']:g} ms: "
              f"{gil['detector_short_switch_fps']:.0f} frames/s ({gil['detector_short_switch_cpu_us']:.0f} us)")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["whole", "in-process"], default="whole")
    ap.add_argument("--rounds", type=int, default=5, help="whole: alternated rounds")
    ap.add_argument("--graphs", default=",".join(CASES), help="whole: comma-separated ready graphs")
    ap.add_argument("--frames", type=int, default=1200, help="whole: frames of the face_detection clip")
    ap.add_argument("--frames-other", type=int, default=300, help="whole: frames for the other graphs")
    ap.add_argument("--short", type=int, default=200, help="whole: frames of the short clip (steady state)")
    ap.add_argument("--short-other", type=int, default=100, help="whole: short clip for the other graphs")
    ap.add_argument("--repeats", type=int, default=5, help="in-process: interleaved rounds")
    ap.add_argument("--loops", type=int, default=2, help="in-process: times the 120-frame clip is repeated")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.mode == "in-process":
        args.json = args.json or str(ROOT / "out" / "bench" / "face_detection_in_process.json")
        return in_process(args)
    args.graphs = [g for g in args.graphs.split(",") if g]
    unknown = set(args.graphs) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown graphs {sorted(unknown)}; choose from {', '.join(CASES)}")
    args.json = args.json or str(ROOT / "out" / "bench" / "face_detection.json")
    # One graph after the other, each with its rounds, its stage run and its rows printed and
    # written at once: a run cut short (a time limit, a shared machine: the other graphs cost
    # 20-100 ms of CPU a frame against ~5 for face_detection) keeps the rows of the graphs it did.
    whole: dict = {"runs": {}, "loop_stages": {}, "frames": {}}
    stage: dict = {}
    summary: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="vpipe_bench_stages_"))
    libraries = ["av", "mediapipe", "openvino", "ai-edge-litert", "onnxruntime", "opencv-contrib-python"]
    gil = None
    for name in args.graphs:
        w = whole_process(args, [name])
        for k in whole:
            whole[k].update(w[k])
        n = args.frames if name == "face_detection" else args.frames_other
        clip = ROOT / "out" / "bench" / f"carphone_720p_{n}.mp4"
        stage[name] = stage_cpu(name, clip, tmp / name)
        for engine in CASES[name].get("engines", []):
            if engine != stage[name]["engine"]:
                stage[f"{name}@{engine}"] = stage_cpu(name, clip, tmp / f"{name}_{engine}", engine)
        summary.update(report(args, [name], whole, stage, None))
        out = write_json(args.json, "face_detection", {"summary": summary, "whole": whole, "stages_in_process": stage,
                                                       "gil": gil, "rounds": args.rounds, "graphs_done": [k for k in stage if "@" not in k]},
                         libraries=libraries)
        print(f"written: {out} ({', '.join(stage)})", flush=True)
    if "face_detection" in args.graphs:
        gil = gil_check(ROOT / "out" / "bench" / f"carphone_720p_{args.frames}.mp4")
        report(args, [], whole, stage, gil)
        out = write_json(args.json, "face_detection", {"summary": summary, "whole": whole, "stages_in_process": stage,
                                                       "gil": gil, "rounds": args.rounds, "graphs_done": [k for k in stage if "@" not in k]},
                         libraries=libraries)
        print(f"written: {out}")


if __name__ == "__main__":
    main()
