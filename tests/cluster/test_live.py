"""Live streams on a real multi-node Ray cluster: a stalled stream is restarted by the supervisor,
the node under a stream killed has that stream back within 10 s while the other never stalls, and
Ctrl-C stops every stream with its outputs finalized."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from apps.cluster import run_streams
from apps.cluster.live import StreamsError, load_streams
from tests.cluster.conftest import GRAPHS, PLUGIN

REPO = Path(__file__).resolve().parents[2]


class Watch:
    """Collects the supervisor's status rows and lets the test wait for a condition on them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rows: dict[str, dict] = {}
        self.history: list[tuple[float, dict[str, dict]]] = []

    def __call__(self, rows: list[dict]) -> None:
        with self.cond:
            self.rows = {r["stream"]: dict(r) for r in rows}
            self.history.append((time.monotonic(), self.rows))
            self.cond.notify_all()

    def wait_for(self, what: str, pred, timeout: float) -> float:
        """Waits until ``pred(rows)``; returns when it became true (monotonic)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (self.rows and pred(self.rows)):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{what}: not within {timeout:.0f} s; last status: {self.rows}")
                self.cond.wait(left)
            return time.monotonic()


def test_streams_file_is_checked_against_the_graph():
    declared = {"flag": None, "records": None, "output": None}
    spec = load_streams({"defaults": {"records": "r.jsonl"}, "stall_s": 2, "streams": {"a": {"flag": "f"}, "b": None}},
                        declared)
    assert spec.streams == {"a": {"records": "r.jsonl", "flag": "f"}, "b": {"records": "r.jsonl"}}
    assert spec.stall_s == 2.0 and spec.max_restarts == 20
    with pytest.raises(StreamsError, match=r"stream 'a': the graph declares no side packet 'recods'; did you mean 'records'\?"):
        load_streams({"streams": {"a": {"recods": "x"}}}, declared)
    with pytest.raises(StreamsError, match="stall_s must be above 0"):
        load_streams({"stall_s": 0, "streams": {"a": {}}}, declared)
    with pytest.raises(StreamsError, match="unknown key 'stal_s'"):
        load_streams({"stal_s": 1, "streams": {"a": {}}}, declared)


def test_stalled_stream_restarted_and_killed_node_recovered(ray_cluster, tmp_path):
    spare = ray_cluster.add_node()  # two streams on two nodes, one node free for a restart
    ray_cluster.wait_for_cpus(3)
    streams = {"stall_s": 3, "max_restarts": 5, "streams": {
        "steady": {"records": str(tmp_path / "steady.jsonl")},
        "flaky": {"records": str(tmp_path / "flaky.jsonl"), "flag": str(tmp_path / "flaky.flag")}}}
    watch = Watch()
    stop = threading.Event()
    result: dict = {}

    def supervise():
        try:
            result["r"] = run_streams(str(GRAPHS / "live.yaml"), streams, address=ray_cluster.address,
                                      plugins=[PLUGIN], stop=stop, on_status=watch, poll_s=0.25)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            result["error"] = e

    th = threading.Thread(target=supervise)
    th.start()
    try:
        watch.wait_for("both streams running", lambda r: all(s["state"] == "running" for s in r.values()), 60)
        # flaky stalls after 10 frames the first time; the supervisor restarts it after stall_s.
        watch.wait_for("flaky restarted after its stall",
                       lambda r: r["flaky"]["restarts"] == 1 and r["flaky"]["state"] == "running", 60)
        assert "no frame for" in (watch.rows["flaky"]["last_error"] or "")
        # Kill the node under flaky: Ray restarts the actor on the free node.
        node_id = watch.rows["flaky"]["node"]
        victim = next(n for n in [*ray_cluster.workers, spare] if n.node_id == node_id)
        assert node_id != watch.rows["steady"]["node"]
        frames_before = watch.rows["flaky"]["frames"]
        killed_at = time.monotonic()
        ray_cluster.remove_node(victim)
        if victim in ray_cluster.workers:
            ray_cluster.workers.remove(victim)
            ray_cluster.workers.append(spare)  # later tests count on two live worker nodes
        back = watch.wait_for("flaky producing frames again after its node died",
                              lambda r: r["flaky"]["restarts"] == 2 and r["flaky"]["frames"] > 0
                              and r["flaky"]["node"] != node_id and r["flaky"]["state"] == "running", 30)
        print(f"flaky back {back - killed_at:.1f} s after its node was killed")
        assert back - killed_at < 10, f"flaky took {back - killed_at:.1f} s to come back (frames before: {frames_before})"
    finally:
        stop.set()
        th.join(60)
    assert not th.is_alive(), "run_streams did not return after stop"
    assert "error" not in result, result.get("error")
    steady_ages = [rows["steady"]["last_frame_age_s"] for _, rows in watch.history
                   if rows["steady"]["state"] == "running"]
    assert steady_ages and max(steady_ages) < 2.0, f"steady stalled: worst frame age {max(steady_ages)} s"
    assert all(rows["steady"]["restarts"] == 0 for _, rows in watch.history)
    final = {r["stream"]: r for r in result["r"].statuses}
    assert final["steady"]["state"] == final["flaky"]["state"] == "stopped"
    assert result["r"].exit_code == 0
    lines = (tmp_path / "steady.jsonl").read_text().splitlines()
    ts = [json.loads(line)["timestamp_us"] for line in lines]
    assert len(ts) >= 20 and all(a < b for a, b in zip(ts, ts[1:]))


def test_ctrl_c_stops_every_stream_with_outputs_finalized(ray_cluster, tmp_path):
    ray_cluster.wait_for_cpus(2)
    streams = tmp_path / "streams.yaml"
    streams.write_text(f"streams:\n"
                       f"  cam1: {{output: {tmp_path / 'cam1.mp4'}, records: {tmp_path / 'cam1.jsonl'}}}\n"
                       f"  cam2: {{output: {tmp_path / 'cam2.mp4'}}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "run", str(GRAPHS / "live.yaml"), "--plugin", PLUGIN,
                             "--streams", str(streams), "--ray", ray_cluster.address],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = tmp_path / "cam1.jsonl"
    deadline = time.monotonic() + 90
    while not (records.exists() and records.read_text().count("\n") >= 20):
        assert proc.poll() is None, f"vpipe ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "cam1 wrote no 20 records within 90 s"
        time.sleep(0.05)  # the other process's output file is what we can watch
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"{out}\n{err}"
    assert "cam1" in out and "cam2" in out and "stopped" in out, out
    for cam in ("cam1", "cam2"):
        with av.open(str(tmp_path / f"{cam}.mp4")) as c:
            n = sum(1 for _ in c.decode(video=0))
        assert n >= 1, f"{cam}.mp4 holds no frame"


def test_a_stream_that_keeps_failing_is_dead_once_its_restarts_are_used(ray_cluster, tmp_path):
    ray_cluster.wait_for_cpus(1)
    (tmp_path / "afile").write_text("")
    missing = tmp_path / "afile" / "records.jsonl"  # its folder cannot be made (a file is there): JsonlWriter fails in open
    streams = {"stall_s": 3, "max_restarts": 1, "streams": {"broken": {"records": str(missing)}}}
    stop = threading.Event()
    timer = threading.Timer(90, stop.set)  # a bound: were it never declared dead, the run stops here
    timer.start()
    try:
        result = run_streams(str(GRAPHS / "live.yaml"), streams, address=ray_cluster.address, plugins=[PLUGIN],
                             stop=stop, poll_s=0.25)
    finally:
        timer.cancel()
    (row,) = result.statuses
    assert row["state"] == "dead", row
    assert row["restarts"] == 1  # restarted once by the supervisor, for its error, then out of restarts
    assert "out of restarts (1)" in row["last_error"] and "is not a directory" in row["last_error"], row
    assert result.exit_code == 1
