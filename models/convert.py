"""Model conversion between engines' formats, each result checked against its source on real inputs.

    from models.convert import convert
    report = convert("zoo:centerface", "openvino")     # ONNX -> OpenVINO IR
    report.path                                         # the converted model's main file
    report.max_abs_error                                # worst error over frames and random inputs

Conversions: ONNX -> OpenVINO IR (``openvino.convert_model`` + ``save_model``), ONNX -> ncnn (the
``pnnx`` converter's bundled executable), ONNX -> TensorRT engine (TensorRT's builder, on an NVIDIA
GPU), TFLite -> ONNX (``tflite2onnx``); a TFLite model asked for another target goes through ONNX
first. Every result is run (by the same engine classes ``Inference`` uses, at f32) next to its
source on frames of the sample videos (resized to the input size and scaled to the input range)
and on seeded random inputs; the conversion fails with
``ConversionCheckError`` (and caches nothing) when an output differs by more than
``atol + rtol * max|reference|`` (the tolerances are in ``TOLERANCES`` and ``TFLITE_TO_ONNX``). Converted models are cached
under ``$VPIPE_CACHE/converted/<stem>-<source sha256>/...`` with a ``report.json`` that records the
checks; the whole directory is moved into place only after the check passed.

The reference for a TFLite source is the TFLite interpreter (``ai-edge-litert``) when installed,
else OpenVINO's TFLite reader with ``INFERENCE_PRECISION_HINT=f32``. OpenVINO's CPU plugin runs in
bfloat16 by default on CPUs with AVX512-BF16/AMX, which moves BlazeFace's regressors by up to ~2.6
(values up to ~230): every check here pins f32 so that a conversion is judged on its own error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from .catalog import sha256_file

from calculators.inference.engine import Engine, EngineOptions, InferenceError
from calculators.inference.selection import engine_class
from pipeline.errors import UserError

__all__ = [
    "convert", "ConversionError", "ConversionCheckError", "ConversionReport", "TOLERANCES",
    "Tolerance", "TFLITE_TO_ONNX", "TARGETS", "model_format", "onnx_input_shapes",
]

TARGETS = ("onnx", "openvino", "ncnn", "tensorrt")
Target = Literal["onnx", "openvino", "ncnn", "tensorrt"]
#: bumped when a converter's output changes, so stale cached conversions are not served
_VERSION = 2  # 2: TFLite constants folded (models/tflite_fold.py), 4-D outputs back to NHWC
_DEFAULT_HW = (480, 640)


class ConversionError(UserError, RuntimeError):
    """A model could not be converted (unsupported pair, missing converter, converter failure)."""


class ConversionCheckError(ConversionError):
    """The converted model's outputs differ from its source's beyond the stated tolerance."""

    def __init__(self, message: str, report: "ConversionReport") -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self):  # pickles with its report (a worker process raises it to the caller)
        return (type(self), (self.args[0], self.report))


@dataclass(frozen=True)
class Tolerance:
    """An output passes when ``max|got - ref| <= atol + rtol * max|ref|``."""

    atol: float
    rtol: float

    def allowed(self, ref_max: float) -> float:
        return self.atol + self.rtol * ref_max


#: fp32 conversions are held to float rounding; fp16 ones to half precision.
TOLERANCES: dict[tuple[str, bool], Tolerance] = {
    ("onnx", False): Tolerance(atol=1e-3, rtol=1e-4),
    ("openvino", False): Tolerance(atol=1e-3, rtol=1e-4),
    # ncnn's own float order (Winograd, packed GEMM): pose-landmark-full's segmentation logits (up
    # to ~1700) differ from ONNX Runtime's by 1.42e-3 x max|ref|, as TFLite and OpenVINO differ by 1.03e-3
    ("ncnn", False): Tolerance(atol=1e-3, rtol=2e-3),
    ("tensorrt", False): Tolerance(atol=1e-3, rtol=1e-3),
    ("openvino", True): Tolerance(atol=1e-2, rtol=1e-2),
    ("ncnn", True): Tolerance(atol=1e-2, rtol=1e-2),
    ("tensorrt", True): Tolerance(atol=1e-2, rtol=1e-2),
}


#: TFLite -> ONNX is judged against the TFLite interpreter (XNNPACK), whose own float order differs
#: from every other runtime's: on pose-landmark-full's segmentation logits (values up to ~1700) the
#: TFLite interpreter and OpenVINO's f32 reading of the same .tflite differ by 1.03e-3 x max|ref|, the
#: ONNX conversion by 1.25e-3 (every other output of the catalog's models: <= 2.8e-4).
TFLITE_TO_ONNX = Tolerance(atol=1e-3, rtol=2e-3)


class OutputCheck(BaseModel):
    input: str            # which input: "frame carphone#0", "random#1"
    output: str
    max_abs_error: float
    ref_max_abs: float
    allowed: float
    passed: bool


class ConversionReport(BaseModel):
    source: str
    source_sha256: str
    source_format: str
    target: str
    fp16: bool
    path: Path                       # the converted model's main file
    files: dict[str, str]            # file name -> sha256, all in path.parent
    input_shapes: dict[str, list[int]]
    output_names: dict[str, str]     # source output name -> converted output name
    tolerance: dict[str, float]
    checks: list[OutputCheck]
    max_abs_error: float
    reference: str                   # what ran the source model
    seconds: float
    cached: bool = False

    def table(self) -> str:
        rows = [f"{'input':<22} {'output':<16} {'max abs err':>12} {'allowed':>10}  ok"]
        for c in self.checks:
            rows.append(f"{c.input:<22} {c.output:<16} {c.max_abs_error:>12.3g} {c.allowed:>10.3g}  "
                        f"{'yes' if c.passed else 'NO'}")
        return "\n".join(rows)


# ---------------------------------------------------------------- helpers


def model_format(path: Path) -> str:
    suffix = path.suffix.lower()
    fmt = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino", ".param": "ncnn",
           ".engine": "tensorrt", ".plan": "tensorrt"}.get(suffix)
    if fmt is None:
        raise ConversionError(f"{path}: unknown model format {suffix!r} (expected .onnx or .tflite)")
    return fmt


def _need(module: str, extra: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConversionError(f"{what} needs the Python module {module!r}: pip install vpipe[{extra}]") from err


# ---------------------------------------------------------------- model runners (for checks)

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Spec:
    """A model's inputs (name -> shape, symbolic dims as strings) and output names, in order."""

    inputs: dict[str, list]
    outputs: list[str]


