"""Each option of the file-based media calculators, exercised so that ignoring it fails a test.

VideoWriter (bitrate, gop, preset, crf, threads, pix_fmt, fps, codec_options, fragmented, a frame
size that changes mid-stream), VideoSource (loop forever, BGR, threads, stream_index, av_options),
ImageWriter (quality, make_dirs), JsonlWriter (append, key), ImageSource (extensions, BGR, pace)
and SyntheticSource (pace). The encoder's own record of its settings (the x264 SEI string in the
file) and packets read back with PyAV are the evidence, not the code under test.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from fractions import Fraction

import cv2
import numpy as np
import pytest

from calculators.sinks.video_writer import VideoFileWriter, VideoWriterOptions
from calculators.sources.synthetic import synthetic_frame
from calculators.types import Image
from pipeline import GraphRunError

from .conftest import decode_all, graph, psnr

W, H = 160, 120
FPS = 30


def rgb(i: int, size=(W, H)) -> np.ndarray:
    return cv2.cvtColor(synthetic_frame(i, *size), cv2.COLOR_BGR2RGB)


def ts(i: int) -> int:
    return round(i * 1e6 / FPS)


def write(path, n: int = 30, **options) -> VideoFileWriter:
    w = VideoFileWriter(VideoWriterOptions(path=str(path), **options))
    try:
        for i in range(n):
            w.write(Image(rgb(i)), ts(i))
    finally:
        w.close()
    return w


def packets(path) -> list:
    """The video packets of ``path`` in presentation order, read with PyAV."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        got = [(p.pts, p.is_keyframe, p.size) for p in c.demux(s) if p.size]
    return sorted(got)


def kbps(path, n: int) -> float:
    return sum(size for _, _, size in packets(path)) * 8 / (n / FPS) / 1000


def x264_settings(path) -> dict[str, str]:
    """x264's own record of the settings it encoded with (the SEI text it writes into the stream)."""
    data = open(path, "rb").read()
    m = re.search(rb"x264 - core \d+.*? - options: ([^\x00]*)", data)
    assert m, f"{path} carries no x264 settings record (not encoded by libx264?)"
    return dict(kv.split("=", 1) for kv in m.group(1).decode("ascii", "replace").split() if "=" in kv)


@pytest.fixture(scope="module")
def x264():
    import av

    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # noqa: BLE001
        pytest.skip("this FFmpeg build has no libx264 (the settings checks read x264's record)")


# -- VideoWriter ----------------------------------------------------------------------------

def test_bitrate_targets_the_rate_and_replaces_crf(tmp_path, x264):
    n = 90
    write(tmp_path / "crf.mp4", n)
    write(tmp_path / "abr.mp4", n, bitrate=200_000)
    crf_rate, abr_rate = kbps(tmp_path / "crf.mp4", n), kbps(tmp_path / "abr.mp4", n)
    # x264's ABR lands at 0.55-0.65 of the target on this short, easy clip (measured).
    assert 100 < abr_rate < 400, f"bitrate 200 kb/s gave {abr_rate:.0f} kb/s"
    assert crf_rate < 0.6 * abr_rate, f"crf {crf_rate:.0f} kb/s vs bitrate {abr_rate:.0f} kb/s"
    assert x264_settings(tmp_path / "abr.mp4")["rc"] == "abr"
    assert x264_settings(tmp_path / "abr.mp4")["bitrate"] == "200"
    assert (x264_settings(tmp_path / "crf.mp4")["rc"], x264_settings(tmp_path / "crf.mp4")["crf"]) == ("crf", "23.0")


def test_crf_sets_the_quality(tmp_path, x264):
    write(tmp_path / "q12.mp4", 20, crf=12)
    write(tmp_path / "q40.mp4", 20, crf=40)
    assert x264_settings(tmp_path / "q12.mp4")["crf"] == "12.0"
    assert x264_settings(tmp_path / "q40.mp4")["crf"] == "40.0"
    assert kbps(tmp_path / "q12.mp4", 20) > 3 * kbps(tmp_path / "q40.mp4", 20)


