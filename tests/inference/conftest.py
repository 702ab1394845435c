"""Shared fixtures for the inference tests: real models from the catalog, real frames, a graph runner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from models.catalog import resolve


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_ort = pytest.mark.skipif(not installed("onnxruntime"), reason="onnxruntime not installed (pip install vpipe[onnx])")
needs_ov = pytest.mark.skipif(not installed("openvino"), reason="openvino not installed (pip install vpipe[openvino])")
needs_ncnn = pytest.mark.skipif(not installed("ncnn"), reason="ncnn not installed (pip install vpipe[ncnn])")
needs_mp = pytest.mark.skipif(not installed("mediapipe"), reason="mediapipe not installed (pip install vpipe[mediapipe])")


@pytest.fixture(scope="session")
def centerface() -> Path:
    return resolve("zoo:centerface")  # dynamic N/H/W


@pytest.fixture(scope="session")
def centerface_static() -> Path:
    return resolve("zoo:centerface-static")  # the original: static 10x3x32x32


@pytest.fixture(scope="session")
def blazeface() -> Path:
    return resolve("zoo:blazeface-short")


@pytest.fixture(scope="session")
def carphone() -> str:
    return str(resolve("sample:carphone"))


@pytest.fixture(scope="session")
def centerface_ncnn() -> Path:
    """CenterFace converted to ncnn (.param/.bin) by the project's converter (pnnx), checked there."""
    if not installed("pnnx"):
        pytest.skip("pnnx not installed: cannot make the ncnn CenterFace (pip install pnnx)")
    from models.convert import convert

    report = convert("zoo:centerface", "ncnn", shape=[1, 3, 480, 640])
    return Path(report.path)


@pytest.fixture(scope="session")
def carphone_frames(carphone) -> list[np.ndarray]:
    """A few real RGB frames of the carphone sample (which shows a face)."""
    import av

    frames = []
    with av.open(carphone) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 10 == 0:
                frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == 4:
                break
    return frames


def run_graph(config: dict, outputs: list[str], timeout: float = 120.0) -> dict[str, list]:
    """Runs a graph of sources (no graph inputs) to completion and returns
    {stream: [(timestamp, value), ...]} for ``outputs``. One node fed from Python:
    ``pipeline.testing.run_calculator``."""
    from pipeline import Graph

    g = Graph.from_dict(config)
    got: dict[str, list] = {s: [] for s in outputs}
    for s in outputs:
        g.observe(s, lambda p, s=s: got[s].append((p.timestamp, p.value)))
    g.start()
    try:
        g.wait(timeout)
    except TimeoutError:
        g.cancel()  # no threads left behind by a hung run
        raise
    return got


def video_source(uri: str, frames: int = 4, step_s: float = 0.0) -> dict:
    """A VideoSource node on the first ``frames`` frames (carphone is 30 fps)."""
    return {"calculator": "VideoSource", "name": "video", "outputs": {"FRAMES": "frames"},
            "options": {"uri": uri, "stop_s": frames / 30.0 - 0.001}}
