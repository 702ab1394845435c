"""The engine interface, engine selection, the process-wide shared model cache and the batcher.

Nothing here imports a runtime: each engine module (``onnxruntime_engine``, ``openvino_engine``,
``tensorrt_engine``, ``ncnn_engine``) imports its library inside its functions, so
``import calculators`` works with none of them installed.

- ``Engine``: one loaded model. ``infer(arrays)`` takes the input arrays in the model's input order
  and returns the outputs in the model's output order; it is safe to call from several threads at
  once (each engine keeps the per-request state it needs: OpenVINO a pool of infer requests,
  TensorRT a pool of execution contexts, ncnn an extractor per call).
- ``EngineOptions``: what identifies a loaded model besides its file (engine, device, precision,
  threads, requests, engine-specific extras).
- ``acquire``/``release``: one loaded model per (resolved path, checksum, engine, options), shared
  by every node and stream that names it, refcounted and closed when the last user releases it.
- ``Batcher``: groups concurrent requests (from several timestamps in flight and/or several
  nodes) into one batch of up to N, waiting at most T milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import UserError

log = logging.getLogger("vpipe.inference")

ENGINES = ("onnxruntime", "openvino", "tensorrt", "ncnn", "mediapipe")
Precision = Literal["fp32", "fp16", "bf16", "int8"]


# --------------------------------------------------------------------------------------- errors
class InferenceError(UserError, RuntimeError):
    """Base class of the errors raised by the inference calculators."""


class EngineNotInstalledError(InferenceError, ImportError):
    """The engine's Python package is missing; the message names the extra to install."""


class ModelFormatError(InferenceError):
    """The engine cannot load the model's file format."""


class ModelLoadError(InferenceError):
    """The model file is missing, corrupt, or the runtime refused it."""


class DeviceError(InferenceError):
    """The device (or precision) is unknown or not available on this machine."""


class TensorMismatchError(InferenceError, ValueError):
    """An input tensor's shape or dtype does not fit the model."""


# ------------------------------------------------------------------------------------ specs
@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (``None`` for a dynamic dim, or ``None`` when the
    runtime does not say) and numpy dtype (``None`` when unknown)."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: np.dtype | None

    def describe(self) -> str:
        shape = "?" if self.shape is None else "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ")"
        return f"{shape} {self.dtype if self.dtype is not None else '?'}"

    def fits(self, arr: np.ndarray) -> bool:
        if self.dtype is not None and arr.dtype != self.dtype:
            return False
        if self.shape is None:
            return True
        if arr.ndim != len(self.shape):
            return False
        return all(d is None or d == a for d, a in zip(self.shape, arr.shape))


class EngineOptions(BaseModel):
    """Everything besides the model file that decides how it is loaded (part of the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = "auto"
    precision: Precision = "fp32"
    threads: int | None = Field(None, ge=1)
    requests: int = Field(1, ge=1, description="parallel requests the engine prepares for")
    light_mode: bool = True  # ncnn
    cache_dir: str | None = None  # tensorrt engine cache
    # Engine-specific settings (e.g. OpenVINO ``config``, ncnn ``opt``, TensorRT ``profile``), kept
    # as canonical JSON so the options stay hashable for the shared-model cache key.
    extra_json: str = "{}"

    @staticmethod
    def with_extra(extra: dict[str, Any] | None = None, **fields: Any) -> "EngineOptions":
        return EngineOptions(extra_json=json.dumps(extra or {}, sort_keys=True, default=str), **fields)

    def extra_dict(self) -> dict[str, Any]:
        return json.loads(self.extra_json)


class Engine:
    """One loaded model on one runtime. Subclasses load in ``__init__`` and fill the specs."""

    name: ClassVar[str] = ""  # engine name (the formats each engine reads are in ``_FORMATS``)

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    device: str  # the device actually used, for logs and benchmarks

    def __init__(self, path: Path, options: EngineOptions) -> None:
        self.path = path
        self.options = options

    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def dynamic_batch(self) -> bool:
        """Whether every input's first dim is dynamic (so requests may be stacked)."""
        return all(s.shape is None or (len(s.shape) > 0 and s.shape[0] is None) for s in self.inputs)


# ---------------------------------------------------------------------------- engine modules
_ENGINE_MODULES = {
    "onnxruntime": ("calculators.inference.onnxruntime_engine", "OnnxRuntimeEngine", "onnxruntime", "onnx"),
    "openvino": ("calculators.inference.openvino_engine", "OpenVinoEngine", "openvino", "openvino"),
    "tensorrt": ("calculators.inference.tensorrt_engine", "TensorRtEngine", "tensorrt", "tensorrt"),
    "ncnn": ("calculators.inference.ncnn_engine", "NcnnEngine", "ncnn", "ncnn"),
}

