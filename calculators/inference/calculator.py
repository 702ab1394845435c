"""``Inference``: runs a model on any engine (ONNX Runtime, OpenVINO, TensorRT, ncnn, LiteRT).

Ports: ``TENSORS`` in (a ``Tensor``, a numpy array, a list/tuple of them in the model's input
order, or a dict keyed by input name) → ``TENSORS`` out (``Tensors``: the model's outputs, named,
in the model's output order). Side input ``MODEL`` (optional) overrides the ``model`` option.

Timestamps: one output per input, at the input's timestamp (``timestamp_offset = 0``). With
``max_in_flight: N`` on the node, N requests run at once (the engine is told to prepare N parallel
requests: OpenVINO's ``AsyncInferQueue``, N TensorRT contexts, N LiteRT interpreters) and the core re-orders outputs by
timestamp. With ``batch_size: B`` the requests in flight (and those of every node sharing the
model) are stacked into batches of up to B, waiting at most ``batch_timeout_ms`` for company.

An engine that cannot read the model's format (``engine: onnxruntime`` or ``ncnn`` on a TFLite
model, ``ncnn`` on an ONNX one) runs the project's checked, cached conversion (``models/convert.py``,
what ``vpipe convert`` does) and loads its result, logging what it did; the NHWC inputs of a TFLite
model become NCHW in ONNX and ncnn, so tensors arriving in the TFLite layout are transposed and the
same graph runs unchanged on every engine. ``convert: never`` forbids it (the format error stays).

Example node:
    - calculator: Inference
      inputs: {TENSORS: tensor}
      outputs: {TENSORS: raw}
      options: {model: zoo:centerface, engine: openvino, device: CPU, precision: fp32}
      max_in_flight: 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline import Any as AnyPayload
from pipeline import Calculator, Input, Output, SideInput, register

from calculators.types import Tensor, Tensors

from .engine import EngineOptions, InferenceError, ModelFormatError, ModelLoadError, Precision, TensorMismatchError, log
from .model_cache import acquire, release
from .selection import pick_engine


class InferenceOptions(BaseModel):
    """Options of ``Inference`` (see docs/engines.md for what each engine does with them)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="path, or catalog name (zoo:NAME); or side input MODEL")
    engine: Literal["auto", "onnxruntime", "openvino", "tensorrt", "ncnn", "litert", "mediapipe"] = "auto"
    device: str = Field("auto", description="cpu, cuda[:N], tensorrt[:N] (onnxruntime); CPU/GPU/AUTO (openvino); "
                                            "vulkan[:N] (ncnn); auto: the engine's default")
    precision: Precision = "fp32"
    threads: int | None = Field(None, ge=1, description="runtime threads (intra-op); default: the runtime's")
    requests: int | None = Field(None, ge=1, description="parallel requests to prepare; default: max_in_flight")
    inputs: dict[str, str] | None = Field(
        None, description="payload name -> model input name, for dict/named payloads whose names differ")
    outputs: dict[str, str] | None = Field(
        None, description="model output name -> emitted name; when given, only these outputs, in this order")
    layouts: dict[str, str] = Field(default_factory=dict, description="layout of emitted tensors, by emitted name")
    batch_size: int = Field(1, ge=1, description="stack up to N requests in flight into one batch")
    batch_timeout_ms: float = Field(5.0, ge=0, description="longest wait for a batch to fill")
    light_mode: bool = Field(True, description="ncnn: free intermediate blobs early")
    cache_dir: str | None = Field(None, description="compiled-model cache folder: tensorrt engines, openvino blobs "
                                                    "(default: the catalog cache)")
    split_batch: bool = Field(False, description="a batch of N on a model whose batch is 1 runs as N calls, "
                                                 "outputs stacked (one crop per region of interest)")
    engine_options: dict[str, Any] = Field(default_factory=dict, description="engine-specific settings")
    convert: Literal["auto", "never"] = Field(
        "auto", description="auto: an engine that cannot read the model's format runs its checked, cached "
                            "conversion; never: that is an error")


