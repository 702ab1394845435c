"""The landmark graphs as the user runs them, a whole process each, against MediaPipe's plain loop.

For face_mesh, pose (carphone scaled to 1280x720 and looped) and hands (bigbuckbunny, 1280x720,
looped): ``vpipe run GRAPH --set source=CLIP --set landmarks=OUT.jsonl -q`` (the ready graph, its
JSON lines written: what a user runs to get the landmarks of a video file), against
tests/landmarks/mp_reference.py's plain loop in MediaPipe 0.10.21's environment (``--decode``:
PyAV decodes each frame to RGB, ``process()`` on it, the landmarks written as JSON at the end; the
same model files), each timed from the process's start to its end: interpreter start, imports,
model loading and compiling, decoding, the models, the output.

Each clip is made at two lengths (``--frames`` and ``--short``); the ratio of whole processes is
what the user waits for, and the ratio of (long - short) is the steady state, with the process's
start and the model loading taken out. Rounds alternate which side runs first. Both sides are
checked to have written one result per frame. The figures: median of per-round ratios (the load
of a round hits both), with the spread; the CPU time of each process (user + sys, all threads).

    python tests/bench/bench_landmarks_whole.py [--rounds 3] [--graphs face_mesh pose hands]
        [--frames 600] [--short 120] [--json out/bench/landmarks_whole.json]

Needs the MediaPipe environment: bash tests/bench/make_mp_env.sh (or VPIPE_MP_ENV).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _meta import whole_process, write_json  # noqa: E402

MP_ENV = Path(os.environ.get("VPIPE_MP_ENV", "/work/envs/mp01021"))
SIZE = (1280, 720)
CASES = {  # graph: (catalog sample, MediaPipe solution, its options, the JSON lines' key)
    "face_mesh": ("carphone", "face_mesh", {}, "faces"),
    "pose": ("carphone", "pose", {}, "poses"),
    "hands": ("bigbuckbunny", "hands", {"max_num_hands": 2}, "hands"),
}


def make_clip(src: Path, dst: Path, frames: int) -> int:
    """``src`` at 1280x720 (scaled when it is not), looped to ``frames`` frames, H.264 at its own
    rate (made once, then reused). Returns the frame count."""
    import av
    import cv2

    if dst.exists():
        with av.open(str(dst)) as c:
            return c.streams.video[0].frames
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or 30
        rgb = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    rgb = [x if x.shape[1::-1] == SIZE else cv2.resize(x, SIZE, interpolation=cv2.INTER_CUBIC) for x in rgb]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        o = out.add_stream("libx264", rate=rate)
        o.width, o.height, o.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        o.options = {"crf": "12", "preset": "veryfast"}
        for i in range(frames):
            for p in o.encode(av.VideoFrame.from_ndarray(rgb[i % len(rgb)], format="rgb24")):
                out.mux(p)
        for p in o.encode():
            out.mux(p)
    tmp.replace(dst)
    return frames


def results_written(side: str, path: Path, key: str) -> int:
    """How many frames' results the side wrote (vpipe: JSON lines with ``key``; MediaPipe: its JSON)."""
    if side == "vpipe":
        lines = path.read_text().splitlines()
        assert all(key in json.loads(x) for x in lines), f"{path}: a line without {key!r}"
        return len(lines)
    return len(json.loads(path.read_text())["frames"])


