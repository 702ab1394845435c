"""ncnn on a Vulkan GPU (``device: vulkan``) against ncnn on the CPU, through the ``Inference``
calculator, on real carphone frames. Runs only where ncnn sees a Vulkan GPU; skips elsewhere (the
development and CI machines have none). Models: the project's checked ncnn conversions of BlazeFace
(via ONNX) and CenterFace, from the converter's cache."""

from __future__ import annotations

import time

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.image.ops import image_to_tensor
from calculators.types import Image, Tensor
from pipeline.testing import run_calculator

ncnn = pytest.importorskip("ncnn", reason="ncnn not installed (pip install vpipe[ncnn])")


def _gpu_count() -> int:
    try:
        return int(ncnn.get_gpu_count())
    except Exception:  # noqa: BLE001 - no Vulkan loader at all
        return 0


DEVICES = ("cpu", "vulkan")  # reference, candidate

pytestmark = pytest.mark.skipif(_gpu_count() == 0, reason="no Vulkan GPU visible to ncnn (ncnn.get_gpu_count() == 0)")


def _converted(ref: str, shape):
    from models.convert import convert

    try:
        return convert(ref, "ncnn", shape=shape).path
    except (ImportError, RuntimeError) as e:  # no pnnx here and nothing cached
        pytest.skip(f"{ref} has no cached ncnn conversion and it cannot be made here: {e}")


def _frames(n: int) -> list[np.ndarray]:
    """RGB carphone frames (OpenCV reads the MP4, so PyAV is not needed where this runs)."""
    import cv2

    from models.catalog import resolve

    cap = cv2.VideoCapture(str(resolve("sample:carphone")))
    frames = []
    try:
        while len(frames) < n:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    assert len(frames) == n, f"carphone gave {len(frames)} frames"
    return frames


@pytest.mark.parametrize("ref, size, layout, value_range, shape, tolerance", [
    ("zoo:blazeface-short", (128, 128), "NCHW", (-1.0, 1.0), None, 2e-3),
    ("zoo:centerface", (640, 480), "NCHW", (0.0, 255.0), [1, 3, 480, 640], 5e-2),
])
def test_ncnn_vulkan_agrees_with_ncnn_cpu_through_the_inference_calculator(ref, size, layout, value_range, shape,
                                                                          tolerance):
    model = _converted(ref, shape)
    tensors = [(i * 33_333, image_to_tensor(Image(f), size, "stretch", value_range=value_range, layout=layout)[0])
               for i, f in enumerate(_frames(12))]
    outs, secs = {}, {}
    ref_dev, gpu_dev = DEVICES
    for device in DEVICES:
        t0 = time.perf_counter()
        out = run_calculator("Inference", inputs={"TENSORS": tensors},
                             options={"model": str(model), "engine": "ncnn", "device": device}, timeout=300)
        secs[device] = time.perf_counter() - t0
        outs[device] = [v for _, v in out["TENSORS"]]
    assert len(outs[gpu_dev]) == len(tensors)
    worst = 0.0
    for cpu, gpu in zip(outs[ref_dev], outs[gpu_dev]):
        a = [t.data if isinstance(t, Tensor) else t for t in (cpu.values() if isinstance(cpu, dict) else cpu)]
        b = [t.data if isinstance(t, Tensor) else t for t in (gpu.values() if isinstance(gpu, dict) else gpu)]
        assert [x.shape for x in a] == [x.shape for x in b]
        assert all(np.isfinite(x).all() for x in b), "Vulkan outputs must be finite"
        worst = max(worst, max(float(np.abs(x - y).max()) for x, y in zip(a, b)))
    print(f"\n{ref}: ncnn Vulkan vs CPU max abs diff {worst:.3g} over {len(tensors)} frames; "
          f"graph of {len(tensors)} frames: {ref_dev} {secs[ref_dev]:.2f} s, {gpu_dev} {secs[gpu_dev]:.2f} s "
          f"(load included)")
    assert worst <= tolerance, f"{ref}: Vulkan differs from CPU by {worst:.3g} (allowed {tolerance})"
    # Steady-state latency of the engine alone (printed for docs/engines.md, not asserted).
    import statistics

    from calculators.inference.engine import EngineOptions
    from calculators.inference.selection import engine_class

    lat = {}
    for device in DEVICES:
        eng = engine_class("ncnn")(model, EngineOptions(device=device))
        try:
            feed = [tensors[0][1].data]
            for _ in range(5):
                eng.infer(feed)
            times = []
            for _, t in tensors * 3:
                t0 = time.perf_counter()
                eng.infer([t.data])
                times.append((time.perf_counter() - t0) * 1e3)
            lat[device] = statistics.median(times)
        finally:
            eng.close()
    print(f"{ref}: ncnn p50 per inference " + ", ".join(f"{d} {v:.2f} ms" for d, v in lat.items()))
