"""Sources against real media: the sample videos, images written to disk, the synthetic pattern."""

from __future__ import annotations

import logging
import os
import shutil

import cv2
import numpy as np
import pytest

from calculators.sources.common import MediaError, VideoInfo
from calculators.sources.synthetic import synthetic_frame
from calculators.sources.video import VideoReader
from calculators.sources.images import list_images
from calculators.sources.video import VideoSourceOptions
from calculators.types import Image
from pipeline import GraphRunError

from .conftest import at_packet, decode_all, graph, psnr


def run_source(calculator: str, options: dict, *, info: bool = True, timeout: float = 60):
    """Runs one source node; returns (timestamps, images, INFO side packet)."""
    node = {"calculator": calculator, "outputs": {"FRAMES": "frames"}, "options": options}
    if info:
        node["side_outputs"] = {"INFO": "info"}
    g = graph(node, outputs=["frames"])
    got = []
    g.observe("frames", lambda p: got.append((p.timestamp, p.value)))
    g.start()
    g.wait(timeout)
    return [t for t, _ in got], [v for _, v in got], g.side_packet("info") if info else None


# -- SyntheticSource ------------------------------------------------------------------------

def test_synthetic_source_frames_timestamps_and_content():
    ts, frames, info = run_source("SyntheticSource", {"size": [160, 120], "fps": 25, "num_frames": 10})
    assert ts == [i * 40_000 for i in range(10)]
    assert info == VideoInfo(uri="synthetic:", width=160, height=120, fps=25, codec=None, frame_count=10,
                             duration_s=0.4, live=False, pixel_format="RGB")
    for i, f in enumerate(frames):
        assert f.format == "RGB" and f.data.shape == (120, 160, 3)
        np.testing.assert_array_equal(f.data, cv2.cvtColor(synthetic_frame(i, 160, 120), cv2.COLOR_BGR2RGB))
    # The shapes move: consecutive frames differ, and the frame number is drawn in.
    assert np.abs(frames[1].data.astype(int) - frames[0].data).sum() > 0
    assert not np.array_equal(synthetic_frame(3, 160, 120)[:20, :60], synthetic_frame(4, 160, 120)[:20, :60])


@pytest.mark.parametrize("fmt, shape", [("BGR", (48, 64, 3)), ("GRAY", (48, 64))])
def test_synthetic_source_pixel_formats(fmt, shape):
    _, frames, _ = run_source("SyntheticSource", {"size": [64, 48], "num_frames": 2, "format": fmt})
    assert [(f.format, f.data.shape) for f in frames] == [(fmt, shape)] * 2


def test_synthetic_source_rejects_a_tiny_size():
    from pipeline import GraphConfigError

    with pytest.raises(GraphConfigError, match="at least 16x16"):
        run_source("SyntheticSource", {"size": [8, 8]})


# -- VideoSource on the real sample videos ----------------------------------------------------

