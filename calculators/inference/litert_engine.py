"""LiteRT engine: ``.tflite`` models run natively by the TFLite runtime that MediaPipe itself runs
(``ai_edge_litert.interpreter.Interpreter``, its default op resolver with the XNNPACK delegate).

``device``: ``cpu`` (``auto``); the Python package has no GPU delegate to load. ``threads`` is the
interpreter's ``num_threads`` (XNNPACK's thread pool: N threads run a call, N - 1 of them its own;
default: every core, as ncnn; the runtime alone would use one). ``precision``: fp32 only
(XNNPACK's f32 kernels, what MediaPipe's CPU graphs run; a model's own float16 weights are
dequantized by the runtime). Models with MediaPipe's custom ops (the face mesh with attention) are
refused with the way out (engine openvino, which has them: mediapipe_ops.py).

One interpreter is not safe to share between threads: the engine keeps ``requests`` interpreters
(``max_in_flight`` of the node by default) and each call takes one from the pool for its
duration; ``invoke`` releases the GIL, so calls on different interpreters overlap. Inputs are
copied into the interpreter's arena (``set_tensor``; writing through a ``tensor()`` view costs the
same, and the arena cannot take a caller's buffer) and outputs copied out (``get_tensor``: the
arena is reused by the next call, and the runtime refuses to run while views into it are held).
Shapes are the ones allocated from the file (batch 1 for MediaPipe's models: N crops run as N
calls with ``split_batch``). Used through the ``Inference`` calculator (``engine: litert``).
"""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import DeviceError, Engine, EngineOptions, ModelFormatError, ModelLoadError, TensorSpec, require
from .mediapipe_ops import CUSTOM_OPS, uses_custom_ops

TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier of a TFLite model (bytes 4..8)


def _spec(detail: dict) -> TensorSpec:
    # The allocated shape: what the interpreter runs (a dim the model leaves dynamic is allocated at
    # its size in the file, and a tensor of another size is refused by Inference's check).
    return TensorSpec(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]))


class LiteRtEngine(Engine):
    """A pool of ``ai_edge_litert`` interpreters on one model behind the engine interface."""

    name = "litert"

    def __init__(self, path: Path, options: EngineOptions) -> None:
        super().__init__(path, options)
        lrt = require("ai_edge_litert.interpreter", "litert")
        if options.device.lower() not in ("auto", "cpu"):
            raise DeviceError(f"litert: unknown device {options.device!r}; this engine runs on the CPU (cpu or auto)")
        self.device = "cpu"
        if options.precision != "fp32":
            raise DeviceError(f"litert: precision {options.precision!r} is not available: the engine runs XNNPACK's "
                              f"f32 kernels (fp32); engine openvino has fp16/bf16")
        try:
            content = Path(path).read_bytes()
        except OSError as e:
            raise ModelLoadError(f"litert: cannot read {path}: {e}") from e
        if content[4:8] != TFLITE_IDENTIFIER:
            raise ModelLoadError(f"litert: {path.name} is not a TFLite model (file identifier {content[4:8]!r}, "
                                 f"expected {TFLITE_IDENTIFIER!r})")
        if uses_custom_ops(path):
            found = [op for op in CUSTOM_OPS if op.encode() in content]
            raise ModelFormatError(f"litert: {path.name} uses MediaPipe's custom ops ({', '.join(found)}), which the "
                                   f"TFLite runtime does not have; engine openvino runs it (--set engine=openvino)")
        self.threads = options.threads or (os.cpu_count() or 1)
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._interpreters = []
        for _ in range(options.requests):
            try:
                it = lrt.Interpreter(model_content=content, num_threads=self.threads)
                it.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelLoadError(f"litert: could not load {path.name}: {first}") from e
            self._interpreters.append(it)
            self._pool.put(it)
        it = self._interpreters[0]
        ins, outs = it.get_input_details(), it.get_output_details()
        self.inputs = [_spec(d) for d in ins]
        self.outputs = [_spec(d) for d in outs]
        self._in_index = [d["index"] for d in ins]
        self._out_index = [d["index"] for d in outs]

    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        it = self._pool.get()
        try:
            for index, a in zip(self._in_index, arrays):
                it.set_tensor(index, a)
            it.invoke()  # releases the GIL
            return [it.get_tensor(o) for o in self._out_index]
        finally:
            self._pool.put(it)

    def close(self) -> None:
        self._interpreters = []
        self._pool = queue.SimpleQueue()
