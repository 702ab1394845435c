"""A network stream that stops sending: the error says the read timed out, in vpipe's words
(FFmpeg's own are "Immediate exit requested")."""

from __future__ import annotations

import re
import socket
import threading

import numpy as np
import pytest

from .conftest import graph


@pytest.fixture(scope="module")
def ts_bytes(tmp_path_factory) -> bytes:
    """40 frames of MPEG-2 in MPEG-TS (a live stream's container), made with PyAV."""
    import av

    path = tmp_path_factory.mktemp("ts") / "stream.ts"
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("mpeg2video", rate=25)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 6, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path.read_bytes()


class StallingServer:
    """Sends the first ``n`` bytes to the one client, then keeps the connection open, silent."""

    def __init__(self, data: bytes):
        self.data = data
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="stalling server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            try:
                conn.sendall(self.data)
            except OSError:
                return
            self.done.wait(30)

    def close(self) -> None:
        self.done.set()
        self.sock.close()
        self.thread.join(5)


def test_read_timeout_says_so(ts_bytes, no_leaked_threads):
    from pipeline import GraphRunError

    server = StallingServer(ts_bytes[: len(ts_bytes) // 2])
    g = graph({"calculator": "VideoSource", "name": "net", "outputs": {"FRAMES": "frames"},
               "options": {"uri": server.url, "reconnect": "never", "read_timeout_s": 0.5, "open_timeout_s": 5}})
    try:
        with pytest.raises(GraphRunError) as err:
            g.run()
    finally:
        server.close()
    message = str(err.value).splitlines()[0]
    assert "Immediate exit requested" not in message
    assert re.search(rf"node 'net' \(VideoSource\) failed in source: .*'{re.escape(server.url)}': stopped at "
                     r"[\d.]+ s \(after frame \d+\): no data within read_timeout_s=0\.5$", message), message