def _onnx_spec(path: Path) -> _Spec:
    onnx = _need("onnx", "onnx", "reading an ONNX model")
    m = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in m.graph.initializer}
    ins = {i.name: [d.dim_param or d.dim_value or "?" for d in i.type.tensor_type.shape.dim]
           for i in m.graph.input if i.name not in weights}
    return _Spec(ins, [o.name for o in m.graph.output])


def onnx_input_shapes(path: Path) -> dict[str, list]:
    """An ONNX model's inputs: name -> shape (symbolic dims as strings), in order."""
    return dict(_onnx_spec(Path(path)).inputs)


def _load(engine: str, path: Path) -> Engine:
    """``path`` on vpipe's own ``engine`` at f32, on the CPU (on the GPU for TensorRT)."""
    options = EngineOptions(device="cuda" if engine == "tensorrt" else "cpu", precision="fp32")
    try:
        return engine_class(engine)(path, options)
    except (InferenceError, ImportError) as err:
        raise ConversionError(f"checking {path} on {engine}: {err}") from err
    except Exception as err:  # the runtime's own parse errors
        raise ConversionError(f"{engine} could not load {path}: {type(err).__name__}: {err}") from err


def _runner(eng: Engine, names: dict[str, str] | None = None) -> Runner:
    """Runs ``eng`` on feeds keyed by the source model's names and answers under them too
    (``names``: source name -> the converted model's name, for inputs and outputs alike)."""
    source_of = {dst: src for src, dst in (names or {}).items()}
    feed_names = [source_of.get(s.name, s.name) for s in eng.inputs]
    answer_names = [source_of.get(s.name, s.name) for s in eng.outputs]

    def run(feed):
        try:
            outs = eng.infer([feed[n] for n in feed_names])
        except Exception as err:  # the runtime's own errors, named
            raise ConversionError(f"{eng.name} could not run {eng.path}: {type(err).__name__}: {err}") from err
        return dict(zip(answer_names, outs))

    return run


