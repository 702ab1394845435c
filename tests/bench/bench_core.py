"""Per-packet cost of the core (Python feed to observed output), against MediaPipe's C++ graph.

Topologies: 1 PassThrough, a chain of 10 PassThrough nodes, and a diamond (input to two
PassThrough nodes whose outputs meet in one PassThrough with two synchronised inputs), under 1
and the default number of workers. Baselines measured in the same run, in interleaved rounds:

- MediaPipe 0.10.21's ``CalculatorGraph`` (``PassThroughCalculator`` chains of 1 and 10, fed from
  Python, the same packet count), in a subprocess of the environment ``make_mp_env.sh`` makes
  (``--mp-python``; the benchmark says so plainly when it is absent);
- optionally vpipe's core at another git revision (``--ref REV``, e.g. the commit before a change),
  from ``git archive`` in a temporary folder, in a subprocess: the "no regression" check;
- a hand-written loop calling the same PassThrough ``process`` 1 and 10 times per packet.

Each round runs this checkout's cases and --ref's alike, each in a fresh process of its own after a
warm-up graph (``vpipe_round`` says why), the two in alternating order. The median over rounds is
reported, and the ratios are medians of per-round ratios (the load of a
round hits both sides alike); the table gives the ratios and the targets (chain of 10 at
<= 0.7x MediaPipe's figure, each added node <= 1.5 us, 1 node and diamond no slower than --ref).
A second table gives the CPU time (user+sys of the process, all threads) of the same vpipe and
--ref runs, which the load of a shared machine disturbs less than wall time (a thread waiting
for a core costs wall time, not CPU time).
A JSON file records the figures, the machine, the versions and the command.

    python tests/bench/bench_core.py [--packets 20000] [--repeats 5] [--ref REV] [--json out/bench/core.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, os.environ.get("VPIPE_BENCH_ROOT", str(ROOT)))

from _meta import write_json  # noqa: E402  (tests/bench: machine, versions, command in the JSON)
from pipeline import Graph  # noqa: E402

MP_PYTHON = os.environ.get("VPIPE_MP_ENV", "/work/envs/mp01021") + "/bin/python"
TARGET_CHAIN_VS_MP = 0.7
TARGET_ADDED_NODE_US = 1.5


def chain(n: int) -> tuple[dict, str]:
    nodes = []
    prev = "in"
    for i in range(n):
        nodes.append({"calculator": "PassThrough", "inputs": [prev], "outputs": [f"s{i}"]})
        prev = f"s{i}"
    return {"inputs": ["in"], "outputs": [prev], "nodes": nodes}, prev


def diamond() -> tuple[dict, str]:
    return {
        "inputs": ["in"],
        "nodes": [
            {"calculator": "PassThrough", "inputs": ["in"], "outputs": ["a"]},
            {"calculator": "PassThrough", "inputs": ["in"], "outputs": ["b"]},
            {"calculator": "PassThrough", "inputs": ["a", "b"], "outputs": ["c", "d"]},
        ],
    }, "c"


CASES = {"passthrough_1": chain(1), "chain_10": chain(10), "diamond": diamond()}


def run_graph(spec: dict, out: str, packets: int, threads: int | None) -> tuple[float, float]:
    """(wall, CPU) microseconds per packet; CPU is the process's user+sys time, all threads."""
    g = Graph.from_dict(spec, threads=threads)
    count = [0]

    def cb(p):
        count[0] += 1

    g.observe(out, cb)
    g.start()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(packets):
        g.add_packet("in", i, i)
    g.close_input("in")
    g.wait()
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    assert count[0] == packets, f"expected {packets} packets, got {count[0]}"
    return dt / packets * 1e6, dc / packets * 1e6


def run_loop(n: int, packets: int) -> float:
    """The same work by hand, one thread, no framework."""
    from calculators.flow.basic import PassThrough
    from pipeline.timestamp import Packet

    class Out:
        def __init__(self):
            self.got = []

        def add(self, v, t=None):
            self.got.append(v)

        def add_packet(self, p):
            self.got.append(p.value)

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


