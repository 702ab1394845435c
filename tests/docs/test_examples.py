"""The docs' examples, run as written: copied out of the Markdown, so the docs cannot drift from what
works. Python blocks run in order in one interpreter per page (a page reads as one session), from a
folder outside the repository; YAML graphs are loaded and validated, and run when nothing needs
feeding; the README's ``vpipe`` command lines run through the real entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps.conftest import REPO

PAGES = ["README.md", "docs/graphs.md", "docs/calculators.md"]


def blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", (REPO / page).read_text(), re.S | re.M)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("VPIPE_GRAPH_PATH", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run_as_written(page: str, tmp_path: Path):
    code = blocks(page, "python")
    assert code, f"{page} has no python block"
    r = run_python("\n\n".join(code), tmp_path)
    assert r.returncode == 0, f"{page}'s python blocks fail as written:\n{r.stderr[-3000:]}"
    if page == "README.md":
        lines = r.stdout.splitlines()
        assert len(lines) == 120 and lines[0] == "0 1", lines[:3]  # a face in each carphone frame
    if page == "docs/graphs.md":
        assert r.stdout.splitlines()[0] == "3"


def test_graph_blocks_load_validate_and_run():
    from pipeline import Graph

    graphs = blocks("docs/graphs.md", "yaml")
    assert len(graphs) >= 3
    ran = 0
    for text in graphs:
        g = Graph.from_yaml(text)  # raises GraphConfigError naming the line of the block
        if not g.spec.inputs:
            faces = []
            g.observe("faces", faces.append)
            g.run()
            assert len(faces) == 120 and all(len(p.value) == 1 for p in faces)
            ran += 1
    assert ran == 1


# Lines of the README's command block that need what a test machine has not: a camera, or a run
# that ends only with Ctrl-C (both are tested in tests/apps/test_first_hour.py).
NOT_RUN = ("source=0", "--loop", "--ray auto")  # a webcam, a run until Ctrl-C, a running cluster (tests/cluster)


def test_readme_commands_run_as_written(tmp_path: Path):
    import shutil

    import cv2

    from models import catalog

    commands = [line.split("#")[0].strip() for block in blocks("README.md", "bash") for line in block.splitlines()]
    commands = [c for c in commands if c.startswith(".venv/bin/vpipe ") and c.split()[1] in ("run", "validate")]
    assert len(commands) >= 4
    (tmp_path / "graphs").symlink_to(REPO / "graphs")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(catalog.resolve("sample:carphone"), tmp_path / "clip.mp4")
    (tmp_path / "videos").mkdir()  # the batch line's inputs
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(tmp_path / "clip.mp4", tmp_path / "videos" / name)
    cap = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    for i in range(2):
        ok, frame = cap.read()
        cv2.imwrite(str(photos / f"IMG_{i:04d}.jpg"), frame)
    cap.release()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("VPIPE_GRAPH_PATH", None)
    ran = []
    for command in commands:
        if any(word in command for word in NOT_RUN):
            continue
        shell = command.replace(".venv/bin/vpipe", f"{sys.executable} -m apps.cli", 1)
        r = subprocess.run(["bash", "-c", shell + " -q" * (" run " in shell)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
        ran.append(command)
    assert len(ran) >= 4
    assert (tmp_path / "out" / "annotated.mp4").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "out" / "faces").iterdir()) == ["IMG_0000.jpg", "IMG_0001.jpg"]