def _tflite_spec_and_runner(path: Path) -> tuple[_Spec, Runner, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = None
    if Interpreter is not None:
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        ins = it.get_input_details()
        outs = it.get_output_details()

        def run(feed):
            for d in ins:
                it.set_tensor(d["index"], feed[d["name"]])
            it.invoke()
            return {d["name"]: it.get_tensor(d["index"]).copy() for d in outs}

        spec = _Spec({d["name"]: [int(v) for v in d["shape"]] for d in ins}, [d["name"] for d in outs])
        return spec, run, "TFLite interpreter (ai-edge-litert)"
    eng = _load("openvino", path)  # without ai-edge-litert: OpenVINO's TFLite reader, pinned to f32
    spec = _Spec({s.name: ["?" if d is None else d for d in (s.shape or ())] for s in eng.inputs},
                 [s.name for s in eng.outputs])
    return spec, _runner(eng), "OpenVINO TFLite reader (f32)"


# ---------------------------------------------------------------- check inputs


def _concrete_shape(name: str, shape: list, given: Sequence[int] | None) -> list[int]:
    if given is not None:
        if len(given) != len(shape) or any(isinstance(d, int) and d > 0 and d != g for d, g in zip(shape, given)):
            raise ConversionError(f"input {name!r} has shape {shape}; the given shape {list(given)} does not fit it")
        return [int(g) for g in given]
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif i == 0:
            out.append(1)
        elif len(shape) == 4 and i in (2, 3) and shape[1] in (1, 3, 4):
            out.append(_DEFAULT_HW[i - 2])
        else:
            raise ConversionError(f"input {name!r} has dynamic shape {shape}: give a concrete one with shape=[...]")
    return out


def image_layout(shape: Sequence[int]) -> str | None:
    if len(shape) == 4 and shape[3] == 3:
        return "NHWC"
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    return None


def frame_input(rgb: np.ndarray, shape: Sequence[int], value_range: tuple[float, float]) -> np.ndarray:
    """An RGB frame as a float32 model input of ``shape`` (NCHW or NHWC with 3 channels; the frame
    stretched to its size, 0..255 mapped onto ``value_range``, repeated along the batch axis)."""
    from calculators.image.ops import image_to_tensor
    from calculators.types import Image

    layout = image_layout(shape)
    if layout is None:
        raise ValueError(f"shape {list(shape)} is not an NCHW or NHWC 3-channel image")
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    x = image_to_tensor(Image(rgb), (w, h), "stretch", value_range=value_range, layout=layout)[0].data
    return x if shape[0] == 1 else np.ascontiguousarray(np.repeat(x, shape[0], axis=0))


def _sample_frames(n_per_video: int = 2) -> list[tuple[str, np.ndarray]]:
    """RGB frames spread over the sample videos (carphone has a face, bikes has none)."""
    import av

    from models.catalog import resolve

    frames = []
    for video in ("carphone", "bikes"):
        with av.open(str(resolve(f"sample:{video}"))) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % 40 == 0:
                    frames.append((f"frame {video}#{i}", frame.to_ndarray(format="rgb24")))
                if len(frames) >= n_per_video * (1 if video == "carphone" else 2):
                    break
    return frames


def _check_inputs(spec: _Spec, shapes: dict[str, list[int]], value_range: tuple[float, float],
                  n_random: int = 2) -> list[tuple[str, dict[str, np.ndarray]]]:
    lo, hi = value_range
    feeds: list[tuple[str, dict[str, np.ndarray]]] = []
    image_inputs = [n for n, s in shapes.items() if image_layout(s)]
    if len(image_inputs) == 1:
        name = image_inputs[0]
        for label, rgb in _sample_frames():
            feeds.append((label, {name: frame_input(rgb, shapes[name], value_range)}))
    rng = np.random.default_rng(20240601)
    for i in range(n_random):
        feeds.append((f"random#{i}", {n: rng.uniform(lo, hi, s).astype(np.float32) for n, s in shapes.items()}))
    return feeds


def _compare(ref_run: Runner, got_run: Runner, feeds, adapt_in: Callable[[dict], dict],
             out_map: dict[str, str], tol: Tolerance) -> list[OutputCheck]:
    checks = []
    for label, feed in feeds:
        ref = ref_run(feed)
        got = got_run(adapt_in(feed))
        for src_name, dst_name in out_map.items():
            r = np.asarray(ref[src_name], dtype=np.float32)
            g = np.asarray(got[dst_name], dtype=np.float32)
            if g.shape != r.shape:
                if g.size == r.size:
                    g = g.reshape(r.shape)
                else:
                    raise ConversionError(
                        f"output {src_name!r}: converted model gives shape {g.shape}, source gives {r.shape}")
            err = float(np.abs(r - g).max()) if r.size else 0.0
            ref_max = float(np.abs(r).max()) if r.size else 0.0
            allowed = tol.allowed(ref_max)
            checks.append(OutputCheck(input=label, output=src_name, max_abs_error=err, ref_max_abs=ref_max,
                                      allowed=allowed, passed=bool(np.isfinite(err) and err <= allowed)))
    return checks


# ---------------------------------------------------------------- converters (write into a folder)


def _tflite_to_onnx(src: Path, out: Path) -> Path:
    tflite2onnx = _need("tflite2onnx", "convert", "TFLite -> ONNX conversion")
    from .tflite2onnx_ops import register
    from .tflite_fold import fold_constants

    register()  # DEPTH_TO_SPACE
    dst = out / (src.stem + ".onnx")
    given = out / "fold-work" / src.name  # float16 and sparse weights folded to float32 first
    given.parent.mkdir()
    try:
        fold_constants(src, given)
    except ValueError as err:
        raise ConversionError(f"folding the constants of {src} failed: {err}") from err
    try:
        tflite2onnx.convert(str(given), str(dst))
    except Exception as err:  # tflite2onnx raises bare NotImplementedError/AssertionError on unsupported ops
        raise ConversionError(f"tflite2onnx could not convert {src}: {type(err).__name__}: {err}") from err
    finally:
        shutil.rmtree(given.parent, ignore_errors=True)
    _tidy_onnx(dst, _tflite_output_shapes(src))
    return dst


def _tflite_custom_ops(path: Path) -> list[str]:
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    return sorted({c.CustomCode().decode() for c in codes
                   if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.CUSTOM and c.CustomCode()})


def _tflite_output_shapes(path: Path) -> list[list[int]]:
    import tflite

    g = tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0)
    return [list(g.Tensors(g.Outputs(i)).ShapeAsNumpy()) for i in range(g.OutputsLength())]


