"""ONNX Runtime engine: ``.onnx`` models on the CPU, CUDA, TensorRT or OpenVINO execution provider.

``device`` picks the execution provider: ``cpu``; ``cuda`` / ``cuda:N`` / ``gpu``; ``tensorrt`` /
``tensorrt:N`` (TensorRT provider, CUDA then CPU as fallbacks; ``precision: fp16`` sets
``trt_fp16_enable``); ``openvino`` / ``openvino:GPU`` (OpenVINO provider); ``auto``: CUDA when the
CUDA provider is available, else CPU. ``threads`` sets the session's intra-op threads. One
session serves every concurrent request (``InferenceSession.run`` is thread-safe).
Used through the ``Inference`` calculator (``engine: onnxruntime``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import DeviceError, Engine, EngineOptions, TensorSpec, require

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int16)": np.int16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def _spec(arg) -> TensorSpec:
    shape = None
    if arg.shape is not None:
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    dt = _ORT_TYPES.get(arg.type)
    return TensorSpec(arg.name, shape, np.dtype(dt) if dt is not None else None)


def providers_for(device: str, precision: str, available: list[str], extra: dict) -> tuple[list, str]:
    """(providers list for InferenceSession, the device name used) for a ``device`` string."""
    dev = device.lower()
    kind, _, index = dev.partition(":")

    def need(provider: str) -> None:
        if provider not in available:
            raise DeviceError(
                f"onnxruntime: device {device!r} needs the {provider}, which this onnxruntime build "
                f"does not have (available: {', '.join(available)}); install the matching build "
                f"(e.g. onnxruntime-gpu) or use device 'cpu'"
            )

    if precision not in ("fp32",) and not (kind == "tensorrt" and precision in ("fp16", "int8")):
        raise DeviceError(
            f"onnxruntime: precision {precision!r} is not available on device {device!r}: ONNX Runtime "
            f"runs the model's own precision (fp32 here); fp16/int8 need device 'tensorrt', or use "
            f"engine 'openvino' (fp16/bf16) or a quantized model"
        )
    if kind == "auto":
        if "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {}), "CPUExecutionProvider"], "cuda:0"
        return ["CPUExecutionProvider"], "cpu"
    if kind == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if kind in ("cuda", "gpu"):
        need("CUDAExecutionProvider")
        opts = {"device_id": int(index or 0), **extra.get("cuda", {})}
        return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"], f"cuda:{int(index or 0)}"
    if kind == "tensorrt":
        need("TensorrtExecutionProvider")
        opts = {"device_id": int(index or 0), "trt_fp16_enable": precision == "fp16",
                "trt_int8_enable": precision == "int8", **extra.get("tensorrt", {})}
        provs: list = [("TensorrtExecutionProvider", opts)]
        if "CUDAExecutionProvider" in available:
            provs.append(("CUDAExecutionProvider", {"device_id": int(index or 0)}))
        return provs + ["CPUExecutionProvider"], f"tensorrt:{int(index or 0)}"
    if kind == "openvino":
        need("OpenVINOExecutionProvider")
        opts = {"device_type": (index or "CPU").upper(), **extra.get("openvino", {})}
        return [("OpenVINOExecutionProvider", opts), "CPUExecutionProvider"], f"openvino:{opts['device_type']}"
    raise DeviceError(
        f"onnxruntime: unknown device {device!r}; use cpu, cuda[:N], tensorrt[:N], openvino[:DEVICE] or auto"
    )


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime ``InferenceSession`` behind the engine interface."""

    name = "onnxruntime"

    def __init__(self, path: Path, options: EngineOptions) -> None:
        super().__init__(path, options)
        ort = require("onnxruntime", "onnx")
        extra = options.extra_dict()
        providers, self.device = providers_for(options.device, options.precision,
                                               ort.get_available_providers(), extra)
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = int(extra.get("log_severity_level", 3))
        for k, v in extra.get("session_config", {}).items():
            so.add_session_config_entry(str(k), str(v))
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self._in_names = [s.name for s in self.inputs]
        self._out_names = [s.name for s in self.outputs]
        self._run = self.session.run

    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._run(self._out_names, dict(zip(self._in_names, arrays)))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        self._run = None  # type: ignore[assignment]
