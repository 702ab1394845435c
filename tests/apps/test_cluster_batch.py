"""Batches without Ray: planning (inputs, templates, output files, temporary names), the manifest,
``--resume`` after Ctrl-C or SIGTERM, thread caps, models kept across files, and local ``--jobs``
workers (a crashed worker's file retried, a failing file not)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.cluster import run_batch
from apps.cluster.manifest import Manifest
from apps.cluster.plan import PlanError, expand_inputs, plan, temp_name
from apps.cluster.worker import cap_graph_threads, claim_cpus
from pipeline import Graph

REPO = Path(__file__).resolve().parents[2]
CLUSTER_GRAPHS = REPO / "tests" / "cluster" / "graphs"
PLUGIN = "tests.cluster.cluster_calcs"


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".vpipe-part-" in p.name)


@pytest.fixture
def clips(tmp_path, sample_video):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.mp4", "a.mp4"):
        shutil.copy(sample_video, folder / name)
    (folder / "notes.txt").write_text("not a video")
    return folder


def face_spec():
    import calculators  # noqa: F401

    return Graph.from_yaml(REPO / "graphs" / "face_detection.yaml").spec


def test_expand_inputs_globs_paths_and_uris(clips):
    got = expand_inputs([str(clips / "*.mp4"), str(clips / "a.mp4"), "rtsp://cam/1"])
    assert got == [str(clips / "a.mp4"), str(clips / "b.mp4"), "rtsp://cam/1"]  # sorted, each once
    with pytest.raises(PlanError, match=r"--inputs '.*\*\.avi' matches no file"):
        expand_inputs([str(clips / "*.avi")])
    with pytest.raises(PlanError, match="no such file"):
        expand_inputs([str(clips / "missing.mp4")])


def test_plan_templates_side_packets_per_input(clips, tmp_path):
    files = expand_inputs([str(clips / "*.mp4")])
    jobs = plan(face_spec(), files, {"output": f"{tmp_path}/out/{{stem}}-{{index}}.mp4",
                                     "detections": f"{tmp_path}/out/{{name}}.jsonl", "engine": "auto"})
    assert [j.input for j in jobs] == files
    a, b = jobs
    assert a.side_packets["source"] == str(clips / "a.mp4")
    assert a.outputs == {"output": f"{tmp_path}/out/a-0.mp4", "detections": f"{tmp_path}/out/a.mp4.jsonl"}
    assert b.outputs["output"] == f"{tmp_path}/out/b-1.mp4"
    assert a.side_packets["engine"] == "auto"
    tmp = a.temp_outputs("0-0-abc")
    assert tmp["output"] == f"{tmp_path}/out/.a-0.vpipe-part-0-0-abc.mp4"  # hidden, same extension
    assert temp_name("/x/y.jsonl", "k") == "/x/.y.vpipe-part-k.jsonl"
    jobs = plan(face_spec(), files, {"display": "{parent}"})
    assert jobs[0].side_packets["display"] == str(clips) and jobs[0].outputs == {}


@pytest.mark.parametrize("sides,message", [
    ({"output": "out/{stemm}.mp4"}, r"--set output='out/\{stemm\}.mp4': unknown field \{stemm\}; fields: \{stem\}"),
    ({"output": "out/all.mp4"}, r"--set output='out/all.mp4' writes .*all.mp4 for both .* put a field in it such as out/\{stem\}.mp4"),
    ({"source": "x.mp4"}, r"--set source=... and --inputs both give the input"),
])
def test_plan_refuses(clips, sides, message):
    with pytest.raises(PlanError, match=message):
        plan(face_spec(), expand_inputs([str(clips / "*.mp4")]), sides)


def test_plan_needs_a_source_side_packet(clips):
    spec = Graph.from_dict({"side_packets": {"uri": None}, "nodes": []}).spec
    with pytest.raises(PlanError, match="the graph declares no side packet 'source' to take each input"):
        plan(spec, [str(clips / "a.mp4")], {})


def test_manifest_resume_keeps_only_finished_runs_with_their_outputs(tmp_path):
    out = tmp_path / "kept.mp4"
    out.write_bytes(b"x")
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"input": "a", "status": "ok", "outputs": {"output": str(out)}},
        {"input": "b", "status": "failed", "outputs": {}},
        {"input": "c", "status": "ok", "outputs": {"output": str(tmp_path / "gone.mp4")}},
        {"input": "d", "status": "failed"},
        {"input": "d", "status": "ok", "outputs": {}},  # the last record of an input wins
    ]) + '\n{"input": "e", "sta')  # cut short by a kill
    book = Manifest(path)
    assert sorted(book.start(resume=True)) == ["a", "d"]
    assert [r["input"] for r in book.read()] == ["a", "d"]
    assert Manifest(path).start(resume=False) == {} and path.read_text() == ""


def test_progress_shows_files_failed_frames_per_second_and_eta():
    import io

    from rich.console import Console

    from apps.cluster.batch import BatchProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    with BatchProgress(total=4, skipped=1, enabled=True, console=console) as bar:
        bar.finished({"input": "/v/a.mp4", "status": "ok"})
        bar.finished({"input": "/v/bad.mp4", "status": "failed", "error": "node 'src' failed in open: corrupt"})
        bar.update(frames=300, elapsed=2.0)
    text = buf.getvalue()
    assert "failed /v/bad.mp4: node 'src' failed in open: corrupt" in text
    last = [line for line in text.splitlines() if "frames/s" in line][-1]  # the bar as last drawn
    assert "3/4" in last and "1 failed" in last and "150.0 frames/s" in last and "ETA" in last, last


@pytest.mark.parametrize("jobs,cpus_per_run,n_inputs,expected", [
    (None, 1, 100, os.cpu_count()), (None, os.cpu_count(), 100, 1), (None, 2 * os.cpu_count(), 100, 1),
    (3, 1, 100, 3), (3, 1, 2, 2), (None, 1, 1, 1),
])
def test_local_worker_count(jobs, cpus_per_run, n_inputs, expected):
    from apps.cluster.batch import local_jobs

    assert local_jobs(jobs, cpus_per_run, n_inputs) == expected


def test_thread_caps_set_every_threads_option_to_the_budget():
    spec = face_spec()
    by_calc = {n.calculator: n for n in spec.nodes}
    assert by_calc["Inference"].options["threads"] == 1  # the graph's own choice, within the budget
    capped = cap_graph_threads(spec, 2)
    assert by_calc["Inference"].options["threads"] == 1
    assert by_calc["MediaSource"].options["threads"] == by_calc["MediaWriter"].options["threads"] == 2
    assert f"{by_calc['MediaSource'].name}.threads" in capped
    spec = Graph.from_dict({"executors": {"gpu": 4}, "nodes": [
        {"calculator": "VideoSource", "name": "src", "outputs": {"FRAMES": "f"}, "options": {"uri": "x", "threads": 8}}]}).spec
    assert cap_graph_threads(spec, 1) == ["src.threads"]
    assert spec.nodes[0].options["threads"] == 1 and spec.executors == {"gpu": 1}


def two_cores() -> list[int]:
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(allowed) < 2:
        pytest.skip(f"pinning two workers needs two cores; this process may use {allowed or 'any (no affinity)'}")
    return allowed


def test_claim_cpus_gives_each_worker_cores_no_other_holds(tmp_path):
    allowed = two_cores()
    a_cores, a_files = claim_cpus(1, tmp_path)
    b_cores, b_files = claim_cpus(1, tmp_path)
    assert a_cores == allowed[:1] and b_cores == allowed[1:2]
    two = claim_cpus(2, tmp_path)  # cores 0-1 and (if any) 2-3: the first group is held
    assert two is None or two[0] == allowed[2:4]
    for f in a_files + (two[1] if two else []):
        f.close()  # a worker that ends gives its cores back
    assert claim_cpus(1, tmp_path)[0] == allowed[:1]
    assert claim_cpus(len(allowed) + 1, tmp_path) is None  # no group that big: the worker runs unpinned


def test_jobs_pin_each_worker_to_its_core_and_apply_the_thread_caps(clips, tmp_path, monkeypatch):
    from apps.cluster.batch import LocalBackend

    allowed = two_cores()
    monkeypatch.setenv("VPIPE_CPU_SLOTS", str(tmp_path / "slots"))  # the spawned workers read it
    graph = str(CLUSTER_GRAPHS / "digest.yaml")
    with LocalBackend(graph, [PLUGIN], 1, 2) as backend:
        deadline = time.monotonic() + 120
        while not all(s.ready for s in backend.slots):
            assert time.monotonic() < deadline, "the two workers did not start within 120 s"
            assert backend.wait(1.0) == []
        workers = [s.where for s in backend.slots]  # what each worker process reports of itself
    assert sorted(w["cpu_set"] for w in workers) == [allowed[:1], allowed[1:2]]
    for w in workers:
        assert w["opencv_threads"] == 1 and set(w["env"].values()) == {"1"}, w
    records = run_batch(graph, str(clips / "*.mp4"), {"digests": f"{tmp_path}/p/{{stem}}.jsonl"}, jobs=2,
                        plugins=[PLUGIN], manifest=tmp_path / "p.jsonl")
    for r in records:
        assert r["status"] == "ok" and len(r["cpu_set"]) == 1 and r["cpu_set"][0] in allowed, r
        assert 0 < r["cpu_s"], r
    records = run_batch(graph, str(clips / "a.mp4"), {"digests": f"{tmp_path}/u/{{stem}}.jsonl"}, jobs=1,
                        plugins=[PLUGIN], pin=False, manifest=tmp_path / "u.jsonl")
    assert records[0]["cpu_set"] == allowed  # unpinned: the kernel places its threads


def test_jobs_retry_a_crashed_worker_and_record_a_failing_file(clips, tmp_path):
    (clips / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    sides = {"flag": f"{tmp_path}/{{stem}}.flag", "digests": f"{out}/{{stem}}.jsonl"}
    records = run_batch(str(CLUSTER_GRAPHS / "die_once.yaml"), str(clips / "*.mp4"), sides, jobs=2,
                        cpus_per_run=1, plugins=[PLUGIN])
    by = {Path(r["input"]).name: r for r in records}
    assert by["broken.mp4"]["status"] == "failed" and by["broken.mp4"]["attempts"] == 1
    assert by["broken.mp4"]["error"].startswith("node 'VideoSource' (VideoSource) failed in open: MediaError: ")
    assert "broken.mp4" in by["broken.mp4"]["error"]
    for name in ("a.mp4", "b.mp4"):
        rec = by[name]
        assert rec["status"] == "ok" and rec["attempts"] == 2, rec  # its first worker died
        assert rec["frames"] == len((out / f"{Path(name).stem}.jsonl").read_text().splitlines()) > 0
    assert not [p for p in out.iterdir() if ".vpipe-part-" in p.name]
    # retries=0: a file whose worker dies is given up, with the reason
    for f in tmp_path.glob("*.flag"):
        f.unlink()
    records = run_batch(str(CLUSTER_GRAPHS / "die_once.yaml"), str(clips / "a.mp4"), sides, jobs=1,
                        plugins=[PLUGIN], retries=0, manifest=tmp_path / "m2.jsonl")
    assert records[0]["status"] == "failed" and records[0]["error_type"] == "WorkerLost"
    assert "its worker was lost 1 times" in records[0]["error"]


def test_cli_batch_with_cpus_per_run_and_manifest(clips, tmp_path):
    book = tmp_path / "book.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "apps.cli", "run", "face_detection", "--inputs", str(clips / "*.mp4"),
                        "--set", f"detections={tmp_path}/out/{{stem}}.jsonl", "--jobs", "1", "--cpus-per-run", "2",
                        "--manifest", str(book), "-q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in book.read_text().splitlines()]
    assert [Path(x["input"]).name for x in sorted(records, key=lambda x: x["index"])] == ["a.mp4", "b.mp4"]
    assert all(x["cpus"] == 2 and any(c.endswith(".threads") for c in x["capped"]) for x in records)
    # one worker, two files: the model loaded for the first is still loaded for the second
    assert sorted(x["models_loaded"] for x in records) == [0, 1]
    assert len({x["pid"] for x in records}) == 1
    assert "2 ok, 0 failed of 2 files" in r.stdout
    assert not (tmp_path / "out" / "vpipe-manifest.jsonl").exists()  # --manifest was used instead


def test_cli_pin_and_no_pin(clips, tmp_path):
    allowed = two_cores()
    env = {**os.environ, "PYTHONPATH": str(REPO), "VPIPE_CPU_SLOTS": str(tmp_path / "slots")}
    for flag, expected in (("--pin", [allowed[:1]]), ("--no-pin", [allowed])):
        book = tmp_path / f"{flag}.jsonl"
        r = subprocess.run([sys.executable, "-m", "apps.cli", "run", str(CLUSTER_GRAPHS / "digest.yaml"), "--plugin", PLUGIN,
                            "--inputs", str(clips / "a.mp4"), "--set", f"digests={tmp_path}/{flag}/{{stem}}.jsonl",
                            "--jobs", "1", flag, "--manifest", str(book), "-q"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert [json.loads(line)["cpu_set"] for line in book.read_text().splitlines()] == expected, flag


@pytest.mark.parametrize("args,message", [
    (["--ray", "face_detection"], "is not a Ray address"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--streams", "s.yaml"], "--streams runs on Ray: add --ray"),
])
def test_cli_refuses(args, message, clips, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    extra = [] if "--streams" in args else ["--inputs", str(clips / "a.mp4")]
    r = subprocess.run([sys.executable, "-m", "apps.cli", "run", "face_detection", *extra, *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert message in r.stderr.splitlines()[0], r.stderr


@pytest.mark.parametrize("signum,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_resume_after_an_interrupted_batch_redoes_only_what_was_not_done(signum, code, word, tmp_path):
    from models import catalog

    try:
        carphone = catalog.resolve("sample:carphone")  # 120 frames: 4 s at its own pace
    except catalog.CatalogError as e:
        pytest.skip(f"sample video 'carphone' is not available: {e}")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        shutil.copy(carphone, inputs / f"clip{i}.mp4")
    out = tmp_path / "out"
    args = ["run", str(CLUSTER_GRAPHS / "digest.yaml"), "--plugin", PLUGIN, "--inputs", str(inputs / "*.mp4"),
            "--set", "pace=realtime", "--set", f"digests={out}/{{stem}}.jsonl", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", *args, "--jobs", "1"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    book = out / "vpipe-manifest.jsonl"
    deadline = time.monotonic() + 90
    while not (book.exists() and book.read_text().count("\n") >= 1):
        assert proc.poll() is None, f"the batch ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no record within 90 s"
        time.sleep(0.05)  # the manifest of another process is what we can watch
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.startswith(f"error: {word}"), err
    first = manifest(book)
    assert len(first) == 1 and first[0]["status"] == "ok"
    assert leftovers(out) == [], f"{word} left a temporary file"
    r = subprocess.run([sys.executable, "-m", "apps.cli", *args, "--jobs", "2", "--resume"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    second = manifest(book)
    assert sorted(Path(rec["input"]).name for rec in second) == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert second[0] == first[0], "the input done before was not run again"
    assert all(rec["status"] == "ok" for rec in second)
    for rec in second:
        assert len(Path(rec["outputs"]["digests"]).read_text().splitlines()) == rec["frames"] > 0
