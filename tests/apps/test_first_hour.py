"""What a new user meets in the first hour, each through the real entry point (``vpipe ...`` in a
subprocess, or the documented Python API): graphs found by name from anywhere, one ``source`` for
every kind of input, outputs named after their inputs, any engine from the graph file, and the
messages that say what to do instead of hanging or printing internals."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from calculators.types import Image
from pipeline import calculator
from tests.apps.conftest import REPO, run_vpipe


def test_run_of_a_graph_with_unfed_inputs_says_what_it_needs():
    r = run_vpipe("run", "face_detector", timeout=60)
    assert r.rc == 1
    assert r.first_err_line.startswith(
        "error: graph 'face_detector' (") and "reads inputs that nothing feeds from the command line: frames; " \
        "use it as a node of another graph (`- subgraph: face_detector` with inputs: {FRAMES: ...})" in r.first_err_line


def test_option_errors_print_defaults_not_pydantic_internals(tmp_path: Path):
    graph = tmp_path / "bad.yaml"
    graph.write_text("inputs: [t]\nnodes:\n  - calculator: Inference\n    inputs: {TENSORS: t}\n"
                     "    outputs: {TENSORS: raw}\n    options: {model: zoo:centerface, batch_size: many}\n")
    r = run_vpipe("validate", str(graph))
    assert r.rc == 1
    assert f"{graph}:6: node 'Inference': option 'batch_size': Input should be a valid integer" in r.out
    assert "layouts: dict (default {})" in r.out and "engine_options: dict (default {})" in r.out
    assert "PydanticUndefined" not in r.out


# --- graphs and subgraphs by name, from anywhere ------------------------------------------------

def _user_graphs(tmp_path: Path) -> tuple[Path, Path]:
    mine, lib = tmp_path / "mine", tmp_path / "lib"
    mine.mkdir()
    lib.mkdir()
    (lib / "relay.yaml").write_text(
        "name: relay\ninputs: [frames]\noutputs: [relayed]\nnodes:\n"
        "  - calculator: PassThrough\n    inputs: {IN: frames}\n    outputs: {OUT: relayed}\n")
    (mine / "faces.yaml").write_text(
        "name: faces\nside_packets: {source: 'sample:carphone'}\noutputs: [faces]\nnodes:\n"
        "  - calculator: VideoSource\n    outputs: {FRAMES: frames}\n    options: {uri: $source, stop_s: 0.2}\n"
        "  - subgraph: relay\n    inputs: {FRAMES: frames}\n    outputs: {RELAYED: relayed}\n"
        "  - subgraph: face_detector\n    inputs: {FRAMES: relayed}\n    outputs: {DETECTIONS: faces}\n")
    return mine, lib


def test_user_graph_names_builtin_and_graph_path_subgraphs(tmp_path: Path):
    mine, lib = _user_graphs(tmp_path)
    r = run_vpipe("validate", "faces", "--graph-path", str(mine), "--graph-path", str(lib))
    assert r.rc == 0, r.out + r.err
    assert f"{mine / 'faces.yaml'}: ok (7 nodes)" in r.err  # relay's 1 + face_detector's 5 + the source
    r = run_vpipe("run", str(mine / "faces.yaml"), "-q", env={"VPIPE_GRAPH_PATH": str(lib)})
    assert r.rc == 0, r.err
    assert "face_detector/ProjectDetections" in r.out


def test_missing_subgraph_says_where_it_looked(tmp_path: Path):
    mine, _lib = _user_graphs(tmp_path)
    r = run_vpipe("validate", str(mine / "faces.yaml"))
    assert r.rc == 1
    line = r.out.splitlines()[0]
    assert line == (f"{mine / 'faces.yaml'}:8: subgraph 'relay' not found (looked beside {mine} and in "
                    f"{REPO / 'graphs'})"), line


def test_graph_from_yaml_finds_builtin_graphs_by_name(tmp_path: Path):
    import subprocess
    import sys

    code = ("from pipeline import Graph, GraphConfigError\n"
            "g = Graph.from_yaml('face_detection')\n"
            "print(g.name, sorted(g.spec.side_packets)[:3])\n"
            "try:\n    Graph.from_yaml('face_detecton')\n"
            "except GraphConfigError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()[:2]
    assert first.startswith("face_detection [")
    assert second.startswith("face_detecton: no graph file of that name (looked in ") and \
        "did you mean 'face_detection'" in second, second


# --- one source for everything, outputs named after their inputs ---------------------------------

@pytest.mark.parametrize("source, kind", [
    (0, "camera"), ("1", "camera"), ("/dev/video2", "camera"),
    ("rtsp://127.0.0.1:8554/cam", "stream"), ("udp://0.0.0.0:5000", "stream"), ("http://host/clip.mp4", "stream"),
    ("sample:carphone", "video"), ("clip.mp4", "video"), ("no/such/thing", "video"),
    ("photo.JPG", "images"), ("shots/*.png", "images"), ("{tmp}", "images"),
])
def test_source_kind_follows_what_source_is(tmp_path: Path, source, kind):
    from calculators.sources.media import source_kind

    assert source_kind(str(tmp_path) if source == "{tmp}" else source) == kind


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three carphone frames as JPEG photos (a face in each)."""
    import av
    import cv2

    from models import catalog

    folder = tmp_path_factory.mktemp("photos")
    with av.open(str(catalog.resolve("sample:carphone"))) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in (0, 40, 80):
                cv2.imwrite(str(folder / f"IMG_{i:04d}.jpg"), frame.to_ndarray(format="bgr24"))
            if i >= 80:
                break
    return folder