def test_gop_places_a_keyframe_every_gop_frames(tmp_path, x264):
    write(tmp_path / "gop.mp4", 45, gop=10)
    write(tmp_path / "default.mp4", 45)
    keys = [i for i, (_, key, _) in enumerate(packets(tmp_path / "gop.mp4")) if key]
    assert keys == [0, 10, 20, 30, 40]
    assert [i for i, (_, key, _) in enumerate(packets(tmp_path / "default.mp4")) if key] == [0]


def test_preset_and_codec_options_reach_the_encoder(tmp_path, x264):
    write(tmp_path / "default.mp4", 10)
    write(tmp_path / "ultrafast.mp4", 10, preset="ultrafast")
    write(tmp_path / "zerolatency.mp4", 10, codec_options={"tune": "zerolatency"})
    default = x264_settings(tmp_path / "default.mp4")
    assert (default["cabac"], default["subme"], default["bframes"]) == ("1", "2", "3")  # veryfast
    ultrafast = x264_settings(tmp_path / "ultrafast.mp4")
    assert (ultrafast["cabac"], ultrafast["subme"]) == ("0", "0")
    assert x264_settings(tmp_path / "zerolatency.mp4")["bframes"] == "0"


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_sets_the_encoder_thread_count(tmp_path, x264, threads):
    # Both differ from each other, so at most one can match x264's automatic choice.
    write(tmp_path / "t.mp4", 10, threads=threads)
    assert x264_settings(tmp_path / "t.mp4")["threads"] == str(threads)


def test_pix_fmt_sets_the_stored_pixel_format(tmp_path, x264):
    import av

    write(tmp_path / "444.mp4", 20, pix_fmt="yuv444p", crf=18)
    write(tmp_path / "420.mp4", 20, crf=18)
    for name, fmt in (("444.mp4", "yuv444p"), ("420.mp4", "yuv420p")):
        with av.open(str(tmp_path / name)) as c:
            assert next(c.decode(video=0)).format.name == fmt
    # Full-resolution chroma keeps the pattern's coloured edges: closer to the source.
    q444 = min(psnr(f, rgb(i)) for i, (_, f) in enumerate(decode_all(tmp_path / "444.mp4")))
    q420 = min(psnr(f, rgb(i)) for i, (_, f) in enumerate(decode_all(tmp_path / "420.mp4")))
    assert q444 > q420 + 1.0, f"worst PSNR 4:4:4 {q444:.1f} dB, 4:2:0 {q420:.1f} dB"


def test_fps_is_the_nominal_rate_that_ends_the_last_frame(tmp_path):
    """Timestamps decide the timing; ``fps`` is the header rate, which gives the last frame
    its duration (so the stream's duration)."""
    import av

    durations = {}
    for fps in (30.0, 10.0):
        path = tmp_path / f"fps{int(fps)}.mp4"
        write(path, 30, fps=fps)
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            durations[fps] = float(s.duration * s.time_base)
        assert [t for t, _ in decode_all(path)] == [ts(i) for i in range(30)]
    assert durations[30.0] == pytest.approx(30 / 30, abs=1e-3)
    assert durations[10.0] == pytest.approx(29 / 30 + 1 / 10, abs=1e-3)


def test_a_frame_size_change_mid_stream_is_scaled_to_the_first_size(tmp_path, caplog):
    """Documented: the first frame fixes the stream's size; later frames of another size are
    scaled to it, with one warning."""
    path = tmp_path / "resize.mp4"
    w = VideoFileWriter(VideoWriterOptions(path=str(path), crf=12))
    with caplog.at_level(logging.WARNING, logger="vpipe.sinks.video"):
        for i in range(6):
            w.write(Image(rgb(i)), ts(i))
        for i in range(6, 12):
            w.write(Image(rgb(i, (80, 60))), ts(i))
        w.close()
    frames = decode_all(path)
    assert [t for t, _ in frames] == [ts(i) for i in range(12)]
    assert {f.shape for _, f in frames} == {(H, W, 3)}
    for i in range(6, 12):
        scaled = cv2.resize(rgb(i, (80, 60)), (W, H), interpolation=cv2.INTER_LINEAR)
        assert psnr(frames[i][1], scaled) > 25, f"frame {i} is not the small frame scaled up"
    warnings = [r.getMessage() for r in caplog.records if "frame size changed" in r.getMessage()]
    assert warnings == [f"VideoWriter: frame size changed to 80x60 at {ts(6)} µs; scaled to 160x120"]