# Which engines read which files (by suffix), best first on a CPU-only machine. For ONNX on CPU,
# ONNX Runtime first: at f32 (the faithful default) it was faster than OpenVINO on CenterFace on
# the machine we measured (docs/benchmarks.md), and it loads in ~20 ms instead of ~250 ms.
_FORMATS = {
    ".onnx": ("onnxruntime", "openvino", "tensorrt"),
    ".xml": ("openvino",),
    ".tflite": ("openvino",),
    ".param": ("ncnn",),
    ".engine": ("tensorrt",),
    ".plan": ("tensorrt",),
}
_FORMAT_NAMES = {".onnx": "ONNX", ".xml": "OpenVINO IR", ".tflite": "TFLite", ".param": "ncnn param/bin",
                 ".engine": "TensorRT engine", ".plan": "TensorRT engine", ".task": "MediaPipe task bundle"}


def is_installed(engine: str) -> bool:
    pkg = "mediapipe" if engine == "mediapipe" else _ENGINE_MODULES[engine][2]
    try:
        return importlib.util.find_spec(pkg) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str):
    """Imports ``module`` or raises ``EngineNotInstalledError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EngineNotInstalledError(
            f"the {module!r} package is not installed ({e}); install it with: pip install vpipe[{extra}]"
        ) from e


def engine_class(name: str) -> type[Engine]:
    if name not in _ENGINE_MODULES:
        if name == "mediapipe":
            raise ModelFormatError(
                "engine 'mediapipe' runs MediaPipe Tasks models through their own calculators "
                "(MediaPipeFaceDetector, MediaPipeImageSegmenter, MediaPipeHandLandmarker, "
                "MediaPipePoseLandmarker); for raw .tflite tensors use engine 'openvino'"
            )
        raise ValueError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINES)}")
    module, cls, pkg, extra = _ENGINE_MODULES[name]
    if not is_installed(name):
        raise EngineNotInstalledError(
            f"engine {name!r} needs the {pkg!r} package, which is not installed; "
            f"install it with: pip install vpipe[{extra}]"
        )
    return getattr(importlib.import_module(module), cls)


def _has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def model_suffix(path: Path) -> str:
    return path.suffix.lower()


def check_format(engine: str, path: Path) -> None:
    """Raises ``ModelFormatError`` when ``engine`` cannot read ``path``'s format."""
    if engine not in _ENGINE_MODULES:
        engine_class(engine)  # mediapipe / unknown: raises with the way to go
    suffix = model_suffix(path)
    readers = _FORMATS.get(suffix, ())
    if engine in readers:
        return
    what = _FORMAT_NAMES.get(suffix, f"'{suffix}'")
    if suffix == ".task":
        hint = "a .task bundle runs with the MediaPipe calculators (MediaPipeFaceDetector, ...)"
    elif readers:
        hint = f"engines that read it: {', '.join(readers)}"
        if engine == "ncnn" and suffix == ".onnx":
            hint += "; or convert it: vpipe convert MODEL --to ncnn"
        if engine == "tensorrt" and suffix != ".onnx":
            hint += "; TensorRT builds engines from ONNX"
    else:
        hint = f"known formats: {', '.join(sorted(_FORMATS))}"
    raise ModelFormatError(f"engine {engine!r} cannot load {what} models ({path.name}); {hint}")


def pick_engine(path: Path, device: str = "auto") -> str:
    """The best installed engine for ``path``'s format on this machine (``engine: auto``)."""
    suffix = model_suffix(path)
    if suffix == ".task":
        check_format("mediapipe", path)  # raises with the hint
    candidates = list(_FORMATS.get(suffix, ()))
    if not candidates:
        raise ModelFormatError(
            f"cannot pick an engine for {path.name}: unknown model format '{suffix}' "
            f"(known: {', '.join(sorted(_FORMATS))})"
        )
    gpu = _has_nvidia_gpu() and device.lower() not in ("cpu",)
    if suffix == ".onnx":
        if gpu:
            # On an NVIDIA GPU: TensorRT, then ONNX Runtime (CUDA provider), then OpenVINO.
            candidates = ["tensorrt", "onnxruntime", "openvino"]
    installed = [c for c in candidates if is_installed(c)]
    if not installed:
        extras = sorted({_ENGINE_MODULES[c][3] for c in candidates})
        raise EngineNotInstalledError(
            f"no engine installed that reads {_FORMAT_NAMES.get(suffix, suffix)} models ({path.name}); "
            f"install one: " + " or ".join(f"pip install vpipe[{x}]" for x in extras)
        )
    return installed[0]


# ------------------------------------------------------------------------ shared model cache
_hash_cache: dict[tuple[str, int, int], str] = {}


def model_files(path: Path) -> list[Path]:
    """The files a model consists of (IR .xml+.bin, ncnn .param+.bin)."""
    suffix = model_suffix(path)
    if suffix in (".xml", ".param"):
        return [path, path.with_suffix(".bin")]
    return [path]


def checksum(path: Path) -> str:
    """sha256 of the model's files (memoized by path, size and mtime)."""
    h = hashlib.sha256()
    for f in model_files(path):
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        digest = _hash_cache.get(key)
        if digest is None:
            from calculators.catalog import sha256_file

            digest = _hash_cache[key] = sha256_file(f)
        h.update(digest.encode())
    return h.hexdigest()


@dataclass
class SharedModel:
    """One loaded engine (and its batcher) shared by every user of the same key."""

    key: tuple
    engine: Engine
    batcher: "Batcher | None"
    refs: int = 0


