"""OpenVINO engine: ONNX (``.onnx``), OpenVINO IR (``.xml`` + ``.bin``) and TFLite (``.tflite``) models.

``device``: ``CPU`` (``auto`` means CPU: deterministic and f32-faithful), ``GPU``, ``GPU.1``, ``NPU``,
or the virtual devices ``AUTO``, ``MULTI:...``, ``HETERO:...``. ``precision`` sets
``INFERENCE_PRECISION_HINT``: fp32 → f32 (the default, numerically faithful; OpenVINO's CPU plugin
would otherwise run bf16 on CPUs that have it), fp16 → f16, bf16 → bf16 (CPUs with BF16 only).
int8 is not a hint: it is a property of a quantized model (NNCF), so it is refused here.
``threads`` sets ``INFERENCE_NUM_THREADS``. ``requests`` > 1 compiles for throughput and runs
requests through OpenVINO's ``AsyncInferQueue``; ``requests`` = 1 uses one infer request
synchronously (the lowest latency). Used through the ``Inference`` calculator (``engine: openvino``).
"""

from __future__ import annotations

import locale
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import DeviceError, Engine, EngineOptions, TensorSpec, log, require
from .mediapipe_ops import read_model, uses_custom_ops

_PRECISION_HINT = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")
_core = None
_core_lock = threading.Lock()
# OpenVINO's compile_model from a file with CACHE_DIR sets the C locale to "C" and back around its
# work (seen with gdb: setlocale(LC_ALL, "C") under ov::Core::compile_model(path, ...)). Two such
# compiles at once (a graph's models open concurrently) interleave the save and the restore and
# leave the whole process in the "C" locale: Python's preferred encoding becomes ASCII. They are
# run one at a time, and the locale found before is put back if it still changed.
_cached_compile_lock = threading.Lock()


_TOOLS = "openvino.tools.ovc"


def runtime():
    """The ``openvino`` package, imported without its model-conversion tools when nothing imported
    it yet: the package's ``__init__`` imports ``openvino.tools.ovc`` (for ``openvino.convert_model``:
    argparse, absl, TensorFlow frontend helpers, and a telemetry event sent from a thread pool),
    which is more than half of the import's CPU, and this engine only reads and compiles models.
    ``openvino.convert_model`` stays usable: its first use imports the tools (a module-level
    ``__getattr__`` put on the package, as PEP 562 allows)."""
    if "openvino" in sys.modules:
        return require("openvino", "openvino")
    with _core_lock:
        blocked = _TOOLS not in sys.modules
        if blocked:
            sys.modules[_TOOLS] = None  # `from openvino.tools.ovc import ...` raises ImportError: skipped
        try:
            ov = require("openvino", "openvino")
        finally:
            if blocked and sys.modules.get(_TOOLS, False) is None:
                del sys.modules[_TOOLS]
        if blocked and "convert_model" not in vars(ov) and "__getattr__" not in vars(ov):
            ov.__getattr__ = _conversion_tools
        return ov


def _conversion_tools(name: str):
    if name == "convert_model":
        from openvino.tools.ovc import convert_model

        return convert_model
    raise AttributeError(f"module 'openvino' has no attribute '{name}'")


def core():
    """The process-wide ``openvino.Core`` (one per process: it owns the plugins and their caches)."""
    global _core
    ov = runtime()
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


