"""One test per run-time defect of issue 11 ("Data lost", "Hangs"); each failed on the code before
the fix (the measured loss or hang is in its docstring)."""

from __future__ import annotations

import _thread
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from pipeline import Graph, GraphConfigError, GraphRunError
from tests.reliability import faults
from tests.reliability.conftest import (
    Notifier, StreamLog, assert_no_vpipe_thread, jsonl_records, mp4_means, mp4_timestamps, node, run_cli,
    write_graph,
)

P = faults.PERIOD_US


def two_sinks(tmp_path: Path, source: dict, *, slow_s: float = 0.0, middle: dict | None = None) -> tuple[dict, ...]:
    """source -> [middle] -> VideoWriter (out.mp4) and -> FrameRecord -> JsonlWriter (out.jsonl)."""
    frames = "frames"
    nodes = [source]
    if middle is not None:
        nodes.append(middle)
        frames = "checked"
    nodes += [
        node("Slow", "slow", inputs={"IN": frames}, outputs={"OUT": "to_video"}, delay_s=slow_s),
        node("VideoWriter", "video", inputs={"IMAGE": "to_video"}, path=str(tmp_path / "out.mp4")),
        node("FrameRecord", "record", inputs={"IMAGE": frames}, outputs={"RECORD": "records"}),
        node("JsonlWriter", "jsonl", inputs={"IN": "records"}, path=str(tmp_path / "out.jsonl")),
    ]
    return tuple(nodes)


def check_outputs(tmp_path: Path, expect: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Both sinks' files are valid and hold the same frames (and ``expect`` when given)."""
    video = mp4_timestamps(tmp_path / "out.mp4")
    lines = [r["value"]["t"] for r in jsonl_records(tmp_path / "out.jsonl")]
    assert video == lines, f"the mp4 holds {len(video)} frames, the JSONL {len(lines)}"
    if expect is not None:
        assert video == expect
    return video, lines


# -- Data lost -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_the_graph_and_finalizes_the_files(tmp_path, signum, code):
    """Before: SIGTERM killed the run at once (an unplayable mp4); Ctrl-C at ~2 s of a 120-frame run
    left 120 JSONL lines but 56 frames in the mp4 (frames queued for the writer were discarded)."""
    n = Notifier()
    try:
        src = node("Frames", "src", outputs={"FRAMES": "frames"}, count=None, notify_after=30, notify_fd=n.w)
        g = write_graph(tmp_path / "g.yaml", *two_sinks(tmp_path, src, slow_s=0.01))
        r = run_cli(["run", str(g), "-q"], notifier=n, steps=(("notify", "running"), ("signal", signum)))
    finally:
        n.close()
    assert r.rc == code, r.err
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert r.first_err_line == f"error: interrupted ({name}): the run was stopped", r.err
    video, _ = check_outputs(tmp_path)
    assert len(video) >= 30
    assert video == [i * P for i in range(len(video))], "frames are contiguous from the first one"


def test_request_stop_drains_what_is_queued_into_the_sinks(tmp_path, no_thread_leak):
    """Before: request_stop() from outside stopped sources but the mp4 lost the frames queued in
    front of a slow branch."""
    src = node("Frames", "src", outputs={"FRAMES": "frames"}, count=None)
    g = Graph.from_dict({"nodes": list(two_sinks(tmp_path, src, slow_s=0.005))})
    sent = StreamLog()
    g.observe("to_video", sent)
    into_slow = StreamLog()
    g.observe("frames", into_slow)
    g.start()
    into_slow.wait_count(40)
    g.request_stop()
    g.wait(20)
    video, _ = check_outputs(tmp_path, expect=sent.timestamps)
    assert video == into_slow.timestamps, "every frame that entered the graph reached the mp4"


def test_a_source_whose_close_fails_keeps_every_frame_it_emitted(tmp_path, no_thread_leak):
    """Before: a source whose close() raises after emitting all 100 frames left 18 in the mp4."""
    g = Graph.from_dict({"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=100, phase="close"),
        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")),
    ]})
    with pytest.raises(GraphRunError, match=r"node 'src' \(Frames\) failed in close: RuntimeError: injected fault"):
        g.run()
    assert mp4_timestamps(tmp_path / "out.mp4") == [i * P for i in range(100)]