def model_input_shape(ref: str) -> tuple[int | None, ...]:
    """The first input's shape of model ``ref`` (``zoo:NAME`` or a path): the shape catalog.yaml
    records for a catalog model, else the one the installed engine reports on loading it."""
    from models.catalog import CatalogError, entry, resolve

    try:
        recorded = (entry(ref).input or {}).get("shape")
    except CatalogError:
        recorded = None
    if recorded:
        return tuple(int(d) for d in recorded)
    try:
        path = Path(resolve(str(ref)))
    except FileNotFoundError as e:
        raise ModelLoadError(f"model file not found: {e}") from e
    shared = acquire(path, pick_engine(path), EngineOptions())  # loading errors said as Inference says them
    try:
        shape = shared.engine.inputs[0].shape
    finally:
        release(shared)
    if shape is None:
        raise InferenceError(f"{path.name}: the engine does not report its input shape; give the tensor size")
    return tuple(shape)


# The format each engine is given when it cannot read the model's own (models/convert.py's targets).
_CONVERT_TO = {"onnxruntime": "onnx", "openvino": "openvino", "ncnn": "ncnn", "tensorrt": "tensorrt"}


def _openvino_hint(path: Path, engine: str) -> str:
    """The way out for a .tflite with MediaPipe's custom ops that OpenVINO is given (mediapipe_ops.py)."""
    if engine == "openvino" or path.suffix.lower() != ".tflite":
        return ""
    from .mediapipe_ops import CUSTOM_OPS, custom_ops

    ops = {name for name, _ in custom_ops(path)}
    return "; engine openvino runs it (--set engine=openvino)" if ops and ops <= set(CUSTOM_OPS) else ""


def readable_model(path: Path, engine: str, convert: str, where: str) -> tuple[Path, list, dict]:
    """The model file ``engine`` loads for ``path``, converted (checked, cached) when it cannot read
    ``path``'s format; per input the (axis permutation, source shape) that takes a tensor in the
    source's layout to the converted model's (None where nothing changes); and the source model's
    output names in its order, each mapped to the converted model's name for it (empty when not
    converted: ncnn names its blobs out0, out1... in an order of its own)."""
    from .selection import check_format

    try:
        check_format(engine, path)
        return path, [], {}
    except ModelFormatError as e:
        target = _CONVERT_TO.get(engine)
        if convert == "never" or target is None or path.suffix.lower() not in (".onnx", ".tflite"):
            why = "; `convert: never` forbids converting it" if convert == "never" and target else ""
            raise ModelFormatError(f"{e}{why}") from None
    from models.convert import ConversionError, convert as run_conversion, onnx_input_shapes

    try:
        report = run_conversion(path, target)
        perms: list = []
        outputs = dict(report.output_names)
        if path.suffix.lower() == ".tflite":
            # tflite2onnx turns NHWC inputs into NCHW; the TFLite shapes are the first step's inputs.
            first = report if target == "onnx" else run_conversion(path, "onnx")
            if first is not report:  # TFLite name -> ONNX name -> the target's name
                outputs = {src: report.output_names.get(mid, mid) for src, mid in first.output_names.items()}
            for src, dst in zip(first.input_shapes.values(), onnx_input_shapes(first.path).values()):
                src, dst = list(src), list(dst)
                nchw = len(src) == 4 and src != dst and dst == [src[0], src[3], src[1], src[2]]
                perms.append(((0, 3, 1, 2), tuple(src)) if nchw else None)
    except ConversionError as e:
        raise ModelFormatError(f"engine {engine!r} cannot read {path.name} and converting it to {target} failed: "
                               f"{str(e).splitlines()[0]}{_openvino_hint(path, engine)}") from e
    log.warning("%s: engine %s cannot read %s; using its %s conversion to %s, checked against %s (max abs error "
                "%.3g): %s", where, engine, path.name, "cached" if report.cached else "new", target,
                report.reference, report.max_abs_error, report.path, extra={"notice": True})
    return report.path, perms, outputs


def _where(node: str, model: str) -> str:
    return f"node {node!r} (Inference, model {model})"