def _jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("source", ["{photos}", "{photos}/*.jpg"])
def test_folder_or_glob_of_images_writes_images_named_after_them(photos: Path, tmp_path: Path, source):
    out = tmp_path / "not" / "yet" / "out"
    source = source.format(photos=photos)
    r = run_vpipe("run", "face_detection", "--set", f"source={source}", "--set", f"output={out}/",
                  "--set", f"detections={out}/faces.jsonl", "-q")
    assert r.rc == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == ["IMG_0000.jpg", "IMG_0040.jpg", "IMG_0080.jpg", "faces.jsonl"]
    lines = _jsonl(out / "faces.jsonl")
    assert [line["path"] for line in lines] == [str(photos / f"IMG_{i:04d}.jpg") for i in (0, 40, 80)]
    assert all(len(line["detections"]) == 1 for line in lines), lines
    import cv2

    written, original = cv2.imread(str(out / "IMG_0040.jpg")), cv2.imread(str(photos / "IMG_0040.jpg"))
    assert written.shape == original.shape and (written != original).any()  # annotated, same size


def test_one_image_writes_one_image(photos: Path, tmp_path: Path):
    import cv2

    one = tmp_path / "new" / "x.png"
    r = run_vpipe("run", "face_detection", "--set", f"source={photos / 'IMG_0000.jpg'}", "--set", f"output={one}", "-q")
    assert r.rc == 0, r.err
    assert cv2.imread(str(one)).shape == cv2.imread(str(photos / "IMG_0000.jpg")).shape
    r = run_vpipe("run", "face_detection", "--set", f"source={photos}", "--set", f"output={one}", "-q")
    assert r.rc == 1
    assert "holds one image and a second frame arrived at 33333 µs; write to a folder (out/)" in r.first_err_line


def test_camera_index_is_a_camera(tmp_path: Path):
    """`--set source=0` is taken for what it is: a camera (there is none on a test machine)."""
    r = run_vpipe("run", "face_detection", "--set", "source=0", "-q", timeout=90)
    assert r.rc == 1
    assert "node 'MediaSource' (MediaSource) failed in open: MediaSource 'MediaSource': camera 0: " in r.err, r.err
    assert "/dev/video0" in r.err


def _limited(live: bool):
    """TestSeq (10 frames at once) -> FlowLimiter (INFO given) -> TestBlocker held until the
    limiter has seen every frame; returns (frames out, drops)."""
    from calculators.sources.common import VideoInfo
    from pipeline import Graph
    from tests.media.conftest import wait_for
    from tests.pipeline import calcs

    gate = calcs.Gate()
    g = Graph.from_dict({"side_packets": {"info": None, "gate": None}, "nodes": [
        {"calculator": "TestSeq", "outputs": {"OUT": "seq"}, "options": {"timestamps": list(range(10))}},
        {"calculator": "FlowLimiter", "name": "limiter", "inputs": {"IN": "seq", "FINISHED": {"stream": "done",
         "back_edge": True}}, "outputs": {"OUT": "admitted"}, "side_inputs": {"INFO": "info"}},
        {"calculator": "TestBlocker", "inputs": {"IN": "admitted"}, "outputs": {"OUT": "done"},
         "side_inputs": {"GATE": "gate"}, "executor": "slow"}],  # its own thread, as the ready graphs' Inference
        "executors": {"slow": {"threads": 1}}})
    out = []
    g.observe("done", out.append)
    info = VideoInfo(uri="x", width=1, height=1, fps=None, codec=None, frame_count=None, duration_s=None,
                     live=live, pixel_format="RGB")
    g.start({"info": info, "gate": gate})
    wait_for(lambda: g.stats()["limiter"]["count"] >= 10, 30, "the limiter to take all 10 frames")
    gate.release()
    g.wait(30)
    return len(out), g.stats()["limiter"]["drops"]


