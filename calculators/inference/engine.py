"""The engine interface: what one loaded model on one runtime offers, and the errors of inference.

Nothing here imports a runtime: each engine module (``onnxruntime_engine``, ``openvino_engine``,
``tensorrt_engine``, ``ncnn_engine``, ``litert_engine``) subclasses ``Engine`` and imports its library inside its
functions (with ``require``), so ``import calculators`` works with none of them installed.

- ``Engine``: one loaded model. ``infer(arrays)`` takes the input arrays in the model's input order
  and returns the outputs in the model's output order; it is safe to call from several threads at
  once (each engine keeps the per-request state it needs: OpenVINO a pool of infer requests,
  TensorRT a pool of execution contexts, ncnn an extractor per call, LiteRT a pool of interpreters).
- ``EngineOptions``: what identifies a loaded model besides its file (engine, device, precision,
  threads, requests, engine-specific extras).
- ``TensorSpec``: a model input or output as the runtime describes it.

Which engine reads which file is ``selection``; one load shared by every user is ``model_cache``;
stacking concurrent requests into batches is ``batcher``.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import UserError

log = logging.getLogger("vpipe.inference")

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
    cache_dir: str | None = None  # compiled-model cache (tensorrt engines, openvino blobs)
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

    name: ClassVar[str] = ""  # engine name (the formats each engine reads: ``selection._FORMATS``)

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


def require(module: str, extra: str):
    """Imports ``module`` or raises ``EngineNotInstalledError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EngineNotInstalledError(
            f"the {module!r} package is not installed ({e}); install it with: pip install vpipe[{extra}]"
        ) from e