def _tidy_onnx(path: Path, tflite_shapes: list[list[int]]) -> None:
    """tflite2onnx gives 4-D outputs in NCHW: a Transpose back to the TFLite model's NHWC makes every
    output of the ONNX model the TFLite model's, shape and order (inputs stay NCHW: Inference
    transposes them)."""
    onnx = _need("onnx", "onnx", "reading an ONNX model")
    model = onnx.load(str(path))
    if _restore_output_layouts(onnx, model.graph, tflite_shapes):
        onnx.checker.check_model(model)
        onnx.save(model, str(path))


def _restore_output_layouts(onnx, g, tflite_shapes: list[list[int]]) -> bool:
    changed = False
    for out, want in zip(g.output, tflite_shapes):
        dims = out.type.tensor_type.shape.dim
        got = [d.dim_value for d in dims]
        if len(want) != 4 or got == list(want) or got != [want[0], want[3], want[1], want[2]]:
            continue
        inner = out.name + "__nchw"
        for node in g.node:
            node.output[:] = [inner if n == out.name else n for n in node.output]
            node.input[:] = [inner if n == out.name else n for n in node.input]
        g.node.append(onnx.helper.make_node("Transpose", [inner], [out.name], perm=[0, 2, 3, 1],
                                            name=out.name + "__to_nhwc"))
        for d, v in zip(dims, want):
            d.dim_value = int(v)
        changed = True
    return changed


