"""Cost of the ``Inference`` calculator inside a graph over calling the bare engine in a loop.

Models: BlazeFace short range (.tflite, 1x128x128x3) and CenterFace (.onnx, 1x3x256x320), on
OpenVINO CPU f32 (``--engine openvino``, the default) or BlazeFace on LiteRT (``--engine litert
--models blazeface --threads 1``, as ``engine: auto`` and graphs/face_detector.yaml run it), on
real frames of ``sample:carphone``. Per round, interleaved, on the same model:

- ``bare``: the runtime's own call in a loop (OpenVINO: ``InferRequest.infer(x, share_inputs=True)``
  on a request of the same ``CompiledModel``; LiteRT: ``set_tensor``, ``invoke`` and two
  ``get_tensor`` on an interpreter of the same file with the same thread count), one call per timing;
- ``engine``: vpipe's engine wrapper (``Engine.infer``), for reference;
- ``graph, one at a time``: a graph input -> ``Inference`` -> observer; each packet is added and its
  output awaited before the next (per-packet latency, including the scheduler's thread hand-offs);
- ``graph, streamed``: all packets added at once (a video file's case); per packet, the interval
  between consecutive outputs (the steady-state cost of one packet; its mean, first add to last
  output, is in the JSON as ``graph_streamed_mean``).

p50 per round (of the calls, or of the output intervals), median over ``--repeats`` interleaved
rounds; ratio = candidate / bare (the target: <= 1.05).

    python tests/bench/bench_inference_overhead.py [--calls 200] [--repeats 5] [--engine openvino|litert]
        [--threads N] [--models blazeface,centerface] [--json out/bench/inference_overhead.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from _meta import write_json  # noqa: E402  (tests/bench: machine, versions, command in the JSON)
from pipeline import Graph  # noqa: E402

MODELS = {
    # name: (catalog ref, tensor size (w, h), layout, range, format)
    "blazeface": ("zoo:blazeface-short", (128, 128), "NHWC", (-1.0, 1.0), "RGB"),
    "centerface": ("zoo:centerface", (320, 256), "NCHW", (0.0, 255.0), "RGB"),  # as the catalog says
}


def frames_as_tensors(size, layout, value_range, fmt, n=8):
    import av

    from models.catalog import resolve
    from calculators.image.ops import image_to_tensor
    from calculators.types import Image

    out = []
    with av.open(str(resolve("sample:carphone"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 5 == 0:
                t, _ = image_to_tensor(Image(f.to_ndarray(format="rgb24")), size, "letterbox",
                                       value_range=value_range, layout=layout, format=fmt)
                out.append(t)
            if len(out) == n:
                break
    return out


def time_calls(call, arrays, calls):
    """Seconds per ``call(x)``, cycling through ``arrays``."""
    lat = []
    for i in range(calls):
        x = arrays[i % len(arrays)]
        t0 = time.perf_counter()
        call(x)
        lat.append(time.perf_counter() - t0)
    return lat


class GraphRunner:
    """A started graph: in -> Inference -> out, kept across rounds (the model loads once)."""

    def __init__(self, model_path: str, engine: str = "openvino", threads: int | None = None):
        options = {"model": model_path, "engine": engine, **({"threads": threads} if threads else {})}
        self.g = Graph.from_dict({"name": "overhead", "inputs": ["in"], "nodes": [
            {"calculator": "Inference", "inputs": {"TENSORS": "in"}, "outputs": {"TENSORS": "out"},
             "options": options}]})
        self.done = threading.Event()
        self.count = 0
        self.target = 0
        self.times: list[float] = []
        self.g.observe("out", self._on_out)
        self.g.start()
        self.t = 0

    def _on_out(self, p):
        self.times.append(time.perf_counter())
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def _expect(self, n):
        self.done.clear()
        self.count = 0
        self.target = n
        self.times = []

    def one_at_a_time(self, tensors, calls):
        lat = []
        for i in range(calls):
            self._expect(1)
            t0 = time.perf_counter()
            self.g.add_packet("in", tensors[i % len(tensors)], self.t)
            if not self.done.wait(30):
                raise RuntimeError("no output within 30 s")
            lat.append(time.perf_counter() - t0)
            self.t += 1
        return lat

    def streamed(self, tensors, calls):
        """(p50 of the intervals between consecutive outputs, mean time per packet)."""
        self._expect(calls)
        t0 = time.perf_counter()
        for i in range(calls):
            self.g.add_packet("in", tensors[i % len(tensors)], self.t)
            self.t += 1
        if not self.done.wait(120):
            raise RuntimeError("outputs missing after 120 s")
        mean = (time.perf_counter() - t0) / calls
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        return statistics.median(gaps), mean

    def close(self):
        self.g.close_all_inputs()
        self.g.wait(60)


def calculator_own_cost_us(model_path: str, tensor, n: int = 20000, engine: str = "openvino") -> float:
    """``Inference.process`` with the engine call replaced by a constant: what the calculator
    itself adds per packet (payload unpacking, shape/dtype check, output ``Tensors``)."""
    from calculators.inference.calculator import Inference, InferenceOptions
    from pipeline.timestamp import Packet

    class _Out:
        def add(self, value, timestamp=None):
            pass

    class _Ctx:
        node, side, max_in_flight = "bench", {}, 1

        def __init__(self, options):
            self.options, self.inputs, self.outputs = options, {}, {"TENSORS": _Out()}

    calc, ctx = Inference(), _Ctx(InferenceOptions(model=model_path, engine=engine))
    calc.open(ctx)
    try:
        fixed = [np.zeros(1, np.float32) for _ in calc._shared.engine.outputs]
        calc._infer = lambda arrays: fixed
        ctx.inputs["TENSORS"] = Packet(tensor, 0)
        t0 = time.perf_counter()
        for _ in range(n):
            calc.process(ctx)
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        calc.close(ctx)


def bare_call(engine_name: str, engine, path: str):
    """The runtime's own call on the model the graph's engine runs: ``call(x)`` -> outputs."""
    if engine_name == "openvino":
        request = engine.compiled.create_infer_request()  # the same compiled model, bare
        return lambda x: request.infer(x, share_inputs=True)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=engine.threads)
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    outputs = [d["index"] for d in it.get_output_details()]

    def call(x):
        it.set_tensor(index, x)
        it.invoke()
        return [it.get_tensor(o) for o in outputs]

    return call


def bench_model(name, calls, repeats, engine_name="openvino", threads=None):
    from models.catalog import resolve
    from calculators.inference import model_cache

    ref, size, layout, rng, fmt = MODELS[name]
    path = str(resolve(ref))
    tensors = frames_as_tensors(size, layout, rng, fmt)
    arrays = [t.data for t in tensors]
    runner = GraphRunner(path, engine_name, threads)
    try:
        (shared,) = [s for k, s in model_cache._cache.items() if k[0] == str(Path(path).resolve())]
        engine = shared.engine
        bare = bare_call(engine_name, engine, path)
        for x in arrays:  # warm-up
            bare(x)
        runner.one_at_a_time(tensors, 10)
        rounds = {"bare": [], "engine": [], "graph_one": [], "graph_streamed": [], "graph_streamed_mean": []}
        for _ in range(repeats):
            rounds["bare"].append(statistics.median(time_calls(bare, arrays, calls)))
            rounds["engine"].append(statistics.median(time_calls(lambda x: engine.infer([x]), arrays, calls)))
            rounds["graph_one"].append(statistics.median(runner.one_at_a_time(tensors, calls)))
            p50, mean = runner.streamed(tensors, calls)
            rounds["graph_streamed"].append(p50)
            rounds["graph_streamed_mean"].append(mean)
    finally:
        runner.close()
    med = {k: statistics.median(v) * 1e3 for k, v in rounds.items()}
    own = calculator_own_cost_us(path, tensors[0], engine=engine_name)
    return {
        "calculator_own_us": round(own, 2),
        "model": ref, "input": list(arrays[0].shape),
        "engine": f"{engine_name} CPU f32" + (f", {engine.threads} thread(s)" if engine_name == "litert" else ""),
        "ms": med, "ratio": {k: med[k] / med["bare"] for k in med},
        "ratio_per_round": {k: statistics.median(a / b for a, b in zip(v, rounds["bare"])) for k, v in rounds.items()},
        "rounds_ms": {k: [round(x * 1e3, 4) for x in v] for k, v in rounds.items()},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="blazeface,centerface")
    ap.add_argument("--engine", choices=["openvino", "litert"], default="openvino")
    ap.add_argument("--threads", type=int, default=None, help="the runtime's threads (default: the engine's)")
    ap.add_argument("--json", default="out/bench/inference_overhead.json")
    args = ap.parse_args(argv)
    import calculators  # noqa: F401  (registers Inference)

    results = [bench_model(m, args.calls, args.repeats, args.engine, args.threads) for m in args.models.split(",")]
    cols = [("bare", "bare engine p50 ms"), ("engine", "Engine.infer"), ("graph_one", "graph 1-at-a-time"),
            ("graph_streamed", "graph streamed")]
    print(f"{'model':22s} " + " ".join(f"{c[1]:>20s}" for c in cols) + f"{'Inference own':>15s}")
    for r in results:
        print(f"{r['model']:22s} " + " ".join(
            f"{r['ms'][k]:9.3f} ({r['ratio'][k]:.3f}x)".rjust(20) for k, _ in cols)
            + f"{r['calculator_own_us']:>12.2f} us")
    path = write_json(args.json, "inference_overhead", {"calls": args.calls, "repeats": args.repeats, "results": results},
                      libraries=["openvino", "ai-edge-litert"])
    print(f"wrote {path}")
    worst = max(r["ratio"]["graph_streamed"] for r in results)
    return 0 if worst <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
