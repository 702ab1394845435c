"""Fault injection: a calculator raises or hangs in open, process, close or as a source, and the run
is stopped with Ctrl-C, SIGTERM (``vpipe run`` in a subprocess) or ``cancel()`` (the Graph API).

Every case checks the same contract (docs/graphs.md, "Stopping"): the run ends within the
documented bound (drain_timeout + 2 x stuck_timeout for calls in progress and the sinks +
stuck_timeout for a close, plus a margin for a shared machine), no thread of the run survives it (a hung one ends once let
go, and is never closed under its call), and every sink's output is valid: each mp4 decodes and
holds exactly the frames that reached its writer, contiguous from the first; the JSON-lines file
is valid line by line and agrees with the mp4 written beside it.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from pipeline import Graph, GraphRunError, NodeStuckError
from tests.reliability import faults
from tests.reliability.conftest import (
    Notifier, StreamLog, assert_no_vpipe_thread, jsonl_records, mp4_timestamps, node, run_cli, write_graph,
)

P = faults.PERIOD_US
DRAIN_S = 1.0
STUCK_S = 1.0
BOUND_S = DRAIN_S + 3 * STUCK_S + 3.0  # the documented bounds, plus a margin for a loaded machine

PHASES = ["open", "process", "close", "source"]
KINDS = ["raise", "hang"]
STOPS = ["ctrl-c", "sigterm", "cancel"]


def faulty_graph(tmp_path: Path, phase: str, kind: str, notify_fd: int | None = None) -> list[dict]:
    """Frames -> VideoWriter (all.mp4) and FrameRecord -> JsonlWriter (all.jsonl) on the frames;
    Frames -> Fault -> VideoWriter (checked.mp4) behind the faulty node."""
    src_fault = dict(phase="source", kind=kind, at=10) if phase == "source" else {}
    node_fault = dict(phase=phase, kind=kind, at=10 * P) if phase in ("open", "process", "close") else {}
    return [
        node("Frames", "src", outputs={"FRAMES": "frames"}, count=None, notify_after=10, notify_fd=notify_fd,
             **src_fault),
        node("Fault", "fault", inputs={"IN": "frames"}, outputs={"OUT": "checked"}, notify_fd=notify_fd, **node_fault),
        node("VideoWriter", "all", inputs={"IMAGE": "frames"}, path=str(tmp_path / "all.mp4")),
        node("VideoWriter", "checked", inputs={"IMAGE": "checked"}, path=str(tmp_path / "checked.mp4")),
        node("FrameRecord", "record", inputs={"IMAGE": "frames"}, outputs={"RECORD": "records"}),
        node("JsonlWriter", "jsonl", inputs={"IN": "records"}, path=str(tmp_path / "all.jsonl")),
    ]


def trigger(phase: str) -> str:
    """The word the graph says when the fault is reached (close: when frames flow; the stop
    itself leads to the close)."""
    return {"open": "open", "process": "process", "source": "source", "close": "running"}[phase]


def check_sinks(tmp_path: Path, reached: dict[str, list[int]] | None = None) -> None:
    """Each sink's file is valid; with ``reached`` (stream -> timestamps sent on it), each mp4
    holds exactly those frames."""
    videos = {}
    for name, stream in (("all", "frames"), ("checked", "checked")):
        path = tmp_path / f"{name}.mp4"
        if not path.exists():
            assert not (reached or {}).get(stream), f"{name}.mp4 missing, but frames reached its writer"
            continue
        ts = mp4_timestamps(path)
        assert ts == [i * P for i in range(len(ts))], f"{name}.mp4: frames contiguous from the first: {ts[:20]}"
        if reached is not None:
            assert ts == reached[stream], f"{name}.mp4 holds {len(ts)} frames, {len(reached[stream])} reached it"
        videos[name] = ts
    jsonl = tmp_path / "all.jsonl"
    if jsonl.exists():
        # Behind FrameRecord: a run stopped at once leaves it fewer records than the mp4 has frames.
        lines = [r["value"]["t"] for r in jsonl_records(jsonl)]
        if "all" in videos:
            assert lines == videos["all"][:len(lines)], "the JSON lines are frames of the mp4 beside it, in order"
        if reached is not None:
            assert lines == reached["records"]


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("phase", PHASES)
def test_a_fault_then_a_stop_signal(tmp_path, phase, kind, stop):
    signum, other = (signal.SIGINT, signal.SIGTERM) if stop == "ctrl-c" else (signal.SIGTERM, signal.SIGINT)
    code = 130 if signum == signal.SIGINT else 143
    n = Notifier()
    try:
        g = write_graph(tmp_path / "g.yaml", *faulty_graph(tmp_path, phase, kind, n.w))
        steps = [("notify", trigger(phase)), ("signal", signum)]
        if kind == "hang" and phase == "open":
            # A hung open() in the main thread is left only by a second signal (signals.py, rule 2);
            # another signal than the first, so the two are never merged into one.
            steps.append(("signal", other))
        r = run_cli(["run", str(g), "-q", "--drain-timeout", str(DRAIN_S), "--stuck-timeout", str(STUCK_S)],
                    notifier=n, steps=tuple(steps))
    finally:
        n.close()
    if kind == "raise":
        # The error may end the run before the signal lands: either way it ends, and says why. A
        # signal that lands after the run, once Python's finalization has put the default handlers
        # back (the command's own late-signal handler is gone by then), ends the process by that
        # signal (-signum here, 128 + signum in a shell): only after the error line was written.
        assert r.rc in (1, code, -signum), r.err
        if r.rc in (1, -signum):
            where = "source" if phase == "source" else phase
            assert r.first_err_line.startswith("error: node "), r.err
            assert f"failed in {where}" in r.first_err_line and "injected fault" in r.first_err_line, r.err
    else:
        assert r.rc == code, r.err
        assert r.first_err_line.startswith("error: interrupted ("), r.err
        if phase != "open":
            who = "src' (Frames)" if phase == "source" else "fault' (Fault)"
            assert f"{who} is stuck in {phase}" in r.err, r.err
    assert r.stop_s < BOUND_S, f"ended {r.stop_s:.1f} s after the signal (bound {BOUND_S} s)"
    check_sinks(tmp_path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("phase", PHASES)
def test_a_fault_then_cancel(tmp_path, phase, kind):
    g = Graph.from_dict({"nodes": faulty_graph(tmp_path, phase, kind)}, drain_timeout=DRAIN_S, stuck_timeout=STUCK_S)
    reached = {"frames": StreamLog(), "checked": StreamLog(), "records": StreamLog()}
    for stream, log in reached.items():
        g.observe(stream, log)
    if phase == "open":
        if kind == "raise":
            with pytest.raises(GraphRunError, match=r"node 'fault' \(Fault\) failed in open: RuntimeError"):
                g.start()
        else:
            # cancel() from another thread while open() hangs in this one: it takes effect as soon
            # as open returns, and the run ends without processing anything.
            def cancel_then_release() -> None:
                assert faults.REACHED.wait(30)
                g.cancel()
                faults.RELEASE.set()

            helper = threading.Thread(target=cancel_then_release, name="test-canceller")
            helper.start()
            g.start()
            helper.join(10)
            t0 = time.monotonic()
            g.wait(BOUND_S)
            assert time.monotonic() - t0 < BOUND_S
    else:
        g.start()
        if phase == "close":
            reached["frames"].wait_count(10)
        else:
            assert faults.REACHED.wait(30), "the fault was reached"
        t0 = time.monotonic()
        g.cancel()
        if kind == "raise":
            where = "source" if phase == "source" else phase
            with pytest.raises(GraphRunError, match=rf"failed in {where}(?: at timestamp \d+)?: RuntimeError: injected"):
                g.wait(BOUND_S)
        else:
            with pytest.raises(NodeStuckError, match=rf"is stuck in {phase}"):
                g.wait(BOUND_S)
        assert time.monotonic() - t0 < BOUND_S, "the run ended within its bound"
    check_sinks(tmp_path, {k: v.timestamps for k, v in reached.items()})
    faults.RELEASE.set()  # a hung calculator returns now; its thread must then end
    assert_no_vpipe_thread()
