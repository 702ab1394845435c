"""Soak: a looped 720p graph runs for N minutes; its memory (RSS) and threads are sampled as it goes.

The graph: ``VideoSource`` (sample:bigbuckbunny, 1280x720, ``loop: true``) feeding ``Annotate``
(fps text on a copy of each frame) into ``VideoWriter`` (libx264 veryfast, a temporary file,
deleted at the end unless ``--keep``), and ``ColorConvert`` (GRAY) into ``WebPreview`` (a free
port, no viewer). Every ``--interval`` seconds it records the process's resident memory and
thread count (``/proc/self/status``: every native thread, FFmpeg's and OpenCV's too), Python's
threads, and the frames decoded so far. The baseline is the sample taken once the run has warmed
up (``--warmup-s``); the report gives each later sample against it (RSS ratio, thread
difference), so growth shows as a ratio above 1 that keeps rising. It ends with a clean stop
(``request_stop``: the graph drains, the mp4 is finalized) and checks that no vpipe thread outlives
the run.

    python tests/bench/soak.py [--minutes 10] [--interval 5] [--json out/bench/soak.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _meta import write_json  # noqa: E402

import calculators  # noqa: E402,F401
from pipeline import Graph  # noqa: E402


def proc_status() -> dict[str, int]:
    """VmRSS (KiB) and Threads of this process, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def soak_graph(video_path: Path, source: str) -> dict:
    return {"name": "soak", "nodes": [
        {"calculator": "VideoSource", "name": "src", "outputs": {"FRAMES": "frames"},
         "options": {"uri": source, "loop": True}},
        {"calculator": "Annotate", "name": "annotate", "inputs": {"IMAGE": "frames"},
         "outputs": {"IMAGE": "annotated"}, "options": {"show_fps": True}},
        {"calculator": "VideoWriter", "name": "writer", "inputs": {"IMAGE": "annotated"},
         "options": {"path": str(video_path), "preset": "veryfast"}},
        {"calculator": "ColorConvert", "name": "gray", "inputs": {"IMAGE": "frames"},
         "outputs": {"IMAGE": "gray"}, "options": {"format": "GRAY"}},
        {"calculator": "WebPreview", "name": "preview", "inputs": {"IMAGE": "gray"}, "options": {"port": 0}},
    ]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--warmup-s", type=float, default=15.0, help="the baseline sample is taken this late")
    ap.add_argument("--source", default="sample:bigbuckbunny", help="a 720p video, looped")
    ap.add_argument("--keep", action="store_true", help="keep the mp4 written (its path is printed)")
    ap.add_argument("--json", default="out/bench/soak.json")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vpipe-soak-"))
    video = tmp / "soak.mp4"
    g = Graph.from_dict(soak_graph(video, a.source))
    frames = [0]
    g.observe("frames", lambda p: frames.__setitem__(0, frames[0] + 1))
    samples = []
    t0 = time.monotonic()
    g.start()
    stop = threading.Event()
    end = t0 + a.minutes * 60
    try:
        while not g.done and not stop.wait(max(0.0, min(a.interval, end - time.monotonic()))):
            st = proc_status()
            samples.append({"t_s": round(time.monotonic() - t0, 1), "frames": frames[0], "rss_mib": st["VmRSS"] / 1024,
                            "threads_native": st["Threads"], "threads_python": threading.active_count()})
            s = samples[-1]
            print(f"{s['t_s']:8.1f} s  {s['frames']:8d} frames  RSS {s['rss_mib']:8.1f} MiB  "
                  f"threads {s['threads_native']:3d} native / {s['threads_python']:3d} Python", flush=True)
            if time.monotonic() >= end:
                break
    finally:
        g.request_stop()
        g.wait(60)
    wall = time.monotonic() - t0
    left = [t.name for t in threading.enumerate() if t.name.startswith("vpipe") and t.is_alive()]
    import av

    with av.open(str(video)) as c:
        written = sum(1 for _ in c.decode(c.streams.video[0]))
    base = next((s for s in samples if s["t_s"] >= a.warmup_s), samples[0] if samples else None)
    after = [s for s in samples if base is not None and s["t_s"] >= base["t_s"]]
    ratios = [s["rss_mib"] / base["rss_mib"] for s in after] if base else []
    thread_diffs = [s["threads_native"] - base["threads_native"] for s in after] if base else []
    print()
    print(f"soak: {a.minutes:g} min of {a.source} (looped) in {wall:.0f} s, {frames[0]} frames decoded "
          f"({frames[0] / wall:.1f} fps), {written} written to the mp4 (valid: it decodes)")
    if base:
        print(f"{'':10}{'RSS MiB':>10}{'vs baseline':>13}{'native threads':>16}{'Python threads':>16}")
        print(f"{'baseline':10}{base['rss_mib']:10.1f}{1.0:13.3f}{base['threads_native']:16d}{base['threads_python']:16d}")
        last = after[-1]
        print(f"{'last':10}{last['rss_mib']:10.1f}{ratios[-1]:13.3f}{last['threads_native']:16d}"
              f"{last['threads_python']:16d}")
        print(f"{'max':10}{max(s['rss_mib'] for s in after):10.1f}{max(ratios):13.3f}"
              f"{max(s['threads_native'] for s in after):16d}{max(s['threads_python'] for s in after):16d}")
        # Growth per minute of RSS after the baseline (least squares): a leak shows as a slope.
        if len(after) >= 3:
            ts = [s["t_s"] / 60 for s in after]
            slope = statistics.linear_regression(ts, [s["rss_mib"] for s in after]).slope
            print(f"RSS slope after the baseline: {slope:+.2f} MiB/min")
        else:
            slope = None
    else:
        slope = None
    print(f"vpipe threads left after the run: {left or 'none'}")
    result = {"minutes": a.minutes, "source": a.source, "wall_s": wall, "frames": frames[0], "written": written,
              "samples": samples, "baseline": base, "rss_ratios": ratios, "thread_diffs": thread_diffs,
              "rss_slope_mib_per_min": slope, "threads_left": left, "errors": [str(e) for e in g.errors]}
    print(f"wrote {write_json(a.json, 'soak', result, libraries=['av', 'cv2'])}")
    if a.keep:
        print(f"kept {video}")
    else:
        video.unlink(missing_ok=True)
        tmp.rmdir()
    if left or g.errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