def _onnx_for_pnnx(src: Path, dst: Path) -> None:
    """``src`` rewritten into the forms pnnx turns into ncnn layers, every value unchanged:

    - ``Resize`` by ``sizes`` -> by the same whole-number ``scales``, without the attributes its mode
      does not use (pnnx leaves a sized Resize, or one with cubic/nearest attributes in linear mode,
      as a layer ncnn does not have);
    - ``DepthToSpace`` in ``DCR`` mode (TFLite's) -> a 1x1 convolution by a permutation matrix that
      reorders the channels into ``CRD`` order, then ``DepthToSpace`` in ``CRD`` mode (the only one
      pnnx maps onto ncnn's PixelShuffle); each output channel is one input channel times 1.0.
    """
    onnx = _need("onnx", "onnx", "reading an ONNX model")
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in g.input})
    init = {i.name: i for i in g.initializer}
    nodes = []
    for node in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Resize" and attrs.get("mode", b"nearest") == b"linear":
            if len(node.input) == 4 and node.input[3] in init:
                sizes = numpy_helper.to_array(init[node.input[3]]).astype(np.int64)
                shape = shapes.get(node.input[0])
                if shape and len(shape) == len(sizes) and min(shape) > 0 and not any(o % i for o, i in zip(sizes, shape)):
                    name = f"{node.output[0]}__scales"
                    g.initializer.append(numpy_helper.from_array(
                        np.array([o // i for o, i in zip(sizes, shape)], dtype=np.float32), name))
                    node.input[:] = [node.input[0], node.input[1], name]
            kept = [a for a in node.attribute if a.name in ("mode", "coordinate_transformation_mode")]
            del node.attribute[:]
            node.attribute.extend(kept)
        elif node.op_type == "DepthToSpace" and attrs.get("mode", b"DCR") == b"DCR":
            shape = shapes.get(node.input[0])
            bs = int(attrs["blocksize"])
            if shape and len(shape) == 4 and shape[1] > 0:
                channels = shape[1]
                c_out = channels // (bs * bs)
                weight = np.zeros((channels, channels, 1, 1), dtype=np.float32)
                for c in range(c_out):
                    for i in range(bs):
                        for j in range(bs):
                            weight[c * bs * bs + i * bs + j, (i * bs + j) * c_out + c] = 1.0
                w_name, mid = f"{node.output[0]}__dcr_to_crd", f"{node.output[0]}__crd_channels"
                g.initializer.append(numpy_helper.from_array(weight, w_name))
                nodes.append(helper.make_node("Conv", [node.input[0], w_name], [mid], kernel_shape=[1, 1],
                                              name=w_name))
                node.input[0] = mid
                for a in node.attribute:
                    if a.name == "mode":
                        a.s = b"CRD"
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, str(dst))


def _onnx_to_openvino(src: Path, out: Path, fp16: bool) -> Path:
    ov = _need("openvino", "openvino", "ONNX -> OpenVINO conversion")
    model = ov.convert_model(str(src))
    dst = out / (src.stem + ".xml")
    ov.save_model(model, str(dst), compress_to_fp16=fp16)  # save_model compresses by default
    return dst


def _pnnx_executable() -> Path:
    import importlib.util

    # `import pnnx` imports torch (for its tracing helpers); the converter itself is a bundled
    # self-contained executable next to the package, which is all an ONNX conversion needs.
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("ONNX -> ncnn conversion needs pnnx: pip install vpipe[convert]")
    exe = Path(next(iter(spec.submodule_search_locations))) / "pnnx"
    if not exe.is_file():
        raise ConversionError(f"the pnnx package has no converter executable at {exe}")
    return exe


def _onnx_to_ncnn(src: Path, out: Path, shapes: dict[str, list[int]], fp16: bool) -> tuple[Path, Path]:
    exe = _pnnx_executable()
    work = out / "pnnx-work"
    work.mkdir()
    local = work / src.name  # pnnx writes its side files next to its input
    _onnx_for_pnnx(src, local)
    param, bin_ = out / (src.stem + ".ncnn.param"), out / (src.stem + ".ncnn.bin")
    shape_arg = ",".join("[" + ",".join(map(str, s)) + "]f32" for s in shapes.values())
    cmd = [str(exe), str(local), f"inputshape={shape_arg}", f"fp16={int(fp16)}",
           f"ncnnparam={param}", f"ncnnbin={bin_}", f"ncnnpy={work / 'model_ncnn.py'}",
           f"pnnxparam={work / 'model.pnnx.param'}", f"pnnxbin={work / 'model.pnnx.bin'}",
           f"pnnxpy={work / 'model_pnnx.py'}", f"pnnxonnx={work / 'model.pnnx.onnx'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not param.is_file() or not bin_.is_file():
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-8:])
        raise ConversionError(f"pnnx could not convert {src} (exit {proc.returncode}):\n{tail}")
    shutil.rmtree(work)
    return param, bin_


def _ncnn_blob_names(param: Path) -> tuple[list[str], list[str]]:
    """Input blobs (``Input`` layers) and output blobs (produced but never consumed), in order."""
    lines = param.read_text().splitlines()[2:]
    produced, consumed, inputs = [], set(), []
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        ins, outs = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
        consumed.update(ins)
        produced.extend(outs)
        if parts[0] == "Input":
            inputs.extend(outs)
    outputs = [b for b in produced if b not in consumed and b not in inputs]
    return inputs, sorted(outputs, key=lambda b: (not b.startswith("out"), int(b[3:]) if b[3:].isdigit() else 0, b))


def _onnx_to_tensorrt(src: Path, out: Path, shapes: dict[str, list[int]], spec: _Spec, fp16: bool) -> Path:
    trt = _need("tensorrt", "tensorrt", "ONNX -> TensorRT conversion")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(src.read_bytes()):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(f"TensorRT could not parse {src}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if any(not isinstance(d, int) or d <= 0 for dims in spec.inputs.values() for d in dims):
        profile = builder.create_optimization_profile()
        for name, shape in shapes.items():
            # min: a quarter of the check size (rounded to 32), max: twice it; batch up to 8
            lo = [1] + [max(32, s // 2 // 32 * 32) if i >= 2 else s for i, s in enumerate(shape[1:], 1)]
            hi = [max(8, shape[0])] + [s * 2 if i >= 2 else s for i, s in enumerate(shape[1:], 1)]
            profile.set_shape(name, lo, shape, hi)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(f"TensorRT could not build an engine from {src} (see the log above)")
    dst = out / (src.stem + (".fp16" if fp16 else "") + ".engine")
    dst.write_bytes(bytes(serialized))
    return dst


# ---------------------------------------------------------------- the entry point


def convert(model: str | os.PathLike, to: Target, *, shape: Sequence[int] | None = None,
            value_range: tuple[float, float] | None = None, fp16: bool = False,
            cache: Path | None = None, force: bool = False,
            tolerance: Tolerance | None = None) -> ConversionReport:
    """Convert ``model`` (a path, ``zoo:NAME`` or catalog name) to ``to`` and check the result.

    ``shape`` fixes the input shape for checking (and for ncnn/TensorRT building) when the model's
    input has dynamic dims (default: batch 1, 480x640 images). ``value_range`` is the input range
    used for the checks (default: the catalog's, else [0, 1]). Raises ``ConversionCheckError``
    when the converted model's outputs differ beyond ``tolerance`` (default: ``TOLERANCES``);
    nothing is cached then.
    """
    from models.catalog import cache_dir, input_range, resolve

    if to not in TARGETS:
        raise ConversionError(f"unknown target {to!r}; choose one of {', '.join(TARGETS)}")
    ref = os.fspath(model)
    src = resolve(ref)
    fmt = model_format(src)
    if fmt not in ("onnx", "tflite"):
        raise ConversionError(f"{src}: only ONNX and TFLite models can be converted, this is {fmt}")
    if fmt == to:
        raise ConversionError(f"{src} is already a {to} model")
    value_range = value_range or input_range(ref) or (0.0, 1.0)
    if fmt == "tflite" and to != "onnx":
        # TFLite reaches every other format through ONNX (each step checked on its own).
        first = convert(src, "onnx", shape=None, value_range=value_range, cache=cache, force=force)
        return convert(first.path, to, shape=shape, value_range=value_range, fp16=fp16, cache=cache,
                       force=force, tolerance=tolerance)

    sha = sha256_file(src)
    shape_tag = "" if shape is None else "-" + "x".join(map(str, shape))
    root = Path(cache) if cache is not None else cache_dir()
    final = root / "converted" / f"{src.stem}-{sha[:16]}" / f"{to}{'-fp16' if fp16 else ''}{shape_tag}-v{_VERSION}"
    if not force:
        cached = _load_cached(final)
        if cached is not None:
            return cached

    started = time.perf_counter()
    if fmt == "tflite":
        custom = _tflite_custom_ops(src)
        if custom:  # MediaPipe's own ops: neither tflite2onnx nor the reference interpreter has them
            raise ConversionError(f"tflite2onnx could not convert {src}: it uses custom TFLite ops "
                                  f"({', '.join(custom)}) that no converter here knows")
        spec, ref_run, reference = _tflite_spec_and_runner(src)
    else:
        spec, ref_run, reference = _onnx_spec(src), _runner(_load("onnxruntime", src)), "onnxruntime (CPU)"
    if shape is not None and len(spec.inputs) != 1:
        raise ConversionError(f"{src} has {len(spec.inputs)} inputs; shape= fits single-input models only")
    shapes = {n: _concrete_shape(n, s, shape) for n, s in spec.inputs.items()}
    tol = tolerance or (TFLITE_TO_ONNX if fmt == "tflite" else TOLERANCES.get((to, fp16)) or TOLERANCES[(to, False)])

    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        in_map = {n: n for n in spec.inputs}
        out_map = {n: n for n in spec.outputs}
        adapt: Callable[[dict], dict] = lambda feed: feed
        if to == "onnx":  # from tflite
            path = _tflite_to_onnx(src, work)
            dst_spec = _onnx_spec(path)
            got_run = _runner(_load("onnxruntime", path))
            adapt = _layout_adapter(shapes, dst_spec)
            out_map = dict(zip(spec.outputs, dst_spec.outputs))
        elif to == "openvino":
            path = _onnx_to_openvino(src, work, fp16)
            got_run = _runner(_load("openvino", path))
        elif to == "ncnn":
            path, bin_ = _onnx_to_ncnn(src, work, shapes, fp16)
            blobs_in, blobs_out = _ncnn_blob_names(path)
            if len(blobs_in) != len(spec.inputs) or len(blobs_out) != len(spec.outputs):
                raise ConversionError(f"pnnx produced {len(blobs_in)} inputs / {len(blobs_out)} outputs for a "
                                      f"model with {len(spec.inputs)} / {len(spec.outputs)}")
            in_map = dict(zip(spec.inputs, blobs_in))
            blob_of = dict(zip(spec.outputs, blobs_out))
            got_run = _runner(_load("ncnn", path), {**in_map, **blob_of})  # answers under the source's names
        else:
            path = _onnx_to_tensorrt(src, work, shapes, spec, fp16)
            got_run = _runner(_load("tensorrt", path))
        feeds = _check_inputs(spec, shapes, value_range)
        checks = _compare(ref_run, got_run, feeds, adapt, out_map, tol)
        report = ConversionReport(
            source=ref, source_sha256=sha, source_format=fmt, target=to, fp16=fp16,
            path=final / path.name,
            files={p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()},
            input_shapes={in_map[n]: s for n, s in shapes.items()},
            output_names=blob_of if to == "ncnn" else out_map,
            tolerance={"atol": tol.atol, "rtol": tol.rtol},
            checks=checks, max_abs_error=max(c.max_abs_error for c in checks),
            reference=reference, seconds=round(time.perf_counter() - started, 3),
        )
        failed = [c for c in checks if not c.passed]
        if failed:
            worst = max(failed, key=lambda c: c.max_abs_error / max(c.allowed, 1e-30))
            raise ConversionCheckError(
                f"converting {ref} ({fmt}) to {to} failed its check against {reference}: max abs error "
                f"{worst.max_abs_error:.4g} on output {worst.output!r} for {worst.input} exceeds the allowed "
                f"{worst.allowed:.4g} (atol {tol.atol:g} + rtol {tol.rtol:g} x max|ref| {worst.ref_max_abs:.4g}); "
                f"{len(failed)} of {len(checks)} checks failed; nothing was cached.\n{report.table()}",
                report,
            )
        (work / "report.json").write_text(report.model_dump_json(indent=2))
        if final.exists():
            shutil.rmtree(final)  # a stale or damaged earlier conversion
        os.replace(work, final)
        return report
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _layout_adapter(shapes: dict[str, list[int]], dst: _Spec) -> Callable[[dict], dict]:
    """Map source inputs onto the converted model's (tflite2onnx turns NHWC inputs into NCHW)."""
    pairs = []
    for (name, shape), (dst_name, dst_shape) in zip(shapes.items(), dst.inputs.items()):
        if list(dst_shape) == list(shape):
            pairs.append((name, dst_name, None))
        elif len(shape) == 4 and list(dst_shape) == [shape[0], shape[3], shape[1], shape[2]]:
            pairs.append((name, dst_name, (0, 3, 1, 2)))
        else:
            raise ConversionError(f"converted input {dst_name!r} has shape {dst_shape}, source {name!r} has {shape}")

    def adapt(feed):
        return {d: np.ascontiguousarray(feed[s].transpose(p)) if p else feed[s] for s, d, p in pairs}

    return adapt


def _load_cached(final: Path) -> ConversionReport | None:
    manifest = final / "report.json"
    if not manifest.is_file():
        return None
    try:
        report = ConversionReport.model_validate_json(manifest.read_text())
    except ValueError:
        return None
    for name, digest in report.files.items():
        f = final / name
        if not f.is_file() or sha256_file(f) != digest:
            return None  # damaged: converted again
    return report.model_copy(update={"cached": True, "path": final / report.path.name})
