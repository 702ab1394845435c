"""Cost of the ``Inference`` calculator inside a graph over calling the bare engine in a loop.

Models: BlazeFace short range (.tflite, 1x128x128x3) and CenterFace (.onnx, 1x3x256x320), both on
OpenVINO CPU f32, on real frames of ``sample:carphone``. Per round, interleaved, on the same
compiled model:

- ``bare``: the runtime's own call in a loop (``InferRequest.infer(x, share_inputs=True)`` on a
  request of the same ``CompiledModel``), one call per timing;
- ``engine``: vpipe's engine wrapper (``Engine.infer``), for reference;
- ``graph, one at a time``: a graph input -> ``Inference`` -> observer; each packet is added and its
  output awaited before the next (per-packet latency, including the scheduler's thread hand-offs);
- ``graph, streamed``: all packets added at once (a video file's case); time per packet from the
  first add to the last output.

p50 per round, median over ``--repeats`` rounds; ratio = candidate / bare (the target: <= 1.05).

    python tests/bench/bench_inference_overhead.py [--calls 200] [--repeats 5] [--json out/bench/inference_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

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

    def __init__(self, model_path: str):
        self.g = Graph.from_dict({"name": "overhead", "inputs": ["in"], "nodes": [
            {"calculator": "Inference", "inputs": {"TENSORS": "in"}, "outputs": {"TENSORS": "out"},
             "options": {"model": model_path, "engine": "openvino"}}]})
        self.done = threading.Event()
        self.count = 0
        self.target = 0
        self.g.observe("out", self._on_out)
        self.g.start()
        self.t = 0

    def _on_out(self, p):
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def _expect(self, n):
        self.done.clear()
        self.count = 0
        self.target = n

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
        self._expect(calls)
        t0 = time.perf_counter()
        for i in range(calls):
            self.g.add_packet("in", tensors[i % len(tensors)], self.t)
            self.t += 1
        if not self.done.wait(120):
            raise RuntimeError("outputs missing after 120 s")
        return (time.perf_counter() - t0) / calls

    def close(self):
        self.g.close_all_inputs()
        self.g.wait(60)


def calculator_own_cost_us(model_path: str, tensor, n: int = 20000) -> float:
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

    calc, ctx = Inference(), _Ctx(InferenceOptions(model=model_path, engine="openvino"))
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


def bench_model(name, calls, repeats):
    from models.catalog import resolve
    from calculators.inference import model_cache

    ref, size, layout, rng, fmt = MODELS[name]
    path = str(resolve(ref))
    tensors = frames_as_tensors(size, layout, rng, fmt)
    arrays = [t.data for t in tensors]
    runner = GraphRunner(path)
    try:
        (shared,) = [s for k, s in model_cache._cache.items() if k[0] == str(Path(path).resolve())]
        engine = shared.engine
        request = engine.compiled.create_infer_request()  # the same compiled model, bare
        for x in arrays:  # warm-up
            request.infer(x, share_inputs=True)
        runner.one_at_a_time(tensors, 10)
        rounds = {"bare": [], "engine": [], "graph_one": [], "graph_streamed": []}
        for _ in range(repeats):
            rounds["bare"].append(statistics.median(time_calls(lambda x: request.infer(x, share_inputs=True), arrays, calls)))
            rounds["engine"].append(statistics.median(time_calls(lambda x: engine.infer([x]), arrays, calls)))
            rounds["graph_one"].append(statistics.median(runner.one_at_a_time(tensors, calls)))
            rounds["graph_streamed"].append(runner.streamed(tensors, calls))
    finally:
        runner.close()
    med = {k: statistics.median(v) * 1e3 for k, v in rounds.items()}
    own = calculator_own_cost_us(path, tensors[0])
    return {
        "calculator_own_us": round(own, 2),
        "model": ref, "input": list(arrays[0].shape), "engine": "openvino CPU f32",
        "ms": med, "ratio": {k: med[k] / med["bare"] for k in med},
        "rounds_ms": {k: [round(x * 1e3, 4) for x in v] for k, v in rounds.items()},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="blazeface,centerface")
    ap.add_argument("--json", default="out/bench/inference_overhead.json")
    args = ap.parse_args(argv)
    import calculators  # noqa: F401  (registers Inference)

    results = [bench_model(m, args.calls, args.repeats) for m in args.models.split(",")]
    cols = [("bare", "bare engine p50 ms"), ("engine", "Engine.infer"), ("graph_one", "graph 1-at-a-time"),
            ("graph_streamed", "graph streamed")]
    print(f"{'model':22s} " + " ".join(f"{c[1]:>20s}" for c in cols) + f"{'Inference own':>15s}")
    for r in results:
        print(f"{r['model']:22s} " + " ".join(
            f"{r['ms'][k]:9.3f} ({r['ratio'][k]:.3f}x)".rjust(20) for k, _ in cols)
            + f"{r['calculator_own_us']:>12.2f} us")
    out = {"benchmark": "inference_overhead", "command": " ".join([sys.executable] + sys.argv),
           "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
           "calls": args.calls, "repeats": args.repeats, "results": results}
    try:
        from apps.engine_bench import machine_info

        out["machine"] = machine_info()
    except Exception:  # noqa: BLE001 - informative only
        pass
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    worst = max(r["ratio"]["graph_streamed"] for r in results)
    return 0 if worst <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
