"""``vpipe bench engines MODEL``: every engine and precision on one model, measured the same way.

For each (engine, precision): load time, latency p50/p90 with one request, throughput with 1 and N
requests in flight, and the max abs error of the outputs against the reference engine (ONNX
Runtime fp32 for ONNX models, OpenVINO fp32 otherwise) on real frames of ``sample:carphone``.
Printed as a table, written as JSON and as a PNG chart (matplotlib).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from calculators.inference import selection
from calculators.inference.engine import Engine, EngineOptions, InferenceError, TensorSpec

PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class Row:
    engine: str
    precision: str
    device: str = ""
    load_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    fps_1: float | None = None
    fps_n: float | None = None
    in_flight: int = 1
    max_abs_err: float | None = None
    note: str = ""


@dataclass
class Report:
    model: str
    input_shapes: list
    reference: str
    rows: list[Row] = field(default_factory=list)
    machine: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "input_shapes": self.input_shapes, "reference": self.reference,
                "machine": self.machine, "rows": [asdict(r) for r in self.rows]}


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("onnxruntime", "openvino", "ncnn", "tensorrt", "numpy"):
        if importlib.util.find_spec(mod) is not None:
            try:
                from importlib.metadata import version

                versions[mod] = version(mod)
            except Exception:  # noqa: BLE001 - version is informative only
                versions[mod] = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions}


def sample_inputs(specs: list[TensorSpec], shape: Sequence[int] | None, value_range: tuple[float, float],
                  frames: int = 4) -> list[list[np.ndarray]]:
    """Real frames of sample:carphone shaped for each image input (random data for others)."""
    import av

    from models.catalog import resolve

    from models.convert import frame_input, image_layout

    images = []
    with av.open(str(resolve("sample:carphone"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 15 == 0:
                images.append(f.to_ndarray(format="rgb24"))
            if len(images) == frames:
                break
    rng = np.random.default_rng(0)
    feeds = []
    for img in images:
        feed = []
        for spec in specs:
            s = list(shape) if shape is not None else list(spec.shape or (1, 3, 480, 640))
            if shape is None:
                nchw = len(s) == 4 and s[1] in (1, 3)
                defaults = [1, 3, 480, 640] if nchw else [1, 480, 640, 3]
                s = [d if d is not None else defaults[i] for i, d in enumerate(s)]
            dtype = spec.dtype or np.dtype(np.float32)
            x = frame_input(img, s, value_range) if image_layout(s) else rng.random(s, np.float32)
            feed.append(np.ascontiguousarray(x, dtype=dtype))
        feeds.append(feed)
    return feeds


def _latencies(eng: Engine, feeds, iters: int) -> list[float]:
    out = []
    for i in range(iters):
        t0 = time.perf_counter()
        eng.infer(feeds[i % len(feeds)])
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _throughput(eng: Engine, feeds, n: int, seconds: float) -> float:
    count = [0] * n
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(k):
        i = k
        try:
            while not stop.is_set():
                eng.infer(feeds[i % len(feeds)])
                count[k] += 1
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return sum(count) / (time.perf_counter() - t0)


# The format `vpipe convert` makes for an engine that cannot read the model as it is.
CONVERT_TO = {"onnxruntime": "onnx", "ncnn": "ncnn", "tensorrt": "tensorrt", "openvino": "openvino"}


def _adapt_feed(feed: list[np.ndarray], shapes) -> list[np.ndarray]:
    """``feed`` laid out for an engine's inputs: an NHWC array goes NCHW where the engine's input
    is the transposed shape (tflite2onnx turns NHWC inputs into NCHW); anything else as it is."""
    def fits(shape, want) -> bool:  # None dims (dynamic) match anything
        return len(shape) == len(want) and all(w is None or w == d for d, w in zip(shape, want))

    out = []
    for a, want in zip(feed, shapes):
        if want is not None and a.ndim == 4 and not fits(a.shape, want) and fits(a.transpose(0, 3, 1, 2).shape, want):
            a = np.ascontiguousarray(a.transpose(0, 3, 1, 2))
        out.append(a)
    return out


def _paired(got: list[np.ndarray], ref: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each reference output with the engine's output of the same size, in the reference's shape
    (a converted model may list its outputs in another order, or add a batch dim)."""
    left = list(got)
    pairs = []
    for r in ref:
        same = [i for i, a in enumerate(left) if a.size == r.size]
        if not same:
            raise InferenceError(f"no output of {r.size} values to compare with the reference's {list(r.shape)}")
        exact = [i for i in same if left[i].shape == r.shape]
        pairs.append((np.reshape(left.pop((exact or same)[0]), r.shape), r))
    return pairs


