"""Loading graph files: vpipe's reader and loader against PyYAML's own safe loader, in the same run.

Cases, on a chain of N ``PassThrough`` nodes after a ``Counter`` with one node switched off by
``when:`` (the shape that made ``start()`` quadratic), for N in ``--nodes``:
- ``pyyaml``: ``yaml.safe_load`` of the text (pure-Python PyYAML, what graph files were read with):
  the baseline;
- ``read``: ``pipeline.graph_yaml.load_yaml`` (libyaml events, limits, line numbers, YAML 1.2);
- ``load``: ``Graph.from_yaml`` (read, normalise, validate);
- ``load+run``: load, start, run two packets through, wait.

    PYTHONPATH=. python tests/bench/bench_graph_load.py [--nodes 1000 10000] [--repeats 3] [--json out/bench/graph_load.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402
from _meta import interleaved, median, round_ratios, write_json  # noqa: E402

from pipeline import Graph, graph_yaml, registry  # noqa: E402


def chain(n: int) -> str:
    lines = ["side_packets: {extra: null}", "nodes:", "  - calculator: Counter", "    outputs: {OUT: s0}",
             "    options: {count: 2}"]
    for i in range(1, n):
        lines += ["  - calculator: PassThrough", f"    inputs: {{IN: s{i - 1}}}", f"    outputs: {{OUT: s{i}}}"]
    lines += ["  - calculator: PassThrough", f"    inputs: {{IN: s{n - 1}}}", "    outputs: {OUT: extra}",
              "    when: $extra"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("out/bench/graph_load.json"))
    args = ap.parse_args()
    registry.load_builtins()
    results = {}
    print(f"{'nodes':>7} {'case':<10} {'median s':>9} {'vs pyyaml':>10}")
    for n in args.nodes:
        text = chain(n)

        def load_and_run(text=text):
            g = Graph.from_yaml(text, threads=1)
            g.run()

        runs = interleaved({"pyyaml": lambda text=text: yaml.safe_load(text),
                            "read": lambda text=text: graph_yaml.load_yaml(text, "<bench>"),
                            "load": lambda text=text: Graph.from_yaml(text),
                            "load+run": load_and_run}, repeats=args.repeats)
        results[n] = {"runs_s": runs, "median_s": {k: median(v) for k, v in runs.items()},
                      "vs_pyyaml": {k: round_ratios(runs, k, "pyyaml")["median"] for k in runs}}
        for case in runs:
            print(f"{n:>7} {case:<10} {results[n]['median_s'][case]:>9.3f} {results[n]['vs_pyyaml'][case]:>9.2f}x")
    write_json(args.json, "graph_load", {"nodes": args.nodes, "repeats": args.repeats, "results": results},
               libraries=["yaml", "networkx", "pydantic"])


if __name__ == "__main__":
    main()