def test_flow_limiter_drops_for_live_sources_only():
    assert _limited(live=True) == (1, 9)
    assert _limited(live=False) == (10, 0)


def test_stream_url_is_live_and_a_file_is_not(tmp_path: Path):
    from models import catalog
    from pipeline import Graph
    from tests.media.test_network import FfmpegServer, FrameCounter
    from tests.media.conftest import free_port

    def info_of(source):
        g = Graph.from_dict({"side_packets": {"source": source}, "nodes": [
            {"calculator": "MediaSource", "outputs": {"FRAMES": "frames"}, "side_outputs": {"INFO": "info"},
             "options": {"source": "$source"}}]})
        frames = FrameCounter()
        g.observe("frames", frames)
        g.start()
        frames.wait_count(3, 30, f"frames from {source}")
        g.cancel()
        g.wait(30)
        return g.side_packet("info")

    server = FfmpegServer(catalog.resolve("sample:carphone"), free_port())
    server.start()
    try:
        assert info_of(server.url).live is True
    finally:
        server.kill()
    assert info_of("sample:carphone").live is False


# --- any engine from the graph file ----------------------------------------------------------------

def _faces(path: Path) -> list[list[float]]:
    return [[round(v, 1) for d in line["detections"] for v in d["box"]] for line in _jsonl(path)]


@pytest.mark.parametrize("engine, target", [("onnxruntime", "onnx"), ("ncnn", "ncnn")])
def test_engine_that_cannot_read_the_model_runs_its_checked_conversion(tmp_path: Path, engine, target):
    import numpy as np

    from calculators.inference.selection import is_installed

    if not is_installed(engine):
        pytest.skip(f"{engine} is not installed")
    ref, got = tmp_path / "openvino.jsonl", tmp_path / f"{engine}.jsonl"
    r = run_vpipe("run", "face_detection", "--set", "engine=openvino", "--set", f"detections={ref}", "-q")
    assert r.rc == 0, r.err
    r = run_vpipe("run", "face_detection", "--set", f"engine={engine}", "--set", f"detections={got}",
                  timeout=600)  # not -q: that would hide the conversion's log line
    assert r.rc == 0, r.err
    assert f"engine {engine} cannot read face_detection_short_range.tflite; using its " in r.err
    assert f"conversion to {target}, checked against " in r.err
    a, b = _faces(ref), _faces(got)
    assert len(a) == len(b) == 120 and [len(x) for x in a] == [len(x) for x in b]
    assert max(float(np.max(np.abs(np.subtract(x, y)))) for x, y in zip(a, b) if x) < 1.0  # pixels


def test_convert_never_forbids_the_conversion(tmp_path: Path):
    graph = tmp_path / "never.yaml"
    graph.write_text(
        "nodes:\n  - calculator: SyntheticSource\n    outputs: {FRAMES: frames}\n    options: {num_frames: 2}\n"
        "  - calculator: ImageToTensor\n    inputs: {IMAGE: frames}\n    outputs: {TENSOR: tensor}\n"
        "    options: {size: [128, 128], range: [-1, 1]}\n"
        "  - calculator: Inference\n    inputs: {TENSORS: tensor}\n    outputs: {TENSORS: raw}\n"
        "    options: {model: zoo:blazeface-short, engine: onnxruntime, convert: never}\n")
    r = run_vpipe("run", str(graph), "-q")
    assert r.rc == 1
    assert r.first_err_line.endswith("engine 'onnxruntime' cannot load TFLite models (face_detection_short_range."
                                     "tflite); engines that read it: litert, openvino; `convert: never` forbids converting it")