@pytest.mark.parametrize("name, frames, size, fps", [
    ("carphone", 120, (176, 144), 30000 / 1001),
    ("bikes", 250, (640, 272), 25.0),
    ("bigbuckbunny", 132, (1280, 720), 25.0),
])
def test_sample_videos_decode_with_the_right_counts_and_sizes(sample, name, frames, size, fps):
    path = sample(name)
    ts, images, info = run_source("VideoSource", {"uri": str(path), "threads": 2})
    assert len(images) == frames
    assert {im.size for im in images} == {size}
    assert all(im.format == "RGB" for im in images)
    assert info.frame_count == frames and (info.width, info.height) == size and info.codec == "h264"
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert ts[0] == 0 and ts[-1] == pytest.approx((frames - 1) * 1e6 / fps, abs=1)
    # Same pixels as PyAV itself gives (checked on a few frames; bigbuckbunny is large).
    ref = decode_all(path)
    for i in (0, frames // 2, frames - 1):
        assert ref[i][0] == ts[i]
        np.testing.assert_array_equal(images[i].data, ref[i][1])


def test_start_stop_loop_keep_timestamps_increasing(sample):
    path = str(sample("carphone"))
    ts, _, _ = run_source("VideoSource", {"uri": path, "start_s": 1.0, "stop_s": 2.0, "loop": 3}, info=False)
    per_play = [t for t in decode_all(path) if 1_000_000 <= t[0] < 2_000_000]
    assert len(ts) == 3 * len(per_play) == 3 * 30
    assert ts[0] == per_play[0][0]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    gaps = np.diff(ts)
    assert gaps.max() < 40_000, "a loop restart must follow on one frame interval later"


def test_output_format_and_size(sample):
    _, images, info = run_source("VideoSource", {"uri": str(sample("carphone")), "format": "GRAY",
                                                 "size": [88, 72], "stop_s": 0.2})
    assert images and all(im.format == "GRAY" and im.data.shape == (72, 88) for im in images)
    assert (info.width, info.height) == (88, 72)


def test_realtime_pace_holds_frames_to_their_timestamps(sample):
    import time

    t0 = time.monotonic()
    ts, _, _ = run_source("VideoSource", {"uri": str(sample("carphone")), "stop_s": 0.5, "pace": "realtime"}, info=False)
    elapsed = time.monotonic() - t0
    assert len(ts) == 15
    assert elapsed >= (ts[-1] - ts[0]) / 1e6 * 0.95, f"realtime pace ran in {elapsed:.3f} s"


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, message", [
    ("/no/such/video.mp4", r"'/no/such/video.mp4': no such file"),
    ("foo://example/stream", r"unsupported URL scheme 'foo'"),
    ("/tmp", r"'/tmp': is a directory"),
])
def test_bad_uris_fail_at_open_naming_the_path(uri, message):
    with pytest.raises(GraphRunError, match=message) as info:
        run_source("VideoSource", {"uri": uri})
    assert "VideoSource" in str(info.value)


def test_unreadable_file_names_path_and_cause(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 100)
    with pytest.raises(GraphRunError, match=r"notes.mp4': not a video file FFmpeg can read \(Invalid data"):
        run_source("VideoSource", {"uri": str(bad)})


def test_video_with_moov_at_the_end_truncated_is_unreadable(sample, tmp_path):
    data = sample("carphone").read_bytes()
    assert data.find(b"moov") > len(data) // 2, "the sample keeps its index at the end"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphRunError, match=r"cut.mp4': an MP4 whose index \(its 'moov' box\) is missing: the "
                                            r"recording was cut short"):
        run_source("VideoSource", {"uri": str(cut)})


def _faststart_copy(src, dst):
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for pkt in i.demux(s_in):
            if pkt.dts is None:
                continue
            pkt.stream = s_out
            o.mux(pkt)


def test_truncated_video_yields_its_frames_and_says_where_it_stopped(sample, tmp_path, caplog):
    full = tmp_path / "full.mp4"
    _faststart_copy(sample("carphone"), full)
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart puts the index first"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with caplog.at_level(logging.WARNING, logger="vpipe.sources.video"):
        ts, images, info = run_source("VideoSource", {"uri": str(cut)})
    assert info.frame_count == 120
    assert 30 < len(images) < 120
    ref = decode_all(full)
    for i in (0, len(images) - 1):
        assert ts[i] == ref[i][0]
        np.testing.assert_array_equal(images[i].data, ref[i][1])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cut.mp4" in w and f"of the 120 frames" in w and f"{ts[-1] / 1e6:.3f} s" in w for w in warnings), warnings
    # strict: the same file is an error.
    with pytest.raises(GraphRunError, match=r"cut.mp4': file ends early"):
        run_source("VideoSource", {"uri": str(cut), "strict": True})


def test_reader_unit_without_graph(sample):
    r = VideoReader(VideoSourceOptions(uri=str(sample("carphone")), stop_s=0.1))
    info = r.open()
    frames = list(r.frames())
    r.close()
    assert info.frame_count == 120 and [t for t, _ in frames] == [0, 33367, 66733]


