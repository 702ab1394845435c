"""WebPreview: serves the frames it receives as MJPEG over HTTP, with a page of live stats.

Open the logged URL in a browser: the page shows the stream (small frames scaled up to a
viewable size), the preview's own figures and the running graph (each node with its rate, mean
process time and queue depth), refreshed from ``/stats.json``. Rates are calls (frames) per
second of wall-clock time over the last seconds, measured here as Annotate's fps overlay
measures its own (``RateMeter``), so the page, the overlay and ``/stats.json`` agree. Every viewer has its own newest-frame slot (a sequence number into one
shared latest frame, never a queue), so a slow or stalled viewer skips frames and never slows
the graph. JPEG encoding happens on the viewers' threads, once per frame whatever the number
of viewers.

Routes: ``/`` the page (``/?mode=poll`` draws ``/frame.jpg`` on a canvas instead of showing
the MJPEG stream, for clients that cannot show multipart images), ``/stream.mjpg`` the MJPEG
stream, ``/frame.jpg`` the newest frame, ``/stats.json`` the figures.
Ports: IMAGE (Image) in. Side outputs: URL (str), the address it serves.
Timestamps: none emitted.

Example node:
    - calculator: WebPreview
      inputs: {IMAGE: annotated}
      options: {port: 8080}
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import time

from pydantic import BaseModel, Field

from calculators.sources.common import MediaError, RateMeter, image_to_bgr, set_side_output
from calculators.types import Image
from pipeline import Calculator, Input, SideOutput, register

log = logging.getLogger("vpipe.sinks.web")

BOUNDARY = "vpipeframe"


class WebPreviewOptions(BaseModel):
    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 exposes it to the network)")
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port (the URL is logged and set on URL)")
    quality: int = Field(80, ge=1, le=100, description="JPEG quality")
    title: str = Field("vpipe preview")
    max_fps: float | None = Field(None, gt=0, description="cap on frames sent per viewer per second")


class FrameHub:
    """The newest frame and its JPEG; viewers wait for a sequence number newer than theirs."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._image: Image | None = None
        self._seq = 0
        self._ts: int | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self.closed = False
        self.frames = 0
        self._fps = RateMeter()
        self.size: tuple[int, int] | None = None

    @property
    def fps(self) -> float:
        """Frames received per second of wall-clock time, over the last second."""
        return self._fps.rate() or 0.0

    def put(self, image: Image, timestamp: int) -> None:
        self._fps.update()
        with self._cond:
            self._image, self._ts = image, timestamp
            self._seq += 1
            self.frames += 1
            self.size = image.size
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> int | None:
        """The current sequence number once it is above ``seq``; None on timeout or close."""
        with self._cond:
            end = time.monotonic() + timeout
            while self._seq <= seq and not self.closed:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return None if self.closed else self._seq

    def jpeg(self) -> tuple[int, bytes] | None:
        """(seq, JPEG bytes) of the newest frame, encoded at most once per frame."""
        import cv2

        with self._cond:
            image, seq = self._image, self._seq
        if image is None:
            return None
        with self._encode_lock:
            if self._jpeg is not None and self._jpeg[0] >= seq:
                return self._jpeg
            ok, buf = cv2.imencode(".jpg", image_to_bgr(image), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise MediaError("WebPreview: JPEG encoding failed")
            self._jpeg = (seq, buf.tobytes())
            return self._jpeg


@functools.cache
def _server_class():
    """The HTTP server class, made on first use: a graph that only names WebPreview (its node
    switched off, as in the ready graphs without ``preview``) does not import http.server (and
    http.client, ssl, email) at load."""
    from http.server import ThreadingHTTPServer

    class _Server(ThreadingHTTPServer):
        """Tracks every open connection so ``close`` can cut them (a stalled viewer included)."""

        daemon_threads = False
        block_on_close = True  # server_close joins every request thread

        def __init__(self, *args, **kwargs):
            self.live: set = set()
            self.live_lock = threading.Lock()
            super().__init__(*args, **kwargs)

        def process_request(self, request, client_address):
            with self.live_lock:
                self.live.add(request)
            super().process_request(request, client_address)

        def shutdown_request(self, request):
            with self.live_lock:
                self.live.discard(request)
            super().shutdown_request(request)

        def cut_all(self) -> None:
            with self.live_lock:
                live = list(self.live)
            for sock in live:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return _Server


class PreviewServer:
    """The HTTP server and its viewers; no graph involved. ``stats`` returns the graph part of /stats.json."""

    def __init__(self, options: WebPreviewOptions, stats=None, name: str = "WebPreview") -> None:
        self.o = options
        self.hub = FrameHub(options.quality)
        self.stats_fn = stats
        self.name = name
        self._clients: dict[int, dict] = {}
        self._clients_lock = threading.Lock()
        self._next_id = 0
        self.client_drops = 0
        self.viewers_served = 0
        self.httpd = None  # the server (``_server_class()``) while serving
        self.thread: threading.Thread | None = None

    url: str = ""

    def start(self) -> str:
        handler = _make_handler(self)
        try:
            self.httpd = _server_class()((self.o.host, self.o.port), handler)
        except OSError as e:
            raise MediaError(f"{self.name}: cannot listen on {self.o.host}:{self.o.port}: {e.strerror or e}") from e
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host}:{port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"{self.name} http", daemon=True)
        self.thread.start()
        # A notice: the vpipe command prints it (the user needs the address, a chosen port above all).
        log.info("%s: serving the preview at %s", self.name, self.url, extra={"notice": True})
        return self.url

    def _register(self) -> int:
        with self._clients_lock:
            self._next_id += 1
            cid = self._next_id
            self._clients[cid] = {"sent": 0, "dropped": 0}
            self.viewers_served += 1
            return cid

    def _unregister(self, cid: int) -> None:
        with self._clients_lock:
            c = self._clients.pop(cid, None)
            if c is not None:
                self.client_drops += c["dropped"]

    def snapshot(self) -> dict:
        with self._clients_lock:
            viewers = [{"id": cid, "sent": c["sent"], "dropped": c["dropped"]} for cid, c in self._clients.items()]
        hub = self.hub
        out = {
            "preview": {"frames": hub.frames, "fps": round(hub.fps, 2), "size": hub.size, "timestamp_us": hub._ts,
                        "viewers": viewers, "viewers_served": self.viewers_served,
                        "dropped_for_viewers": self.client_drops + sum(v["dropped"] for v in viewers)},
        }
        if self.stats_fn is not None:
            out.update(self.stats_fn())
        return out

    def close(self) -> None:
        self.hub.close()
        if self.httpd is None:
            return
        self.httpd.shutdown()  # no new connections
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        # A viewer may be blocked writing to a client that does not read: cut every
        # connection, then join every request thread.
        self.httpd.cut_all()
        self.httpd.server_close()
        self.httpd = None


