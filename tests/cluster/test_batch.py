"""Batches on a real multi-node Ray cluster and on local processes: outputs identical to
``vpipe run`` file by file, a corrupt file isolated, a node killed mid-run. (``--resume`` and
local workers: tests/apps/test_cluster_batch.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
import ray

from apps.cluster import run_batch
from apps.cluster.plan import TEMP_MARK
from tests.cluster.conftest import GRAPHS, PLUGIN

REPO = Path(__file__).resolve().parents[2]


def vpipe(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def jsonl_timestamps(path: Path) -> list[int]:
    return [json.loads(line)["timestamp_us"] for line in path.read_text().splitlines()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMP_MARK in p.name)


def test_ray_batch_matches_vpipe_run_and_isolates_a_corrupt_file(ray_cluster, videos, tmp_path):
    from apps.common import load_graph

    ref = tmp_path / "ref"
    ref.mkdir()
    for name in ("carphone", "bikes"):  # what `vpipe run face_detection --set ...` runs, in this process
        graph, _ = load_graph("face_detection")
        graph.run({"source": str(videos / f"{name}.mp4"), "detections": str(ref / f"{name}.jsonl"),
                   "output": str(ref / f"{name}.mp4")})
    out = tmp_path / "out"
    r = vpipe("run", "face_detection", "--inputs", str(videos / "*.mp4"), "--ray", ray_cluster.address,
              "--set", f"output={out}/{{stem}}.mp4", "--set", f"detections={out}/{{stem}}.jsonl", "-q")
    assert r.returncode == 1, f"one file is corrupt: exit status 1 expected\n{r.stdout}\n{r.stderr}"
    records = manifest(out / "vpipe-manifest.jsonl")
    assert sorted(Path(rec["input"]).name for rec in records) == ["bikes.mp4", "carphone.mp4", "corrupt.mp4"]
    by_name = {Path(rec["input"]).stem: rec for rec in records}
    bad = by_name["corrupt"]
    assert bad["status"] == "failed" and bad["attempts"] == 1
    # the real cause, as the source reported it: its node, its phase, the file
    assert bad["error"].startswith("node 'MediaSource' (MediaSource) failed in open: MediaError: ") and \
        "corrupt.mp4" in bad["error"], bad
    assert not (out / "corrupt.mp4").exists() and not (out / "corrupt.jsonl").exists()
    worker_nodes = {n.node_id for n in ray_cluster.workers}
    for name, n_frames in (("carphone", 120), ("bikes", 250)):
        rec = by_name[name]
        assert rec["status"] == "ok" and rec["frames"] == n_frames, rec
        assert rec["node"] in worker_nodes, "a run landed on the 0-CPU head"
        assert (out / f"{name}.jsonl").read_bytes() == (ref / f"{name}.jsonl").read_bytes(), name
        assert frames_in(out / f"{name}.mp4") == frames_in(ref / f"{name}.mp4") == n_frames
        ts = jsonl_timestamps(out / f"{name}.jsonl")
        assert len(ts) == n_frames and all(a < b for a, b in zip(ts, ts[1:])), name
    assert "1 failed" in r.stdout
    assert leftovers(out) == []


def test_local_jobs_give_the_same_outputs_as_ray(ray_cluster, videos, tmp_path):
    inputs = [str(videos / "carphone.mp4"), str(videos / "bikes.mp4")]
    graph = str(GRAPHS / "digest.yaml")
    on_ray = run_batch(graph, inputs, {"digests": str(tmp_path / "ray" / "{stem}.jsonl")},
                       address=ray_cluster.address, plugins=[PLUGIN], manifest=tmp_path / "ray.jsonl")
    local = run_batch(graph, inputs, {"digests": str(tmp_path / "local" / "{index}-{name}.jsonl")},
                      jobs=2, plugins=[PLUGIN], manifest=tmp_path / "local.jsonl")
    assert [r["status"] for r in on_ray + local] == ["ok"] * 4
    assert all(r["cpu_s"] > 0 and r["cpu_set"] for r in on_ray + local)  # each run's CPU and cores
    assert {r["node"] for r in on_ray} <= {n.node_id for n in ray_cluster.workers}
    assert [r["outputs"]["digests"] for r in local] == [str(tmp_path / "local" / "0-carphone.mp4.jsonl"),
                                                        str(tmp_path / "local" / "1-bikes.mp4.jsonl")]
    for i, name in enumerate(("carphone", "bikes")):
        a = (tmp_path / "ray" / f"{name}.jsonl").read_bytes()
        assert a == Path(local[i]["outputs"]["digests"]).read_bytes()
        assert len(a.splitlines()) == (120, 250)[i]


def test_ray_workers_are_pinned_to_cores_of_their_own_and_capped(ray_cluster, tmp_path, monkeypatch):
    """Each actor, on its own node (SPREAD), holds one core no other worker holds, with OpenCV's
    pool and the OpenMP/BLAS variables at the budget, as the worker process itself reports."""
    from apps.cluster.ray_pool import RayBackend

    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip(f"two pinned workers need two cores; this machine lets the tests use {allowed}")
    # a folder of core files for this test alone (the driver's reaches the workers): workers of
    # the other tests, still ending, hold cores in the default one
    monkeypatch.setenv("VPIPE_CPU_SLOTS", str(tmp_path / "slots"))
    ray_cluster.wait_for_cpus(2)
    with RayBackend(ray_cluster.address, str(GRAPHS / "digest.yaml"), [PLUGIN], 1, 2, 2) as backend:
        deadline = time.monotonic() + 120
        while len(backend.idle) < 2:
            assert time.monotonic() < deadline, f"two actors did not start within 120 s: {backend.where}"
            assert backend.wait(1.0) == []
        workers = list(backend.where.values())
    assert len({w["node"] for w in workers}) == 2, workers
    assert sorted(w["cpu_set"] for w in workers) == [allowed[:1], allowed[1:2]], workers
    for w in workers:
        assert w["opencv_threads"] == 1 and set(w["env"].values()) == {"1"}, w


def test_a_node_killed_mid_run_has_its_file_retried_elsewhere(ray_cluster, videos, tmp_path):
    victim = ray_cluster.add_node()
    ray_cluster.wait_for_cpus(3)
    inputs = []
    for i in range(4):
        p = tmp_path / "in" / f"clip{i}.mp4"
        p.parent.mkdir(exist_ok=True)
        shutil.copy(videos / "carphone.mp4", p)
        inputs.append(str(p))
    out = tmp_path / "out"
    on_victim = threading.Event()
    started: dict[str, str] = {}
    events: list[tuple[str, dict]] = []

    def on_event(kind, info):
        events.append((kind, info))
        if kind == "started" and info["worker"].get("node") == victim.node_id and not on_victim.is_set():
            started["attempt"] = info["attempt"]
            started["job"] = info["job"]
            on_victim.set()

    result: dict = {}

    def batch():
        try:
            result["records"] = run_batch(str(GRAPHS / "digest.yaml"), inputs,
                                          {"pace": "realtime", "digests": f"{out}/{{stem}}.jsonl"},
                                          address=ray_cluster.address, plugins=[PLUGIN], on_event=on_event)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            result["error"] = e

    th = threading.Thread(target=batch)
    th.start()
    try:
        assert on_victim.wait(90), f"no file started on the victim node; events: {events}"
        # Mid-run: the run's temporary output exists (its sink opened) before the node dies.
        tmp = Path(started["job"].temp_outputs(started["attempt"])["digests"])
        deadline = time.monotonic() + 60
        while not (tmp.exists() and tmp.stat().st_size > 0):
            assert time.monotonic() < deadline, f"{tmp} never got a line"
            time.sleep(0.05)  # the worker is another process: its file is what we can watch
        ray_cluster.remove_node(victim)
    finally:
        th.join(180)
    assert not th.is_alive(), "the batch did not finish after the node was killed"
    assert "error" not in result, result.get("error")
    records = result["records"]
    assert [r["status"] for r in records] == ["ok"] * 4, records
    book = manifest(out / "vpipe-manifest.jsonl")
    assert sorted(r["input"] for r in book) == sorted(inputs), "every input exactly once"
    retried = [r for r in book if r["attempts"] == 2]
    assert [r["input"] for r in retried] == [started["job"].input]
    assert retried[0]["node"] != victim.node_id
    assert any(kind == "lost" for kind, _ in events)
    for p in inputs:
        ts = jsonl_timestamps(out / f"{Path(p).stem}.jsonl")
        assert len(ts) == 120 and all(a < b for a, b in zip(ts, ts[1:]))
    assert leftovers(out) == []


def _raise_run_error():
    from pipeline import GraphConfigError, GraphRunError, Problem

    try:
        raise GraphConfigError([Problem("g.yaml", 7, "unknown calculator 'Foo'")])
    except GraphConfigError as e:
        raise GraphRunError("detector", "Inference", "open", None, e) from e


def test_vpipe_errors_cross_ray_as_themselves(ray_cluster):
    from pipeline import GraphConfigError, GraphRunError

    remote = ray.remote(num_cpus=1, max_retries=0)(_raise_run_error)
    with pytest.raises(GraphRunError) as info:
        ray.get(remote.remote(), timeout=120)
    wrapped = info.value  # Ray's RayTaskError(GraphRunError): it is a GraphRunError too
    assert isinstance(wrapped, ray.exceptions.RayTaskError)
    assert (wrapped.node, wrapped.calculator, wrapped.phase) == ("detector", "Inference", "open")
    err = wrapped.cause  # Ray's own `cause`: the exception as raised in the worker
    assert type(err) is GraphRunError and err.node == "detector"
    assert isinstance(err.cause, GraphConfigError)
    assert [str(p) for p in err.cause.problems] == ["g.yaml:7: unknown calculator 'Foo'"]
    assert "UnserializableException" not in str(wrapped)


def _in_session(sid: int) -> list[int]:
    """Live processes of the session ``sid`` (every process a command started shares it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_ray_alone_starts_a_local_ray_for_the_command_and_ends_it(ray_cluster, videos, tmp_path):
    # With the tests' cluster running (its address in Ray's address file), --ray alone must still
    # start a Ray of its own.
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "run", str(GRAPHS / "digest.yaml"), "--plugin", PLUGIN,
                             "--inputs", str(videos / "carphone.mp4"), "--set", f"digests={out}/{{stem}}.jsonl",
                             "--jobs", "1", "-q", "--ray"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    (rec,) = manifest(out / "vpipe-manifest.jsonl")
    assert rec["status"] == "ok" and rec["frames"] == 120 and len(rec["node"]) == 56  # a Ray node id
    assert rec["node"] not in {n.node_id for n in ray_cluster.cluster.list_all_nodes()}
    deadline = time.monotonic() + 30
    while _in_session(proc.pid):  # raylet, GCS, agents, workers: all in the command's session
        assert time.monotonic() < deadline, f"the command's own Ray outlived it: {_in_session(proc.pid)}"
        time.sleep(0.2)  # its processes exit asynchronously after the command