# --- what MediaPipe's solutions exposed: min_score and the range -------------------------------

def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_full_range_model_and_min_score(tmp_path: Path):
    runs = {}
    for name, sets in {"short": [], "full": ["model=zoo:blazeface-full"], "strict": ["min_score=0.9"]}.items():
        out = tmp_path / f"{name}.jsonl"
        args = [a for s in sets for a in ("--set", s)]
        r = run_vpipe("run", "face_detection", *args, "--set", f"detections={out}", "--set", "engine=openvino", "-q")
        assert r.rc == 0, r.err
        runs[name] = [[d["box"] for d in line["detections"]] for line in _jsonl(out)]
    short, full, strict = runs["short"], runs["full"], runs["strict"]
    # The full-range model (192x192 input, 2304 anchors) finds the same face as the short-range one.
    both = [(s[0], f[0]) for s, f in zip(short, full) if s and f]
    assert len(both) >= 100, f"only {len(both)} frames with a face from both models"
    assert min(_iou(s, f) for s, f in both) > 0.5
    assert sum(map(len, strict)) < sum(map(len, short))  # a higher min_score keeps fewer faces


# --- the live view on files: --pace realtime, --loop ---------------------------------------------

def test_pace_realtime_plays_a_file_at_its_own_rate():
    import re

    r = run_vpipe("run", "face_detection", "--set", "source=sample:carphone", "--pace", "realtime", "-q")
    assert r.rc == 0, r.err
    m = re.search(r"summary: (\d+) frames in ([\d.]+) s", r.out)
    frames, wall = int(m.group(1)), float(m.group(2))
    # carphone: 120 frames at 29.97 fps; played in real time it cannot take less than its 3.97 s.
    assert frames == 120 and wall >= 119 / 29.97 * 0.98, (frames, wall)


def test_loop_starts_again_until_ctrl_c(photos: Path, tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.apps.conftest import HERE

    out = tmp_path / "faces.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "run", "face_detection", "--set", f"source={photos}",
                             "--set", f"detections={out}", "--loop", "-q"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and len(out.read_text().splitlines()) >= 7):
            assert proc.poll() is None, f"vpipe ended before looping: {proc.communicate()}"
            assert time.monotonic() < deadline, "fewer than 7 lines (3 images, looped) within 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    lines = _jsonl(out)
    names = [Path(line["path"]).name for line in lines[:7]]
    assert names == ["IMG_0000.jpg", "IMG_0040.jpg", "IMG_0080.jpg"] * 2 + ["IMG_0000.jpg"]
    ts = [line["timestamp_us"] for line in lines]
    assert ts == sorted(set(ts)), "timestamps keep increasing across loops"


def test_pace_on_a_graph_without_the_side_packet_says_how():
    from tests.apps.conftest import GRAPHS

    r = run_vpipe("run", str(GRAPHS / "ticker.yaml"), "--pace", "realtime")
    assert r.rc == 2
    assert r.first_err_line == (f"error: --pace: {GRAPHS / 'ticker.yaml'} declares no side packet 'pace'; declare it "
                                "(side_packets: {pace: fast}) and give it to the source (pace: $pace in its options)")


# --- payload types at the first packet, class options -------------------------------------------

def test_raw_array_fed_where_an_image_is_declared_names_the_port():
    import numpy as np

    from pipeline import Graph

    g = Graph.from_yaml("face_detector")  # the documented API: a ready subgraph, fed from Python
    g.start()
    try:
        with pytest.raises(TypeError, match=r"^add_packet\('frames'\): node 'ImageToTensor' input IMAGE takes "
                                            r"Image, got ndarray \(wrap the array: Image\(array, 'RGB'\)\)$"):
            g.add_packet("frames", np.zeros((48, 64, 3), np.uint8), 0)
    finally:
        g.cancel()
        g.wait(30)


@calculator
def red_channel(image: Image) -> Image:
    return image.data[..., 0]  # forgot to wrap it


def test_function_calculator_returning_an_array_on_an_image_port_names_the_port():
    import numpy as np

    from pipeline import GraphRunError
    from pipeline.testing import run_calculator

    with pytest.raises(GraphRunError, match=r"failed in process at timestamp 0: TypeError: RedChannel: output OUT "
                                            r"is declared Image, the function returned ndarray"):
        run_calculator("RedChannel", inputs={"IMAGE": [(0, Image(np.zeros((4, 4, 3), np.uint8), "RGB"))]})


