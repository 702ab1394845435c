"""One PassThrough at 1 worker, several graphs in one fresh process: wall and CPU time a packet of
each, to see the first graph of a process apart from the later ones (docs/benchmarks.md, "The core
against a77a27d, measured alike").

    python tests/bench/bench_first_graph.py [--processes 4] [--graphs 3] [--packets 20000] [--root DIR] [--json out/bench/first_graph.json]

``--root``: the checkout whose ``pipeline`` and ``calculators`` run (a ``git worktree`` of another
revision, say). Run it as is, under ``taskset -c 0`` (one core) and with ``OPENBLAS_NUM_THREADS=1``
to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def one_process(graphs: int, packets: int) -> list[tuple[float, float]]:
    from pipeline import Graph

    spec = {"inputs": ["in"], "outputs": ["s0"],
            "nodes": [{"calculator": "PassThrough", "inputs": ["in"], "outputs": ["s0"]}]}
    res = []
    for _ in range(graphs):
        g = Graph.from_dict(spec, threads=1)
        got = [0]

        def count(p, got=got):
            got[0] += 1

        g.observe("s0", count)
        g.start()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(packets):
            g.add_packet("in", i, i)
        g.close_input("in")
        g.wait()
        res.append(((time.perf_counter() - t0) / packets * 1e6, (time.process_time() - c0) / packets * 1e6))
        assert got[0] == packets, f"expected {packets} packets, got {got[0]}"
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--graphs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--json", default="out/bench/first_graph.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, a.root)
        print(json.dumps(one_process(a.graphs, a.packets)))
        return
    print(f"wall / CPU us a packet, one PassThrough at 1 worker, {a.packets} packets, root {a.root}")
    processes = []
    for p in range(a.processes):
        r = subprocess.run([sys.executable, __file__, "--child", "--graphs", str(a.graphs), "--packets",
                            str(a.packets), "--root", a.root], capture_output=True, text=True, cwd=a.root,
                           env=dict(os.environ, PYTHONPATH=a.root), timeout=600)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        runs = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"process {p + 1}: " + "  ".join(f"{w:.2f} / {c:.2f}" for w, c in runs))
        processes.append([{"wall_us": w, "cpu_us": c} for w, c in runs])
    from _meta import write_json

    env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS",) if k in os.environ}
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = None
    print("wrote", write_json(a.json, "first_graph", {"root": a.root, "packets": a.packets, "env": env,
                                                       "affinity": cores, "processes": processes}))


if __name__ == "__main__":
    main()
