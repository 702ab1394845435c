"""Options of the live media calculators against real peers: CameraSource on a local ffmpeg stream
that stops, stalls and comes back (reconnect, max_reconnects, read_timeout_s), and WebPreview's
max_fps as a plain HTTP viewer receives it."""

from __future__ import annotations

import logging
import os
import signal
import time
import urllib.request

import pytest

from pipeline import GraphRunError

from . import test_network
from .conftest import graph, listening, wait_for
from .test_network import FrameCounter, server  # noqa: F401  (the local ffmpeg stream fixture)


def served(port: int) -> bool:
    """Listening, or already past it: ``ffmpeg -listen 1`` stops listening once its one client
    (here a camera retrying every few 100 ms) has connected."""
    if listening(port):
        return True
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(p[1] == want and p[3] == "01" for p in (line.split() for line in f.readlines()[1:]))


def camera_graph(url: str, **options):
    g = graph({"calculator": "CameraSource", "name": "cam", "outputs": {"FRAMES": "frames"},
               "options": {"device": url, "backend": "ffmpeg", "open_timeout_s": 3, "read_timeout_s": 3,
                           "backoff_s": 0.1, "max_backoff_s": 0.4, **options}})
    frames = FrameCounter()
    g.observe("frames", frames)
    return g, frames


def test_camera_reopens_a_stream_that_comes_back(server, caplog, monkeypatch, no_leaked_threads):  # noqa: F811
    monkeypatch.setattr(test_network, "listening", served)
    g, frames = camera_graph(server.url)
    with caplog.at_level(logging.WARNING, logger="vpipe.sources.camera"):
        g.start()
        try:
            frames.wait_count(10, 20, "the first frames from the stream")
            server.kill()
            # The grabber sees the stream end, then fails to reopen while nothing listens.
            wait_for(lambda: any("reopening in" in r.getMessage() for r in caplog.records), 10,
                     "the camera to notice the stream is gone")
            before = len(frames.timestamps)
            server.start()
            frames.wait_count(before + 10, 30, "frames after the stream came back")
        finally:
            g.cancel()
            g.wait(20)
    ts = frames.timestamps
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert frames.sizes == {(176, 144)}
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"camera '{server.url}': reopened" in m for m in messages), messages


def test_camera_without_reconnect_ends_when_the_stream_ends(server, no_leaked_threads):  # noqa: F811
    g, frames = camera_graph(server.url, reconnect=False)
    g.start()
    frames.wait_count(5, 20, "frames from the stream")
    server.kill()
    g.wait(20)  # a clean end: no reopen, no error
    assert len(frames.timestamps) >= 5


def test_camera_gives_up_after_max_reconnects_with_a_clear_error(server, caplog, no_leaked_threads):  # noqa: F811
    g, frames = camera_graph(server.url, max_reconnects=2)
    g.start()
    frames.wait_count(5, 20, "frames from the stream")
    server.kill()
    with pytest.raises(GraphRunError, match=(
            rf"node 'cam' .*camera '{server.url}': stopped delivering frames; gave up after max_reconnects=2 "
            r"reopen attempts \(last: cannot open it: .*\)")):
        g.wait(20)
    assert sum("reopening in" in r.getMessage() for r in caplog.records) == 2


def test_camera_read_timeout_ends_a_stalled_stream(server, no_leaked_threads):  # noqa: F811
    """A peer that stops sending without closing (SIGSTOP): the read gives up after read_timeout_s
    (OpenCV's own default is 30 s)."""
    g, frames = camera_graph(server.url, reconnect=False, read_timeout_s=1)
    g.start()
    try:
        frames.wait_count(5, 20, "frames from the stream")
        os.kill(server.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        g.wait(10)
        stalled_for = time.monotonic() - t0
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        if not g._done_event.is_set():
            g.cancel()
            g.wait(20)
    # What the capture had buffered before the stall still plays (at most ~1 s at -re pace).
    assert 0.5 < stalled_for < 5, f"the stalled stream ended after {stalled_for:.1f} s"


@pytest.mark.parametrize("fmt, shape", [("GRAY", (72, 88)), ("BGR", (72, 88, 3))])
def test_camera_scales_a_stream_to_size_in_its_format(server, fmt, shape, no_leaked_threads):  # noqa: F811
    """A network stream is read with PyAV: ``size`` scales its 176x144 frames and they come in
    ``format``."""
    g, frames = camera_graph(server.url, reconnect=False, size=[88, 72], format=fmt)
    seen = set()
    g.observe("frames", lambda p: seen.add((p.value.format, p.value.data.shape)))
    g.start()
    try:
        frames.wait_count(3, 20, "frames from the stream")
    finally:
        g.cancel()
        g.wait(20)
    assert frames.sizes == {(88, 72)}
    assert seen == {(fmt, shape)}


# -- WebPreview max_fps -----------------------------------------------------------------------

def mjpeg_part_times(url: str, seconds: float) -> list[float]:
    """Arrival times of the MJPEG parts a plain HTTP viewer receives during ``seconds``."""
    times = []
    with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
        assert r.readline() == b"--vpipeframe\r\n"
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            length = None
            while (line := r.readline().strip()):
                key, _, value = line.decode().partition(":")
                if key.lower() == "content-length":
                    length = int(value)
            assert length, "a part without Content-Length"
            r.read(length)
            assert r.readline() == b"\r\n" and r.readline() == b"--vpipeframe\r\n"
            times.append(time.monotonic())
    return times


@pytest.mark.parametrize("max_fps", [None, 5.0])
def test_web_preview_max_fps_caps_what_a_viewer_receives(max_fps, no_leaked_threads):
    options = {"port": 0} if max_fps is None else {"port": 0, "max_fps": max_fps}
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
               "options": {"size": [160, 120], "fps": 50, "num_frames": None, "pace": "realtime"}},
              {"calculator": "WebPreview", "inputs": {"IMAGE": "f"}, "side_outputs": {"URL": "url"}, "options": options})
    g.start()
    try:
        times = mjpeg_part_times(g.side_packet("url"), 1.5)
    finally:
        g.cancel()
        g.wait(20)
    assert len(times) >= 3, f"{len(times)} parts in 1.5 s"
    rate = (len(times) - 1) / (times[-1] - times[0])
    if max_fps is None:
        assert rate > 20, f"uncapped, a viewer of a 50 fps source got {rate:.1f} parts/s"
    else:
        # Each part leaves at least 1/max_fps after the previous one, as soon as a newer frame is there.
        assert 0.6 * max_fps < rate <= max_fps * 1.15, f"max_fps={max_fps}: {rate:.2f} parts/s"
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) > 0.7 / max_fps, f"parts closer than 1/max_fps: {min(gaps):.3f} s"
