"""The framework's own tests pass where OpenCV, PyAV and every engine cannot be imported, so a future
import of one of them in ``pipeline/`` (or anything its tests reach) fails here, not in a user's
install without them. The blocker is the pytest plugin ``tests/import_blocker.py``."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.import_blocker",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_blocker_refuses_opencv_and_names_it(tmp_path):
    test = tmp_path / "test_imports_cv2.py"
    test.write_text("def test_it():\n    import cv2  # noqa: F401\n")
    r = pytest_run(str(test), "--rootdir", str(tmp_path), timeout=120)
    assert r.returncode == 1, r.stdout[-2000:]
    assert "BlockedImport: import of cv2 blocked" in r.stdout, r.stdout[-2000:]


@pytest.mark.timeout(900)
def test_the_framework_tests_pass_without_opencv_pyav_or_an_engine():
    r = pytest_run("tests/pipeline", timeout=880)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, f"tests/pipeline under tests.import_blocker: {summary}\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
