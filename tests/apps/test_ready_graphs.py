"""The ready face detection graph as the README runs it: ``vpipe run`` with and without its optional
sinks (switched by ``when:``), ``python -m apps.demo`` and the README's Python snippet."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps.conftest import REPO, run_vpipe

pytestmark = pytest.mark.timeout(300)

SINKS = ("VideoWriter", "JsonlWriter", "Display", "WebPreview")


@pytest.fixture(scope="module")
def carphone() -> tuple[Path, int]:
    """The sample video and its frame count; skips when the catalog cannot provide the model."""
    import av

    from models import catalog

    try:
        catalog.resolve("zoo:blazeface-short")
        path = catalog.resolve("sample:carphone")
    except catalog.CatalogError as e:
        pytest.skip(f"the face detection model or sample video is not available: {e}")
    with av.open(str(path)) as c:
        return path, sum(1 for _ in c.decode(video=0))


def _rows(out: str) -> dict[str, list[str]]:
    """Rows of the summary table printed to stdout, by node."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] and cells[0] != "node":
            rows[cells[0]] = cells
    return rows


def _frames(out: str) -> int:
    m = re.search(r": (\d+) frames in", out)
    assert m, f"no summary line in:\n{out}"
    return int(m.group(1))


def _check_outputs(video: Path, jsonl: Path, frames: int) -> None:
    import av

    lines = [json.loads(s) for s in jsonl.read_text().splitlines()]
    assert len(lines) == frames
    assert sum(1 for r in lines if r["detections"]) >= 0.95 * frames, "carphone shows a face on nearly every frame"
    with av.open(str(video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == frames


def test_run_with_both_sinks_writes_video_and_jsonl(carphone, tmp_path: Path):
    _, frames = carphone
    video, jsonl = tmp_path / "a.mp4", tmp_path / "d.jsonl"
    r = run_vpipe("run", "face_detection", "--set", f"output={video}", "--set", f"detections={jsonl}")
    assert r.rc == 0, r.err
    assert _frames(r.out) == frames
    rows = _rows(r.out)
    assert int(rows["VideoWriter"][2]) == int(rows["JsonlWriter"][2]) == frames
    assert "Display" not in rows and "WebPreview" not in rows
    _check_outputs(video, jsonl, frames)


def test_run_without_sinks_still_runs_and_reports(carphone):
    _, frames = carphone
    r = run_vpipe("run", "face_detection")
    assert r.rc == 0, r.err
    assert _frames(r.out) == frames
    rows = _rows(r.out)
    assert int(rows["Annotate"][2]) == frames and int(rows["detector/Inference"][2]) == frames
    assert not set(SINKS) & set(rows), f"sinks switched off by 'when:' ran: {set(SINKS) & set(rows)}"


def test_run_with_only_detections_leaves_annotate_out(carphone, tmp_path: Path):
    # Nothing takes the annotated frames: Annotate is not run, and the summary says so.
    _, frames = carphone
    jsonl = tmp_path / "d.jsonl"
    r = run_vpipe("run", "face_detection", "--set", f"detections={jsonl}")
    assert r.rc == 0, r.err
    rows = _rows(r.out)
    assert "Annotate" not in rows and int(rows["JsonlWriter"][2]) == frames
    assert "left out (their outputs reach no sink or observer): Annotate" in r.out
    lines = [json.loads(s) for s in jsonl.read_text().splitlines()]
    assert len(lines) == frames and sum(1 for r in lines if r["detections"]) >= 0.95 * frames


def test_demo_writes_both_files_and_prints_the_summary(carphone, tmp_path: Path):
    _, frames = carphone
    video, jsonl = tmp_path / "out" / "annotated.mp4", tmp_path / "out" / "detections.jsonl"
    proc = subprocess.run([sys.executable, "-m", "apps.demo", "--output", str(video), "--detections", str(jsonl)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert _frames(proc.stdout) == frames
    assert f"annotated video: {video}" in proc.stdout and f"detections: {jsonl}" in proc.stdout
    _check_outputs(video, jsonl, frames)


def test_readme_python_snippet_runs_as_written(carphone):
    path, frames = carphone
    readme = (REPO / "README.md").read_text()
    m = re.search(r"## In Python\s+```python\n(.*?)```", readme, re.S)
    assert m, "README.md has no Python snippet under '## In Python'"
    code = m.group(1)
    assert '"my_video.mp4"' in code
    proc = subprocess.run([sys.executable, "-c", code.replace('"my_video.mp4"', repr(str(path)))],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    printed = [line.split() for line in proc.stdout.splitlines()]
    assert len(printed) == frames, proc.stdout[-2000:]
    assert sum(int(n) >= 1 for _, n in printed) >= 0.95 * frames
