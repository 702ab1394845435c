"""Media I/O throughput, against hand-written PyAV loops measured in the same run.

Cases, run in ``--repeats`` interleaved rounds (every case once per round, after one warm-up
each): the median time is reported, and each candidate's time over its baseline's in the same
round, median [min-max] over the rounds:
- decode: ``VideoSource`` on sample:bikes (640x272, 250 frames) in a graph with one observer,
  vs. a plain PyAV loop (``container.decode`` + ``to_ndarray('rgb24')``).
- encode: ``SyntheticSource`` -> ``VideoWriter`` (libx264 veryfast, crf 23, 640x480, 150
  frames), vs. a plain PyAV loop encoding the same frames pre-rendered (the graph case also
  draws the pattern, as its name says).
- preview: ``SyntheticSource`` -> ``WebPreview`` with no viewer and with one viewer reading
  the MJPEG stream, vs. SyntheticSource alone (the cost a preview adds to a run).

    python tests/bench/bench_media.py [--repeats 5] [--json out/bench/media.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import calculators  # noqa: E402,F401
from _meta import interleaved, median, round_ratios, write_json  # noqa: E402  (tests/bench)
from pipeline import Graph  # noqa: E402


def decode_pyav(path: str) -> int:
    import av

    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            f.to_ndarray(format="rgb24")
            n += 1
    return n


def decode_graph(path: str) -> int:
    g = Graph.from_dict({"name": "bench_decode", "nodes": [
        {"calculator": "VideoSource", "outputs": {"FRAMES": "f"}, "options": {"uri": path}}]})
    count = [0]
    g.observe("f", lambda p: count.__setitem__(0, count[0] + 1))
    g.run()
    return count[0]


SIZE, N_ENC = (640, 480), 150


def encode_pyav(frames, path: str) -> None:

    import av
    from fractions import Fraction

    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1_000_000)
        s.options = {"crf": "23", "preset": "veryfast"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = round(i * 1e6 / 30), Fraction(1, 1_000_000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def encode_graph(path: str) -> None:
    Graph.from_dict({"name": "bench_encode", "nodes": [
        {"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
         "options": {"size": list(SIZE), "num_frames": N_ENC}},
        {"calculator": "VideoWriter", "inputs": {"IMAGE": "f"},
         "options": {"path": path, "codec": "libx264", "crf": 23, "preset": "veryfast"}}]}).run()


def synthetic_only() -> None:
    Graph.from_dict({"name": "bench_syn", "nodes": [
        {"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
         "options": {"size": list(SIZE), "num_frames": N_ENC}},
        {"calculator": "PassThrough", "inputs": ["f"], "outputs": ["g"]}]}).run()


def preview(with_viewer: bool) -> None:
    g = Graph.from_dict({"name": "bench_preview", "nodes": [
        {"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
         "options": {"size": list(SIZE), "num_frames": N_ENC}},
        {"calculator": "WebPreview", "inputs": {"IMAGE": "f"}, "side_outputs": {"URL": "url"},
         "options": {"port": 0}}]})
    if not with_viewer:
        g.run()
        return
    # The viewer connects before the source starts: start() opens every node (and the server)
    # before sources run, so the URL is known; the viewer reads until the server closes.
    g.start()
    url = g.side_packet("url")
    stop = threading.Event()

    def read():
        try:
            with urllib.request.urlopen(url + "stream.mjpg", timeout=30) as r:
                while not stop.is_set() and r.read(65536):
                    pass
        except OSError:
            pass

    t = threading.Thread(target=read)
    t.start()
    g.wait()
    stop.set()
    t.join(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="out/bench/media.json")
    args = ap.parse_args()

    from models.catalog import resolve
    from calculators.sources.synthetic import synthetic_frame
    import cv2

    bikes = str(resolve("sample:bikes"))
    frames = [cv2.cvtColor(synthetic_frame(i, *SIZE), cv2.COLOR_BGR2RGB) for i in range(N_ENC)]
    tmp = tempfile.mkdtemp(prefix="vpipe-bench-")
    cases = {
        "decode bikes: PyAV loop (baseline)": (lambda: decode_pyav(bikes), 250),
        "decode bikes: VideoSource graph": (lambda: decode_graph(bikes), 250),
        "encode 640x480: PyAV loop, frames pre-rendered (baseline)": (lambda: encode_pyav(frames, f"{tmp}/a.mp4"), N_ENC),
        "encode 640x480: SyntheticSource -> VideoWriter (incl. drawing)": (lambda: encode_graph(f"{tmp}/b.mp4"), N_ENC),
        "SyntheticSource -> PassThrough (baseline)": (synthetic_only, N_ENC),
        "SyntheticSource -> WebPreview, no viewer": (lambda: preview(False), N_ENC),
        "SyntheticSource -> WebPreview, 1 MJPEG viewer": (lambda: preview(True), N_ENC),
    }
    runs = interleaved({name: fn for name, (fn, _) in cases.items()}, args.repeats)
    pairs = {
        "decode bikes: VideoSource graph": "decode bikes: PyAV loop (baseline)",
        "encode 640x480: SyntheticSource -> VideoWriter (incl. drawing)": "encode 640x480: PyAV loop, frames pre-rendered (baseline)",
        "SyntheticSource -> WebPreview, no viewer": "SyntheticSource -> PassThrough (baseline)",
        "SyntheticSource -> WebPreview, 1 MJPEG viewer": "SyntheticSource -> PassThrough (baseline)",
    }
    results = {}
    print(f"{'case':66s} {'fps':>8s} {'median s':>9s} {'time vs baseline, per round':>28s}")
    for name, (_, n) in cases.items():
        med = median(runs[name])
        base = pairs.get(name)
        r = {"frames": n, "median_s": med, "fps": n / med, "runs_s": runs[name], "baseline": base}
        if base:
            r["ratio_vs_baseline"] = round_ratios(runs, name, base)
            ratio = r["ratio_vs_baseline"]
            shown = f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"
        else:
            shown = "1.00x"
        results[name] = r
        print(f"{name:66s} {r['fps']:8.1f} {med:9.3f} {shown:>28s}")
    out = write_json(args.json, "media", {"repeats": args.repeats, "cases": results}, libraries=["av", "opencv-contrib-python"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
