"""VideoSource and CameraSource on a live network stream served by a local ffmpeg (a real peer).

The server is ``ffmpeg -re -stream_loop -1 -i carphone.mp4 -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1``:
real-time H.264 in MPEG-TS over TCP. Killing it and starting it again mid-run must be survived by
reconnecting, with timestamps that keep increasing.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time

import pytest

from .conftest import free_port, graph, listening, need, wait_for


class FfmpegServer:
    def __init__(self, video, port: int):
        self.exe = need("ffmpeg", "ffmpeg")
        self.video, self.port = str(video), port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
             "-i", self.video, "-c", "copy", "-f", "mpegts", f"{self.url}?listen=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: listening(self.port) or self.proc.poll() is not None, 15, f"ffmpeg to listen on {self.port}")
        if self.proc.poll() is not None:
            pytest.fail(f"ffmpeg exited: {self.proc.stderr.read().decode(errors='replace')[-800:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
            self.proc.stderr.close()


@pytest.fixture
def server(sample):
    s = FfmpegServer(sample("carphone"), free_port())
    s.start()
    yield s
    s.kill()


class FrameCounter:
    """Counts packets on a stream and lets a test wait for the n-th one (bounded)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.timestamps: list[int] = []
        self.sizes: set = set()

    def __call__(self, packet):
        with self.cond:
            self.timestamps.append(packet.timestamp)
            self.sizes.add(packet.value.size)
            self.cond.notify_all()

    def wait_count(self, n: int, timeout: float, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.timestamps) >= n, timeout):
                pytest.fail(f"timed out after {timeout} s waiting for {what} ({len(self.timestamps)} of {n} frames)")


def test_network_stream_survives_a_server_restart(server, caplog, no_leaked_threads):
    g = graph({"calculator": "VideoSource", "name": "net", "outputs": {"FRAMES": "frames"},
               "side_outputs": {"INFO": "info"},
               "options": {"uri": server.url, "backoff_s": 0.2, "max_backoff_s": 1.0, "read_timeout_s": 3.0}})
    frames = FrameCounter()
    g.observe("frames", frames)
    with caplog.at_level(logging.WARNING, logger="vpipe.sources.video"):
        g.start()
        try:
            frames.wait_count(15, 20, "the first frames from the stream")
            server.kill()
            before = len(frames.timestamps)
            server.start()
            frames.wait_count(before + 15, 30, "frames after the server restarted")
        finally:
            g.cancel()
            g.wait(20)
    info = g.side_packet("info")
    assert (info.width, info.height, info.codec) == (176, 144, "h264")
    assert frames.sizes == {(176, 144)}
    ts = frames.timestamps
    assert all(b > a for a, b in zip(ts, ts[1:])), "timestamps keep increasing across the reconnect"
    messages = [r.getMessage() for r in caplog.records]
    assert any(server.url in m and "reconnecting in" in m for m in messages), messages
    assert any(server.url in m and "reconnected" in m for m in messages), messages


def test_on_error_mode_ends_cleanly_when_the_server_closes(server, no_leaked_threads):
    g = graph({"calculator": "VideoSource", "outputs": {"FRAMES": "frames"},
               "options": {"uri": server.url, "reconnect": "on_error"}})
    frames = FrameCounter()
    g.observe("frames", frames)
    g.start()
    frames.wait_count(5, 20, "frames from the stream")
    server.kill()
    g.wait(20)  # the server closing the connection is a clean end of stream for on_error
    assert len(frames.timestamps) >= 5


def test_network_source_gives_up_after_max_reconnects(server, caplog, no_leaked_threads):
    from pipeline import GraphRunError

    g = graph({"calculator": "VideoSource", "name": "net", "outputs": {"FRAMES": "frames"},
               "options": {"uri": server.url, "backoff_s": 0.1, "max_backoff_s": 0.2, "max_reconnects": 2}})
    frames = FrameCounter()
    g.observe("frames", frames)
    g.start()
    frames.wait_count(5, 20, "frames from the stream")
    server.kill()
    with pytest.raises(GraphRunError, match=r"node 'net' .*stream lost \(end of stream\); gave up after "
                                            r"max_reconnects=2 attempts \(last: .*Connection refused"):
        g.wait(20)
    assert sum("reconnecting in" in r.getMessage() for r in caplog.records) == 2


def test_connection_refused_is_a_clear_error():
    from pipeline import GraphRunError

    port = free_port()
    g = graph({"calculator": "VideoSource", "outputs": {"FRAMES": "frames"},
               "options": {"uri": f"tcp://127.0.0.1:{port}", "open_timeout_s": 3}})
    with pytest.raises(GraphRunError, match=rf"'tcp://127.0.0.1:{port}': cannot open: .*Connection refused"):
        g.run()


def test_camera_source_on_a_live_stream_has_low_latency(server, no_leaked_threads):
    """Newest-frame semantics: a consumer slower than the stream still gets fresh frames."""
    latencies = []

    g = graph({"calculator": "CameraSource", "outputs": {"FRAMES": "frames"},
               "options": {"device": server.url, "backend": "ffmpeg", "reconnect": False}})
    frames = FrameCounter()

    def slow(packet):
        # Ages at arrival; then a slow consumer: 3x the frame interval per frame.
        latencies.append(time.monotonic_ns() // 1000 - packet.timestamp)
        frames(packet)
        threading.Event().wait(0.1)  # simulated slow work (not synchronisation)

    g.observe("frames", slow)
    g.start()
    try:
        frames.wait_count(12, 30, "frames from the camera source")
    finally:
        g.cancel()
        g.wait(20)
    gaps = [b - a for a, b in zip(frames.timestamps, frames.timestamps[1:])]
    assert min(gaps) > 60_000, "the slow consumer gets the newest frame, skipping the ones in between"
    # A queue would make the age grow by ~67 ms per frame (the consumer is 3x slower than the
    # stream): ~700 ms by the 12th frame. Newest-frame semantics keep it at about one capture
    # interval plus scheduling; 250 ms leaves room for a loaded machine and still fails on growth.
    assert max(latencies[2:]) < 250_000, f"frames are at most about one capture old: {latencies}"