def test_an_open_video_shortens_the_gil_switch_interval_until_the_last_reader_closes(sample):
    """A decoder beside a Python-busy thread waits up to a switch interval for the GIL after each
    native call: while a video is open the interval is at most DECODER_SWITCH_INTERVAL_S, in a graph
    too, and the value found before comes back when the last reader closes (each close counts once)."""
    import sys

    from calculators.sources.common import DECODER_SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    assert before > DECODER_SWITCH_INTERVAL_S  # CPython's default, 5 ms
    a = VideoReader(VideoSourceOptions(uri=str(sample("carphone")), stop_s=0.1))
    b = VideoReader(VideoSourceOptions(uri=str(sample("carphone")), stop_s=0.1))
    a.open()
    assert sys.getswitchinterval() == DECODER_SWITCH_INTERVAL_S
    b.open()
    a.close()
    a.close()  # a second close does not release b's hold
    assert sys.getswitchinterval() == DECODER_SWITCH_INTERVAL_S
    b.close()
    assert sys.getswitchinterval() == before
    seen = []
    g = graph({"calculator": "VideoSource", "outputs": {"FRAMES": "frames"},
               "options": {"uri": str(sample("carphone")), "stop_s": 0.1}}, outputs=["frames"])
    g.observe("frames", lambda p: seen.append(sys.getswitchinterval()))
    g.start()
    g.wait(60)
    assert seen == [DECODER_SWITCH_INTERVAL_S] * 3 and sys.getswitchinterval() == before


# -- ImageSource ----------------------------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"img{i}.png"), synthetic_frame(i, 64, 48))
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize("order, expected", [("name", [1, 10, 2]), ("natural", [1, 2, 10])])
def test_image_source_order_rate_and_content(image_folder, order, expected):
    g = graph({"calculator": "ImageSource", "outputs": {"FRAMES": "frames", "PATH": "paths"},
               "options": {"path": str(image_folder), "rate": 10, "order": order}})
    got, paths = [], []
    g.observe("frames", lambda p: got.append((p.timestamp, p.value)))
    g.observe("paths", lambda p: paths.append(p.value))
    g.run()
    assert [t for t, _ in got] == [0, 100_000, 200_000]
    assert [os.path.basename(p) for p in paths] == [f"img{i}.png" for i in expected]
    for (_, im), i in zip(got, expected):
        np.testing.assert_array_equal(im.data, cv2.cvtColor(synthetic_frame(i, 64, 48), cv2.COLOR_BGR2RGB))


def test_image_source_glob_and_loop(image_folder):
    g = graph({"calculator": "ImageSource", "outputs": {"FRAMES": "frames"},
               "options": {"path": str(image_folder / "img1*.png"), "loop": True, "rate": 1}})
    got = at_packet(g, "frames", 5, g.cancel)
    g.run()
    assert got[:5] == [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]
    assert list_images(str(image_folder / "img1*.png")) == [str(image_folder / "img1.png"), str(image_folder / "img10.png")]


@pytest.mark.parametrize("fmt", ["RGB", "GRAY"])
def test_image_source_alpha_16_bit_and_gray_files(tmp_path, fmt):
    """RGBA, 16-bit and single-channel files all come out as 8-bit images in ``format``."""
    bgr = synthetic_frame(5, 64, 48)
    cv2.imwrite(str(tmp_path / "a_rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "b_16bit.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "c_gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    ts, images, info = run_source("ImageSource", {"path": str(tmp_path), "format": fmt})
    assert ts == [0, 33_333, 66_667] and (info.width, info.height) == (64, 48)
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY if fmt == "GRAY" else cv2.COLOR_BGR2RGB)
    gray_as_rgb = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2RGB)
    for im, expected in zip(images, [want, want, want if fmt == "GRAY" else gray_as_rgb]):
        assert im.format == fmt and im.data.dtype == np.uint8 and im.data.shape == expected.shape
        # GRAY: the PNG decoder's own colour-to-gray rounding differs from cvtColor's by at most 1.
        np.testing.assert_allclose(im.data, expected, atol=1 if fmt == "GRAY" else 0, rtol=0)


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "missing"), r"'.*missing': no such file or folder"),
    (lambda d: str(d / "nofolder" / "x.png"), r"folder '.*nofolder' does not exist"),
    (lambda d: (d / "empty").mkdir() or str(d / "empty"), r"the folder '.*empty' holds no image files"),
    (lambda d: (d / "bad.png").write_bytes(b"\x89PNG garbage") and str(d / "bad.png"), r"'.*bad.png' is not an image OpenCV can decode"),
])
def test_image_source_bad_paths(tmp_path, make, message):
    with pytest.raises(GraphRunError, match=message):
        run_source("ImageSource", {"path": make(tmp_path)})


