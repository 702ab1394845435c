"""VideoSource and CameraSource on a live network stream served by a local ffmpeg (a real peer).

The server is ``ffmpeg -re -stream_loop -1 -i carphone.mp4 -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1``:
real-time H.264 in MPEG-TS over TCP. Killing it and starting it again mid-run must be survived by
reconnecting, with timestamps that keep increasing.
"""

from __future__ import annotations

import logging
import re
import socket
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


# -- VideoSource: open_timeout_s, reconnect never, backoff_s / max_backoff_s ------------------

class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="silent server", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            while True:
                self.accepted.append(self.sock.accept()[0])
        except OSError:
            return  # closed

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for c in self.accepted:
            c.close()


class OneShotServer:
    """Serves ``data`` to the first client that connects, then closes the connection and stops
    listening: the stream ends, and every later connection is refused."""

    def __init__(self, data: bytes):
        self.data = data
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, name="one-shot server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.sock.close()  # nobody listens any more: a reconnect is refused
        with conn:
            try:
                conn.sendall(self.data)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.thread.join(5)


def stop(g) -> None:
    """Ends a run that a failed assertion left going (a reconnect loop would outlive the test)."""
    if g._started and not g._done_event.is_set():
        g.cancel()
        try:
            g.wait(20)
        except Exception:  # noqa: BLE001 - the test's own failure is the one to report
            pass


@pytest.fixture(scope="module")
def short_ts(tmp_path_factory):
    """20 frames of FFmpeg's test pattern, MPEG-2 in MPEG-TS (a live stream's container), as bytes."""
    exe = need("ffmpeg", "ffmpeg")
    path = tmp_path_factory.mktemp("ts") / "short.ts"
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=25", "-frames:v", "20", "-c:v", "mpeg2video", "-q:v", "2",
                    "-f", "mpegts", str(path)], check=True, timeout=60)
    return path


@pytest.mark.parametrize("scheme", ["tcp", "http", "rtsp"])
def test_open_timeout_ends_an_open_that_gets_no_answer(scheme):
    """A server that accepts the connection and stays silent: the open gives up after
    open_timeout_s (not the 10 s default) with an error naming the URL and the timeout."""
    from pipeline import GraphRunError

    server = SilentServer()
    url = f"{scheme}://127.0.0.1:{server.port}/cam"
    g = graph({"calculator": "VideoSource", "name": "net", "outputs": {"FRAMES": "frames"},
               "options": {"uri": url, "open_timeout_s": 0.5}})
    t0 = time.monotonic()
    try:
        with pytest.raises(GraphRunError) as err:
            g.run()
        took = time.monotonic() - t0
    finally:
        server.close()
    assert server.accepted, "the source connected (the silence, not a refusal, is what timed out)"
    assert re.search(rf"node 'net' \(VideoSource\) failed in open: .*'{re.escape(url)}': "
                     r"no answer within open_timeout_s=0.5", str(err.value)), str(err.value)
    assert 0.45 < took < 3.0, f"the open gave up after {took:.2f} s with open_timeout_s=0.5"


def test_reconnect_never_ends_the_run_with_what_was_read(short_ts, caplog, no_leaked_threads):
    """tcp:// reconnects at the end of the stream by default (auto: always); never does not."""
    server = OneShotServer(short_ts.read_bytes())
    g = graph({"calculator": "VideoSource", "name": "net", "outputs": {"FRAMES": "frames"},
               "options": {"uri": server.url, "reconnect": "never", "open_timeout_s": 5}})
    frames = FrameCounter()
    g.observe("frames", frames)
    try:
        with caplog.at_level(logging.INFO, logger="vpipe.sources.video"):
            g.start()
            g.wait(20)  # a clean end: the server closing the connection ends the run
    finally:
        stop(g)
        server.close()
    assert len(frames.timestamps) == 20, f"{len(frames.timestamps)} of the 20 frames served"
    assert frames.sizes == {(160, 120)}
    assert all(b > a for a, b in zip(frames.timestamps, frames.timestamps[1:]))
    assert not [r.getMessage() for r in caplog.records if "reconnect" in r.getMessage()], \
        "no reconnect is attempted"


def test_reconnect_waits_double_from_backoff_s_up_to_max_backoff_s(short_ts, caplog, no_leaked_threads):
    """The stream ends, then every reconnect is refused: waits of 0.05, 0.1, 0.2 (capped), 0.2 s
    between the logged attempts, then a clear error after max_reconnects=4."""
    from pipeline import GraphRunError

    server = OneShotServer(short_ts.read_bytes())
    g = graph({"calculator": "VideoSource", "name": "net", "outputs": {"FRAMES": "frames"},
               "options": {"uri": server.url, "backoff_s": 0.05, "max_backoff_s": 0.2, "max_reconnects": 4}})
    frames = FrameCounter()
    g.observe("frames", frames)
    try:
        with caplog.at_level(logging.WARNING, logger="vpipe.sources.video"):
            with pytest.raises(GraphRunError, match=rf"node 'net' .*'{server.url}': stream lost \(end of stream\); "
                                                    r"gave up after max_reconnects=4 attempts \(last: .*refused"):
                g.start()
                g.wait(20)
    finally:
        stop(g)
        server.close()
    assert len(frames.timestamps) == 20
    records = [r for r in caplog.records if r.name == "vpipe.sources.video"]
    attempts = [(r.created, float(m.group(1))) for r in records
                if (m := re.search(r"reconnecting in ([\d.]+) s \(attempt \d+\)", r.getMessage()))]
    assert [d for _, d in attempts] == [0.05, 0.1, 0.2, 0.2], [r.getMessage() for r in records]
    gave_up = [r.created for r in records if "giving up after 4 reconnect attempts" in r.getMessage()]
    assert len(gave_up) == 1, [r.getMessage() for r in records]
    # Each wait really happened: the next log line (the next attempt, or giving up) comes at least
    # the announced delay after the one that announced it.
    times = [t for t, _ in attempts] + gave_up
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, (_, delay) in zip(gaps, attempts):
        assert gap >= delay * 0.95, f"waited {gap:.3f} s where {delay} s was announced: {gaps}"