def per_round(runs: dict, num: str, den: str, steady: bool) -> list[float]:
    """den's time over num's, in each round (a speed ratio); ``steady``: long minus short."""
    out = []
    for i in range(len(runs["long"][num])):
        a = runs["long"][num][i][0] - (runs["short"][num][i][0] if steady else 0.0)
        b = runs["long"][den][i][0] - (runs["short"][den][i][0] if steady else 0.0)
        out.append(b / a if a > 0 else float("nan"))
    return out


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--graphs", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--frames", type=int, default=600, help="frames of the long clip")
    ap.add_argument("--short", type=int, default=120, help="frames of the short clip")
    ap.add_argument("--json", default="out/bench/landmarks_whole.json")
    args = ap.parse_args()
    if not args.frames > args.short > 0:
        raise SystemExit(f"--frames ({args.frames}) must exceed --short ({args.short}), both above 0")
    mp_py = MP_ENV / "bin" / "python"
    if not mp_py.exists():
        raise SystemExit(f"no MediaPipe environment at {MP_ENV}: bash tests/bench/make_mp_env.sh")
    from models.catalog import resolve

    bench = ROOT / "out" / "bench"
    tmp = Path(tempfile.mkdtemp(prefix="vpipe_bench_landmarks_whole_"))
    results: dict = {}
    for name in args.graphs:
        sample, solution, mp_opts, key = CASES[name]
        src = resolve(f"sample:{sample}")
        clips = {length: bench / f"{sample}_720p_loop_{n}.mp4" for length, n in (("long", args.frames),
                                                                                   ("short", args.short))}
        frames = {length: make_clip(src, clips[length], n) for length, n in (("long", args.frames),
                                                                              ("short", args.short))}
        runs: dict = {"long": {"vpipe": [], "mediapipe": []}, "short": {"vpipe": [], "mediapipe": []}}
        for rnd in range(args.rounds):
            for length in ("long", "short"):
                out = {"vpipe": tmp / f"{name}_{length}.jsonl", "mediapipe": tmp / f"{name}_{length}_mp.json"}
                who = {
                    "vpipe": [sys.executable, "-m", "apps.cli", "run", name, "--set", f"source={clips[length]}",
                              "--set", f"landmarks={out['vpipe']}", "-q"],
                    "mediapipe": [str(mp_py), str(ROOT / "tests/landmarks/mp_reference.py"), solution,
                                  str(clips[length]), str(out["mediapipe"]), "--decode", "--options",
                                  json.dumps(mp_opts)],
                }
                for side in (list(who) if rnd % 2 == 0 else list(reversed(who))):
                    out[side].unlink(missing_ok=True)
                    wall, cpu = whole_process(who[side], ROOT)
                    got = results_written(side, out[side], key)
                    if got != frames[length]:
                        raise SystemExit(f"{name} {side}: {got} results for the {frames[length]} frames of {clips[length]}")
                    runs[length][side].append((wall, cpu))
                    print(f"round {rnd + 1} {name:9s} {length:5s} {side:9s} wall {wall:6.2f} s  cpu {cpu:6.2f} s",
                          flush=True)
        whole = spread(per_round(runs, "vpipe", "mediapipe", False))
        steady = spread(per_round(runs, "vpipe", "mediapipe", True))
        med = {length: {side: {"wall_s": statistics.median(w for w, _ in v), "cpu_s": statistics.median(c for _, c in v)}
                        for side, v in runs[length].items()} for length in runs}
        results[name] = {"frames": frames, "clips": {k: str(v) for k, v in clips.items()}, "runs": runs,
                         "median": med, "whole_speedup": whole, "steady_speedup": steady,
                         "baseline": "MediaPipe 0.10.21's plain loop (PyAV decode to RGB + process()), a whole "
                                     "process: tests/landmarks/mp_reference.py --decode"}
    print(f"\nwhole process against MediaPipe's plain loop, median of {args.rounds} alternated rounds "
          f"(speed ratio: MediaPipe's time / vpipe's; steady: long - short)")
    print(f"{'graph':10s} {'frames':>11s} {'vpipe s':>9s} {'mp s':>8s} {'whole':>20s} {'steady':>20s} "
          f"{'cpu s vpipe':>12s} {'cpu s mp':>9s}")
    for name, r in results.items():
        m, w, s = r["median"]["long"], r["whole_speedup"], r["steady_speedup"]
        print(f"{name:10s} {r['frames']['long']:>5d}/{r['frames']['short']:<5d} {m['vpipe']['wall_s']:9.2f} "
              f"{m['mediapipe']['wall_s']:8.2f} {w['median']:7.2f}x ({w['min']:.2f}..{w['max']:.2f}) "
              f"{s['median']:7.2f}x ({s['min']:.2f}..{s['max']:.2f}) {m['vpipe']['cpu_s']:12.2f} "
              f"{m['mediapipe']['cpu_s']:9.2f}")
    write_json(args.json, "landmarks_whole", {"rounds": args.rounds, "graphs": results},
               libraries=["openvino", "av", "ai-edge-litert"])
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
