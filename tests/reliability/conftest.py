"""Helpers for the reliability tests: graphs of faulty calculators, ``vpipe`` in a subprocess that
tells the test when to signal it, and checks that every sink's output is valid."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import calculators  # noqa: F401 - registers the built-in calculators
from tests.reliability import faults

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "tests.reliability.faults"


@pytest.fixture
def no_thread_leak():
    """No thread of the run outlives the test (vpipe's threads are named vpipe-*)."""
    yield
    assert_no_vpipe_thread()


@pytest.fixture(autouse=True)
def fault_events():
    """Fresh REACHED/RELEASE per test; a hung calculator is let go when the test ends."""
    faults.REACHED.clear()
    faults.RELEASE.clear()
    yield
    faults.RELEASE.set()


def vpipe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vpipe") and t.is_alive()]


def assert_no_vpipe_thread(timeout: float = 5.0) -> None:
    """Every thread of the run ends (bounded wait: a released calculator returns first)."""
    for t in vpipe_threads():
        t.join(timeout)
    alive = [t.name for t in vpipe_threads()]
    assert not alive, f"threads outlived the run: {alive}"


def mp4_timestamps(path: Path) -> list[int]:
    """Decodes every frame of a video file; returns the frames' presentation times in µs."""
    import av

    assert path.is_file(), f"{path} was not written"
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for frame in c.decode(s):
            out.append(int(round(frame.pts * frame.time_base * 1_000_000)))
    return sorted(out)


def mp4_means(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        return [float(f.to_ndarray(format="rgb24").mean()) for f in c.decode(c.streams.video[0])]


def jsonl_records(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, each parsed (a line that is not JSON fails the test)."""
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            pytest.fail(f"{path}:{i} is not valid JSON ({e}): {line[:120]!r}")
    return records


class StreamLog:
    """Records the timestamps sent on a stream (an observer): what reached the sinks reading it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.timestamps: list[int] = []
        self.cond = threading.Condition(self.lock)

    def __call__(self, packet) -> None:
        with self.cond:
            self.timestamps.append(packet.timestamp)
            self.cond.notify_all()

    def wait_count(self, n: int, timeout: float = 30) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.timestamps) >= n, timeout):
                pytest.fail(f"only {len(self.timestamps)} of {n} packets within {timeout} s")


def node(calculator: str, name: str | None = None, inputs=None, outputs=None, **options) -> dict:
    d: dict = {"calculator": calculator}
    if name:
        d["name"] = name
    if inputs:
        d["inputs"] = inputs
    if outputs:
        d["outputs"] = outputs
    if options:
        d["options"] = options
    return d


def write_graph(path: Path, *nodes: dict, name: str = "faulty", side_packets: dict | None = None) -> Path:
    data = {"name": name, **({"side_packets": side_packets} if side_packets else {}), "nodes": list(nodes)}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class CliRun:
    rc: int
    out: str
    err: str
    stop_s: float | None  # seconds from the (first) signal to the end of the process

    @property
    def first_err_line(self) -> str:
        return (self.err.splitlines() or [""])[0]


class Notifier:
    """A pipe a calculator in the ``vpipe`` subprocess writes to (option ``notify_fd``)."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self.got = b""

    def wait(self, word: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while (word + "\n").encode() not in self.got:
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"vpipe ended (rc {proc.returncode}) before {word!r}: {err[-2000:]}")
            left = deadline - time.monotonic()
            assert left > 0, f"no {word!r} within {timeout} s (got {self.got!r})"
            ready, _, _ = select.select([self.r], [], [], min(left, 0.25))
            if ready:
                self.got += os.read(self.r, 4096)

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


def wait_delivered(proc: subprocess.Popen, signum: int, timeout: float = 10) -> None:
    """Waits (bounded) until the kernel has handed ``signum`` to the process: it is no longer in
    its pending sets (/proc/PID/status), so a signal sent next is never merged with it and always
    arrives after it."""
    bit = 1 << (signum - 1)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
        except (OSError, ValueError):
            return
        if not any(m & bit for m in masks):
            return
        assert time.monotonic() < deadline, f"signal {signum} still pending after {timeout} s"
        time.sleep(0.001)  # the kernel's pending set has no event to wait on


def run_cli(args: list[str], *, notifier: Notifier | None = None, steps: tuple = (), timeout: float = 60) -> CliRun:
    """Runs ``vpipe ARGS --plugin tests.reliability.faults`` and plays ``steps`` against it:
    ``("notify", word)`` waits for the word on the notifier pipe, ``("stderr", text)`` waits for
    text on its stderr, ``("call", fn)`` calls ``fn()``, ``("signal", signum)`` sends a signal. ``stop_s`` is the time from the
    first signal to the end of the process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160"}
    env.pop("VPIPE_GRAPH_PATH", None)
    fds = (notifier.w,) if notifier is not None else ()
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", *args, "--plugin", PLUGIN], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=fds)
    err_parts: list[str] = []
    cond = threading.Condition()

    def read_err() -> None:
        for line in proc.stderr:
            with cond:
                err_parts.append(line)
                cond.notify_all()

    reader = threading.Thread(target=read_err, name="test-stderr-reader", daemon=True)
    reader.start()
    t0 = None
    try:
        for what, arg in steps:
            if what == "notify":
                notifier.wait(arg, timeout, proc)
            elif what == "stderr":
                with cond:
                    if not cond.wait_for(lambda: arg in "".join(err_parts) or proc.poll() is not None, timeout):
                        pytest.fail(f"no {arg!r} on stderr within {timeout} s: {''.join(err_parts)[-2000:]}")
            elif what == "call":
                arg()
            elif what == "signal":
                if t0 is None:
                    t0 = time.monotonic()
                proc.send_signal(arg)
                wait_delivered(proc, arg)
        proc.wait(timeout)  # stdout is a summary table: far below a pipe's buffer
        out = proc.stdout.read()
        stop_s = None if t0 is None else time.monotonic() - t0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"vpipe {' '.join(args)} did not end within {timeout} s; stderr: {''.join(err_parts)[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return CliRun(proc.returncode, out, "".join(err_parts), stop_s)