def test_an_error_in_one_branch_still_hands_the_other_sinks_what_reached_them(tmp_path, no_thread_leak):
    """Before: an exception in one branch left 15 of 60 frames in the other branch's mp4."""
    g = Graph.from_dict({"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=60),
        node("Fault", "bad", inputs={"IN": "frames"}, phase="process", at=30 * P),
        # The writer encodes slower than 'bad' passes frames on: frames wait in its queue.
        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")),
    ]})
    reached = StreamLog()
    g.observe("frames", reached)
    with pytest.raises(GraphRunError, match=r"node 'bad' \(Fault\) failed in process at timestamp 1200000"):
        g.run()
    video = mp4_timestamps(tmp_path / "out.mp4")
    assert video == reached.timestamps, "the mp4 holds every frame that reached the writer"
    assert len(video) >= 31, "frames 0..30 were sent to both branches before 'bad' failed at 30"


@pytest.mark.parametrize("side", ["output", "detections"])
def test_an_output_path_equal_to_the_input_is_refused_before_anything_runs(tmp_path, side):
    """Before: ``--set output=`` (or ``detections=``) the source itself destroyed it with exit 0."""
    import shutil

    from models import catalog

    try:
        sample = catalog.resolve("sample:bikes")
    except catalog.CatalogError as e:
        pytest.skip(f"sample video unavailable: {e}")
    video = tmp_path / "input.mp4"
    shutil.copy(sample, video)
    before = video.read_bytes()
    g = write_graph(tmp_path / "g.yaml",
                    node("VideoSource", "src", outputs={"FRAMES": "frames"}, uri="$source"),
                    node("FrameRecord", "record", inputs={"IMAGE": "frames"}, outputs={"RECORD": "records"}),
                    node("JsonlWriter", "detections", inputs={"IN": "records"}, path="$detections"),
                    node("VideoWriter", "output", inputs={"IMAGE": "frames"}, path="$output"),
                    side_packets={"source": None, "output": str(tmp_path / "o.mp4"),
                                  "detections": str(tmp_path / "o.jsonl")})
    r = run_cli(["run", str(g), "-q", "--set", f"source={video}", "--set", f"{side}={video}"])
    assert r.rc == 1, r.err
    assert r.first_err_line.startswith(f"error: {g}:"), r.err
    assert f"node '{side}'" in r.first_err_line and "would overwrite" in r.first_err_line, r.err
    assert f"node 'src'" in r.first_err_line and str(video) in r.first_err_line, r.err
    assert video.read_bytes() == before, "the input is untouched"
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.jsonl").exists(), "nothing ran"


def test_two_sinks_on_one_path_are_refused(tmp_path):
    out = tmp_path / "same.mp4"
    spec = {"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=3),
        node("VideoWriter", "a", inputs={"IMAGE": "frames"}, path=str(out)),
        node("VideoWriter", "b", inputs={"IMAGE": "frames"}, path=str(tmp_path / "." / "same.mp4")),
    ]}
    with pytest.raises(GraphConfigError, match=r"node 'b' \(VideoWriter\) would write .*same.mp4.*"
                                               r"which node 'a' \(VideoWriter\) writes too"):
        Graph.from_dict(spec).start()
    assert not out.exists()


def test_writing_into_a_received_frame_is_an_error_naming_the_calculator(tmp_path, no_thread_leak):
    """Before: a calculator writing into a received frame blackened 117 of 120 frames of a
    sibling VideoWriter, silently."""
    g = Graph.from_dict({"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=20),
        node("Fault", "scribbler", inputs={"IN": "frames"}, scribble=True),
        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")),
    ]})
    with pytest.raises(GraphRunError, match=r"node 'scribbler' \(Fault\) failed in process at timestamp 0: "
                                            r"ValueError: assignment destination is read-only"):
        g.run()
    means = mp4_means(tmp_path / "out.mp4")
    assert means and all(m > 15 for m in means), f"no frame of the sibling was blackened: {means}"


def test_a_copy_of_a_received_frame_may_be_changed(tmp_path, no_thread_leak):
    g = Graph.from_dict({"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=5),
        node("Fault", "scribbler", inputs={"IN": "frames"}, outputs={"OUT": "zeros"}, copy_frame=True, scribble=True),
        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")),
    ]})
    zeros = []
    g.observe("zeros", lambda p: zeros.append(int(p.value.data.max())))
    g.run()
    assert zeros == [0] * 5
    assert all(m > 15 for m in mp4_means(tmp_path / "out.mp4"))