@dataclass
class _CacheStats:
    loads: int = 0
    releases: int = 0
    load_keys: list = field(default_factory=list)


_cache: dict[tuple, SharedModel] = {}
_cache_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
stats = _CacheStats()


def acquire(path: Path, engine: str, options: EngineOptions, batch_size: int = 1,
            batch_timeout_ms: float = 0.0) -> SharedModel:
    """The shared loaded model for this key, loading it on first use (refcount + 1)."""
    for f in model_files(path):
        if not f.is_file():
            raise ModelLoadError(f"model file not found: {f}")
    check_format(engine, path)
    key = (str(path.resolve()), checksum(path), engine, options, batch_size, float(batch_timeout_ms))
    with _cache_lock:
        shared = _cache.get(key)
        if shared is not None:
            shared.refs += 1
            return shared
        key_lock = _key_locks.setdefault(key, threading.Lock())
    # Load outside the global lock (loads take seconds) but only once per key.
    with key_lock:
        with _cache_lock:
            shared = _cache.get(key)
            if shared is not None:
                shared.refs += 1
                return shared
        cls = engine_class(engine)
        t0 = time.perf_counter()
        try:
            eng = cls(path, options)
        except (InferenceError, ImportError):
            raise
        except Exception as e:  # the runtime's own parse/compile errors
            raise ModelLoadError(f"{engine} could not load {path}: {type(e).__name__}: {e}") from e
        log.info("loaded %s with %s on %s in %.1f ms", path.name, engine, eng.device,
                 (time.perf_counter() - t0) * 1e3)
        batcher = None
        if batch_size > 1:
            if not eng.dynamic_batch:
                eng.close()
                raise ModelLoadError(
                    f"batch_size {batch_size} needs a model whose inputs have a dynamic first (batch) "
                    f"dim; {path.name} has " + ", ".join(f"{s.name} {s.describe()}" for s in eng.inputs)
                )
            batcher = Batcher(eng, batch_size, batch_timeout_ms / 1e3)
        shared = SharedModel(key, eng, batcher, refs=1)
        with _cache_lock:
            _cache[key] = shared
            _key_locks.pop(key, None)
            stats.loads += 1
            stats.load_keys.append(key)
        return shared


def release(shared: SharedModel) -> None:
    """Drops one reference; the last one closes the engine."""
    with _cache_lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        _cache.pop(shared.key, None)
        stats.releases += 1
    shared.engine.close()


def loaded_models() -> list[tuple[str, str, int]]:
    """(path, engine, refs) of every model currently loaded (for tests and stats)."""
    with _cache_lock:
        return [(k[0], k[2], s.refs) for k, s in _cache.items()]


# ----------------------------------------------------------------------------------- batcher
class _Request:
    __slots__ = ("arrays", "n", "taken", "done", "result", "error")

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.arrays = arrays
        self.n = int(arrays[0].shape[0])
        self.taken = False
        self.done = threading.Event()
        self.result: list[np.ndarray] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Stacks concurrent requests along the batch axis: up to ``max_batch`` rows, or whatever has
    arrived ``timeout_s`` after the first request of a batch.

    No thread of its own (leader/follower): the first caller of a batch waits for company, the
    caller that fills the batch (or the first one, at its deadline) runs it and hands each caller
    its rows. Requests come from a node's concurrent ``process`` calls (``max_in_flight``) and from
    every node sharing the model, so it batches across timestamps and across streams.
    """

    def __init__(self, engine: Engine, max_batch: int, timeout_s: float) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._rows = 0
        self.batches: list[int] = []  # rows per batch run (bounded by callers; for stats/tests)

    def _take(self) -> list[_Request]:
        batch, rows = [], 0
        while self._pending and (not batch or rows + self._pending[0].n <= self.max_batch):
            r = self._pending.pop(0)
            r.taken = True
            rows += r.n
            batch.append(r)
        self._rows -= rows
        self._cond.notify_all()
        return batch

    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        req = _Request(arrays)
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            self._pending.append(req)
            self._rows += req.n
        while True:
            batch: list[_Request] = []
            with self._cond:
                while not req.taken:
                    head = self._pending[0] is req
                    left = deadline - time.monotonic() if head else None
                    if self._rows >= self.max_batch or (head and left <= 0):
                        batch = self._take()
                        break
                    self._cond.wait(left)
            if batch:
                self._run(batch)
            if req.taken:
                break
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result  # type: ignore[return-value]

    def _run(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                batch[0].result = self.engine.infer(batch[0].arrays)
            else:
                stacked = [np.concatenate([r.arrays[i] for r in batch], axis=0)
                           for i in range(len(batch[0].arrays))]
                outs = self.engine.infer(stacked)
                start = 0
                for r in batch:
                    r.result = [o[start:start + r.n] for o in outs]
                    start += r.n
            self.batches.append(sum(r.n for r in batch))
            if len(self.batches) > 10_000:
                del self.batches[:5_000]
        except BaseException as e:  # every waiter gets the error
            for r in batch:
                r.error = e
        finally:
            for r in batch:
                r.done.set()
