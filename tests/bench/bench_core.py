"""Per-packet cost of the core: Python feed to observed output.

Topologies: 1 PassThrough, a chain of 10 PassThrough nodes, and a diamond (input to two
PassThrough nodes whose outputs meet in one PassThrough with two synchronised inputs). Each is
run ``--repeats`` times with ``--packets`` packets; the median per-packet time is reported, with a
hand-written loop calling the same PassThrough ``process`` 1 and 10 times per packet as the
baseline measured in the same run.

    python tests/bench/bench_core.py [--packets 20000] [--repeats 3] [--json out/bench/core.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _meta import write_json  # noqa: E402  (tests/bench: machine, versions, command in the JSON)
from pipeline import Graph  # noqa: E402


def chain(n: int) -> dict:
    nodes = []
    prev = "in"
    for i in range(n):
        nodes.append({"calculator": "PassThrough", "inputs": [prev], "outputs": [f"s{i}"]})
        prev = f"s{i}"
    return {"inputs": ["in"], "outputs": [prev], "nodes": nodes}, prev


def diamond() -> dict:
    return {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "PassThrough", "inputs": ["in"], "outputs": ["a"]},
            {"calculator": "PassThrough", "inputs": ["in"], "outputs": ["b"]},
            {"calculator": "PassThrough", "inputs": ["a", "b"], "outputs": ["c", "d"]},
        ],
    }, "c"


def run_graph(spec: dict, out: str, packets: int, threads: int | None) -> float:
    g = Graph.from_dict(spec, threads=threads)
    done = threading.Event()
    count = [0]

    def cb(p):
        count[0] += 1
        if count[0] == packets:
            done.set()

    g.observe(out, cb)
    g.start()
    t0 = time.perf_counter()
    for i in range(packets):
        g.add_packet("in", i, i)
    g.close_input("in")
    g.wait()
    dt = time.perf_counter() - t0
    assert count[0] == packets, f"expected {packets} packets, got {count[0]}"
    return dt / packets * 1e6


def run_loop(n: int, packets: int) -> float:
    """The baseline: the same work by hand, one thread, no framework."""
    from calculators.flow.basic import PassThrough
    from pipeline.timestamp import Packet

    class Out:
        def __init__(self):
            self.got = []

        def add(self, v, t=None):
            self.got.append(v)

    class Ctx:
        pass

    calcs = []
    for _ in range(n):
        c = PassThrough()
        c.pairs = [("IN:0", Out())]
        calcs.append(c)
    ctx = Ctx()
    t0 = time.perf_counter()
    for i in range(packets):
        v = i
        for c in calcs:
            ctx.inputs = {"IN:0": Packet(v, i)}
            c.process(ctx)
            v = c.pairs[0][1].got.pop()
    return (time.perf_counter() - t0) / packets * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default="out/bench/core.json")
    a = ap.parse_args()
    from pipeline.graph import default_threads

    cases = {"passthrough_1": chain(1), "chain_10": chain(10), "diamond": diamond()}
    thread_counts = [a.threads] if a.threads else sorted({1, default_threads()})
    results = {}
    loop1 = statistics.median(run_loop(1, a.packets) for _ in range(a.repeats))
    loop10 = statistics.median(run_loop(10, a.packets) for _ in range(a.repeats))
    print(f"{'case':<24}" + "".join(f"{f'{n} worker(s) us/pkt':>22}" for n in thread_counts))
    for name, (spec, out) in cases.items():
        results[name] = {n: statistics.median(run_graph(spec, out, a.packets, n) for _ in range(a.repeats))
                         for n in thread_counts}
        print(f"{name:<24}" + "".join(f"{results[name][n]:>22.2f}" for n in thread_counts))
    per_node = {n: (results["chain_10"][n] - results["passthrough_1"][n]) / 9 for n in thread_counts}
    print(f"{'added node (chain)':<24}" + "".join(f"{per_node[n]:>22.2f}" for n in thread_counts))
    print(f"hand-written loop: 1 node {loop1:.2f} us, 10 nodes {loop10:.2f} us per packet")
    for n in thread_counts:
        print(f"{n} worker(s): chain_10 / hand loop of 10 = {results['chain_10'][n] / loop10:.1f}x; "
              f"targets: chain_10 <= 30 us ({'met' if results['chain_10'][n] <= 30 else 'NOT met'}), "
              f"added node <= 3 us ({'met' if per_node[n] <= 3 else 'NOT met'})")
    res = {"packets": a.packets, "repeats": a.repeats,
           "us_per_packet": {k: {str(n): v for n, v in d.items()} for k, d in results.items()},
           "us_per_added_node": {str(n): v for n, v in per_node.items()},
           "hand_loop_us": {"1": loop1, "10": loop10}, "targets": {"chain_10_us": 30, "added_node_us": 3}}
    print(f"wrote {write_json(a.json, 'core', res)}")


if __name__ == "__main__":
    main()