# -- Hangs -------------------------------------------------------------------------------------------


def started_with_a_hang(tmp_path: Path, phase: str, *, at: int, count: int | None, **bounds) -> tuple[Graph, StreamLog]:
    """Frames -> Fault (hangs in ``phase``, at timestamp ``at`` in process) -> VideoWriter (out.mp4),
    started and run until the fault is reached; the log of the frames sent to the writer."""
    g = Graph.from_dict({"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=count),
        node("Fault", "stuck", inputs={"IN": "frames"}, phase=phase, kind="hang", at=at),
        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")),
    ]}, **bounds)
    reached = StreamLog()
    g.observe("frames", reached)
    g.start()
    assert faults.REACHED.wait(30), f"the fault in {phase} was never reached"
    return g, reached


@pytest.mark.parametrize("phase", ["process", "close"])
def test_a_hung_calculator_cannot_block_cancel(tmp_path, phase):
    """Before: with a calculator hung in process or close, cancel() and wait(timeout) blocked
    forever and the mp4 stayed 48 bytes."""
    g, reached = started_with_a_hang(tmp_path, phase, at=10 * P, count=None if phase == "process" else 30,
                                     stuck_timeout=0.5)
    t0 = time.monotonic()
    g.cancel()
    with pytest.raises(GraphRunError, match=rf"node 'stuck' \(Fault\) is stuck in {phase}"):
        g.wait(10)
    assert time.monotonic() - t0 < 3, "wait() returned within the stuck bound"
    assert g.errors[0].phase == phase
    assert "RELEASE.wait()" in g.errors[0].cause_traceback, "the report shows where it is stuck"
    assert mp4_timestamps(tmp_path / "out.mp4") == reached.timestamps
    alive = [t.name for t in threading.enumerate() if t.name.startswith("vpipe")]
    assert len(alive) == 1, f"only the stuck thread is left: {alive}"
    faults.RELEASE.set()
    assert_no_vpipe_thread()


def test_close_never_runs_while_process_still_runs(tmp_path):
    """Before: a second Ctrl-C called close() on a node whose process() was still running."""
    calls = []

    from pipeline import Any, Calculator, Input, register

    @register
    class RecordsOverlap(Calculator):
        inputs = {"IN": Input(Any)}
        busy = False

        def process(self, ctx):
            RecordsOverlap.busy = True
            faults.REACHED.set()
            faults.RELEASE.wait()
            RecordsOverlap.busy = False

        def close(self, ctx):
            calls.append("close while process runs" if RecordsOverlap.busy else "close")

    g = Graph.from_dict({"nodes": [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=None),
        node("RecordsOverlap", "overlap", inputs={"IN": "frames"}),
    ]}, stuck_timeout=0.2)
    g.start()
    assert faults.REACHED.wait(30)
    g.cancel()
    with pytest.raises(GraphRunError, match="is stuck in process"):
        g.wait(10)
    assert calls == [], "close is not called while process runs"
    faults.RELEASE.set()
    assert_no_vpipe_thread()
    assert calls == [], "nor after the abandoned call returned"


