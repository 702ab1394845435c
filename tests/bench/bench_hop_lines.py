"""Python executed per hop of the core, counted (not timed): lines and bytecodes per packet.

A figure the load of a shared machine cannot move. bench_core.py's graphs (1 PassThrough, a
chain of 10, the diamond) are fed on their input stream from this thread, and every node made
ready runs here too, under ``sys.settrace`` with opcode events: the lines and opcodes Python
executes per packet, the clock replaced by a counter (a C callable: it adds no traced lines, and
every call looks short, as PassThrough's are). The feed's own ``Graph.add_packet`` checks and
the worker loop's wake-up are left out (both are paid once per packet, not per hop); the added
node is (chain of 10 - 1 node) / 9. ``--ref REV`` counts vpipe's core at another git revision,
from ``git archive``, in a subprocess (e.g. the commit before a change).

    python tests/bench/bench_hop_lines.py [--packets 310] [--ref REV] [--json out/bench/hop_lines.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, os.environ.get("VPIPE_BENCH_ROOT", str(ROOT)))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _meta import write_json  # noqa: E402

WARM = 40


def count(spec: dict, out: str, packets: int) -> dict:
    """{'lines', 'opcodes', 'calls'} per packet."""
    import itertools

    import pipeline.node as node_module
    from pipeline import Graph
    from pipeline.timestamp import Packet

    node_module._perf_ns = itertools.count().__next__
    g = Graph.from_dict(spec, threads=1)
    got = []
    g.observe(out, got.append)
    g.start()
    s = g._streams["in"]
    ready: collections.deque = collections.deque()

    def feed(i: int) -> None:
        s.send(Packet(i, i), ready)
        while ready:
            n = ready.popleft()
            while n.step(ready, None):
                pass

    for i in range(WARM):
        feed(i)
    c: collections.Counter = collections.Counter()

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        c[event] += 1
        return tracer

    sys.settrace(tracer)
    try:
        for i in range(WARM, WARM + packets):
            feed(i)
    finally:
        sys.settrace(None)
    g.cancel()
    g.wait(30)
    assert len(got) == WARM + packets, f"{len(got)} packets out of {WARM + packets}"
    return {"lines": c["line"] / packets, "opcodes": c["opcode"] / packets, "calls": c["call"] / packets}


def counts(packets: int) -> dict:
    from bench_core import CASES

    return {name: count(spec, out, packets) for name, (spec, out) in CASES.items()}


def added(res: dict) -> dict:
    return {k: (res["chain_10"][k] - res["passthrough_1"][k]) / 9 for k in ("lines", "opcodes", "calls")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=310)
    ap.add_argument("--ref", default=None, help="git revision of vpipe to count as well")
    ap.add_argument("--json", default="out/bench/hop_lines.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(counts(a.packets)))
        return
    res = {"vpipe": counts(a.packets)}
    ref_commit = None
    if a.ref:
        from bench_core import export_ref

        with tempfile.TemporaryDirectory(prefix="vpipe-bench-ref-") as tmp:
            ref_commit = export_ref(a.ref, Path(tmp))
            r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--packets", str(a.packets)],
                               capture_output=True, text=True, timeout=600, cwd=tmp,
                               env=dict(os.environ, VPIPE_BENCH_ROOT=tmp))
            if r.returncode != 0:
                raise SystemExit(f"the --ref run failed:\n{r.stderr[-2000:]}")
            res["ref"] = json.loads(r.stdout.strip().splitlines()[-1])
    sides = ["vpipe"] + (["ref"] if a.ref else [])
    for side in sides:
        res[side]["added_node"] = added(res[side])
    print(f"Python executed per packet ({a.packets} packets, traced){' - ref ' + a.ref if a.ref else ''}")
    print(f"{'case':<16}" + "".join(f"{side + ' ' + k:>16}" for side in sides for k in ("lines", "opcodes")))
    for case in ("passthrough_1", "chain_10", "diamond", "added_node"):
        print(f"{case:<16}" + "".join(f"{res[side][case][k]:>16.1f}" for side in sides for k in ("lines", "opcodes")))
    res.update({"packets": a.packets, "ref_rev": a.ref, "ref_commit": ref_commit})
    print(f"wrote {write_json(a.json, 'hop_lines', res)}")


if __name__ == "__main__":
    main()
