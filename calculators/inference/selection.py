"""Engine selection: which engine reads which model file, whether it is installed, and the best
one for a model on this machine (``engine: auto``). Nothing here imports a runtime."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from .engine import Engine, EngineNotInstalledError, ModelFormatError
from .mediapipe_ops import uses_custom_ops

ENGINES = ("onnxruntime", "openvino", "tensorrt", "ncnn", "litert", "mediapipe")

_ENGINE_MODULES = {
    "onnxruntime": ("calculators.inference.onnxruntime_engine", "OnnxRuntimeEngine", "onnxruntime", "onnx"),
    "openvino": ("calculators.inference.openvino_engine", "OpenVinoEngine", "openvino", "openvino"),
    "tensorrt": ("calculators.inference.tensorrt_engine", "TensorRtEngine", "tensorrt", "tensorrt"),
    "ncnn": ("calculators.inference.ncnn_engine", "NcnnEngine", "ncnn", "ncnn"),
    "litert": ("calculators.inference.litert_engine", "LiteRtEngine", "ai_edge_litert", "litert"),
}

# Which engines read which files (by suffix), best first on a CPU-only machine. For ONNX on CPU,
# ONNX Runtime first: at f32 (the faithful default) it was faster than OpenVINO on CenterFace on
# the machine we measured (docs/benchmarks.md), and it loads in ~20 ms instead of ~250 ms.
_FORMATS = {
    ".onnx": ("onnxruntime", "openvino", "tensorrt"),
    ".xml": ("openvino",),
    ".tflite": ("litert", "openvino"),
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


def engine_class(name: str) -> type[Engine]:
    if name not in _ENGINE_MODULES:
        if name == "mediapipe":
            raise ModelFormatError(
                "engine 'mediapipe' runs MediaPipe Tasks models through their own calculators "
                "(MediaPipeFaceDetector, MediaPipeImageSegmenter, MediaPipeHandLandmarker, "
                "MediaPipePoseLandmarker); for raw .tflite tensors use engine 'litert' or 'openvino'"
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
    if suffix == ".tflite" and "litert" in candidates and path.is_file() and uses_custom_ops(path):
        candidates.remove("litert")  # MediaPipe's custom ops: only OpenVINO has them (mediapipe_ops.py)
    installed = [c for c in candidates if is_installed(c)]
    if not installed:
        extras = sorted({_ENGINE_MODULES[c][3] for c in candidates})
        raise EngineNotInstalledError(
            f"no engine installed that reads {_FORMAT_NAMES.get(suffix, suffix)} models ({path.name}); "
            f"install one: " + " or ".join(f"pip install vpipe[{x}]" for x in extras)
        )
    return installed[0]