def model_cache_dir(cache_dir: str | None) -> Path:
    """Where compiled models are cached: the ``cache_dir`` option, else ``openvino/`` in the
    catalog's cache (``$VPIPE_CACHE``, default ``~/.cache/vpipe``). OpenVINO keys each blob by the
    model file, the device, the compile options and its own version, and compiles again (replacing
    the blob) when the file changed."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    from models.catalog import cache_dir as catalog_cache

    return catalog_cache() / "openvino"


def _name(port, i: int, kind: str) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # a port without a tensor name
        return f"{kind}{i}"


def _spec(port, i: int, kind: str) -> TensorSpec:
    pshape = port.get_partial_shape()
    shape = None
    if pshape.rank.is_static:
        shape = tuple(d.get_length() if d.is_static else None for d in pshape)
    try:
        dtype = np.dtype(port.get_element_type().to_dtype())
    except Exception:  # element types without a numpy equivalent
        dtype = None
    return TensorSpec(_name(port, i, kind), shape, dtype)


def resolve_device(device: str, available: list[str]) -> str:
    dev = "CPU" if device.lower() == "auto" else device.upper()
    base = dev.split(":")[0].split(".")[0]
    if base in _VIRTUAL:
        return dev
    have = {d.split(".")[0] for d in available}
    if base not in have or (("." in dev) and dev not in available):
        raise DeviceError(
            f"openvino: device {device!r} is not available here (available: {', '.join(available)}; "
            f"virtual: {', '.join(_VIRTUAL)})"
        )
    return dev


class OpenVinoEngine(Engine):
    """An OpenVINO ``CompiledModel`` behind the engine interface."""

    name = "openvino"

    def __init__(self, path: Path, options: EngineOptions) -> None:
        super().__init__(path, options)
        ov = runtime()
        c = core()
        self.device = resolve_device(options.device, list(c.available_devices))
        extra = options.extra_dict()
        config: dict = {}
        if options.precision == "int8":
            raise DeviceError(
                "openvino: precision 'int8' is not a runtime hint: quantize the model (NNCF) and load "
                "it with precision fp32; OpenVINO then runs its int8 layers as int8"
            )
        base = self.device.split(":")[0].split(".")[0]
        if base not in _VIRTUAL:
            if options.precision == "bf16" and base == "CPU":
                caps = c.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
                if "BF16" not in caps:
                    raise DeviceError(f"openvino: this CPU has no bf16 support (capabilities: {', '.join(caps)})")
            config["INFERENCE_PRECISION_HINT"] = _PRECISION_HINT[options.precision]
        config["PERFORMANCE_HINT"] = "LATENCY" if options.requests == 1 else "THROUGHPUT"
        if options.requests > 1:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = options.requests
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        if not uses_custom_ops(path):
            # OpenVINO's model cache: a model compiled once is imported from its blob afterwards
            # (BlazeFace: a third of the CPU of compiling it, docs/engines.md "Model cache"). Models
            # with MediaPipe's custom ops (numpy ops in Python) are compiled each time.
            cache = model_cache_dir(options.cache_dir)
            try:
                cache.mkdir(parents=True, exist_ok=True)
                config["CACHE_DIR"] = str(cache)
            except OSError as e:  # a read-only home: compiled as before, said once in the log
                log.info("openvino: no model cache (%s: %s)", cache, e)
        config.update(extra.get("config", {}))  # CACHE_DIR: "" there turns the cache off
        if "CACHE_DIR" in config:
            # Given the file, OpenVINO reads it only when its cache has no blob for it.
            self.compiled = _compile_cached(c, path, self.device, config)
        else:
            model = read_model(c, path)  # a .tflite with MediaPipe's custom ops gets them (mediapipe_ops.py)
            self.compiled = c.compile_model(model, self.device, config)
        # Whether this compile was an import from the model cache (OpenVINO's LOADED_FROM_CACHE).
        self.from_cache = bool(self.compiled.get_property("LOADED_FROM_CACHE"))
        log.info("openvino: %s %s for %s", "imported" if self.from_cache else "compiled", path.name,
                 f"from {config['CACHE_DIR']}" if self.from_cache else self.device)
        self.inputs = [_spec(p, i, "input") for i, p in enumerate(self.compiled.inputs)]
        self.outputs = [_spec(p, i, "output") for i, p in enumerate(self.compiled.outputs)]
        self.precision_used = "device default"  # what the plugin runs (f32, bf16, f16), for logs/bench
        if base not in _VIRTUAL:
            hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            self.precision_used = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        self._single = len(self.inputs) == 1
        self._queue = None
        if options.requests == 1:
            self._request = self.compiled.create_infer_request()
            self._lock = threading.Lock()
        else:
            self._queue = ov.AsyncInferQueue(self.compiled, options.requests)
            self._queue.set_callback(self._on_done)
            # AsyncInferQueue is meant to be fed from one thread: two concurrent start_async calls
            # can pick the same idle request ("Infer Request is busy"), so starting is serialized;
            # the inferences themselves still overlap.
            self._start_lock = threading.Lock()

    # One request, used synchronously: the least overhead per call. The lock only matters when
    # several nodes share this model with requests=1.
    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._queue is not None:
            return self._infer_async(arrays)
        with self._lock:
            res = self._request.infer(arrays[0] if self._single else list(arrays), share_inputs=True)
            return list(res.to_tuple())

    # AsyncInferQueue: start_async blocks while every request is busy, the callback copies the
    # outputs out of the request (which is reused) and wakes the caller.
    @staticmethod
    def _on_done(request, job) -> None:
        try:
            job[1] = [request.get_output_tensor(i).data.copy() for i in range(job[3])]
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            job[2] = e
        job[0].set()

    def _infer_async(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        job = [threading.Event(), None, None, len(self.outputs)]
        with self._start_lock:
            self._queue.start_async(arrays[0] if self._single else list(arrays), job, share_inputs=True)
        job[0].wait()
        if job[2] is not None:
            raise job[2]
        return job[1]

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        self._queue = None
        self._request = None
        self.compiled = None


def _compile_cached(core, path: Path, device: str, config: dict):
    """``core.compile_model(path, ...)`` with the model cache, one at a time, the C locale kept."""
    with _cached_compile_lock:
        before = locale.setlocale(locale.LC_ALL)
        try:
            return core.compile_model(str(path), device, config)
        finally:
            if locale.setlocale(locale.LC_ALL) != before:
                locale.setlocale(locale.LC_ALL, before)
