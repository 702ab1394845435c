"""Scaling of batches over Ray worker nodes, and the cost of Ray against local processes.

One local multi-node Ray cluster (``ray.cluster_utils.Cluster``: a 0-CPU head and 4 worker nodes
of 1 CPU each) serves every measurement of the run, rounds interleaved, medians reported:

- waiting work: the digest graph (tests/cluster/graphs/digest.yaml) with ``pace: realtime`` over
  ``--paced-files`` one-second clips, on 1, 2 and 4 nodes (``jobs`` actors, SPREAD: one per node);
  the work is waiting on the clock, so it scales with nodes even on a 2-core machine;
- real work: face detection (graphs/face_detection.yaml, detections only, one thread per run)
  over ``--face-files`` copies of the bikes sample, on 1 and 2 nodes: bound by this machine's cores;
- overhead: the same face detection batch with 2 local ``--jobs`` processes against 2 Ray actors.

Throughput: frames/s over the window in which every worker was busy, from the moment the last
worker got its first file to the moment the first worker ran out of files, each file's frames
counted in proportion to the part of its run inside the window (the actors' one-time start, 1-4 s
on a loaded machine and different for each, and the tail where some workers idle are left out:
long-lived workers pay the start once per batch, and a large batch has a short tail).
``wall`` is the whole ``run_batch`` call.

    python tests/bench/bench_cluster.py [--repeats 3] [--paced-files 16] [--face-files 6] [--json out/bench/cluster.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _meta import round_ratios, write_json  # noqa: E402  (tests/bench: machine, versions, command in the JSON)
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", uuid.uuid4().hex + uuid.uuid4().hex)

PLUGIN = "tests.cluster.cluster_calcs"
DIGEST = ROOT / "tests" / "cluster" / "graphs" / "digest.yaml"
MB = 1024 * 1024


def make_clips(folder: Path, n: int, seconds: float = 1.0, fps: int = 30) -> list[str]:
    """``n`` synthetic clips of ``seconds`` at ``fps`` (160x120), written with vpipe itself."""
    import calculators  # noqa: F401
    from pipeline import Graph

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"clip{i}.mp4"
        Graph.from_dict({"nodes": [
            {"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
             "options": {"size": [160, 120], "fps": fps, "num_frames": int(seconds * fps)}},
            {"calculator": "VideoWriter", "inputs": {"IMAGE": "f"}, "options": {"path": str(path)}}]}).run()
        paths.append(str(path))
    return paths


def timed_batch(graph: str, inputs: list[str], sides: dict, jobs: int, **kw) -> dict:
    """Runs a batch; returns its wall time and its frames/s over the window in which every worker
    was busy: from the moment the last worker got its first file (workers start at different
    times) to the moment the first worker ran out of files, counting each file's frames in
    proportion to the part of its run inside the window."""
    from apps.cluster import run_batch

    first_start: dict = {}  # worker -> when it got its first file
    spans: list[tuple[float, float, int]] = []  # (start, end, frames) of each file's run
    last_end: dict = {}  # worker -> when its last file ended

    def on_event(kind, info):
        now = time.perf_counter()
        if kind == "started":
            first_start.setdefault(info["worker"].get("pid"), now)
        elif kind == "record":
            spans.append((now - info["seconds"], now, info["frames"]))
            last_end[info["pid"]] = now

    t0 = time.perf_counter()
    records = run_batch(graph, inputs, sides, jobs=jobs, on_event=on_event, **kw)
    wall = time.perf_counter() - t0
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"bench batch failed: {bad[0]}")
    lo, hi = max(first_start.values()), min(last_end.values())
    if hi <= lo:
        raise SystemExit(f"no window with every worker busy ({len(inputs)} files on {jobs} workers): give more files")
    frames = sum(n * max(0.0, min(e, hi) - max(s, lo)) / (e - s) for s, e, n in spans if e > s)
    return {"wall_s": wall, "window_s": hi - lo, "fps": frames / (hi - lo),
            "frames": sum(r["frames"] for r in records), "nodes": len({r["node"] for r in records})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paced-files", type=int, default=16)
    ap.add_argument("--face-files", type=int, default=6)
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "cluster.json"))
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from models import catalog

    work = Path(tempfile.mkdtemp(prefix="vpipe-bench-cluster-"))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": 100 * MB, "include_dashboard": False})
    for _ in range(4):
        cluster.add_node(num_cpus=1, object_store_memory=100 * MB)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    cluster.wait_for_nodes()
    try:
        clips = make_clips(work / "clips", args.paced_files)
        bikes = catalog.resolve("sample:bikes")
        (work / "face").mkdir()
        faces = []
        for i in range(args.face_files):
            shutil.copy(bikes, work / "face" / f"bikes{i}.mp4")
            faces.append(str(work / "face" / f"bikes{i}.mp4"))
        runs: dict[str, list[dict]] = {}

        def add(key: str, res: dict) -> None:
            runs.setdefault(key, []).append(res)
            print(f"  {key:<14} {res['fps']:7.1f} frames/s over {res['window_s']:5.2f} s  wall {res['wall_s']:6.2f} s  "
                  f"nodes {res['nodes']}  frames {res['frames']}", flush=True)

        for r in range(args.repeats):
            print(f"round {r + 1}/{args.repeats}", flush=True)
            for n in (1, 2, 4):
                add(f"paced x{n}", timed_batch(str(DIGEST), clips, {"pace": "realtime", "digests": f"{work}/p{n}-{r}/{{stem}}.jsonl"},
                                               address=cluster.address, jobs=n, plugins=[PLUGIN],
                                               manifest=work / f"pm{n}-{r}.jsonl"))
            face_sides = {"detections": None}
            for n in (1, 2):
                add(f"face ray x{n}", timed_batch("face_detection", faces,
                                                  {**face_sides, "detections": f"{work}/f{n}-{r}/{{stem}}.jsonl"},
                                                  address=cluster.address, jobs=n, manifest=work / f"fm{n}-{r}.jsonl"))
            add("face jobs x2", timed_batch("face_detection", faces, {"detections": f"{work}/j-{r}/{{stem}}.jsonl"},
                                            jobs=2, manifest=work / f"jm-{r}.jsonl"))
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: {m: statistics.median(x[m] for x in v) for m in ("fps", "window_s", "wall_s")} | {"nodes": v[0]["nodes"]}
           for k, v in runs.items()}
    fps = {k: [x["fps"] for x in v] for k, v in runs.items()}
    walls = {k: [x["wall_s"] for x in v] for k, v in runs.items()}
    ratios = {  # per-round ratios (a round's load hits both sides alike): median, min, max
        "paced 2 nodes / 1": round_ratios(fps, "paced x2", "paced x1"),
        "paced 4 nodes / 1": round_ratios(fps, "paced x4", "paced x1"),
        "face 2 nodes / 1": round_ratios(fps, "face ray x2", "face ray x1"),
        "jobs / ray frames/s (overhead)": round_ratios(fps, "face jobs x2", "face ray x2"),
        "ray / jobs wall": round_ratios(walls, "face ray x2", "face jobs x2"),
    }
    targets = {"paced 2 nodes / 1": ">= 1.8", "paced 4 nodes / 1": ">= 3.5", "face 2 nodes / 1": ">= 1.6",
               "jobs / ray frames/s (overhead)": "<= 1.10", "ray / jobs wall": "(reported: includes actor start)"}
    print(f"\nbatches on a local Ray cluster (0-CPU head + 4 nodes of 1 CPU) on {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}), shared machine; medians of {args.repeats} rounds")
    print(f"{'run':<16}{'frames/s':>10}{'window s':>10}{'wall s':>10}{'nodes':>7}")
    for k, v in med.items():
        print(f"{k:<16}{v['fps']:>10.1f}{v['window_s']:>10.2f}{v['wall_s']:>10.2f}{v['nodes']:>7}")
    print()
    print(f"{'ratio (per round)':<34}{'median':>8}{'min':>7}{'max':>7}   target")
    for k, v in ratios.items():
        print(f"{k:<34}{v['median']:>8.2f}{v['min']:>7.2f}{v['max']:>7.2f}   {targets[k]}")
    out = write_json(args.json, "cluster", {"medians": med, "ratios": ratios, "targets": targets, "runs": runs,
                                            "shared_machine": True}, libraries=["ray", "av", "openvino", "onnxruntime"])
    print(f"written: {out}")


if __name__ == "__main__":
    main()