def bench_engines(model: str, engines: Sequence[str] | None = None, precisions: Sequence[str] = ("fp32",),
                  iters: int = 50, in_flight: int = 2, seconds: float = 2.0, shape: Sequence[int] | None = None,
                  threads: int | None = None, devices: Sequence[str] = ("auto",), log=print) -> Report:
    from models.catalog import input_range, resolve

    path = Path(resolve(model))
    suffix = selection.model_suffix(path)
    readers = [e for e in selection._FORMATS.get(suffix, ()) if selection.is_installed(e)]
    if engines:
        engines = list(engines)
        unknown = [e for e in engines if e not in selection.ENGINES]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; choose from {', '.join(selection.ENGINES)}")
    else:
        # Every installed engine: those that read the model, then (for ONNX and TFLite, which
        # `vpipe convert` converts) the others, on the checked conversion.
        engines = list(readers)
        if suffix in (".onnx", ".tflite"):
            engines += [e for e in CONVERT_TO if e not in engines and selection.is_installed(e)]
    if not engines:
        raise InferenceError(f"no installed engine reads {path.name}")
    value_range = input_range(model) or ((0.0, 255.0) if suffix == ".onnx" else (0.0, 1.0))
    # The reference reads the model as it is: ONNX Runtime for ONNX, else the first installed reader.
    if suffix == ".onnx" and selection.is_installed("onnxruntime"):
        reference = "onnxruntime"
    elif readers:
        reference = readers[0]
    else:
        raise InferenceError(f"no installed engine reads {path.name} to serve as the reference "
                             f"(readers of {suffix}: {', '.join(selection._FORMATS.get(suffix, ())) or 'none'})")
    ref_engine = selection.engine_class(reference)(path, EngineOptions(device="cpu" if reference != "tensorrt" else "auto"))
    try:
        feeds = sample_inputs(ref_engine.inputs, shape, value_range)
        ref_out = [ref_engine.infer(f) for f in feeds]
    finally:
        ref_engine.close()
    report = Report(model=str(model), input_shapes=[list(a.shape) for a in feeds[0]],
                    reference=f"{reference} fp32", machine=machine_info())
    for eng_name, device, prec in ((e, d, p) for e in engines for d in devices for p in precisions):
        row = Row(eng_name, prec, device=device, in_flight=in_flight)
        report.rows.append(row)
        try:
            eng_path = path
            converted_shapes: list = []
            if eng_name not in selection._FORMATS.get(suffix, ()) and eng_name in CONVERT_TO:
                # An engine that cannot read the model gets it through the project's checked
                # converter (cached): ncnn .param/.bin from ONNX, ONNX from TFLite, ...
                from models.convert import convert

                target = CONVERT_TO[eng_name]
                # an ONNX source may have dynamic dims: build for the benchmark's input shape
                shape_arg = report.input_shapes[0] if suffix == ".onnx" else None
                conv = convert(model, target, shape=shape_arg)
                eng_path = Path(conv.path)
                converted_shapes = list(conv.input_shapes.values())
                row.note = f"converted by vpipe convert --to {target}"
            selection.check_format(eng_name, eng_path)
            cls = selection.engine_class(eng_name)
            opts = EngineOptions(precision=prec, threads=threads, device=device)
            t0 = time.perf_counter()
            eng = cls(eng_path, opts)
            row.load_ms = (time.perf_counter() - t0) * 1e3
            row.device = eng.device
            try:
                # e.g. NHWC -> NCHW after tflite2onnx; an engine that does not say its input
                # shapes (ncnn) is given those its converted model was checked with.
                wants = [sp.shape if sp.shape is not None else
                         (converted_shapes[i] if i < len(converted_shapes) else None)
                         for i, sp in enumerate(eng.inputs)]
                own = [_adapt_feed(f, wants) for f in feeds]
                for f in own:  # warm-up
                    eng.infer(f)
                lat = _latencies(eng, own, iters)
                qs = statistics.quantiles(lat, n=10)
                row.p50_ms, row.p90_ms = statistics.median(lat), qs[8]
                row.fps_1 = 1e3 / statistics.mean(lat)
                errs = [max(float(np.abs(a - b).max()) for a, b in _paired(eng.infer(f), r))
                        for f, r in zip(own, ref_out)]
                row.max_abs_err = max(errs)
                if not np.isfinite(row.max_abs_err):
                    row.note = (row.note + "; " if row.note else "") + "outputs not finite (NaN/inf)"
            finally:
                eng.close()
            # N in flight: the engine prepared for N parallel requests, N callers.
            eng = cls(eng_path, EngineOptions(precision=prec, threads=threads, device=device, requests=in_flight))
            try:
                eng.infer(own[0])
                row.fps_n = _throughput(eng, own, in_flight, seconds)
            finally:
                eng.close()
        except (InferenceError, ImportError, RuntimeError) as e:  # RuntimeError: a failed conversion
            row.note = str(e).split(";")[0][:120]
        log(f"{eng_name:12s} {device:8s} {prec:5s} " + (f"p50 {row.p50_ms:.2f} ms" if row.p50_ms else row.note))
    return report


