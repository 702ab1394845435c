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
        [--models] [--model-calls 100] [--loop]

``--loop`` also shows where the loop's frame goes: the tracker subgraph fed the clip's frames
already decoded (in memory, as MediaPipe's loop is fed), traced: its frames/s and CPU per frame
alone, each node's median µs per call, and the decoding alone (VideoSource, CPU per frame with
FFmpeg's threads), which the whole-graph run adds on the same two cores.

``--models`` also times each graph's landmark model alone, per engine and runtime thread count
(1 and 2): OpenVINO on the .tflite (f32, latency hint), ONNX Runtime and ncnn on the project's
checked conversions (vpipe convert), and the TFLite interpreter with XNNPACK (ai-edge-litert,
the runtime inside MediaPipe) when installed: median wall ms and CPU ms (user + sys of the
process) per call on real 720p crops (the graph's own, taken from its rects), against
MediaPipe's process() per frame of the same run. Whether 1.5x is reachable at all follows from
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
LANDMARK_MODELS = {"face_mesh": ("zoo:face-landmark", (192, 192)), "pose": ("zoo:pose-landmark-full", (256, 256)),
                   "hands": ("zoo:hand-landmark-full", (224, 224))}
CASES = {  # graph: (sample, make 720p?, subgraph, side packets, MediaPipe solution, its options, decoded format)
    "face_mesh": ("carphone", True, "face_mesh_tracker", {}, "face_mesh", {}, "I420"),
    "pose": ("carphone", True, "pose_tracker", {}, "pose", {}, "I420"),
    "hands": ("bigbuckbunny", False, "hand_tracker", {}, "hands", {"max_num_hands": 2}, "RGB"),
}


def graph_runner(path: Path, subgraph: str, side: dict, format: str = "I420"):
    from pipeline import Graph

    spec = {"name": f"bench_{subgraph}", "side_packets": {}, "nodes": [
        {"calculator": "VideoSource", "outputs": {"FRAMES": "frames"}, "options": {"uri": str(path), "format": format}},
        {"subgraph": subgraph, "name": "t", "inputs": {"FRAMES": "frames"}, "outputs": {"LANDMARKS": "landmarks"}},
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


def _crops(video: Path, subgraph: str, fmt: str, size: tuple[int, int], count: int = 8) -> list:
    """``count`` crops the graph itself feeds its landmark model (its stream ``crops``), (1, H, W, 3) float32."""
    from pipeline import Graph

    spec = {"name": "bench_crops", "side_packets": {}, "nodes": [
        {"calculator": "VideoSource", "outputs": {"FRAMES": "frames"}, "options": {"uri": str(video), "format": fmt}},
        {"subgraph": subgraph, "name": "t", "inputs": {"FRAMES": "frames"}, "outputs": {"LANDMARKS": "landmarks"}}]}
    g = Graph.from_dict(spec, search_paths=[ROOT / "graphs"])
    got = []
    g.observe("t/crops", lambda p: got.append(np.ascontiguousarray(p.value.data[:1])))
    g.run()
    step = max(1, len(got) // count)
    return got[::step][:count]


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


def model_rows(model: str, crops: list, calls: int) -> list[dict]:
    """The bare landmark model per engine and thread count: median wall ms and CPU ms per call."""
    from apps.engine_bench import CONVERT_TO, _adapt_feed
    from calculators.inference import selection
    from calculators.inference.engine import EngineOptions
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

    for engine in ("openvino", "onnxruntime", "ncnn"):
        if not selection.is_installed(engine):
            continue
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
                timed(engine + ("" if eng_path == path else " (converted)"), threads, lambda x: eng.infer(own[id(x)]))
            finally:
                eng.close()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return rows
    for threads in (1, 2):
        it = Interpreter(model_path=str(path), num_threads=threads)  # XNNPACK, as inside MediaPipe
        it.allocate_tensors()
        inp, outs = it.get_input_details()[0]["index"], [o["index"] for o in it.get_output_details()]

        def litert(x, it=it, inp=inp, outs=outs):
            it.set_tensor(inp, x)
            it.invoke()
            return [it.get_tensor(o) for o in outs]

        timed("tflite (XNNPACK, ai-edge-litert)", threads, litert)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--graphs", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--frames", type=int, default=120, help="frames of the clips made from carphone")
    ap.add_argument("--json", default="out/bench/landmarks.json")
    ap.add_argument("--models", action="store_true", help="also time each landmark model alone per engine and threads")
    ap.add_argument("--model-calls", type=int, default=100, help="timed calls per engine and thread count")
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
            graph = graph_runner(video, subgraph, side, fmt)
            mp = mp_runner(clip.frames, clip.timestamps, solution, mp_opts, tmpd / f"mp_{name}.json")

            cpu = []

            def vpipe_case():
                n, seconds, cpu_s = graph()
                assert n == clip.count, f"{name}: {n} landmark packets for {clip.count} frames"
                cpu.append(cpu_s / n)
                return seconds

            runs = interleaved({"vpipe": vpipe_case, "mediapipe": mp}, args.repeats,
                               measure=lambda fn: fn())
            fps = {k: [clip.count / s for s in v] for k, v in runs.items()}
            ratio = round_ratios({k: [1 / x for x in v] for k, v in fps.items()}, "mediapipe", "vpipe")
            results[name] = {"clip": f"{video.name} {clip.size[0]}x{clip.size[1]}", "frames": clip.count,
                             "fps": {k: median(v) for k, v in fps.items()}, "fps_runs": fps,
                             "speedup_median": ratio["median"], "speedup_min": ratio["min"],
                             "speedup_max": ratio["max"], "vpipe_cpu_ms_per_frame": 1e3 * median(cpu[1:] or cpu)}
            r = results[name]
            print(f"{name:10s} {r['clip']:28s} vpipe {r['fps']['vpipe']:6.1f} fps  mediapipe "
                  f"{r['fps']['mediapipe']:6.1f} fps  speedup x{r['speedup_median']:.2f} "
                  f"({r['speedup_min']:.2f}..{r['speedup_max']:.2f})  vpipe CPU {r['vpipe_cpu_ms_per_frame']:.2f} ms "
                  "a frame (all threads)", flush=True)
            if args.loop:
                r["loop"] = loop = loop_rows(video, subgraph, fmt, args.repeats)
                print(f"  the loop alone on decoded frames: {loop['loop_fps']:.1f} fps, {loop['loop_cpu_ms']:.2f} ms CPU "
                      f"per frame; decoding alone (VideoSource, {fmt}): {loop['decode_cpu_ms']:.2f} ms CPU per frame")
                for node, row in loop["nodes"].items():
                    print(f"    {node:36s} {row['calls_per_round']:4d} calls  {row['median_us']:8.1f} us median", flush=True)
            if args.models:
                model, size = LANDMARK_MODELS[name]
                rows = model_rows(model, _crops(video, subgraph, fmt, size), args.model_calls)
                r["models"] = {"model": model, "mediapipe_process_ms": 1e3 / r["fps"]["mediapipe"], "rows": rows}
                print(f"  {model} alone (MediaPipe's whole process() per frame: {1e3 / r['fps']['mediapipe']:.2f} ms)")
                for row in rows:
                    print(f"    {row['engine']:34s} threads {row['threads']}  {row['wall_ms']:6.2f} ms wall  "
                          f"{row['cpu_ms']:6.2f} ms CPU per call", flush=True)
    write_json(args.json, "landmarks", {"repeats": args.repeats, "graphs": results}, libraries=["openvino", "av", "onnxruntime", "ncnn", "ai-edge-litert"])
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
