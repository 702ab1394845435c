"""TensorRT engine: CenterFace built from ONNX, cached on disk, compared with ONNX Runtime.

Skips without an NVIDIA GPU and the ``tensorrt`` + ``cuda-python`` packages (the machines this was
written on have neither: see docs/engines.md, "what was verified").
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from calculators.inference import model_cache
from calculators.inference.engine import EngineOptions

from .conftest import installed

pytestmark = [
    pytest.mark.skipif(not (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")),
                       reason="no NVIDIA GPU on this machine"),
    pytest.mark.skipif(not installed("tensorrt"), reason="tensorrt not installed (pip install vpipe[tensorrt])"),
    pytest.mark.skipif(not installed("onnxruntime"), reason="onnxruntime (the reference) not installed"),
]

PROFILE = {"input.1": [[1, 3, 256, 320], [1, 3, 480, 640], [4, 3, 480, 640]]}


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_centerface_tensorrt_matches_onnxruntime_and_is_cached(tmp_path, centerface, precision, atol):
    opts = EngineOptions.with_extra({"profile": PROFILE}, device="cuda:0", precision=precision,
                                    cache_dir=str(tmp_path))
    x = np.random.default_rng(0).random((1, 3, 480, 640), np.float32) * 255
    ref = model_cache.acquire(centerface, "onnxruntime", EngineOptions(device="cpu"))
    trt = model_cache.acquire(centerface, "tensorrt", opts)
    try:
        built = list(tmp_path.glob("*.engine"))
        assert len(built) == 1, f"expected one cached engine in {tmp_path}, found {built}"
        for a, b in zip(trt.engine.infer([x]), ref.engine.infer([x])):
            assert a.shape == b.shape and float(np.abs(a - b).max()) <= atol
    finally:
        model_cache.release(trt)
        model_cache.release(ref)
    mtime = built[0].stat().st_mtime_ns
    again = model_cache.acquire(centerface, "tensorrt", opts)  # loads the cached engine, no rebuild
    try:
        assert built[0].stat().st_mtime_ns == mtime and list(tmp_path.glob("*.engine")) == built
        assert again.engine.infer([x])[0].shape == (1, 1, 120, 160)
    finally:
        model_cache.release(again)