def table(report: Report):
    from rich.table import Table

    t = Table(title=f"{report.model}  input {report.input_shapes}  error vs {report.reference}")
    for col in ("engine", "precision", "device", "load ms", "p50 ms", "p90 ms", "fps x1",
                f"fps x{report.rows[0].in_flight if report.rows else 'N'}", "max abs err", "note"):
        t.add_column(col, justify="right" if col not in ("engine", "precision", "device", "note") else "left")

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    for r in report.rows:
        t.add_row(r.engine, r.precision, r.device, f(r.load_ms, ".0f"), f(r.p50_ms, ".2f"), f(r.p90_ms, ".2f"),
                  f(r.fps_1, ".1f"), f(r.fps_n, ".1f"), f(r.max_abs_err, ".2g"), r.note)
    return t


def chart(report: Report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.p50_ms is not None]
    labels = [f"{r.engine}\n{r.precision}" + (f" {r.device}" if r.device.lower() not in ("cpu", "auto") else "")
              for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(rows) + 3), 4))
    x = np.arange(len(rows))
    ax1.bar(x, [r.p50_ms for r in rows], color="tab:blue", label="p50")
    ax1.errorbar(x, [r.p50_ms for r in rows], yerr=[[0] * len(rows), [r.p90_ms - r.p50_ms for r in rows]],
                 fmt="none", ecolor="black", capsize=4, label="to p90")
    ax1.set_xticks(x, labels)
    ax1.set_ylabel("latency, ms")
    ax1.legend()
    w = 0.38
    ax2.bar(x - w / 2, [r.fps_1 or 0 for r in rows], w, label="1 in flight")
    ax2.bar(x + w / 2, [r.fps_n or 0 for r in rows], w, label=f"{rows[0].in_flight if rows else 'N'} in flight")
    ax2.set_xticks(x, labels)
    ax2.set_ylabel("inferences / s")
    ax2.legend()
    fig.suptitle(f"{Path(report.model).name}  input {report.input_shapes}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(report: Report, out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(report.to_json(), indent=2))
    png = chart(report, out_dir / f"{stem}.png")
    return js, png