WARMUP_PACKETS = 2000


def vpipe_round(packets: int, thread_counts: list[int]) -> dict:
    """{case: {threads: wall us}}, and the CPU us per packet of the same runs under "cpu".

    First a warm-up run of one node per worker count, not measured (the calculators' imports,
    the first thread's start).
    """
    spec, out = CASES["passthrough_1"]
    for n in thread_counts:
        run_graph(spec, out, WARMUP_PACKETS, n)
    res: dict = {"cpu": {}}
    for name, (spec, out) in CASES.items():
        res[name], res["cpu"][name] = {}, {}
        for n in thread_counts:
            res[name][str(n)], res["cpu"][name][str(n)] = run_graph(spec, out, packets, n)
    return res


def mp_round(mp_python: str, packets: int) -> dict:
    r = subprocess.run([mp_python, str(Path(__file__).with_name("mp_graph_baseline.py")), "--packets", str(packets),
                        "--chains", "1", "10"], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))  # as subprocess_round
    if r.returncode != 0:
        raise SystemExit(f"the MediaPipe baseline failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def subprocess_round(root: Path, packets: int, thread_counts: list[int]) -> dict:
    """One round of the vpipe cases in a fresh process with the core and calculators of ``root``:
    this checkout's and --ref's are run alike (a process each, a warm-up first: vpipe_round).

    With one OpenBLAS thread: numpy's import starts OpenBLAS's worker thread, which spins on the
    other core for a while, and while it does the feeder and the worker share a core, where the
    GIL passes between them without a cross-core wake-up: one node at 1 worker then costs
    1.8-2.3 µs a packet in wall time against 2.8-3.2 once it sleeps (as under ``taskset -c 0``
    against the two cores; seen on the 2026-12-02 VM, on every revision). Whichever side's run
    met that window would win by a third."""
    env = dict(os.environ, VPIPE_BENCH_ROOT=str(root), OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--packets", str(packets),
                        "--threads", ",".join(map(str, thread_counts))], capture_output=True, text=True,
                       timeout=600, env=env, cwd=str(root))
    if r.returncode != 0:
        raise SystemExit(f"the vpipe round of {root} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def export_ref(ref: str, into: Path) -> str:
    """The core and the built-in calculators at git revision ``ref``, under ``into``."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pipeline", "calculators"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def median_of(rounds: list[dict], *keys) -> float:
    vals = []
    for r in rounds:
        for k in keys:
            r = r[k]
        vals.append(r)
    return statistics.median(vals)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--repeats", "--rounds", dest="rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--threads", default=None, help="comma-separated worker counts (default: 1 and the default)")
    ap.add_argument("--mp-python", default=MP_PYTHON, help="python of the mediapipe==0.10.21 environment")
    ap.add_argument("--ref", default=None, help="git revision of vpipe to compare with (no-regression check)")
    ap.add_argument("--json", default="out/bench/core.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    from pipeline.graph import default_threads

    thread_counts = [int(x) for x in a.threads.split(",")] if a.threads else sorted({1, default_threads()})
    if a.worker:  # one round of the vpipe cases (subprocess_round)
        print(json.dumps(vpipe_round(a.packets, thread_counts)))
        return

    have_mp = Path(a.mp_python).exists()
    if not have_mp:
        print(f"MediaPipe 0.10.21 baseline ABSENT: no {a.mp_python} (make it with "
              "bash tests/bench/make_mp_env.sh); measuring vpipe only")
    tmp = tempfile.TemporaryDirectory(prefix="vpipe-bench-ref-") if a.ref else None
    ref_commit = export_ref(a.ref, Path(tmp.name)) if a.ref else None

    load_at_start = os.getloadavg()
    ours, mp, ref, loops = [], [], [], []
    for i in range(a.rounds):  # interleaved, so that load on a shared machine hits all alike
        # this checkout and --ref each in a process of its own, which goes first alternating
        sides = [(ours, ROOT)] + ([(ref, Path(tmp.name))] if ref_commit else [])
        for into, root in (sides if i % 2 == 0 else sides[::-1]):
            into.append(subprocess_round(root, a.packets, thread_counts))
        if have_mp:
            mp.append(mp_round(a.mp_python, a.packets))
        loops.append({"1": run_loop(1, a.packets), "10": run_loop(10, a.packets)})
        print(f"round {i + 1}/{a.rounds} done", file=sys.stderr)

    res: dict = {"vpipe": {}, "ref": {}, "mediapipe": {}, "hand_loop": {}, "vpipe_cpu": {}, "ref_cpu": {}}
    for case in CASES:
        res["vpipe"][case] = {str(n): median_of(ours, case, str(n)) for n in thread_counts}
        res["vpipe_cpu"][case] = {str(n): median_of(ours, "cpu", case, str(n)) for n in thread_counts}
        if ref:
            res["ref"][case] = {str(n): median_of(ref, case, str(n)) for n in thread_counts}
            if all("cpu" in r for r in ref):  # (a --ref older than this benchmark's CPU column)
                res["ref_cpu"][case] = {str(n): median_of(ref, "cpu", case, str(n)) for n in thread_counts}
    if mp:
        res["mediapipe"] = {"chain_1": median_of(mp, "us_per_packet", "1"),
                            "chain_10": median_of(mp, "us_per_packet", "10"), "version": mp[0]["mediapipe"]}
    res["hand_loop"] = {k: median_of(loops, k) for k in ("1", "10")}

    cols = [f"vpipe {n}w" for n in thread_counts] + ([f"ref {n}w" for n in thread_counts] if ref else [])
    print(f"\nus per packet, median of {a.rounds} rounds of {a.packets} packets")
    print(f"{'case':<22}" + "".join(f"{c:>12}" for c in cols) + (f"{'mediapipe':>12}" if mp else ""))
    for case in CASES:
        row = [res["vpipe"][case][str(n)] for n in thread_counts]
        if ref:
            row += [res["ref"][case][str(n)] for n in thread_counts]
        mpv = res["mediapipe"].get({"passthrough_1": "chain_1"}.get(case, case)) if mp else None
        print(f"{case:<22}" + "".join(f"{v:>12.2f}" for v in row) + (f"{mpv:>12.2f}" if mpv is not None else
                                                                         ("" if not mp else f"{'-':>12}")))
    added = {str(n): (res["vpipe"]["chain_10"][str(n)] - res["vpipe"]["passthrough_1"][str(n)]) / 9
             for n in thread_counts}
    res["vpipe_us_per_added_node"] = added
    print(f"{'added node (chain)':<22}" + "".join(f"{added[str(n)]:>12.2f}" for n in thread_counts))
    # CPU time (user+sys of the process, all its threads) of the same runs: what load on a shared
    # machine disturbs least (a descheduled thread costs wall time, not CPU time)
    added_cpu = {str(n): (res["vpipe_cpu"]["chain_10"][str(n)] - res["vpipe_cpu"]["passthrough_1"][str(n)]) / 9
                 for n in thread_counts}
    res["vpipe_cpu_us_per_added_node"] = added_cpu
    print(f"\nCPU us per packet (user+sys, all threads), median of {a.rounds} rounds")
    print(f"{'case':<22}" + "".join(f"{c:>12}" for c in cols[:len(thread_counts) * (2 if res['ref_cpu'] else 1)]))
    for case in CASES:
        row = [res["vpipe_cpu"][case][str(n)] for n in thread_counts]
        if res["ref_cpu"]:
            row += [res["ref_cpu"][case][str(n)] for n in thread_counts]
        print(f"{case:<22}" + "".join(f"{v:>12.2f}" for v in row))
    print(f"{'added node (chain)':<22}" + "".join(f"{added_cpu[str(n)]:>12.2f}" for n in thread_counts))
    print(f"hand-written loop: 1 node {res['hand_loop']['1']:.2f} us, 10 nodes {res['hand_loop']['10']:.2f} us")
    def per_round(num, den) -> dict:
        r = [a / b for a, b in zip(num, den)]
        return {"median": statistics.median(r), "min": min(r), "max": max(r)}

    # Ratios within each round (the load of a round hits both sides): the figures to trust on a
    # shared machine.
    res["round_ratios"] = {}
    for n in thread_counts:
        k = str(n)
        if mp:
            res["round_ratios"][f"chain_10_vs_mediapipe_{k}w"] = per_round(
                [r["chain_10"][k] for r in ours], [m["us_per_packet"]["10"] for m in mp])
        if ref:
            for case in CASES:
                res["round_ratios"][f"{case}_vs_ref_{k}w"] = per_round(
                    [r[case][k] for r in ours], [r[case][k] for r in ref])
        if res["ref_cpu"]:
            for case in CASES:
                res["round_ratios"][f"{case}_cpu_vs_ref_{k}w"] = per_round(
                    [r["cpu"][case][k] for r in ours], [r["cpu"][case][k] for r in ref])
        res["round_ratios"][f"added_node_vs_hand_loop_node_{k}w"] = per_round(
            [(r["chain_10"][k] - r["passthrough_1"][k]) / 9 for r in ours], [lp["10"] / 10 for lp in loops])
    verdicts = {}
    for n in thread_counts:
        k = str(n)
        line = f"{n} worker(s): added node {added[k]:.2f} us (target <= {TARGET_ADDED_NODE_US}: " \
               f"{'met' if added[k] <= TARGET_ADDED_NODE_US else 'NOT met'})"
        verdicts[f"added_node_{k}w"] = added[k] <= TARGET_ADDED_NODE_US
        hl = res["round_ratios"][f"added_node_vs_hand_loop_node_{k}w"]["median"]
        line += f" = {hl:.1f}x a hand-loop node"
        if mp:
            ratio = res["round_ratios"][f"chain_10_vs_mediapipe_{k}w"]["median"]
            verdicts[f"chain_10_vs_mediapipe_{k}w"] = ratio
            line += f"; chain_10 / MediaPipe chain_10 = {ratio:.2f}x (target <= {TARGET_CHAIN_VS_MP}: " \
                    f"{'met' if ratio <= TARGET_CHAIN_VS_MP else 'NOT met'})"
        if ref:
            for case in ("passthrough_1", "diamond", "chain_10"):
                r = res["round_ratios"][f"{case}_vs_ref_{k}w"]["median"]
                verdicts[f"{case}_vs_ref_{k}w"] = r
                line += f"; {case} / ref = {r:.2f}x"
                if res["ref_cpu"]:
                    rc = res["round_ratios"][f"{case}_cpu_vs_ref_{k}w"]["median"]
                    verdicts[f"{case}_cpu_vs_ref_{k}w"] = rc
                    line += f" (CPU {rc:.2f}x)"
        line += f"; added node CPU {added_cpu[k]:.2f} us"
        print(line)
    if not mp:
        print("MediaPipe baseline ABSENT: the chain_10 target was not checked")
    res.update({"packets": a.packets, "rounds": a.rounds, "threads": thread_counts, "verdicts": verdicts,
                "targets": {"chain_10_vs_mediapipe": TARGET_CHAIN_VS_MP, "added_node_us": TARGET_ADDED_NODE_US},
                "ref": {"rev": a.ref, "commit": ref_commit, **res["ref"]} if ref_commit else None,
                "load_average_at_start": load_at_start, "vpipe_commit": _git_head(),
                "mediapipe_baseline": res["mediapipe"].get("version") if mp else "absent"})
    print(f"wrote {write_json(a.json, 'core', res)}")
    if tmp is not None:
        tmp.cleanup()


def _git_head() -> str | None:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or None


if __name__ == "__main__":
    main()
