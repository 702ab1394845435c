"""``vpipe COMMAND`` registers only COMMAND's module (apps/cli.py's table): the table must name the
module that really registers each command, and a command alone in its module must still be a
sub-command (Typer would run a lone command as the program)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import typer

from apps import cli

ROOT = Path(__file__).resolve().parents[2]


def registered_by(module: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(f"apps.{module}").register(app)
    return {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}


def test_the_table_names_the_module_of_every_command():
    found = {name: module for module in cli.command_modules() for name in registered_by(module)}
    assert found == cli.COMMAND_MODULES


def vpipe(*argv: str) -> subprocess.CompletedProcess:
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print('MODULES', *sorted(m for m in sys.modules if m.startswith('apps.cmd_'))))\n"
            f"sys.argv = ['vpipe', *{list(argv)!r}]\n"
            "runpy.run_module('apps.cli', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def loaded(r: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in r.stdout.splitlines() if ln.startswith("MODULES")][-1].split()[1:]


def test_a_command_alone_in_its_module_stays_a_sub_command():
    r = vpipe("viz", "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Usage: vpipe viz [OPTIONS]" in r.stdout
    assert loaded(r) == ["apps.cmd_viz"]


def test_run_imports_only_its_own_module_and_help_lists_every_command():
    r = vpipe("run", "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert loaded(r) == ["apps.cmd_run"]
    r = vpipe("--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert loaded(r) == [f"apps.{m}" for m in cli.command_modules()]
    for name in cli.COMMAND_MODULES:
        assert name in r.stdout


def test_a_mistyped_command_is_offered_the_right_one():
    r = vpipe("rnu", "face_detection")
    assert r.returncode == 2
    assert "No such command 'rnu'" in r.stderr and "Did you mean 'run'?" in r.stderr
