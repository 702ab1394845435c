"""Landmark graphs' throughput on 1280x720 video against MediaPipe's own pipeline.

For each of face_mesh and pose (carphone scaled to 1280x720, made here) and hands (bigbuckbunny,
1280x720 already): the vpipe tracker subgraph (``graphs/<name>_tracker.yaml``, what the ready graph
runs, without the optional sinks) reading the video file with VideoSource (decode included, I420 for
face_mesh and pose, RGB for hands, as the ready graphs do), timed from the end of ``start()``, its
models loaded, to its end, against mediapipe 0.10.21's legacy solution (``mp.solutions``, the same
model files, in its own environment: tests/landmarks/mp_reference.py, its models loaded before the
timed loop) in two baselines:

- ``mediapipe_decode``, the issue's target: the plain loop a MediaPipe user writes, PyAV decoding
  each frame of the same file to RGB (``to_ndarray(format="rgb24")``, PyAV's default decoder
  threading) and ``process()`` on it, one after the other, timed from the first decode to the last
  result. Its decode and its models take turns; the graph's decode runs beside its models.
- ``mediapipe``: the same loop fed the frames already decoded into memory (only ``process()``
  timed), kept for comparison: it leaves decoding, 8-12 ms of CPU per frame of this clip, out of
  MediaPipe's side only.

Both loops are checked to get the same frames in every run: the same count and the same sha1 of
the first, middle and last frame's RGB (else the run stops, naming which); the largest
difference between their landmarks is printed (0 on the same frames and timestamps; JSON
``same_frames``). Rounds interleave the graph and both loops; each ratio is the median of per-round
ratios, with the spread; CPU per frame (user + sys of each process, every thread) is printed for all.
MediaPipe and LiteRT/OpenVINO use their default thread counts; the vpipe graph puts the detector and
the landmark model on one executor thread each, beside the decoder.

    python tests/bench/bench_landmarks.py [--repeats 3] [--graphs face_mesh pose hands] [--json out/bench/landmarks.json]
        [--graph-engines auto openvino] [--models] [--model-calls 100] [--engines litert openvino onnxruntime ncnn]
        [--loop]

``--loop`` also shows where the loop's frame goes: the tracker subgraph fed the clip's frames
already decoded (in memory, as MediaPipe's pre-decoded loop is fed), traced: its frames/s and CPU per frame
alone, each node's median µs per call, and the decoding alone (VideoSource, CPU per frame with
FFmpeg's threads), which the whole-graph run adds on the same two cores.

``--models`` also times each graph's models alone (detector and landmark model; for face_mesh
also the attention mesh), per engine and runtime thread count (1 and 2), through vpipe's engines:
LiteRT (XNNPACK, the runtime inside MediaPipe) and OpenVINO on the .tflite (f32, latency hint),
ONNX Runtime and ncnn on the project's checked conversions (vpipe convert): median wall ms and CPU
ms (user + sys of the process) per call on the graph's own tensors from the 720p clip (its crops
and its detector inputs), against MediaPipe's process() per frame of the same run. An engine that
cannot run a model says why in one line. Whether 1.5x is reachable at all follows from
these: the loop is sequential, so its frames/s is at most 1000 / (model ms + the rest of the
loop), on two cores shared with decoding.

Needs the MediaPipe environment: bash tests/bench/make_mp_env.sh (or VPIPE_MP_ENV).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _meta import interleaved, median, round_ratios, write_json  # noqa: E402

from tests.landmarks.conftest import decode_clip, make_720p  # noqa: E402

MP_ENV = Path(os.environ.get("VPIPE_MP_ENV", "/work/envs/mp01021"))
# Per graph, the models --models times, each with the graph stream whose tensors it is fed.
GRAPH_MODELS = {
    "face_mesh": [("zoo:blazeface-short", "detector/tensor"), ("zoo:face-landmark", "crops"),
                  ("zoo:face-landmark-with-attention", "crops")],
    "pose": [("zoo:pose-detection", "detector_input"), ("zoo:pose-landmark-full", "crops")],
    "hands": [("zoo:palm-detection-full", "detector_input"), ("zoo:hand-landmark-full", "crops")],
}
CASES = {  # graph: (sample, make 720p?, subgraph, side packets, MediaPipe solution, its options, decoded format)
    "face_mesh": ("carphone", True, "face_mesh_tracker", {}, "face_mesh", {}, "I420"),
    "pose": ("carphone", True, "pose_tracker", {}, "pose", {}, "I420"),
    "hands": ("bigbuckbunny", False, "hand_tracker", {}, "hands", {"max_num_hands": 2}, "RGB"),
}


def graph_runner(path: Path, subgraph: str, side: dict, format: str = "I420", engine: str = "auto"):
    from pipeline import Graph

    spec = {"name": f"bench_{subgraph}", "side_packets": {"engine": engine}, "nodes": [
        {"calculator": "VideoSource", "outputs": {"FRAMES": "frames"}, "options": {"uri": str(path), "format": format}},
        {"subgraph": subgraph, "name": "t", "inputs": {"FRAMES": "frames"}, "outputs": {"LANDMARKS": "landmarks"},
         "side_inputs": {"engine": "engine"}},
    ]}

    def run() -> tuple[int, float, float]:
        """(landmark packets, seconds from the end of start() -- models loaded -- to the last one,
        process CPU seconds in that time: every thread, FFmpeg's included)."""
        g = Graph.from_dict(spec, search_paths=[ROOT / "graphs"])
        n = []
        g.observe("landmarks", lambda p: n.append(len(p.value)))
        g.start(side)
        t0, c0 = time.perf_counter(), time.process_time()
        g.wait(600)
        return len(n), time.perf_counter() - t0, time.process_time() - c0

    return run


def mp_runner(frames: Path, stamps: Path, solution: str, options: dict, out: Path, decode: Path | None = None,
              checksum_frames: list[int] = (), record: list | None = None):
    """MediaPipe's solution on the clip in its own environment, one subprocess per call: fed the
    pre-decoded ``frames`` (.npy), or with ``decode`` (the video file) in the plain loop that decodes
    each frame with PyAV and processes it. Returns the loop's seconds; appends each run's JSON
    (frames, seconds, cpu_s, checksums, decoder) to ``record``."""
    py = MP_ENV / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"no MediaPipe environment at {MP_ENV}: bash tests/bench/make_mp_env.sh")

    def run() -> float:
        src, how = (str(decode), ["--decode"]) if decode else (str(frames), ["--timestamps", str(stamps)])
        cmd = [str(py), str(ROOT / "tests/landmarks/mp_reference.py"), solution, src, str(out), *how,
               "--options", json.dumps(options), "--checksum-frames", *map(str, checksum_frames)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        rec = json.loads(out.read_text())
        if record is not None:
            record.append(rec)
        return rec["seconds"]

    return run


def same_frames(name: str, clip, checksum_frames: list[int], predecoded: list[dict], plain: list[dict]) -> dict:
    """The two MediaPipe loops were fed the same frames, in every run (``predecoded``, ``plain``: each
    run's record): the same count and the same bytes on the checked frames (sha1), else it raises
    naming which; and the largest difference between the two loops' landmarks on their first runs
    (0 when fed the same frames and timestamps: MediaPipe is deterministic on them)."""
    import hashlib

    frames = np.load(clip.frames, mmap_mode="r")
    want = {str(i): hashlib.sha1(np.ascontiguousarray(frames[i]).tobytes()).hexdigest() for i in checksum_frames}
    for label, rec in [("pre-decoded loop", r) for r in predecoded] + [("plain loop", r) for r in plain]:
        if len(rec["frames"]) != clip.count:
            raise SystemExit(f"{name}: MediaPipe's {label} gave {len(rec['frames'])} results for {clip.count} frames")
        if rec["checksums"] != want:
            raise SystemExit(f"{name}: MediaPipe's {label} was fed other frames: sha1 {rec['checksums']} != {want}")
    worst = 0.0
    for a, b in zip(predecoded[0]["frames"], plain[0]["frames"]):
        if len(a) != len(b):
            raise SystemExit(f"{name}: the two MediaPipe loops found different object counts on a frame")
        for oa, ob in zip(a, b):
            worst = max(worst, float(np.max(np.abs(np.asarray(oa["landmarks"]) - np.asarray(ob["landmarks"])))))
    return {"frames": clip.count, "checksum_frames": checksum_frames, "sha1_equal": True,
            "landmarks_max_abs_diff": worst, "plain_loop_decoder": plain[0].get("decoder")}


def _tensors(video: Path, subgraph: str, fmt: str, streams: list[str], count: int = 8) -> dict[str, list]:
    """Per stream of the graph (``crops``: what it feeds its landmark model; ``detector_input`` or
    ``detector/tensor``: its detector's), up to ``count`` of the tensors it carries, (1, H, W, 3) float32."""
    from pipeline import Graph

    spec = {"name": "bench_crops", "side_packets": {}, "nodes": [
        {"calculator": "VideoSource", "outputs": {"FRAMES": "frames"}, "options": {"uri": str(video), "format": fmt}},
        {"subgraph": subgraph, "name": "t", "inputs": {"FRAMES": "frames"}, "outputs": {"LANDMARKS": "landmarks"}}]}
    g = Graph.from_dict(spec, search_paths=[ROOT / "graphs"])
    got: dict[str, list] = {s: [] for s in streams}
    for s in streams:
        g.observe(f"t/{s}", lambda p, s=s: got[s].append(np.ascontiguousarray(p.value.data[:1])))
    g.run()
    return {s: v[::max(1, len(v) // count)][:count] for s, v in got.items()}


ENGINES = ("litert", "openvino", "onnxruntime", "ncnn")


def loop_rows(video: Path, subgraph: str, fmt: str, rounds: int) -> dict:
    """Where the tracking loop's frame goes: the tracker subgraph fed the clip's frames already
    decoded (VideoSource's own Images, in memory), traced, ``rounds`` times: frames/s and process
    CPU per frame of the loop alone, and per node the median µs of its calls (the frames the
    node ran on); beside it the decoding alone (VideoSource to an observer: process CPU per frame,
    decoder threads included), which the whole-graph figures add to the loop on the same two cores."""
    from pipeline import Graph

    def source_graph():
        return Graph.from_dict({"name": "bench_decode", "side_packets": {}, "nodes": [
            {"calculator": "VideoSource", "outputs": {"FRAMES": "frames"},
             "options": {"uri": str(video), "format": fmt}}]})

    frames, decode_cpu = [], []
    for r in range(rounds):
        g = source_graph()
        got = []
        g.observe("frames", lambda p: got.append((p.timestamp, p.value)))
        c0 = time.process_time()
        g.run()
        decode_cpu.append((time.process_time() - c0) / len(got))
        frames = got
    spec = {"name": f"bench_loop_{subgraph}", "inputs": ["frames"], "side_packets": {}, "nodes": [
        {"subgraph": subgraph, "name": "t", "inputs": {"FRAMES": "frames"}, "outputs": {"LANDMARKS": "landmarks"}}]}
    per: dict[str, list[float]] = {}
    fps, cpu = [], []
    for r in range(rounds):
        g = Graph.from_dict(spec, search_paths=[ROOT / "graphs"])
        g.observe("landmarks", lambda p: None)
        g.start({}, trace=True)
        t0, c0 = time.perf_counter(), time.process_time()
        for ts, image in frames:
            g.add_packet("frames", image, ts)
        g.close_all_inputs()
        g.wait(600)
        fps.append(len(frames) / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / len(frames))
        for node, _thread, _ts, start, end in g.trace_events():
            per.setdefault(node.removeprefix("t/"), []).append((end - start) / 1e3)
    nodes = {k: {"calls_per_round": len(v) // rounds, "median_us": median(v)}
             for k, v in sorted(per.items(), key=lambda kv: -sum(kv[1]))}
    return {"loop_fps": median(fps), "loop_cpu_ms": 1e3 * median(cpu), "decode_cpu_ms": 1e3 * median(decode_cpu),
            "nodes": nodes}


def model_rows(model: str, crops: list, calls: int, engines=ENGINES) -> list[dict]:
    """One model alone per engine and thread count, through vpipe's engines: median wall ms and
    CPU ms (user + sys of the process) per call. An engine that cannot run the model is a row
    with its one-line reason."""
    from apps.engine_bench import CONVERT_TO, _adapt_feed
    from calculators.inference import selection
    from calculators.inference.engine import EngineOptions, InferenceError
    from models.catalog import resolve

    path = Path(resolve(model))
    rows = []

    def timed(label: str, threads: int, infer) -> None:
        for x in crops[:4]:
            infer(x)  # warm-up
        walls = []
        c0 = time.process_time()
        for i in range(calls):
            t0 = time.perf_counter()
            infer(crops[i % len(crops)])
            walls.append(time.perf_counter() - t0)
        cpu = (time.process_time() - c0) / calls
        rows.append({"engine": label, "threads": threads, "wall_ms": 1e3 * median(walls), "cpu_ms": 1e3 * cpu})

    for engine in engines:
        if not selection.is_installed(engine):
            continue
        try:
            eng_path, shapes = path, []
            if engine not in selection._FORMATS.get(path.suffix, ()):
                from models.convert import convert

                conv = convert(model, CONVERT_TO[engine])
                eng_path, shapes = Path(conv.path), list(conv.input_shapes.values())
            for threads in (1, 2):
                eng = selection.engine_class(engine)(eng_path, EngineOptions(threads=threads))
                try:
                    wants = [sp.shape if sp.shape is not None else (shapes[i] if i < len(shapes) else None)
                             for i, sp in enumerate(eng.inputs)]
                    own = {id(x): _adapt_feed([x], wants) for x in crops}
                    timed(engine + ("" if eng_path == path else " (converted)"), threads,
                          lambda x: eng.infer(own[id(x)]))
                finally:
                    eng.close()
        except Exception as e:  # noqa: BLE001 - a model an engine cannot run is a result, said in one line
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not isinstance(e, InferenceError):
                why = f"{type(e).__name__}: {why}"
            rows.append({"engine": engine, "threads": None, "error": why[:200]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--graphs", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--frames", type=int, default=120, help="frames of the clips made from carphone")
    ap.add_argument("--json", default="out/bench/landmarks.json")
    ap.add_argument("--models", action="store_true", help="also time each landmark model alone per engine and threads")
    ap.add_argument("--model-calls", type=int, default=100, help="timed calls per engine and thread count")
    ap.add_argument("--graph-engines", nargs="+", default=["auto"], metavar="ENGINE",
                    help="engine side packet of each vpipe variant timed against MediaPipe, interleaved (auto: as shipped)")
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES), help="engines --models times")
    ap.add_argument("--loop", action="store_true", help="also trace the tracking loop alone on decoded frames, "
                                                        "and time the decoding alone")
    args = ap.parse_args()
    import calculators  # noqa: F401  (registers the calculators)
    from models.catalog import resolve

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        for name in args.graphs:
            sample, scale, subgraph, side, solution, mp_opts, fmt = CASES[name]
            src = resolve(f"sample:{sample}")
            video = make_720p(src, tmpd / f"{sample}_720p.mp4", args.frames) if scale else src
            clip = decode_clip(video, tmpd, max_frames=args.frames if scale else None)  # a made clip has --frames
            checks = sorted({0, clip.count // 2, clip.count - 1})
            mp_recs: dict[str, list] = {"mediapipe": [], "mediapipe_decode": []}
            # The issue's baseline: MediaPipe's plain loop, PyAV decoding each frame of the same file
            # then process(); and the loop fed frames decoded beforehand (only process() timed), kept.
            mp = mp_runner(clip.frames, clip.timestamps, solution, mp_opts, tmpd / f"mp_{name}.json",
                           checksum_frames=checks, record=mp_recs["mediapipe"])
            mp_decode = mp_runner(clip.frames, clip.timestamps, solution, mp_opts, tmpd / f"mpd_{name}.json",
                                  decode=video, checksum_frames=checks, record=mp_recs["mediapipe_decode"])

            cpu: dict[str, list] = {}

            def vpipe_case(engine):
                graph = graph_runner(video, subgraph, side, fmt, engine)

                def run():
                    n, seconds, cpu_s = graph()
                    assert n == clip.count, f"{name}: {n} landmark packets for {clip.count} frames ({engine})"
                    cpu.setdefault(engine, []).append(cpu_s / n)
                    return seconds

                return run

            # "vpipe": the graph as it ships (engine auto); "vpipe:ENGINE" each other engine asked for.
            labels = {e: "vpipe" if e == "auto" else f"vpipe:{e}" for e in args.graph_engines}
            runs = interleaved({**{labels[e]: vpipe_case(e) for e in args.graph_engines}, "mediapipe_decode": mp_decode,
                                "mediapipe": mp}, args.repeats, measure=lambda fn: fn())
            check = same_frames(name, clip, checks, mp_recs["mediapipe"], mp_recs["mediapipe_decode"])
            fps = {k: [clip.count / s for s in v] for k, v in runs.items()}
            inv = {k: [1 / x for x in v] for k, v in fps.items()}
            ratios = {lab: round_ratios(inv, "mediapipe_decode", lab) for lab in labels.values()}
            ratios_pre = {lab: round_ratios(inv, "mediapipe", lab) for lab in labels.values()}
            first, first_pre = ratios[labels[args.graph_engines[0]]], ratios_pre[labels[args.graph_engines[0]]]
            mp_cpu = {k: 1e3 * median([r["cpu_s"] / len(r["frames"]) for r in v[1:] or v]) for k, v in mp_recs.items()}
            results[name] = {"clip": f"{video.name} {clip.size[0]}x{clip.size[1]}", "frames": clip.count,
                             "fps": {k: median(v) for k, v in fps.items()}, "fps_runs": fps,
                             "baseline": "mediapipe_decode: MediaPipe's plain loop, PyAV decoding each frame then "
                                         "process() (the issue's target); mediapipe: the loop on frames decoded "
                                         "beforehand, only process() timed",
                             "speedup_median": first["median"], "speedup_min": first["min"],
                             "speedup_max": first["max"], "speedups": ratios,
                             "speedup_predecoded_median": first_pre["median"], "speedup_predecoded_min": first_pre["min"],
                             "speedup_predecoded_max": first_pre["max"], "speedups_predecoded": ratios_pre,
                             "vpipe_cpu_ms_per_frame": {labels[e]: 1e3 * median(v[1:] or v) for e, v in cpu.items()},
                             "mediapipe_cpu_ms_per_frame": mp_cpu, "same_frames": check}
            r = results[name]
            print(f"{name:10s} {r['clip']:28s} mediapipe plain loop (PyAV decode + process) {r['fps']['mediapipe_decode']:6.1f} fps, "
                  f"CPU {mp_cpu['mediapipe_decode']:.2f} ms a frame; pre-decoded {r['fps']['mediapipe']:6.1f} fps, "
                  f"CPU {mp_cpu['mediapipe']:.2f} ms; same frames: {check['frames']}, sha1 of {len(checks)} equal, "
                  f"landmarks max diff {check['landmarks_max_abs_diff']:.1e}; decoder {check['plain_loop_decoder']}")
            for e, lab in labels.items():
                ratio, pre = ratios[lab], ratios_pre[lab]
                print(f"{name:10s} {lab:16s} {r['fps'][lab]:6.1f} fps  speedup x{ratio['median']:.2f} "
                      f"({ratio['min']:.2f}..{ratio['max']:.2f}) vs the plain loop, x{pre['median']:.2f} "
                      f"({pre['min']:.2f}..{pre['max']:.2f}) vs pre-decoded;  vpipe CPU "
                      f"{r['vpipe_cpu_ms_per_frame'][lab]:.2f} ms a frame (all threads)", flush=True)
            if args.loop:
                r["loop"] = loop = loop_rows(video, subgraph, fmt, args.repeats)
                print(f"  the loop alone on decoded frames: {loop['loop_fps']:.1f} fps, {loop['loop_cpu_ms']:.2f} ms CPU "
                      f"per frame; decoding alone (VideoSource, {fmt}): {loop['decode_cpu_ms']:.2f} ms CPU per frame")
                for node, row in loop["nodes"].items():
                    print(f"    {node:36s} {row['calls_per_round']:4d} calls  {row['median_us']:8.1f} us median", flush=True)
            if args.models:
                streams = sorted({st for _, st in GRAPH_MODELS[name]})
                feeds = _tensors(video, subgraph, fmt, streams)
                r["models"] = {"mediapipe_process_ms": 1e3 / r["fps"]["mediapipe"], "per_model": {}}
                print(f"  models alone (MediaPipe's whole process() per frame: {1e3 / r['fps']['mediapipe']:.2f} ms)")
                for model, stream in GRAPH_MODELS[name]:
                    rows = model_rows(model, feeds[stream], args.model_calls, args.engines)
                    r["models"]["per_model"][model] = {"stream": stream, "tensors": len(feeds[stream]), "rows": rows}
                    print(f"  {model} ({len(feeds[stream])} tensors of {stream})")
                    for row in rows:
                        if "error" in row:
                            print(f"    {row['engine']:24s} cannot run it: {row['error']}")
                            continue
                        print(f"    {row['engine']:24s} threads {row['threads']}  {row['wall_ms']:6.2f} ms wall  "
                              f"{row['cpu_ms']:6.2f} ms CPU per call", flush=True)
    write_json(args.json, "landmarks", {"repeats": args.repeats, "graphs": results}, libraries=["openvino", "av", "onnxruntime", "ncnn", "ai-edge-litert"])
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