@register
class Inference(Calculator):
    """Runs a model on ONNX Runtime, OpenVINO, TensorRT, ncnn or LiteRT.

    Ports: TENSORS (Tensor | ndarray | list | dict) -> TENSORS (Tensors, named model outputs).
    Side inputs: MODEL (str, optional: overrides ``model``).
    Options: model, engine (auto|onnxruntime|openvino|tensorrt|ncnn|litert), device, precision
    (fp32|fp16|bf16|int8), threads, requests, inputs/outputs (name mapping), layouts, batch_size,
    batch_timeout_ms, light_mode (ncnn), cache_dir (tensorrt, openvino), split_batch (N crops on a batch-1
    model: N calls, outputs stacked on axis 0), engine_options, convert (auto: an engine that
    cannot read the model's format runs its checked, cached conversion; never).
    Timestamps: one output per input, same timestamp. Nodes naming the same model, engine and
    options share one loaded model.
    Example:
        - calculator: Inference
          inputs: {TENSORS: tensor}
          outputs: {TENSORS: raw}
          options: {model: zoo:blazeface-short, engine: openvino}
    """

    inputs = {"TENSORS": Input(AnyPayload, doc="Tensor, ndarray, list in input order, or dict by input name")}
    outputs = {"TENSORS": Output(Tensors, doc="the model's outputs, named")}
    side_inputs = {"MODEL": SideInput(str, optional=True, doc="model path or catalog name")}
    Options = InferenceOptions
    open_concurrently = True  # the engine import and model compile overlap the source's open

    def open(self, ctx) -> None:
        o: InferenceOptions = ctx.options
        ref = ctx.side.get("MODEL") if ctx.side else None
        ref = ref if ref is not None else o.model
        node = ctx.node
        if ref is None:
            raise InferenceError(f"node {node!r} (Inference): no model: set the 'model' option or the MODEL side input")
        self._where = _where(node, str(ref))
        try:
            from models.catalog import resolve

            path = Path(resolve(str(ref)))
        except FileNotFoundError as e:
            raise ModelLoadError(f"{self._where}: model file not found: {e}") from e
        except Exception as e:
            raise ModelLoadError(f"{self._where}: cannot resolve the model: {e}") from e
        self._where = _where(node, str(path))
        if not path.is_file():
            raise ModelLoadError(f"{self._where}: model file not found: {path}")
        engine = o.engine
        self._perms: list = []
        converted_outputs: dict = {}
        try:
            if engine == "auto":
                engine = pick_engine(path, o.device)
                log.info("%s: engine auto picked %s", self._where, engine)
            else:
                path, self._perms, converted_outputs = readable_model(path, engine, o.convert, self._where)
            requests = o.requests or max(ctx.max_in_flight, 1)
            opts = EngineOptions.with_extra(
                o.engine_options, device=o.device, precision=o.precision, threads=o.threads,
                requests=requests, light_mode=o.light_mode, cache_dir=o.cache_dir,
            )
            self._shared = acquire(path, engine, opts, o.batch_size, o.batch_timeout_ms)
        except InferenceError as e:
            raise type(e)(f"{self._where}, engine {engine}: {e}") from e
        self.engine_name = engine
        self._split = o.split_batch
        eng = self._shared.engine
        self._infer = self._shared.batcher.infer if self._shared.batcher is not None else eng.infer
        self._specs = list(eng.inputs)
        self._n_in = len(self._specs)
        self._names = [s.name for s in self._specs]
        self._rename_in = o.inputs or {}
        # Output selection and naming, fixed once: (index into engine outputs, name, layout).
        out_names = [s.name for s in eng.outputs]
        index = {n: i for i, n in enumerate(out_names)}
        if converted_outputs and all(c in index for c in converted_outputs.values()):
            # a converted model answers as its source: the source's output names, in its order
            index = {src: index[c] for src, c in converted_outputs.items()}
            out_names = list(converted_outputs)
        if o.outputs:
            unknown = [n for n in o.outputs if n not in index]
            if unknown:
                self._release()
                raise InferenceError(f"{self._where}: no output named {unknown}; the model's outputs are {out_names}")
            picks = [(index[n], new) for n, new in o.outputs.items()]
        else:
            picks = [(index[n], n) for n in out_names]
        self._picks = [(i, name, o.layouts.get(name, "")) for i, name in picks]
        # Payload names that the model does not have are an error at open, not per packet.
        bad = [m for m in self._rename_in.values() if m not in self._names]
        if bad:
            self._release()
            raise InferenceError(f"{self._where}: 'inputs' maps to unknown model inputs {bad}; the model's inputs are {self._names}")

    # ------------------------------------------------------------------------------ payloads
    def _arrays(self, value) -> list[np.ndarray]:
        if isinstance(value, Tensor):
            return [value.data]
        if isinstance(value, np.ndarray):
            return [value]
        if isinstance(value, dict):
            by_name = {self._rename_in.get(k, k): (v.data if isinstance(v, Tensor) else v) for k, v in value.items()}
            missing = [n for n in self._names if n not in by_name]
            if missing:
                raise TensorMismatchError(
                    f"{self._where}: missing input(s) {missing}; got {sorted(by_name)}; the model's inputs are {self._names}"
                )
            return [np.asarray(by_name[n]) for n in self._names]
        if isinstance(value, (list, tuple)):
            if isinstance(value, Tensors) and all(t.name is not None for t in value):
                names = [self._rename_in.get(t.name, t.name) for t in value]
                if set(self._names) <= set(names):
                    return [value[names.index(n)].data for n in self._names]
            return [v.data if isinstance(v, Tensor) else np.asarray(v) for v in value]
        raise TensorMismatchError(
            f"{self._where}: TENSORS takes a Tensor, a numpy array, a list or a dict of them; got {type(value).__name__}"
        )

    def _mismatch(self, arrays: list[np.ndarray]) -> TensorMismatchError:
        if len(arrays) != self._n_in:
            return TensorMismatchError(
                f"{self._where}: the model takes {self._n_in} input(s) {self._names}, got {len(arrays)} tensor(s)"
            )
        lines = []
        for spec, a in zip(self._specs, arrays):
            if not spec.fits(a):
                lines.append(f"input {spec.name!r}: expected {spec.describe()}, got {tuple(a.shape)} {a.dtype}")
        return TensorMismatchError(f"{self._where}: " + "; ".join(lines))

    # ------------------------------------------------------------------------------- running
    def process(self, ctx) -> None:
        packet = ctx.inputs["TENSORS"]
        if packet is None:
            return
        arrays = self._arrays(packet.value)
        if self._perms:  # tensors in the source model's layout, for its conversion's
            # (any batch: split_batch feeds N crops to a batch-1 model)
            arrays = [np.ascontiguousarray(a.transpose(p[0])) if p is not None and a.shape[1:] == p[1][1:] else a
                      for a, p in zip(arrays, self._perms + [None] * (len(arrays) - len(self._perms)))]
        if len(arrays) != self._n_in:
            raise self._mismatch(arrays)
        if self._split and arrays[0].ndim and arrays[0].shape[0] != 1:
            self._per_item(ctx, arrays)
            return
        for spec, a in zip(self._specs, arrays):
            if not spec.fits(a):
                raise self._mismatch(arrays)
        try:
            outs = self._infer(arrays)
        except InferenceError:
            raise
        except Exception as e:
            raise InferenceError(f"{self._where}, engine {self.engine_name}: inference failed: {type(e).__name__}: {e}") from e
        ctx.outputs["TENSORS"].add(Tensors([Tensor(outs[i], layout, name) for i, name, layout in self._picks]))

    def _per_item(self, ctx, arrays: list[np.ndarray]) -> None:
        n = arrays[0].shape[0]
        if any(a.ndim == 0 or a.shape[0] != n for a in arrays):
            raise TensorMismatchError(f"{self._where}: split_batch needs every input with the same batch, got "
                                      f"{[tuple(a.shape) for a in arrays]}")
        results = []
        for k in range(n):
            item = [a[k:k + 1] for a in arrays]
            for spec, a in zip(self._specs, item):
                if not spec.fits(a):
                    raise self._mismatch(item)
            try:
                results.append([np.array(o, copy=True) for o in self._infer(item)])  # engines may reuse buffers
            except InferenceError:
                raise
            except Exception as e:
                raise InferenceError(f"{self._where}, engine {self.engine_name}: inference failed: "
                                     f"{type(e).__name__}: {e}") from e
        ctx.outputs["TENSORS"].add(Tensors([Tensor(np.concatenate([r[i] for r in results]), layout, name)
                                            for i, name, layout in self._picks]))

    def _release(self) -> None:
        shared = getattr(self, "_shared", None)
        if shared is not None:
            self._shared = None
            release(shared)

    def close(self, ctx) -> None:
        self._release()