WRITER_CHILD = r"""
import sys, cv2
from calculators.sinks.video_writer import VideoFileWriter, VideoWriterOptions
from calculators.sources.synthetic import synthetic_frame
from calculators.types import Image
w = VideoFileWriter(VideoWriterOptions(path=sys.argv[1], fragmented=True, gop=10))
for i in range(int(sys.argv[2])):
    w.write(Image(cv2.cvtColor(synthetic_frame(i, 160, 120), cv2.COLOR_BGR2RGB)), round(i * 1e6 / 30))
print(w.frames, flush=True)
sys.stdin.read()  # hold the file open, unfinished, until killed
"""


def test_fragmented_mp4_keeps_timestamps(tmp_path):
    path = tmp_path / "frag.mp4"
    write(path, 20, fragmented=True, gop=10)
    data = path.read_bytes()
    assert b"moof" in data and b"mvex" in data, "the file is fragmented"
    assert [t for t, _ in decode_all(path)] == [ts(i) for i in range(20)]


def test_fragmented_mp4_survives_sigkill_up_to_its_last_fragment(tmp_path):
    path = tmp_path / "killed.mp4"
    n = 90
    proc = subprocess.Popen([sys.executable, "-c", WRITER_CHILD, str(path), str(n)], cwd=os.getcwd(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the writer process did not report its frames within 60 s"
        line = proc.stdout.readline().decode().strip()
        assert line == str(n), f"writer said {line!r}; stderr: {proc.stderr.read().decode()[-800:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    assert proc.returncode == -signal.SIGKILL
    size = path.stat().st_size
    assert size > 10_000, f"the killed writer left {size} bytes"
    frames = decode_all(path)
    # Keyframes every 10 frames start fragments; the encoder holds back at most ~20 frames,
    # so the fragments up to frame 60 at least are complete.
    assert len(frames) >= 60, f"{len(frames)} frames decode from the killed file"
    assert [t for t, _ in frames] == [ts(i) for i in range(len(frames))]
    worst = min(psnr(f, rgb(i)) for i, (_, f) in enumerate(frames))
    assert worst > 28, f"worst PSNR {worst:.1f} dB"


# -- VideoSource ----------------------------------------------------------------------------

def run_source(calculator: str, options: dict, *, stop_after: int | None = None, timeout: float = 30):
    node = {"calculator": calculator, "outputs": {"FRAMES": "frames"}, "side_outputs": {"INFO": "info"},
            "options": options}
    g = graph(node)
    got = []

    def on(p):
        got.append((p.timestamp, p.value))
        if stop_after is not None and len(got) == stop_after:
            g.cancel()

    g.observe("frames", on)
    g.start()
    g.wait(timeout)
    return [t for t, _ in got], [v for _, v in got], g.side_packet("info")


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    """10 frames of the pattern at 160x120, 30 fps, nearly lossless."""
    path = tmp_path_factory.mktemp("video") / "short.mp4"
    write(path, 10, crf=0, preset="ultrafast", pix_fmt="yuv444p")
    return path


def test_loop_true_repeats_until_stopped(short_video):
    times, images, _ = run_source("VideoSource", {"uri": str(short_video), "loop": True}, stop_after=35)
    assert len(times) >= 35, "a file of 10 frames played more than three times"
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[:10] == [ts(i) for i in range(10)]
    # Each restart follows on one frame interval (int(1e6 / fps) µs) after the last frame.
    assert [times[k] - times[k - 1] for k in (10, 20, 30)] == [33_333] * 3
    assert set(np.diff(times[:35])) <= {33_333, 33_334}
    for i in (0, 10, 20, 34):
        np.testing.assert_allclose(images[i].data, images[i % 10].data, atol=0)


def test_bgr_format_is_rgb_reversed(short_video):
    _, rgb_frames, _ = run_source("VideoSource", {"uri": str(short_video)})
    _, bgr_frames, info = run_source("VideoSource", {"uri": str(short_video), "format": "BGR"})
    assert info.pixel_format == "BGR" and len(bgr_frames) == 10
    for a, b in zip(rgb_frames, bgr_frames):
        assert b.format == "BGR"
        np.testing.assert_array_equal(b.data, a.data[..., ::-1])


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_sets_the_decoder_thread_count(short_video, threads):
    from calculators.sources.video import VideoReader
    from calculators.sources.video import VideoSourceOptions

    r = VideoReader(VideoSourceOptions(uri=str(short_video), threads=threads))
    try:
        r.open()
        assert len(list(r.frames())) == 10
        assert r.stream.codec_context.thread_count == threads
    finally:
        r.close()


@pytest.mark.parametrize("thread_type", ["frame", "slice"])
def test_thread_type_sets_the_decoder_threading(short_video, thread_type):
    from calculators.sources.video import VideoReader
    from calculators.sources.video import VideoSourceOptions

    r = VideoReader(VideoSourceOptions(uri=str(short_video), threads=2, thread_type=thread_type))
    try:
        r.open()
        assert len(list(r.frames())) == 10
        assert r.stream.codec_context.thread_type.name == thread_type.upper()
    finally:
        r.close()


def test_stream_index_picks_the_video_stream(tmp_path):
    import av

    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as c:
        streams = []
        for w, h in ((W, H), (64, 48)):
            s = c.add_stream("mpeg4", rate=FPS)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            streams.append((s, w, h))
        for i in range(5):
            for s, w, h in streams:
                f = av.VideoFrame.from_ndarray(rgb(i, (w, h)), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, FPS)
                c.mux(s.encode(f))
        for s, _, _ in streams:
            c.mux(s.encode(None))
    _, first, info0 = run_source("VideoSource", {"uri": str(path)})
    _, second, info1 = run_source("VideoSource", {"uri": str(path), "stream_index": 1})
    assert (info0.width, info0.height) == (W, H) and {im.size for im in first} == {(W, H)}
    assert (info1.width, info1.height) == (64, 48) and {im.size for im in second} == {(64, 48)}
    assert len(second) == 5 and psnr(second[2].data, rgb(2, (64, 48))) > 25
    with pytest.raises(GraphRunError, match=r"two.mkv': only 2 video stream\(s\) \(stream_index=2\)"):
        run_source("VideoSource", {"uri": str(path), "stream_index": 2})


def test_av_options_reach_the_demuxer(tmp_path):
    """Raw YUV has no header: FFmpeg needs its size and pixel format as format options."""
    path = tmp_path / "raw.yuv"
    with open(path, "wb") as f:
        for i in range(4):
            f.write(cv2.cvtColor(synthetic_frame(i, W, H), cv2.COLOR_BGR2YUV_I420).tobytes())
    with pytest.raises(GraphRunError, match=r"raw.yuv': cannot open"):
        run_source("VideoSource", {"uri": str(path)})
    _, frames, info = run_source("VideoSource", {"uri": str(path), "av_options": {
        "video_size": f"{W}x{H}", "pixel_format": "yuv420p", "framerate": "10"}})
    assert (info.width, info.height, info.fps) == (W, H, 10.0)
    assert len(frames) == 4
    assert psnr(frames[3].data, rgb(3)) > 30


# -- ImageWriter, JsonlWriter ----------------------------------------------------------------

def test_image_writer_quality(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (H, W, 3), np.uint8)
    frame = cv2.GaussianBlur(noise, (5, 5), 0)
    sizes, scores = {}, {}
    for q in (20, 95):
        g = graph({"calculator": "ImageWriter", "inputs": {"IMAGE": "in"},
                   "options": {"pattern": str(tmp_path / f"q{q}_{{index}}.jpg"), "quality": q}}, inputs=["in"])
        g.start()
        g.add_packet("in", Image(frame, "BGR"), 0)
        g.close_input("in")
        g.wait(10)
        out = tmp_path / f"q{q}_0.jpg"
        sizes[q], scores[q] = out.stat().st_size, psnr(cv2.imread(str(out)), frame)
    assert sizes[95] > 2 * sizes[20], sizes
    assert scores[95] > scores[20] + 5, scores


def test_image_writer_make_dirs_false_needs_the_folder(tmp_path):
    pattern = str(tmp_path / "absent" / "{index}.png")
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"}, "options": {"size": [W, H], "num_frames": 1}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"}, "options": {"pattern": pattern, "make_dirs": False}})
    with pytest.raises(GraphRunError, match=r"folder '.*absent' does not exist"):
        g.run()
    assert not (tmp_path / "absent").exists()


