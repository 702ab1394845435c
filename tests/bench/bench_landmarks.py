"""Landmark graphs' throughput on 1280x720 video against MediaPipe's own pipeline.

For each of face_mesh and pose (carphone scaled to 1280x720, made here) and hands (bigbuckbunny,
1280x720 already): the vpipe tracker subgraph (``graphs/<name>_tracker.yaml``, what the ready graph
runs, without the optional sinks) reading the video file with VideoSource (decode included, I420 for
face_mesh and pose, RGB for hands, as the ready graphs do) against mediapipe 0.10.21's legacy solution (``mp.solutions``, the same
model files) fed the same frames already decoded to RGB in memory, in a plain loop (only its
``process()`` calls are timed, in its own environment; the graph is timed from the end of
``start()``, its models loaded, to its end, decoding included: tests/landmarks/mp_reference.py). Rounds
interleave the two; the ratio is the median of per-round ratios, with the spread. MediaPipe and
OpenVINO both use their default thread counts; the vpipe graph puts the detector and the landmark
model on one executor thread each, beside the decoder.

    python tests/bench/bench_landmarks.py [--repeats 3] [--graphs face_mesh pose hands] [--json out/bench/landmarks.json]
        [--graph-engines auto openvino] [--models] [--model-calls 100] [--engines litert openvino onnxruntime ncnn]
        [--loop]

``--loop`` also shows where the loop's frame goes: the tracker subgraph fed the clip's frames
already decoded (in memory, as MediaPipe's loop is fed), traced: its frames/s and CPU per frame
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


def mp_runner(frames: Path, stamps: Path, solution: str, options: dict, out: Path):
    py = MP_ENV / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"no MediaPipe environment at {MP_ENV}: bash tests/bench/make_mp_env.sh")

    def run() -> float:
        cmd = [str(py), str(ROOT / "tests/landmarks/mp_reference.py"), solution, str(frames), str(out),
               "--timestamps", str(stamps), "--options", json.dumps(options)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(out.read_text())["seconds"]

    return run


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
            mp = mp_runner(clip.frames, clip.timestamps, solution, mp_opts, tmpd / f"mp_{name}.json")

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
            runs = interleaved({**{labels[e]: vpipe_case(e) for e in args.graph_engines}, "mediapipe": mp},
                               args.repeats, measure=lambda fn: fn())
            fps = {k: [clip.count / s for s in v] for k, v in runs.items()}
            ratios = {lab: round_ratios({k: [1 / x for x in v] for k, v in fps.items()}, "mediapipe", lab)
                      for lab in labels.values()}
            first = ratios[labels[args.graph_engines[0]]]
            results[name] = {"clip": f"{video.name} {clip.size[0]}x{clip.size[1]}", "frames": clip.count,
                             "fps": {k: median(v) for k, v in fps.items()}, "fps_runs": fps,
                             "speedup_median": first["median"], "speedup_min": first["min"],
                             "speedup_max": first["max"], "speedups": ratios,
                             "vpipe_cpu_ms_per_frame": {labels[e]: 1e3 * median(v[1:] or v) for e, v in cpu.items()}}
            r = results[name]
            for e, lab in labels.items():
                ratio = ratios[lab]
                print(f"{name:10s} {r['clip']:28s} {lab:16s} {r['fps'][lab]:6.1f} fps  mediapipe "
                      f"{r['fps']['mediapipe']:6.1f} fps  speedup x{ratio['median']:.2f} "
                      f"({ratio['min']:.2f}..{ratio['max']:.2f})  vpipe CPU {r['vpipe_cpu_ms_per_frame'][lab]:.2f} ms "
                      "a frame (all threads)", flush=True)
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
