"""Scaling of batches over Ray worker nodes, and the cost of Ray against local processes.

One local multi-node Ray cluster (``ray.cluster_utils.Cluster``: a 0-CPU head and 4 worker nodes
of 1 CPU each) serves every measurement of the run, rounds interleaved, medians reported:

- waiting work: the digest graph (tests/cluster/graphs/digest.yaml) with ``pace: realtime`` over
  ``--paced-files`` one-second clips, on 1, 2 and 4 nodes (``jobs`` actors, SPREAD: one per node);
  the work is waiting on the clock, so it scales with nodes even on a 2-core machine;
- real work: face detection (graphs/face_detection.yaml, detections only, ``--cpus-per-run 1``)
  over ``--face-files`` copies of the bikes sample, on 1 and 2 nodes: bound by this machine's cores;
  once with each worker pinned to its core (the default) and once unpinned (``pin=False``), which
  shows what pinning is for: an unpinned run's source, scheduler and inference threads spread over
  both cores, so one worker alone already uses more than one;
- overhead: the same face detection batch with 1 and 2 local ``--jobs`` processes against Ray.

Throughput: frames/s over the window in which every worker was warm and busy, from the moment the
last worker finished its first file (a worker's first file pays the import and the model load,
once per worker) to the moment the first worker ran out of files, each file's frames counted in
proportion to the part of its run inside the window. ``wall`` is the whole ``run_batch`` call.
``speedup`` is frames/s against 1 worker of the same kind in the same round, ``efficiency`` is
speedup / workers.

CPU per frame (ms), which load disturbs less than wall time: ``worker`` is the workers' own CPU
(every thread, user + system, as each record's ``cpu_s``) over the files after each worker's
first; ``ray`` is the CPU of the cluster's own processes (raylets, GCS, agents, log monitor) over
the batch; ``driver`` the CPU of this process (the Ray driver or the --jobs parent) over the batch;
all divided by the batch's frames. Before the rounds it prints where one run's CPU goes, thread by
thread (``thread_profile``: one face file in this process as a ``--cpus-per-run 1`` worker runs it),
and the share of a core Ray's own processes use idle.

    python tests/bench/bench_cluster.py [--repeats 3] [--paced-files 16] [--face-files 8] [--no-paced]
        [--json out/bench/cluster.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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
from tests.cluster.procs import cpu_seconds, descendants  # noqa: E402
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


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed_batch(graph: str, inputs: list[str], sides: dict, jobs: int, system: set[int] = frozenset(), **kw) -> dict:
    """Runs a batch; returns its wall time, its frames/s over the window in which every worker was
    warm and busy (from the moment the last worker finished its first file to the moment the first
    worker ran out of files, each file's frames counted in proportion to the part of its run inside
    the window), and its CPU per frame: workers (files after each one's first), ``system``
    processes (Ray's own) and this process."""
    from apps.cluster import run_batch

    spans: dict = {}  # worker -> [(start, end, frames, cpu_s)] of its files, in order

    def on_event(kind, info):
        if kind == "record":
            now = time.perf_counter()
            spans.setdefault(info["pid"], []).append((now - info["seconds"], now, info["frames"], info["cpu_s"]))

    sys0, me0, t0 = cpu_seconds(system), self_cpu(), time.perf_counter()
    records = run_batch(graph, inputs, sides, jobs=jobs, on_event=on_event, **kw)
    wall = time.perf_counter() - t0
    sys_cpu, me_cpu = cpu_seconds(system) - sys0, self_cpu() - me0
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"bench batch failed: {bad[0]}")
    if len(spans) < jobs or any(len(v) < 2 for v in spans.values()):
        raise SystemExit(f"{len(inputs)} files on {jobs} workers: every worker needs 2 files or more; give more files")
    lo, hi = max(v[0][1] for v in spans.values()), min(v[-1][1] for v in spans.values())
    if hi <= lo:
        raise SystemExit(f"no window with every worker warm and busy ({len(inputs)} files on {jobs} workers): give more files")
    frames = sum(n * max(0.0, min(e, hi) - max(s, lo)) / (e - s) for v in spans.values() for s, e, n, _ in v if e > s)
    warm = [x for v in spans.values() for x in v[1:]]
    total = sum(r["frames"] for r in records)
    return {"wall_s": wall, "window_s": hi - lo, "fps": frames / (hi - lo), "frames": total,
            "nodes": len({r["node"] for r in records}), "cpu_sets": sorted({str(r.get("cpu_set")) for r in records}),
            "worker_ms": 1000 * sum(x[3] for x in warm) / sum(x[2] for x in warm),
            "ray_ms": 1000 * sys_cpu / total, "driver_ms": 1000 * me_cpu / total}


def thread_profile(video: str, work: Path, runs: int = 3) -> dict:
    """One face-detection file at a time in this process, as a ``--cpus-per-run 1`` worker runs it
    (``GraphRunner``, unpinned): CPU seconds of each thread over the run (sampled from
    /proc/self/task every 20 ms: the run's threads end with it), named as Python names them; the
    last of ``runs`` (the first loads the model)."""
    import threading

    from apps.cluster.plan import Job
    from apps.cluster.worker import GraphRunner

    def tasks() -> dict[str, float]:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    out[tid] = int(f.read().split()[0]) / 1e9
            except OSError:
                pass
        return out

    runner = GraphRunner(str(ROOT / "graphs" / "face_detection.yaml"), None, 1, pin=False)
    for i in range(runs):
        names, seen, stop = {}, {}, threading.Event()
        base = tasks()

        def watch():
            while not stop.wait(0.02):
                seen.update(tasks())
                names.update({str(t.native_id): t.name for t in threading.enumerate()})

        watcher = threading.Thread(target=watch, name="profile-watcher")
        watcher.start()
        out = str(work / f"profile-{i}.jsonl")
        rec = runner.run(Job(i, video, {"source": video, "detections": out}, {"detections": out}), f"p{i}")
        stop.set()
        watcher.join()
        seen.update(tasks())
    runner.close()
    per = {f"{names.get(t, 'native')}": round(c - base.get(t, 0.0), 3) for t, c in seen.items()
           if c - base.get(t, 0.0) > 0.01 and names.get(t) != "profile-watcher"}
    return {"frames": rec["frames"], "seconds": rec["seconds"], "cpu_s": rec["cpu_s"],
            "threads_cpu_s": dict(sorted(per.items(), key=lambda kv: -kv[1]))}


def ray_idle(pids: set[int], seconds: float = 10.0) -> float:
    """The share of one core Ray's own processes use while no batch runs."""
    c0, t0 = cpu_seconds(pids), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pids) - c0) / (time.perf_counter() - t0)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paced-files", type=int, default=16)
    ap.add_argument("--face-files", type=int, default=8)
    ap.add_argument("--no-paced", action="store_true", help="face detection only (skip the paced batches)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "cluster.json"))
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from models import catalog

    work = Path(tempfile.mkdtemp(prefix="vpipe-bench-cluster-"))
    profile = thread_profile(str(catalog.resolve("sample:bikes")), work)
    print(f"one run, --cpus-per-run 1, unpinned, in one process: {profile['frames']} frames in {profile['seconds']:.2f} s, "
          f"{profile['cpu_s']:.2f} s CPU; by thread: {profile['threads_cpu_s']}", flush=True)
    # the cores the bench's workers claim: its own, so a test or batch running beside it does not
    # take them (and the figures say what they measured)
    os.environ["VPIPE_CPU_SLOTS"] = str(work / "cpu-slots")
    loads = [load_average()]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": 100 * MB, "include_dashboard": False})
    for _ in range(4):
        cluster.add_node(num_cpus=1, object_store_memory=100 * MB)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    cluster.wait_for_nodes()
    system = descendants(os.getpid())  # Ray's own processes (workers start later, per batch)
    idle = ray_idle(system)
    print(f"Ray's own processes ({len(system)}), idle: {100 * idle:.1f} % of one core", flush=True)
    try:
        clips = make_clips(work / "clips", args.paced_files) if not args.no_paced else []
        bikes = catalog.resolve("sample:bikes")
        (work / "face").mkdir()
        faces = []
        for i in range(args.face_files):
            shutil.copy(bikes, work / "face" / f"bikes{i}.mp4")
            faces.append(str(work / "face" / f"bikes{i}.mp4"))
        runs: dict[str, list[dict]] = {}

        def add(key: str, res: dict) -> None:
            runs.setdefault(key, []).append(res)
            print(f"  {key:<18} {res['fps']:7.1f} frames/s over {res['window_s']:5.2f} s  wall {res['wall_s']:6.2f} s  "
                  f"cpu ms/frame worker {res['worker_ms']:5.2f} ray {res['ray_ms']:5.2f} driver {res['driver_ms']:5.2f}  "
                  f"nodes {res['nodes']}  cores {' '.join(res['cpu_sets'])}", flush=True)

        face_cases = [  # key, jobs, on Ray, pinned
            ("face ray x1", 1, True, True), ("face ray x2", 2, True, True),
            ("face ray x1 nopin", 1, True, False), ("face ray x2 nopin", 2, True, False),
            ("face jobs x1", 1, False, True), ("face jobs x2", 2, False, True)]
        for r in range(args.repeats):
            print(f"round {r + 1}/{args.repeats} (load average {' '.join(map(str, load_average()))})", flush=True)
            if not args.no_paced:
                for n in (1, 2, 4):
                    add(f"paced x{n}", timed_batch(str(DIGEST), clips, {"pace": "realtime", "digests": f"{work}/p{n}-{r}/{{stem}}.jsonl"},
                                                   n, system, address=cluster.address, plugins=[PLUGIN],
                                                   manifest=work / f"pm{n}-{r}.jsonl"))
            order = face_cases if r % 2 == 0 else face_cases[::-1]  # interleaved: a trend in the load hits both sides
            for key, n, on_ray, pin in order:
                tag = key.replace(" ", "-")
                add(key, timed_batch("face_detection", faces, {"detections": f"{work}/{tag}-{r}/{{stem}}.jsonl"}, n,
                                     system if on_ray else set(), address=cluster.address if on_ray else None,
                                     pin=pin, manifest=work / f"{tag}-{r}.jsonl"))
            loads.append(load_average())
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    metrics = ("fps", "window_s", "wall_s", "worker_ms", "ray_ms", "driver_ms")
    med = {k: {m: statistics.median(x[m] for x in v) for m in metrics} | {"nodes": v[0]["nodes"]}
           for k, v in runs.items()}
    fps = {k: [x["fps"] for x in v] for k, v in runs.items()}
    walls = {k: [x["wall_s"] for x in v] for k, v in runs.items()}
    scaling = [("paced 2 nodes / 1", "paced x2", "paced x1", 2, ">= 1.8"), ("paced 4 nodes / 1", "paced x4", "paced x1", 4, ">= 3.5"),
               ("face ray 2 nodes / 1", "face ray x2", "face ray x1", 2, ">= 1.6"),
               ("face ray 2 / 1 unpinned", "face ray x2 nopin", "face ray x1 nopin", 2, "(pinning's effect)"),
               ("face jobs 2 / 1", "face jobs x2", "face jobs x1", 2, "(vpipe without Ray)")]
    ratios, targets = {}, {}
    for name, cand, base, workers, target in scaling:
        if cand in fps:
            ratios[name] = round_ratios(fps, cand, base) | {"efficiency": round(round_ratios(fps, cand, base)["median"] / workers, 3)}
            targets[name] = target
    # per-round ratios (a round's load hits both sides alike): median, min, max
    ratios["jobs / ray frames/s x2 (overhead)"] = round_ratios(fps, "face jobs x2", "face ray x2")
    targets["jobs / ray frames/s x2 (overhead)"] = "<= 1.10"
    ratios["ray / jobs wall x2"] = round_ratios(walls, "face ray x2", "face jobs x2")
    targets["ray / jobs wall x2"] = "(reported: includes actor start)"
    ratios["ray / jobs worker cpu ms/frame x2"] = round_ratios({k: [x["worker_ms"] for x in v] for k, v in runs.items()},
                                                               "face ray x2", "face jobs x2")
    targets["ray / jobs worker cpu ms/frame x2"] = "(same work: ~1.0)"
    print(f"\nbatches on a local Ray cluster (0-CPU head + 4 nodes of 1 CPU) on {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}); load average before and after each round: {loads}; "
          f"medians of {args.repeats} rounds")
    print(f"{'run':<20}{'frames/s':>10}{'window s':>10}{'wall s':>9}{'nodes':>7}   cpu ms/frame: {'worker':>7}{'ray':>7}{'driver':>7}")
    for k, v in med.items():
        print(f"{k:<20}{v['fps']:>10.1f}{v['window_s']:>10.2f}{v['wall_s']:>9.2f}{v['nodes']:>7}   {'':14}"
              f"{v['worker_ms']:>7.2f}{v['ray_ms']:>7.2f}{v['driver_ms']:>7.2f}")
    print()
    print(f"{'ratio (per round)':<38}{'median':>8}{'min':>7}{'max':>7}{'effic.':>8}   target")
    for k, v in ratios.items():
        eff = f"{v['efficiency']:>8.2f}" if "efficiency" in v else f"{'':>8}"
        print(f"{k:<38}{v['median']:>8.2f}{v['min']:>7.2f}{v['max']:>7.2f}{eff}   {targets[k]}")
    out = write_json(args.json, "cluster", {"medians": med, "ratios": ratios, "targets": targets, "runs": runs,
                                            "load_average": loads, "thread_profile": profile,
                                            "ray_idle_share_of_a_core": idle}, libraries=["ray", "av", "openvino", "onnxruntime"])
    print(f"written: {out}")


if __name__ == "__main__":
    main()