def _make_handler(server: PreviewServer):
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"
        server_version = "vpipe-preview"

        def log_message(self, fmt, *args):  # the default writes every request to stderr
            log.debug("%s: " + fmt, server.name, *args)

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", PAGE.replace("{{TITLE}}", _html(server.o.title)).encode())
                elif path == "/stats.json":
                    self._send(200, "application/json", json.dumps(server.snapshot(), default=_json_default).encode())
                elif path == "/frame.jpg":
                    item = server.hub.jpeg()
                    if item is None:
                        self._send(503, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", item[1])
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the viewer left

        def _stream(self) -> None:
            cid = server._register()
            try:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                # Each part is followed at once by the next boundary: browsers show a part only
                # when they see the boundary that ends it.
                self.wfile.write(f"--{BOUNDARY}\r\n".encode())
                self.wfile.flush()
                seen = 0
                min_gap = 1.0 / server.o.max_fps if server.o.max_fps else 0.0
                last_sent = 0.0
                hub = server.hub
                while not hub.closed:
                    seq = hub.wait_newer(seen, 0.5)
                    if seq is None:
                        continue
                    if min_gap and time.monotonic() - last_sent < min_gap:
                        if hub.wait_newer(seq, min_gap - (time.monotonic() - last_sent)) is None and hub.closed:
                            break
                        continue
                    item = hub.jpeg()
                    if item is None:
                        continue
                    jseq, data = item
                    c = server._clients.get(cid)
                    if c is not None:
                        c["dropped"] += max(0, jseq - seen - 1) if seen else 0
                        c["sent"] += 1
                    seen = jseq
                    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    self.wfile.write(head + data + f"\r\n--{BOUNDARY}\r\n".encode())
                    self.wfile.flush()
                    last_sent = time.monotonic()
            finally:
                server._unregister(cid)

    return Handler


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


@register
class WebPreview(Calculator):
    """Serves frames as MJPEG over HTTP with a live page of stream and graph statistics.

    Ports:
        IMAGE (Image): frames to serve (typically annotated).
    Side outputs:
        URL (str): the page's address, e.g. ``http://127.0.0.1:8080/``.
    Options:
        host (default 127.0.0.1); port (default 8080, 0: a free port, logged); quality (JPEG,
        default 80); title; max_fps: cap per viewer.
    Routes: ``/`` page, ``/stream.mjpg``, ``/frame.jpg`` (newest frame), ``/stats.json``
    (preview figures, ``ctx.graph.stats()`` and ``ctx.graph.topology()``).
    Behaviour: each viewer has a newest-frame slot; a slow viewer skips frames (counted) and
    never slows the graph; any number of viewers. Closing stops the server and disconnects
    viewers, leaving no thread behind.
    Errors: a port in use fails in ``open`` naming host and port.
    Example:
        - calculator: WebPreview
          inputs: {IMAGE: annotated}
          options: {port: 0}
    """

    inputs = {"IMAGE": Input(Image)}
    outputs: dict = {}
    side_outputs = {"URL": SideOutput(str, doc="address of the preview page")}
    Options = WebPreviewOptions

    def open(self, ctx):
        graph = ctx.graph
        self.graph = graph
        self.rates: dict[str, RateMeter] = {}
        self.sampled = 0.0

        def stats() -> dict:
            try:
                nodes = self._sample_rates()
                return {"nodes": nodes, "topology": graph.topology(), "wall_time_s": graph.wall_time()}
            except Exception as e:  # noqa: BLE001 - stats are best effort while the run ends
                return {"error": str(e)}

        self.server = PreviewServer(ctx.options, stats=stats, name=f"{ctx.calculator} {ctx.node!r}")
        url = self.server.start()
        set_side_output(ctx, "URL", url)

    def _sample_rates(self) -> dict:
        """The graph's stats, each node with its ``rate``: calls per second over the last 2 s."""
        nodes = self.graph.stats()
        now = time.perf_counter()
        for name, s in nodes.items():
            meter = self.rates.setdefault(name, RateMeter(window_s=2.0))
            s["rate"] = round(meter.update(int(s.get("count") or 0), now) or 0.0, 2)
        self.sampled = now
        return nodes

    def process(self, ctx):
        image = ctx.get("IMAGE")
        if image is not None:
            self.server.hub.put(image, ctx.timestamp)
            if time.perf_counter() - self.sampled >= 0.25:  # rates are known before the first page poll
                self._sample_rates()

    def close(self, ctx):
        if getattr(self, "server", None) is not None:
            self.server.close()


PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>
 body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#ddd;display:flex;flex-wrap:wrap;gap:16px;padding:16px}
 #video,#canvas{width:min(70vw,960px);height:auto;background:#000;border:1px solid #333}
 .panel{min-width:320px}
 h1{font-size:16px;margin:0 0 8px} table{border-collapse:collapse;font-size:13px}
 td,th{padding:2px 8px;border-bottom:1px solid #333;text-align:right} td:first-child,th:first-child{text-align:left}
 svg text{fill:#ddd;font-size:11px} .node rect{fill:#223;stroke:#69f} .edge{stroke:#888;fill:none}
</style></head>
<body>
<div><h1>{{TITLE}}</h1><img id="video" alt="video stream"><canvas id="canvas" style="display:none"></canvas></div>
<div class="panel">
 <h1>Stream</h1><div id="preview">waiting for stats...</div>
 <h1 style="margin-top:16px">Graph</h1><svg id="graph" width="480" height="60"></svg>
 <table id="nodes"><thead><tr><th>node</th><th>calculator</th><th>rate/s</th><th>mean ms</th><th>queue</th><th>peak</th><th>drops</th></tr></thead><tbody></tbody></table>
</div>
<script>
// The stream: MJPEG in an <img> (default), or ?mode=poll: /frame.jpg drawn on a canvas, for
// clients that cannot show multipart images (some proxies, headless screenshots).
if (new URLSearchParams(location.search).get('mode') === 'poll') {
  const canvas = document.getElementById('canvas'), ctx2d = canvas.getContext('2d');
  document.getElementById('video').style.display = 'none'; canvas.style.display = 'block';
  const next = () => { const im = new Image();
    im.onload = () => { canvas.width = im.naturalWidth; canvas.height = im.naturalHeight; ctx2d.drawImage(im, 0, 0); setTimeout(next, 100); };
    im.onerror = () => setTimeout(next, 500);
    im.src = '/frame.jpg?t=' + Date.now(); };
  next();
} else {
  document.getElementById('video').src = '/stream.mjpg';
}
function esc(s){return String(s).replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));}
function layout(topo){
  const names = topo.nodes.map(n => n.name), layer = {};
  names.forEach(n => layer[n] = 0);
  const edges = topo.edges.filter(e => e[0] !== null && !e[3]);
  for (let i = 0; i < names.length; i++) edges.forEach(e => { layer[e[1]] = Math.max(layer[e[1]], layer[e[0]] + 1); });
  const rows = {}, pos = {};
  names.forEach(n => { const l = layer[n]; rows[l] = (rows[l] || 0); pos[n] = [l, rows[l]++]; });
  return pos;
}
function drawGraph(topo, rates){
  const svg = document.getElementById('graph'), pos = layout(topo), W = 150, H = 44, GX = 40, GY = 12;
  let maxL = 0, maxR = 0; Object.values(pos).forEach(p => { maxL = Math.max(maxL, p[0]); maxR = Math.max(maxR, p[1]); });
  svg.setAttribute('width', (maxR + 1) * (W + GX) + 10); svg.setAttribute('height', (maxL + 1) * (H + GY + 12) + 10);
  const xy = n => [5 + pos[n][1] * (W + GX), 5 + pos[n][0] * (H + GY + 12)];
  let s = '';
  topo.edges.forEach(e => { if (e[0] === null || !(e[0] in pos)) return; const a = xy(e[0]), b = xy(e[1]);
    s += `<path class="edge" d="M${a[0]+W/2},${a[1]+H} L${b[0]+W/2},${b[1]}" ${e[3] ? 'stroke-dasharray="4"' : ''}/>`; });
  topo.nodes.forEach(n => { const [x, y] = xy(n.name), r = rates[n.name] || {};
    s += `<g class="node"><rect x="${x}" y="${y}" width="${W}" height="${H}" rx="4"/>` +
         `<text x="${x+6}" y="${y+14}">${esc(n.name)}</text>` +
         `<text x="${x+6}" y="${y+28}">${(r.rate||0).toFixed(1)}/s ${(r.mean||0).toFixed(1)} ms</text>` +
         `<text x="${x+6}" y="${y+40}">queue ${r.queue||0}</text></g>`; });
  svg.innerHTML = s;
}
async function poll(){
  try {
    const r = await fetch('/stats.json', {cache: 'no-store'}); const st = await r.json();
    const p = st.preview;
    document.getElementById('preview').innerHTML =
      `frames ${p.frames} &middot; ${p.fps.toFixed(1)} fps &middot; ${p.size ? p.size.join('x') : '-'} &middot; ` +
      `viewers ${p.viewers.length} &middot; skipped for slow viewers ${p.dropped_for_viewers}`;
    const rates = {}; const rows = [];
    for (const [name, n] of Object.entries(st.nodes || {})) {
      const rate = n.rate || 0;  // measured by the server, as the fps overlay is
      rates[name] = {rate: rate, mean: n.mean_ms, queue: n.queue_depth};
      rows.push(`<tr><td>${esc(name)}</td><td>${esc(n.calculator)}</td><td>${rate.toFixed(1)}</td><td>${n.mean_ms.toFixed(2)}</td>` +
                `<td>${n.queue_depth}</td><td>${n.queue_peak}</td><td>${n.drops}</td></tr>`);
    }
    document.querySelector('#nodes tbody').innerHTML = rows.join('');
    if (st.topology) drawGraph(st.topology, rates);
  } catch (e) { document.getElementById('preview').textContent = 'stats unavailable: ' + e; }
}
poll(); setInterval(poll, 1000);
</script></body></html>
"""
