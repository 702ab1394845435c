"""WebPreview against real clients: Python HTTP readers, a socket that never reads, headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from calculators.sources.synthetic import synthetic_frame
from calculators.types import Image
from pipeline import GraphRunError

from .conftest import graph, need, psnr, wait_for


def preview_graph(**options):
    g = graph({"calculator": "WebPreview", "name": "preview", "inputs": {"IMAGE": "in"},
               "side_outputs": {"URL": "url"}, "options": {"port": 0, **options}}, inputs=["in"])
    g.start()
    return g, g.side_packet("url")


def get(url: str, timeout: float = 10) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def stats(url: str) -> dict:
    return json.loads(get(url + "stats.json")[2])


def read_mjpeg(url: str, n: int, timeout: float = 20) -> list[np.ndarray]:
    """The first ``n`` JPEG parts of the MJPEG stream, decoded (a plain HTTP client)."""
    frames = []
    with urllib.request.urlopen(url + "stream.mjpg", timeout=timeout) as r:
        assert r.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=vpipeframe"
        assert r.readline() == b"--vpipeframe\r\n"
        while len(frames) < n:
            headers = {}
            while (line := r.readline().strip()):
                k, _, v = line.decode().partition(":")
                headers[k.lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            data = r.read(int(headers["content-length"]))
            assert r.readline() == b"\r\n" and r.readline() == b"--vpipeframe\r\n"
            frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return frames


def test_routes_frame_stats_and_mjpeg(no_leaked_threads):
    g, url = preview_graph(quality=95)
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        assert get(url + "frame.jpg")[0] == 503
        assert get(url + "nope")[0] == 404
        frame = synthetic_frame(3, 320, 240)
        g.add_packet("in", Image(frame, "BGR"), 0)
        wait_for(lambda: get(url + "frame.jpg")[0] == 200, 10, "the first frame to be served")
        status, ctype, body = get(url + "frame.jpg")
        assert ctype == "image/jpeg"
        assert psnr(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), frame) > 30
        page = get(url)[2].decode()
        assert "stream.mjpg" in page and "/stats.json" in page
        st = stats(url)
        assert st["preview"]["frames"] == 1 and st["preview"]["size"] == [320, 240]
        assert st["nodes"]["preview"]["calculator"] == "WebPreview"
        assert [n["name"] for n in st["topology"]["nodes"]] == ["preview"]
        # MJPEG: a reader gets the newest frame, then each new one.
        got = []
        import threading

        reader = threading.Thread(target=lambda: got.extend(read_mjpeg(url, 3)))
        reader.start()
        wait_for(lambda: stats(url)["preview"]["viewers"], 10, "the MJPEG viewer to connect")
        wait_for(lambda: stats(url)["preview"]["viewers"][0]["sent"] >= 1, 10, "the first part to be sent")
        for i in (4, 5):
            g.add_packet("in", Image(synthetic_frame(i, 320, 240), "BGR"), i)
            wait_for(lambda i=i: not stats(url)["preview"]["viewers"] or stats(url)["preview"]["viewers"][0]["sent"] >= i - 2,
                     10, f"part {i - 2} to be sent")
        reader.join(20)
        assert len(got) == 3
        for img, i in zip(got, (3, 4, 5)):
            assert psnr(img, synthetic_frame(i, 320, 240)) > 30
    finally:
        g.close_input("in")
        g.wait(20)


def test_a_viewer_that_never_reads_does_not_stall_the_run(no_leaked_threads):
    rng = np.random.default_rng(0)
    noise = [Image(rng.integers(0, 256, (480, 640, 3), np.uint8), "BGR") for _ in range(4)]  # ~400 KB JPEGs
    g, url = preview_graph(quality=90)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")  # ... and never reads a byte
        wait_for(lambda: stats(url)["preview"]["viewers"], 10, "the stalled viewer to connect")
        for i in range(120):
            g.add_packet("in", noise[i % 4], i * 33_333)
        # Every frame reached the node while the stalled viewer holds its connection.
        wait_for(lambda: stats(url)["nodes"]["preview"]["count"] == 120, 30, "the node to take all 120 frames")
        viewer = stats(url)["preview"]["viewers"][0]
        assert viewer["sent"] < 20, f"the stalled viewer cannot have taken many frames: {viewer}"
        # A second, reading viewer still gets the newest frame.
        newest = read_mjpeg(url, 1)[0]
        scores = [psnr(newest, n.data) for n in noise]
        assert int(np.argmax(scores)) == 119 % 4, f"PSNR against the 4 noise frames: {scores}"
        g.close_input("in")
        g.wait(20)  # close() cuts the stalled connection; no thread is left (fixture)
    except BaseException:
        g.cancel()
        g.wait(20)
        raise
    finally:
        stalled.close()


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        g = graph({"calculator": "WebPreview", "name": "preview", "inputs": {"IMAGE": "in"},
                   "options": {"port": port}}, inputs=["in"])
        with pytest.raises(GraphRunError, match=rf"cannot listen on 127.0.0.1:{port}: Address already in use"):
            g.start()


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or need("chromium", "chromium")
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", *args], capture_output=True, text=True, timeout=timeout)


def chromium_page(user_data: Path, url: str, check, *args: str, budgets_ms=(3000, 10000, 30000)):
    """Loads ``url`` in headless Chromium, stopped after a budget (``--timeout``), until ``check``
    passes (``{budget}`` in an argument is replaced by the budget). ``check(result, budget)`` returns None when the page shows what it must, or what is
    missing. Chromium's ``--timeout`` is wall time: on a loaded machine its start-up eats into it and
    the page's scripts may not have polled yet, so each miss loads the page again with a longer
    budget; what is still missing after the last one fails the test."""
    missing = None
    for budget in budgets_ms:
        r = chromium(f"--user-data-dir={user_data}-{budget}", *(a.replace("{budget}", str(budget)) for a in args),
                     f"--timeout={budget}", url,
                     timeout=60 + budget / 1000)
        assert r.returncode == 0, r.stderr[-2000:]
        missing = check(r, budget)
        if missing is None:
            return r
    pytest.fail(f"after {budgets_ms[-1]} ms in Chromium: {missing}")


def test_page_in_headless_chromium_shows_the_video_and_the_graph(tmp_path, no_leaked_threads):
    g, url = preview_graph(quality=95)
    frame = synthetic_frame(11, 320, 240)
    try:
        g.add_packet("in", Image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), "RGB"), 0)
        wait_for(lambda: get(url + "frame.jpg")[0] == 200, 10, "the first frame")
        # The page as a browser runs it (MJPEG <img>, stats polled by JS): the DOM once its scripts ran.
        def dom_shows_the_graph(dom, budget):
            for text, what in (("<td>preview</td><td>WebPreview</td>", "the JS stats table listing the node"),
                               ('class="node"', "the graph drawn as SVG"), ("frames 1 ·", "the frame count")):
                if text not in dom.stdout:
                    return f"the DOM lacks {what} ({text!r})"
            return None
        chromium_page(tmp_path / "ud1", url, dom_shows_the_graph, "--dump-dom")
        assert stats(url)["preview"]["viewers_served"] >= 1, "Chromium opened the MJPEG stream"
        # A screenshot shows the video (canvas mode: a cancelled MJPEG load leaves a broken icon).
        # Shown min(70vw, 960px) wide: 700 px in a 1000 px window (the page scales frames to that).
        shown = cv2.resize(frame, (700, 525), interpolation=cv2.INTER_LINEAR)

        def shot_shows_the_frame(r, budget):
            shot = tmp_path / f"page-{budget}.png"
            if not shot.exists():
                return "no screenshot was written"
            score = cv2.matchTemplate(cv2.imread(str(shot)), shown, cv2.TM_CCOEFF_NORMED).max()
            return None if score > 0.95 else f"the frame is not in the screenshot (best match {score:.3f})"
        chromium_page(tmp_path / "ud2", url + "?mode=poll", shot_shows_the_frame,
                      f"--screenshot={tmp_path / 'page-{budget}.png'}", "--window-size=1000,700")
    finally:
        g.close_input("in")
        g.wait(20)


def test_title_is_the_pages_title_escaped(no_leaked_threads):
    g, url = preview_graph(title="Lobby <cam> & door")
    try:
        page = get(url)[2].decode()
    finally:
        g.close_input("in")
        g.wait(20)
    assert "<title>Lobby &lt;cam&gt; &amp; door</title>" in page
    assert "<h1>Lobby &lt;cam&gt; &amp; door</h1>" in page
    assert "vpipe preview" not in page and "<cam>" not in page


def listening_on(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on ``port``."""
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            address, _, hex_port = parts[1].partition(":")
            if int(hex_port, 16) == port and parts[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


@pytest.mark.parametrize("host, bound", [(None, "0100007F"), ("0.0.0.0", "00000000")])
def test_host_is_the_address_the_server_binds(host, bound, no_leaked_threads):
    """127.0.0.1 by default (this machine only); 0.0.0.0 binds every interface. Read from the
    kernel's table of listening sockets, never by connecting from outside."""
    g, url = preview_graph(**({} if host is None else {"host": host}))
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert url == f"http://{host or '127.0.0.1'}:{port}/"
        assert listening_on(port) == [bound]
        assert get(f"http://127.0.0.1:{port}/")[0] == 200  # served on the loopback address either way
    finally:
        g.close_input("in")
        g.wait(20)


@pytest.mark.parametrize("times, totals, window, expected", [
    ([0.0, 0.05, 0.10, 0.15], None, 1.0, 20.0),           # one event every 50 ms: 20 per second
    ([0.0, 1.0, 2.0, 2.5, 3.0], None, 1.0, 2.0),          # only the last second (and one before) counts
    ([0.0, 1.0, 2.0], [0, 30, 90], 2.0, 45.0),            # running totals (a node's calls)
    ([0.0], None, 1.0, None),                             # one sample: no rate yet
])
def test_rate_meter(times, totals, window, expected):
    from calculators.sources.common import RateMeter

    meter = RateMeter(window_s=window)
    for i, t in enumerate(times):
        got = meter.update(None if totals is None else totals[i], now=t)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_rates_in_stats_agree_with_the_frames_and_the_fps_overlay(no_leaked_threads):
    """At a known rate (20 fps, paced), the preview's fps, each node's rate in /stats.json and the
    meter Annotate's overlay draws from all say 20."""
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "frames"},
               "options": {"size": [176, 144], "fps": 20, "num_frames": 100, "pace": "realtime"}},
              {"calculator": "Annotate", "inputs": {"IMAGE": "frames"}, "outputs": {"IMAGE": "annotated"},
               "options": {"show_fps": True}},
              {"calculator": "WebPreview", "name": "preview", "inputs": {"IMAGE": "annotated"},
               "side_outputs": {"URL": "url"}, "options": {"port": 0}})
    g.start()
    try:
        url = g.side_packet("url")
        wait_for(lambda: stats(url)["preview"]["frames"] >= 50, 30, "50 frames at the preview")
        st = stats(url)
        overlay = next(n.calc for n in g._nodes if n.spec.calculator == "Annotate")._fps.rate()
        for what, value in [("preview fps", st["preview"]["fps"]), ("Annotate rate", st["nodes"]["Annotate"]["rate"]),
                            ("preview rate", st["nodes"]["preview"]["rate"]), ("overlay", overlay)]:
            assert 20 * 0.8 < value < 20 * 1.2, f"{what}: {value} (stats: {st['preview']})"
    finally:
        g.cancel()
        g.wait(20)


def test_page_scales_small_frames_up(tmp_path, no_leaked_threads):
    g, url = preview_graph()
    frame = np.zeros((144, 176, 3), np.uint8)
    frame[:] = (255, 0, 255)  # magenta, found in the screenshot by colour
    try:
        g.add_packet("in", Image(frame, "RGB"), 0)
        wait_for(lambda: get(url + "frame.jpg")[0] == 200, 10, "the first frame")
        def shot_shows_it_scaled_up(r, budget):
            shot = tmp_path / f"page-{budget}.png"
            if not shot.exists():
                return "no screenshot was written"
            image = cv2.imread(str(shot)).astype(int)
            ys, xs = np.nonzero((image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] > 200))
            if not xs.size:
                return "the frame is not in the screenshot"
            width = xs.max() - xs.min() + 1
            return None if width >= 2 * 176 else f"a 176 px wide frame is shown {width} px wide"
        chromium_page(tmp_path / "ud", url + "?mode=poll", shot_shows_it_scaled_up,
                      f"--screenshot={tmp_path / 'page-{budget}.png'}", "--window-size=1000,700")
    finally:
        g.close_input("in")
        g.wait(20)