# -- CameraSource (driven through cv2.VideoCapture on a file: there is no camera here) ---------

def test_camera_source_on_a_file_emits_newest_frames_with_capture_times(sample):
    import time

    before = time.monotonic_ns() // 1000
    ts, images, info = run_source("CameraSource", {"device": str(sample("carphone")), "reconnect": False})
    after = time.monotonic_ns() // 1000
    assert info.live and (info.width, info.height) == (176, 144) and info.frame_count is None
    assert 1 <= len(images) <= 120
    assert all(im.size == (176, 144) and im.format == "RGB" for im in images)
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert before <= ts[0] and ts[-1] <= after, "timestamps are capture times on the monotonic clock"


def test_camera_source_keeps_only_the_newest_frame(sample):
    """A slow consumer sees fresh frames: the grabber overwrites, it never queues."""
    from calculators.sources.camera import CameraGrabber, CameraSourceOptions

    grabber = CameraGrabber(CameraSourceOptions(device=str(sample("bikes")), reconnect=False))
    grabber.open()
    try:
        first = grabber.next(5.0)
        assert first is not None
        # Let the grabber run to the end of the file without taking anything.
        grabber.thread.join(30)
        assert not grabber.thread.is_alive()
        last = grabber.next(1.0)
        assert last is not None and grabber.next(0.1) is None, "only one frame is ever held"
        assert grabber.grabbed == 250
        assert grabber.slot.dropped == 250 - 2
    finally:
        grabber.close()


def test_camera_that_does_not_open_is_a_clear_error():
    with pytest.raises(GraphRunError, match=r"camera 57: no such device /dev/video57 \(cameras here: "):
        run_source("CameraSource", {"device": 57, "open_timeout_s": 2})
    with pytest.raises(GraphRunError, match=r"camera '/no/such/device': cannot open it"):
        run_source("CameraSource", {"device": "/no/such/device", "open_timeout_s": 2})


def test_camera_source_asks_opencv_for_size_fps_and_fourcc(sample, monkeypatch):
    """What CameraSource requests of the capture device. There is no camera on the machines this
    runs on (no /dev/video*, and no v4l2loopback in a container), and a file cannot honour them,
    so the test records them on their way to a real ``cv2.VideoCapture`` of a file: size in the
    open parameters (V4L2 negotiates it at open), fourcc and fps set after it. OpenCV's FFmpeg
    backend refuses to open a file when asked for a frame size, so the recorder hands it only
    the other parameters. A device may adjust the requests; INFO reports what it delivers."""
    import cv2

    real = cv2.VideoCapture
    calls = []

    class Recording:
        def __init__(self, device, api=cv2.CAP_ANY, params=()):
            asked = dict(zip(params[::2], params[1::2]))
            calls.append(("open", asked))
            size = (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
            self._cap = real(device, api, [x for k, v in asked.items() if k not in size for x in (k, v)])

        def set(self, prop, value):
            calls.append(("set", prop, value))
            return self._cap.set(prop, value)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Recording)
    run_source("CameraSource", {"device": str(sample("carphone")), "reconnect": False})
    (_, plain), = [c for c in calls if c[0] == "open"]
    assert cv2.CAP_PROP_FRAME_WIDTH not in plain and not [c for c in calls if c[0] == "set"]
    calls.clear()
    ts, images, info = run_source("CameraSource", {"device": str(sample("carphone")), "reconnect": False,
                                                   "size": [640, 480], "fps": 15, "fourcc": "MJPG"})
    (_, params), = [c for c in calls if c[0] == "open"]
    assert params[cv2.CAP_PROP_FRAME_WIDTH] == 640 and params[cv2.CAP_PROP_FRAME_HEIGHT] == 480
    sets = {c[1]: c[2] for c in calls if c[0] == "set"}
    assert sets == {cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"MJPG"), cv2.CAP_PROP_FPS: 15.0}
    assert (info.width, info.height) == (176, 144)  # a file keeps its size: INFO says what came