def _jsonl_run(path, values, **options):
    g = graph({"calculator": "JsonlWriter", "inputs": {"IN": "in"}, "options": {"path": str(path), **options}},
              inputs=["in"])
    g.start()
    for t, v in values:
        g.add_packet("in", v, t)
    g.close_input("in")
    g.wait(10)


def test_jsonl_writer_append_keeps_the_first_runs_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    _jsonl_run(path, [(0, 1), (10, 2)])
    _jsonl_run(path, [(0, 3)], append=True)
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"timestamp_us": 0, "value": 1}, {"timestamp_us": 10, "value": 2}, {"timestamp_us": 0, "value": 3}]
    _jsonl_run(path, [(5, 4)])  # the default truncates
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"timestamp_us": 5, "value": 4}]


def test_jsonl_writer_key(tmp_path):
    from calculators.types import Detections

    path = tmp_path / "k.jsonl"
    _jsonl_run(path, [(0, {"n": 1}), (1, Detections.empty())], key="faces")
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"timestamp_us": 0, "faces": {"n": 1}}, {"timestamp_us": 1, "faces": []}]


# -- ImageSource, SyntheticSource --------------------------------------------------------------

def test_image_source_extensions_and_bgr(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"a{i}.png"), synthetic_frame(i, 64, 48))
    cv2.imwrite(str(tmp_path / "b.jpg"), synthetic_frame(9, 64, 48))
    _, all_frames, _ = run_source("ImageSource", {"path": str(tmp_path)})
    assert len(all_frames) == 4
    _, pngs, info = run_source("ImageSource", {"path": str(tmp_path), "extensions": [".png"], "format": "BGR"})
    assert info.frame_count == 3 and len(pngs) == 3
    for i, im in enumerate(pngs):
        assert im.format == "BGR"
        np.testing.assert_array_equal(im.data, synthetic_frame(i, 64, 48))


