"""What the ``vpipe`` command prints when something fails: one line a user can act on for what they
can fix (bad media, camera, model, URL), a traceback only for a bug (with the cause last as well as
first) or when asked with ``--debug`` / ``VPIPE_DEBUG=1``; native libraries' noise off the
terminal (all of it with ``-q``); the preview's address when it listens.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.apps.conftest import GRAPHS, run_vpipe

SOURCE_ONLY = """\
nodes:
  - calculator: VideoSource
    name: source
    outputs: {{FRAMES: frames}}
    options: {{uri: "{uri}"}}
"""


def _source_graph(tmp_path: Path, uri: str) -> Path:
    path = tmp_path / "source.yaml"
    path.write_text(SOURCE_ONLY.format(uri=uri))
    return path


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory, sample_video) -> dict[str, Path]:
    """An empty file, an mp4 cut short before its index, an audio-only file, random bytes."""
    import av
    import numpy as np

    d = tmp_path_factory.mktemp("media")
    (d / "empty.mp4").write_bytes(b"")
    # mp4 writers put the index (moov) at the end: the first 40% of the file is what a killed
    # recorder leaves behind.
    data = sample_video.read_bytes()
    assert b"moov" not in data[: len(data) * 2 // 5], "the sample has its index first; pick another"
    (d / "cut.mp4").write_bytes(data[: len(data) * 2 // 5])
    with av.open(str(d / "audio.m4a"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    (d / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.parametrize("name,reason", [
    ("empty", "the file is empty (0 bytes)"),
    ("cut", "an MP4 whose index (its 'moov' box) is missing: the recording was cut short before it was "
            "finalized; record to MKV or fragmented MP4 to survive that, or repair it with an MP4 repair tool"),
    ("audio", "the file has no video stream; it holds 1 audio stream"),
    ("noise", "not a video file FFmpeg can read (Invalid data found when processing input)"),
])
def test_bad_media_is_one_line_in_words(tmp_path, bad_media, name, reason):
    path = bad_media[name]
    r = run_vpipe("run", str(_source_graph(tmp_path, str(path))))
    assert r.rc == 1
    assert r.err.splitlines() == [f"error: node 'source' (VideoSource) failed in open: VideoSource 'source': "
                                  f"'{path}': {reason}"], r.err


def test_debug_shows_the_traceback_and_the_cause_last(tmp_path, bad_media):
    graph = str(_source_graph(tmp_path, str(bad_media["empty"])))
    for args, env in ((("--debug", "run", graph), {}), (("run", graph, "--debug"), {}),
                      (("run", graph), {"VPIPE_DEBUG": "1"})):
        r = run_vpipe(*args, env=env)
        lines = r.err.splitlines()
        assert r.rc == 1, r.err
        assert lines[0].startswith("error: node 'source' (VideoSource) failed in open: ") and "empty" in lines[0]
        assert "Traceback (most recent call last):" in r.err
        assert "calculators/sources/video.py" in r.err
        assert lines[-1] == lines[0], f"{args} {env}: the last line is {lines[-1]!r}"


def test_a_bug_in_a_calculator_keeps_its_traceback_with_the_cause_last():
    r = run_vpipe("run", str(GRAPHS / "ticker.yaml"), "--set", "fail_at=3000")
    lines = r.err.splitlines()
    cause = "error: node 'FailAt' (FailAt) failed in process at timestamp 3000: ValueError: refusing packet 3"
    assert (r.rc, lines[0], lines[-1]) == (1, cause, cause)
    assert "Traceback (most recent call last):" in r.err and "vpipe_test_plugin.py" in r.err


def test_missing_model_is_one_line():
    r = run_vpipe("run", "face_detection", "--set", "model=/nonexistent/face.tflite", "-q")
    assert r.rc == 1
    assert len(r.err.splitlines()) == 1, r.err
    # The first node to read the model: ImageToTensor, which takes its tensor size from it.
    assert r.first_err_line.startswith("error: node 'detector/ImageToTensor' (ImageToTensor) failed in open: ")
    assert "model file not found: '/nonexistent/face.tflite' is neither an existing file nor a catalog entry" in r.err


def test_corrupt_model_is_one_line_without_native_source_locations(tmp_path):
    model = tmp_path / "corrupt.onnx"
    model.write_bytes(bytes(range(256)) * 8)
    r = run_vpipe("run", "face_detection", "--set", f"model={model}", "--set", "engine=onnxruntime", "-q")
    assert r.rc == 1
    assert len(r.err.splitlines()) == 1, r.err
    assert f"onnxruntime could not load {model}" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("device,message", [
    (-1, "a camera index is 0 or more (0 = /dev/video0), got -1"),
    (63, "no such device /dev/video63"),
])
def test_camera_index_is_checked_before_opencv(tmp_path, device, message):
    # OpenCV crashed the process on index -1 (exit status 139, SIGSEGV).
    if Path(f"/dev/video{device}").exists():
        pytest.skip(f"/dev/video{device} exists here")
    graph = tmp_path / "camera.yaml"
    graph.write_text(f"nodes:\n  - calculator: CameraSource\n    outputs: {{FRAMES: f}}\n    options: {{device: {device}}}\n")
    r = run_vpipe("run", str(graph), "-q")
    assert r.rc == 1, f"exit status {r.rc}: {r.err}"
    assert len(r.err.splitlines()) == 1 and message in r.err, r.err


def test_a_protocol_ffmpeg_lacks_is_not_offered_as_the_fix(tmp_path):
    import av

    try:
        av.open("srt://127.0.0.1:9?connect_timeout=100000", timeout=0.2).close()
        pytest.skip("this PyAV's FFmpeg has the srt protocol")
    except av.error.ProtocolNotFoundError:
        pass
    except av.error.FFmpegError:
        pytest.skip("this PyAV's FFmpeg has the srt protocol")
    r = run_vpipe("run", str(_source_graph(tmp_path, "srt://127.0.0.1:9000")), "-q")
    assert r.rc == 1
    assert "unsupported URL scheme 'srt': the FFmpeg inside PyAV was built without the srt protocol" in r.err
    assert "srt://" not in r.err.split("built without", 1)[1], r.err


def test_preview_prints_the_port_it_chose(tmp_path):
    graph = tmp_path / "preview.yaml"
    graph.write_text("side_packets: {preview: 8080}\nnodes:\n"
                     "  - calculator: SyntheticSource\n    outputs: {FRAMES: f}\n    options: {num_frames: 3, size: [64, 48]}\n"
                     "  - calculator: WebPreview\n    inputs: {IMAGE: f}\n    options: {port: $preview}\n")
    for quiet in ((), ("-q",)):
        r = run_vpipe("run", str(graph), "--set", "preview=0", *quiet)
        assert r.rc == 0, r.err
        m = re.search(r"WebPreview 'WebPreview': serving the preview at http://127\.0\.0\.1:(\d+)/", r.err)
        assert m and int(m.group(1)) > 0, r.err


@pytest.fixture(scope="module")
def segmentation_model():
    from models import catalog

    try:
        return catalog.resolve("zoo:selfie-segmentation")
    except catalog.CatalogError as e:
        pytest.skip(f"the selfie segmentation model is not available: {e}")


def _native_noise(err: str) -> bool:
    return "XNNPACK" in err or "InitGoogle" in err or "absl" in err or "text_format.cc" in err


@pytest.mark.parametrize("case", ["segmenter opens, then the writer fails", "corrupt TFLite model"])
def test_native_library_noise_stays_off_the_terminal(tmp_path, segmentation_model, case):
    # Real libraries' noise: the segmenter opens (TFLite prints its delegate line, absl its
    # warning) before the writer fails on a folder it cannot create; a corrupt model makes the
    # engines' parsers log (absl, glog-style lines). --debug shows it (so there is noise to hide);
    # without -q (and with it) the failure is the one error line.
    if case.startswith("segmenter"):
        args = ("run", "selfie_segmentation", "--set", "output=/proc/vpipe-cannot-write-here/out.mp4")
    else:
        model = tmp_path / "corrupt.tflite"
        model.write_bytes(bytes(range(256)) * 12)
        # OpenVINO's parser logs (LiteRT, engine auto's pick, refuses the file before parsing it)
        args = ("run", "face_detection", "--set", f"model={model}", "--set", "engine=openvino")
    loud = run_vpipe(*args, "--debug")
    assert loud.rc == 1
    assert _native_noise(loud.err), f"no native noise to hide here: {loud.err!r}"
    for flags in ((), ("-q",)) if case.startswith("segmenter") else ((),):
        r = run_vpipe(*args, *flags)
        assert r.rc == 1
        assert len(r.err.splitlines()) == 1 and r.first_err_line.startswith("error: "), (flags, r.err)
        assert not _native_noise(r.err), (flags, r.err)


def test_uncaught_bug_outside_a_calculator_is_reported_with_its_traceback(tmp_path):
    # A plugin whose Options raise when read: a bug, not a user error; the command still ends in
    # an `error:` line (first and last), with the traceback between.
    plugin = tmp_path / "buggy.py"
    plugin.write_text("from pipeline import calculator\n\n@calculator(name='Buggy')\n"
                      "def buggy(value: int) -> int:\n    return value\n\n"
                      "import pipeline.registry as r\nr.names = lambda: 1 / 0\n")
    r = run_vpipe("calculators", "--plugin", str(plugin))
    lines = r.err.splitlines()
    assert r.rc == 1
    assert lines[0] == "error: ZeroDivisionError: division by zero" == lines[-1], r.err
    assert "Traceback (most recent call last):" in r.err and "please report it" in r.err


def test_validate_reports_hostile_files_without_tracebacks(tmp_path):
    files = {"utf16.yaml": "nodes: []\n".encode("utf-16"), "deep.yaml": b"nodes: " + b"[" * 20000 + b"]" * 20000,
             "dup.yaml": b"nodes: []\nnodes: []\n", "key.yaml": b"? [a]\n: 1\nnodes: []\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    r = run_vpipe("validate", *(str(tmp_path / n) for n in files))
    assert r.rc == 1
    assert "Traceback" not in r.out + r.err
    assert [line.split(": ", 1)[0] for line in r.out.splitlines()] == [
        f"{tmp_path / 'utf16.yaml'}:1", f"{tmp_path / 'deep.yaml'}:1", f"{tmp_path / 'dup.yaml'}:2",
        f"{tmp_path / 'key.yaml'}:1"]



def test_set_off_switches_a_when_node_off(tmp_path):
    graph = tmp_path / "switch.yaml"
    graph.write_text("side_packets: {save: true}\nnodes:\n"
                     "  - calculator: Counter\n    outputs: {OUT: a}\n    options: {count: 3}\n"
                     "  - calculator: PassThrough\n    name: saver\n    inputs: {IN: a}\n    outputs: {OUT: b}\n"
                     "    when: $save\n")
    on = run_vpipe("run", str(graph), "-q")
    off = run_vpipe("run", str(graph), "--set", "save=off", "-q")
    assert on.rc == off.rc == 0, on.err + off.err
    assert "saver" in on.out and "saver" not in off.out
