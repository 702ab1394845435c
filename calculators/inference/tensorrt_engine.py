"""TensorRT engine: an engine built from an ``.onnx`` model (or a serialized ``.engine``/``.plan``),
cached on disk, with its buffers on the GPU.

Written against the TensorRT 10 Python API (``Builder.create_network``, ``OnnxParser``,
``IBuilderConfig.set_flag``/``set_memory_pool_limit``, optimization profiles,
``build_serialized_network``, ``Runtime.deserialize_cuda_engine``, the name-based I/O tensor API
and ``IExecutionContext.execute_async_v3``) and ``cuda-python`` for memory and streams. NOT run on
the machines this project was written on (no GPU, no tensorrt): see docs/engines.md for what was
and was not verified.

``device``: ``cuda`` / ``cuda:N`` / ``gpu`` / ``auto`` (GPU 0). ``precision``: fp32, fp16
(``BuilderFlag.FP16``), bf16 (``BuilderFlag.BF16``), int8 (``BuilderFlag.INT8``: a model with Q/DQ
nodes, or calibration done beforehand). The built engine is cached under
``<cache_dir>/tensorrt/<sha>.engine`` where the key covers the model's checksum, the GPU name and
compute capability, the TensorRT version, the precision and the optimization profile.
Dynamic dims need a profile: the first (batch) dim defaults to 1..``max_batch`` (extra option,
default 8); other dynamic dims must be given as ``extra: {profile: {INPUT: [min, opt, max]}}``
(shapes). ``requests`` execution contexts (each with its own CUDA stream and buffers) serve
concurrent requests. Used through the ``Inference`` calculator (``engine: tensorrt``).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import DeviceError, Engine, EngineOptions, ModelLoadError, TensorSpec, log, require
from .model_cache import checksum


def _cudart():
    try:  # cuda-python >= 12.6 layout
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        cudart = require("cuda.cudart", "tensorrt")
    return cudart


def _check(result, what: str):
    err = result[0]
    if int(err) != 0:
        raise RuntimeError(f"CUDA error in {what}: {err}")
    return result[1] if len(result) == 2 else result[1:]


class _Context:
    """One execution context with its stream and device buffers (grown on demand)."""

    def __init__(self, engine, cudart) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise ModelLoadError("TensorRT could not create an execution context (out of GPU memory?)")
        self.cudart = cudart
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr), "cudaFree")
            ptr = _check(self.cudart.cudaMalloc(max(nbytes, 256)), "cudaMalloc")
            self.buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, ptr)
        return ptr

    def close(self) -> None:
        for ptr, _ in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers.clear()
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None


class TensorRtEngine(Engine):
    """A TensorRT ``ICudaEngine`` behind the engine interface."""

    name = "tensorrt"

    def __init__(self, path: Path, options: EngineOptions) -> None:
        super().__init__(path, options)
        trt = require("tensorrt", "tensorrt")
        cudart = _cudart()
        self._trt, self._cudart = trt, cudart
        kind, _, index = options.device.lower().partition(":")
        if kind not in ("auto", "cuda", "gpu"):
            raise DeviceError(f"tensorrt: unknown device {options.device!r}; use cuda[:N] (or gpu, auto)")
        gpu = int(index or 0)
        count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if gpu >= count:
            raise DeviceError(f"tensorrt: device {options.device!r} needs CUDA GPU {gpu}, but {count} are available")
        _check(cudart.cudaSetDevice(gpu), "cudaSetDevice")
        self.device = f"cuda:{gpu}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if path.suffix.lower() == ".onnx":
            blob = self._cached_build(path, gpu)
        else:
            blob = path.read_bytes()
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ModelLoadError(f"TensorRT could not deserialize the engine for {path} (built by another version?)")
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
            spec = TensorSpec(name, shape, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(spec)
            else:
                self.outputs.append(spec)
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._contexts = [_Context(self.engine, cudart) for _ in range(options.requests)]
        for c in self._contexts:
            self._pool.put(c)

    # ------------------------------------------------------------------------------ building
    def _cached_build(self, path: Path, gpu: int) -> bytes:
        trt, cudart, opts = self._trt, self._cudart, self.options
        prop = _check(cudart.cudaGetDeviceProperties(gpu), "cudaGetDeviceProperties")
        gpu_name = prop.name.decode(errors="replace").strip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        extra = opts.extra_dict()
        profile = extra.get("profile", {})
        max_batch = int(extra.get("max_batch", 8))
        key = json.dumps({
            "model": checksum(path), "gpu": gpu_name, "cc": f"{prop.major}.{prop.minor}",
            "trt": trt.__version__, "precision": opts.precision, "profile": profile, "max_batch": max_batch,
            "workspace": extra.get("workspace_mb"),
        }, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        if opts.cache_dir:
            root = Path(opts.cache_dir)
        else:
            from models.catalog import cache_dir

            root = cache_dir() / "tensorrt"
        target = root / f"{path.stem}-{digest}.engine"
        if target.is_file():
            log.info("tensorrt: using cached engine %s", target)
            return target.read_bytes()
        log.info("tensorrt: building an engine for %s (%s, %s); this takes a while", path.name, gpu_name, opts.precision)
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(f"TensorRT's ONNX parser rejected {path}: {errors}")
        config = builder.create_builder_config()
        if extra.get("workspace_mb"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(extra["workspace_mb"]) << 20)
        flags = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}
        if opts.precision in flags:
            config.set_flag(getattr(trt.BuilderFlag, flags[opts.precision]))
        dynamic = False
        prof = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            shape = tuple(t.shape)
            if all(d >= 0 for d in shape):
                continue
            dynamic = True
            if t.name in profile:
                lo, opt, hi = (tuple(s) for s in profile[t.name])
            elif all(d >= 0 for d in shape[1:]):
                lo, opt, hi = (1, *shape[1:]), (1, *shape[1:]), (max_batch, *shape[1:])
            else:
                raise ModelLoadError(
                    f"tensorrt: input {t.name!r} of {path.name} has dynamic dims {shape}; give its range as "
                    f"extra: {{profile: {{{t.name}: [MIN_SHAPE, OPT_SHAPE, MAX_SHAPE]}}}}"
                )
            prof.set_shape(t.name, lo, opt, hi)
        if dynamic:
            config.add_optimization_profile(prof)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelLoadError(f"TensorRT failed to build an engine for {path} (see the TensorRT log above)")
        blob = bytes(serialized)
        root.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, target)
        return blob

    # ----------------------------------------------------------------------------- inference
    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        cudart = self._cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ctx = self._pool.get()
        try:
            c = ctx.context
            for spec, a in zip(self.inputs, arrays):
                a = np.ascontiguousarray(a)
                c.set_input_shape(spec.name, a.shape)
                ptr = ctx.buffer(spec.name, a.nbytes)
                _check(cudart.cudaMemcpyAsync(ptr, a.ctypes.data, a.nbytes, h2d, ctx.stream), "cudaMemcpyAsync")
            outs = []
            for spec in self.outputs:
                out = np.empty(tuple(c.get_tensor_shape(spec.name)), dtype=spec.dtype)
                ctx.buffer(spec.name, out.nbytes)
                outs.append(out)
            if not c.execute_async_v3(ctx.stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            for spec, out in zip(self.outputs, outs):
                ptr = ctx.buffers[spec.name][0]
                _check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, ctx.stream), "cudaMemcpyAsync")
            _check((cudart.cudaStreamSynchronize(ctx.stream)[0], None), "cudaStreamSynchronize")
            return outs
        finally:
            self._pool.put(ctx)

    def close(self) -> None:
        for c in getattr(self, "_contexts", []):
            c.close()
        self._contexts = []
        self.engine = None
