"""MediaPipe 0.10.21's CalculatorGraph driven from Python: the baseline of bench_core.py.

Runs in the separate environment made by ``tests/bench/make_mp_env.sh`` (never imported into
vpipe's): a chain of N ``PassThroughCalculator`` nodes fed with ``add_packet_to_input_stream`` and
observed with ``observe_output_stream``, the same shape as vpipe's chain in bench_core.py. Prints
one JSON object: ``{"mediapipe": version, "us_per_packet": {"1": ..., "10": ...}}``.

    /work/envs/mp01021/bin/python tests/bench/mp_graph_baseline.py --packets 20000 --chains 1 10
"""

from __future__ import annotations

import argparse
import json
import time


def chain_config(n: int) -> tuple[str, str]:
    lines = ['input_stream: "in"']
    prev = "in"
    for i in range(n):
        lines.append(f'node {{ calculator: "PassThroughCalculator" input_stream: "{prev}" output_stream: "s{i}" }}')
        prev = f"s{i}"
    lines.append(f'output_stream: "{prev}"')
    return "\n".join(lines), prev


def run_chain(mp, n: int, packets: int) -> float:
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    from mediapipe.python import packet_creator

    text, out = chain_config(n)
    config = calculator_pb2.CalculatorGraphConfig()
    text_format.Parse(text, config)
    graph = mp.CalculatorGraph(graph_config=config)
    count = [0]

    def on_packet(stream, packet):
        count[0] += 1

    graph.observe_output_stream(out, on_packet)
    graph.start_run()
    create_int = packet_creator.create_int
    t0 = time.perf_counter()
    for i in range(packets):
        graph.add_packet_to_input_stream("in", create_int(i).at(i))
    graph.close_all_packet_sources()
    graph.wait_until_done()
    dt = time.perf_counter() - t0
    if count[0] != packets:
        raise SystemExit(f"MediaPipe chain of {n}: expected {packets} packets, got {count[0]}")
    return dt / packets * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--chains", type=int, nargs="+", default=[1, 10])
    a = ap.parse_args()
    import mediapipe as mp

    res = {str(n): run_chain(mp, n, a.packets) for n in a.chains}
    print(json.dumps({"mediapipe": mp.__version__, "us_per_packet": res}))


if __name__ == "__main__":
    main()