def test_class_calculator_options_refuse_unknown_keys(tmp_path: Path):
    plugin = tmp_path / "blur_plugin.py"
    plugin.write_text("from pydantic import BaseModel\nfrom pipeline import Calculator, Input, Output, register\n"
                      "from calculators.types import Image\n\n"
                      "class O(BaseModel):\n    kernel: int = 5\n\n"
                      "@register\nclass PlainBlur(Calculator):\n    inputs = {'IMAGE': Input(Image)}\n"
                      "    outputs = {'IMAGE': Output(Image)}\n    Options = O\n")
    graph = tmp_path / "g.yaml"
    graph.write_text("plugins: [blur_plugin]\ninputs: [frames]\nnodes:\n  - calculator: PlainBlur\n"
                     "    inputs: {IMAGE: frames}\n    outputs: {IMAGE: out}\n    options: {kernal: 25}\n")
    r = run_vpipe("validate", str(graph), "--trust", env={"PYTHONPATH": f"{REPO}:{tmp_path}"})
    assert r.rc == 1
    assert r.out.startswith(f"{graph}:7: node 'PlainBlur': option 'kernal': unknown option; did you mean 'kernel'?")


def test_ncnn_on_an_onnx_model_runs_its_conversion(photos: Path, tmp_path: Path):
    from calculators.inference.selection import is_installed

    if not is_installed("ncnn"):
        pytest.skip("ncnn is not installed")
    runs = {}
    for engine in ("onnxruntime", "ncnn"):
        out = tmp_path / f"{engine}.jsonl"
        r = run_vpipe("run", "face_detection_centerface", "--set", f"source={photos / 'IMG_0040.jpg'}",
                      "--set", f"engine={engine}", "--set", f"detections={out}", timeout=600)
        assert r.rc == 0, r.err
        runs[engine] = _faces(out)
        if engine == "ncnn":
            assert "engine ncnn cannot read centerface.onnx; using its " in r.err and "conversion to ncnn" in r.err
    (a,), (b,) = runs["onnxruntime"], runs["ncnn"]
    assert len(a) == len(b) == 4 and max(abs(x - y) for x, y in zip(a, b)) < 1.0, (a, b)


@contextmanager
def media_source_running(options: dict, frames: int, *others: dict, timeout: float = 30):
    """A MediaSource on ``sample:carphone`` with ``options`` (and ``others`` nodes), started;
    yields its nodes' calculators by name once ``frames`` frames came out, then cancels it."""
    from pipeline import Graph
    from tests.media.test_network import FrameCounter

    g = Graph.from_dict({"nodes": [
        {"calculator": "MediaSource", "outputs": {"FRAMES": "frames"},
         "options": {"source": "sample:carphone", **options}}, *others]})
    counter = FrameCounter()
    g.observe("frames", counter)
    g.start()
    try:
        counter.wait_count(frames, timeout, f"{frames} frames")
        yield {n.name: n.calc for n in g._nodes}
    finally:
        g.cancel()
        g.wait(30)


@pytest.mark.parametrize("thread_type", ["frame", "slice"])
def test_media_source_passes_the_decoder_threading_on(thread_type):
    with media_source_running({"thread_type": thread_type}, 1) as nodes:
        codec = nodes["MediaSource"].inner.reader.stream.codec_context
        assert codec.thread_type.name == thread_type.upper()


def test_media_source_and_writer_pass_threads_on(tmp_path):
    writer = {"calculator": "MediaWriter", "inputs": {"IMAGE": "frames"},
              "options": {"path": str(tmp_path / "out.mp4"), "threads": 1}}
    with media_source_running({"threads": 1}, 2, writer) as nodes:
        assert nodes["MediaSource"].inner.reader.stream.codec_context.thread_count == 1
        assert nodes["MediaWriter"].inner_ctx.options.threads == 1  # what VideoWriter is opened with


def test_media_source_loop_and_pace_reach_the_video_source():
    # pace reaches the reader it picks; loop: a 120-frame clip keeps giving frames past its end
    with media_source_running({"loop": True, "pace": "realtime"}, 1) as nodes:
        chosen = nodes["MediaSource"].inner_ctx.options
        assert chosen.pace == "realtime" and chosen.loop is True
    with media_source_running({"loop": True}, 130, timeout=60):
        pass