def test_second_signal_exits_at_once_and_finalizes_the_sinks(tmp_path):
    """Before: Ctrl-C with a hung calculator never ended; a second Ctrl-C closed it mid-call."""
    n = Notifier()
    try:
        src = node("Frames", "src", outputs={"FRAMES": "frames"}, count=None, notify_fd=n.w)
        bad = node("Fault", "stuck", inputs={"IN": "frames"}, phase="process",
                   kind="hang", at=20 * P, notify_fd=n.w)
        g = write_graph(tmp_path / "g.yaml", src, bad,
                        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")))
        # The source's close says the first Ctrl-C was handled: the second is not merged into it.
        r = run_cli(["run", str(g), "-q", "--drain-timeout", "60", "--stuck-timeout", "60"], notifier=n,
                    steps=(("notify", "process"), ("signal", signal.SIGINT), ("notify", "source closed"),
                           ("signal", signal.SIGINT)))
    finally:
        n.close()
    assert r.rc == 130, r.err
    assert r.stop_s < 10, f"the second Ctrl-C ended it at once, not after the 60 s bounds ({r.stop_s:.1f} s)"
    assert "node 'stuck' (Fault) is stuck in process at timestamp 800000" in r.err, r.err
    assert len(mp4_timestamps(tmp_path / "out.mp4")) >= 20


def test_a_hung_calculator_is_named_when_the_stop_bound_passes(tmp_path):
    n = Notifier()
    try:
        src = node("Frames", "src", outputs={"FRAMES": "frames"}, count=None)
        bad = node("Fault", "stuck", inputs={"IN": "frames"}, phase="process",
                   kind="hang", at=20 * P, notify_fd=n.w)
        g = write_graph(tmp_path / "g.yaml", src, bad,
                        node("VideoWriter", "video", inputs={"IMAGE": "frames"}, path=str(tmp_path / "out.mp4")))
        r = run_cli(["run", str(g), "-q", "--drain-timeout", "0.5", "--stuck-timeout", "0.5"], notifier=n,
                    steps=(("notify", "process"), ("signal", signal.SIGTERM)))
    finally:
        n.close()
    assert r.rc == 143, r.err
    assert r.stop_s < 8, r.stop_s
    assert "node 'stuck' (Fault) is stuck in process at timestamp 800000" in r.err, r.err
    assert "did not return within 0.5 s of the stop" in r.err, r.err
    assert len(mp4_timestamps(tmp_path / "out.mp4")) >= 20


class SilentServer:
    """Accepts TCP connections and never says a word (a camera that hangs while answering).
    ``serve_first`` bytes, if given, go to the first client, which is then disconnected."""

    def __init__(self, serve_first: bytes | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.serve_first = serve_first
        self.accepted = threading.Semaphore(0)
        self.conns = []
        self.thread = threading.Thread(target=self._serve, name="test-silent-server", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        first = True
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if first and self.serve_first is not None:
                conn.sendall(self.serve_first)
                conn.close()
            else:
                self.conns.append(conn)
            first = False
            self.accepted.release()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def mpegts_bytes(frames: int = 10) -> bytes:
    """A short H.264 (or MPEG-4) MPEG-TS stream, made with PyAV in memory."""
    import io

    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def ctrl_c_once_connected(server: SilentServer) -> list[float]:
    """Starts a thread that, once ``server`` has a client, interrupts the main thread (as Ctrl-C
    does) and records when in the list returned."""
    fired: list[float] = []

    def ctrl_c() -> None:
        assert server.accepted.acquire(timeout=30), "the source never connected"
        fired.append(time.monotonic())
        _thread.interrupt_main()

    threading.Thread(target=ctrl_c, name="test-ctrl-c").start()
    return fired


# Both readers of network streams: VideoSource, and CameraSource (an IP camera; OpenCV's capture,
# which read it before, could be stopped only by its own timeout: these tests waited 20 s).
NETWORK_SOURCES = {
    "VideoSource": lambda url, **o: node("VideoSource", "net", outputs={"FRAMES": "frames"}, uri=url, **o),
    "CameraSource": lambda url, **o: node("CameraSource", "net", outputs={"FRAMES": "frames"}, device=url,
                                          **{k: v for k, v in o.items() if k != "reconnect"},
                                          reconnect=o.get("reconnect", "never") != "never"),
}


@pytest.mark.parametrize("source", NETWORK_SOURCES)
def test_ctrl_c_while_a_network_source_opens_stops_within_a_second(source, no_thread_leak):
    """Before: Ctrl-C while a network source opened waited for open_timeout_s (8-13 s), then failed
    with a timeout error."""
    server = SilentServer()
    try:
        g = Graph.from_dict({"nodes": [NETWORK_SOURCES[source](server.url, open_timeout_s=20)]})
        fired = ctrl_c_once_connected(server)
        with pytest.raises(KeyboardInterrupt):
            g.run()
        assert fired and time.monotonic() - fired[0] < 1.0
    finally:
        server.close()


@pytest.mark.parametrize("source", NETWORK_SOURCES)
def test_ctrl_c_while_a_network_source_opens_exits_130_within_a_second(source, tmp_path):
    server = SilentServer()
    try:
        g = write_graph(tmp_path / "g.yaml", NETWORK_SOURCES[source](server.url, open_timeout_s=20))

        def connected() -> None:
            assert server.accepted.acquire(timeout=60), "the source never connected"

        r = run_cli(["run", str(g), "-q"], steps=(("call", connected), ("signal", signal.SIGINT)))
    finally:
        server.close()
    assert r.rc == 130, r.err
    # The open itself ends within 1 s (the test above, in-process); the process's end adds the
    # interpreter's exit, 1.0-1.9 s at load 13-15 before and after this change: what is checked
    # here is that it never waits for open_timeout_s (20 s).
    assert r.stop_s < 5, f"stopped {r.stop_s:.2f} s after Ctrl-C"
    assert r.first_err_line == "error: interrupted (Ctrl-C): the run was stopped", r.err


@pytest.mark.parametrize("source", NETWORK_SOURCES)
def test_a_stop_while_a_network_source_reconnects_ends_within_a_second(source, no_thread_leak):
    """Before: a stop while the source reconnected to a silent peer waited for open_timeout_s."""
    server = SilentServer(serve_first=mpegts_bytes())
    try:
        g = Graph.from_dict({"nodes": [NETWORK_SOURCES[source](server.url, open_timeout_s=20, backoff_s=0.05,
                                                               reconnect="always")]})
        frames = StreamLog()
        g.observe("frames", frames)
        g.start()
        assert server.accepted.acquire(timeout=30) and server.accepted.acquire(timeout=30), "no reconnect"
        t0 = time.monotonic()
        g.request_stop()
        g.wait(10)
        assert time.monotonic() - t0 < 1.0
        # VideoSource delivers every frame of the first stream; CameraSource the newest when asked.
        assert len(frames.timestamps) >= (5 if source == "VideoSource" else 1)
    finally:
        server.close()


@pytest.mark.parametrize("options, message", [
    ({"backend": "gstreamer"}, r"a network stream \(tcp://127.0.0.1:9\) is read with PyAV \(FFmpeg\), so that a "
                               r"stop interrupts it: backend must be any or ffmpeg, not gstreamer"),
    ({"fps": 30}, r"fps request a mode of a camera device; a network stream \(tcp://127.0.0.1:9\) sends its "
                  r"own: remove fps"),
    ({"fourcc": "MJPG", "fps": 5}, r"fps and fourcc request a mode of a camera device"),
])
def test_a_camera_on_a_network_stream_refuses_what_only_a_device_takes(options, message):
    """Requests PyAV cannot make of a stream are an error, not silently ignored."""
    from pydantic import ValidationError

    from calculators.sources.camera import CameraSourceOptions

    with pytest.raises(ValidationError, match=message):
        CameraSourceOptions(device="tcp://127.0.0.1:9", **options)
    CameraSourceOptions(device="/dev/video0", **options)  # a device takes them


def test_ctrl_c_during_start_is_clean(no_thread_leak):
    """Before: Ctrl-C while start() launched threads gave 'RuntimeError: release unlocked lock'
    (or 'cannot join thread before it is started') and left worker threads behind."""
    from pipeline import STOP, Calculator, Output, register

    fired, opened, closed = [], [], []

    @register
    class InterruptsMain(Calculator):
        outputs = {"OUT": Output(int)}

        def open(self, ctx):
            opened.append(ctx.node)

        def process(self, ctx):
            if not fired:
                fired.append(1)
                _thread.interrupt_main()  # lands while start() is still launching source threads
            return STOP

        def close(self, ctx):
            closed.append(ctx.node)

    nodes = [{"calculator": "InterruptsMain", "name": f"s{i}", "outputs": [f"o{i}"]} for i in range(12)]
    g = Graph.from_dict({"nodes": nodes})
    with pytest.raises(KeyboardInterrupt):
        g.run()
    assert fired
    assert sorted(closed) == sorted(opened), "every opened calculator was closed"


def test_a_drain_past_drain_timeout_stops_at_once(tmp_path):
    """request_stop() with a calculator that never returns: the drain is cut at drain_timeout, then
    the stuck node is named after stuck_timeout, and the sink keeps what reached it."""
    g, reached = started_with_a_hang(tmp_path, "process", at=5 * P, count=None, drain_timeout=0.3,
                                     stuck_timeout=0.3)
    t0 = time.monotonic()
    g.request_stop()
    with pytest.raises(GraphRunError, match=r"node 'stuck' \(Fault\) is stuck in process at timestamp 200000: "
                                            r"it did not return within 0.3 s of the stop"):
        g.wait(10)
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 3, f"the drain bound then the stuck bound: {elapsed:.2f} s"
    assert g.drain_expired
    assert mp4_timestamps(tmp_path / "out.mp4") == reached.timestamps
    faults.RELEASE.set()
    assert_no_vpipe_thread()


@pytest.mark.parametrize("bounds", [{"drain_timeout": -1}, {"stuck_timeout": -0.5}])
def test_negative_bounds_are_refused(bounds):
    with pytest.raises(ValueError, match=r"drain_timeout and stuck_timeout must be >= 0 s"):
        Graph.from_dict({"nodes": [node("Frames", "src", outputs={"FRAMES": "frames"})]}, **bounds)


def _files_graph(tmp_path: Path, reader: dict, writer: dict) -> dict:
    return {"nodes": [reader, writer]}


@pytest.mark.parametrize("case, refused", [
    ("image folder read, png pattern written into it", True),
    ("image folder read, pattern written elsewhere", False),
    ("symbolic link to the input video", True),
    ("hard link to the input video", True),
    ("another file", False),
])
def test_outputs_on_inputs_are_found_by_file_not_by_name(tmp_path, case, refused):
    import os

    import cv2
    import numpy as np

    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "f_00000.png"), np.zeros((16, 16, 3), np.uint8))
    video = tmp_path / "in.mp4"
    video.write_bytes(b"not read: the check runs before anything opens")
    if case.startswith("image folder"):
        reader = node("ImageSource", "src", outputs={"FRAMES": "frames"}, path=str(folder))
        where = folder if "into it" in case else tmp_path / "elsewhere"
        writer = node("ImageWriter", "out", inputs={"IMAGE": "frames"}, pattern=str(where / "f_{index:05d}.png"))
    else:
        target = tmp_path / "out.mp4"
        if "symbolic" in case:
            os.symlink(video, target)
        elif "hard" in case:
            os.link(video, target)
        reader = node("VideoSource", "src", outputs={"FRAMES": "frames"}, uri=str(video))
        writer = node("VideoWriter", "out", inputs={"IMAGE": "frames"}, path=str(target))
    g = Graph.from_dict(_files_graph(tmp_path, reader, writer))
    if refused:
        with pytest.raises(GraphConfigError, match=r"node 'out' \((ImageWriter|VideoWriter)\) would overwrite .*"
                                                   r"which node 'src' \((ImageSource|VideoSource)\) reads"):
            g.start()
    else:
        try:
            g.start()
        except GraphConfigError as e:
            pytest.fail(f"refused a graph whose output is not an input: {e}")
        except Exception:  # noqa: BLE001 - opening the fake video fails later: the check passed
            pass
        else:
            g.cancel()
            try:
                g.wait(10)
            except Exception:  # noqa: BLE001
                pass


def test_a_video_reader_in_the_main_thread_still_gets_ctrl_c_within_a_second():
    """No graph: a VideoReader opening a silent network peer in the main thread, where Python's own
    SIGINT handler is in force. The open ends at once and KeyboardInterrupt still arrives (it is
    not lost inside FFmpeg's callback)."""
    from calculators.sources.video import VideoReader, VideoSourceOptions

    server = SilentServer()
    try:
        reader = VideoReader(VideoSourceOptions(uri=server.url, open_timeout_s=20))
        fired = ctrl_c_once_connected(server)
        with pytest.raises(KeyboardInterrupt):
            reader.open()
        assert time.monotonic() - fired[0] < 1.0
        reader.close()
    finally:
        server.close()


@pytest.mark.parametrize("payload, arrays", [
    ("ndarray", 1), ("Image", 1), ("Detections", 2), ("tuple", 2), ("dict", 1), ("int", 0),
])
def test_what_is_frozen_when_sent(payload, arrays):
    import numpy as np

    from calculators.types import Detections, Image
    from pipeline.readonly import freeze

    a, b = np.zeros((4, 4, 3), np.uint8), np.ones(3, np.float32)
    value = {"ndarray": a, "Image": Image(a, "RGB"), "tuple": (a, b), "dict": {"x": a, "n": 3}, "int": 7,
             "Detections": Detections(xyxy=np.zeros((2, 4), np.float32), scores=np.ones(2, np.float32))}[payload]
    freeze(value)
    frozen = [x for x in (a, b) if not x.flags.writeable]
    if payload == "Detections":
        frozen = [x for x in (value.xyxy, value.scores) if not x.flags.writeable]
    assert len(frozen) == arrays