@pytest.mark.parametrize("calculator, options", [
    ("SyntheticSource", {"size": [64, 48], "fps": 40, "num_frames": 9}),
    ("ImageSource", {"rate": 40}),
])
def test_realtime_pace_holds_frames_to_their_timestamps(tmp_path, calculator, options):
    if calculator == "ImageSource":
        for i in range(9):
            cv2.imwrite(str(tmp_path / f"f{i}.png"), synthetic_frame(i, 64, 48))
        options = {**options, "path": str(tmp_path)}
    t0 = time.monotonic()
    fast, _, _ = run_source(calculator, options)
    t_fast = time.monotonic() - t0
    t0 = time.monotonic()
    paced, _, _ = run_source(calculator, {**options, "pace": "realtime"})
    t_paced = time.monotonic() - t0
    assert paced == fast == [i * 25_000 for i in range(9)]
    assert t_paced >= 0.2 * 0.95, f"realtime: 9 frames 25 ms apart took {t_paced:.3f} s"
    assert t_fast < t_paced, f"fast {t_fast:.3f} s, realtime {t_paced:.3f} s"


@pytest.mark.parametrize("pix_fmt, message", [
    ("nonsense", "pix_fmt 'nonsense' is not a pixel format FFmpeg knows"),
    ("rgb24", "encoder libx264 does not take pix_fmt 'rgb24'; it takes yuv420p"),
])
def test_video_writer_refuses_a_pixel_format_before_any_frame(tmp_path, pix_fmt, message):
    from pipeline.testing import run_calculator

    with pytest.raises(GraphRunError, match=re.escape(message)) as info:
        run_calculator("VideoWriter", inputs={"IMAGE": []}, options={"path": str(tmp_path / "x.mp4"), "pix_fmt": pix_fmt})
    assert info.value.phase == "open"
    assert not (tmp_path / "x.mp4").exists()
