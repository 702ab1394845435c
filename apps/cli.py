"""The ``vpipe`` command.

Each ``apps/cmd_*.py`` module defines ``register(app)`` and adds its commands to the one Typer app,
so every sub-command (run, validate, viz, profile, calculators, models, convert, bench) hangs off
the same entry point. A command line that names a command imports and registers only its module
(``COMMAND_MODULES``): ``vpipe run`` starts without the others' imports and options.

Failures are reported by ``apps.errors``: one ``error:`` line for what a user can fix, a traceback
only for bugs, or for everything with ``--debug`` (accepted anywhere on the command line) or
``VPIPE_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="vpipe",
    help="vpipe: a streaming vision pipeline framework (graphs of calculators, any inference engine). "
         "Add --debug (or set VPIPE_DEBUG=1) to any command to see the traceback of a failure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEBUG_FLAG = "--debug"


@app.callback()
def _group() -> None:
    """Keeps ``vpipe COMMAND`` a group when only the named command is registered (Typer would
    otherwise run a lone command as the program itself)."""


# Which ``apps/cmd_*.py`` module registers each command: a command line that names one imports and
# builds only that module (``vpipe run`` does not import the converter, the profiler or the
# reference generator, nor has Typer build their options). tests/apps/test_cli_commands.py checks
# the table against what the modules register.
COMMAND_MODULES = {
    "bench": "cmd_bench", "calculators": "cmd_calculators", "convert": "cmd_convert", "models": "cmd_models",
    "profile": "cmd_profile", "run": "cmd_run", "validate": "cmd_run", "viz": "cmd_viz",
}


def command_modules() -> list[str]:
    """Every ``apps/cmd_*.py`` module, by name."""
    import apps

    return sorted(info.name for info in pkgutil.iter_modules(apps.__path__) if info.name.startswith("cmd_"))


def _register_commands(argv: list[str] | None = None) -> None:
    """Registers the command ``argv`` names (its module only), or every command when it names
    none that is known (``vpipe``, ``vpipe --help``, a mistyped command: Typer then lists them all)."""
    named = COMMAND_MODULES.get(argv[0]) if argv else None
    for module in [named] if named else command_modules():
        importlib.import_module(f"apps.{module}").register(app)


def _take_debug_flag(argv: list[str]) -> list[str]:
    """Removes ``--debug`` (before a ``--``) from the arguments and turns it into ``VPIPE_DEBUG=1``."""
    end = argv.index("--") if "--" in argv else len(argv)
    if DEBUG_FLAG in argv[:end]:
        os.environ["VPIPE_DEBUG"] = "1"
        argv = [a for a in argv[:end] if a != DEBUG_FLAG] + argv[end:]
    return argv


def _drop_current_folder_from_path() -> None:
    """``python -m apps.cli`` puts the current folder first on ``sys.path``, as the installed ``vpipe``
    does not: a graph's plugin, or a stray ``json.py``, there must not be importable by its name.
    Kept only when it is the source tree that holds ``apps`` itself."""
    source_tree = Path(__file__).resolve().parents[1]
    cwd = Path.cwd().resolve()
    if cwd == source_tree:
        return
    sys.path[:] = [p for p in sys.path if not (p in ("", ".") or Path(p).resolve() == cwd)]


def main() -> None:
    from apps import errors

    from apps.cluster.cli import normalize_ray_flag  # `--ray` alone means a local Ray

    argv = normalize_ray_flag(_take_debug_flag(sys.argv[1:]))
    _drop_current_folder_from_path()
    errors.install_notice_handler()
    errors.capture_native_stderr()  # before anything imports a native library that logs
    _register_commands(argv)
    try:
        app(args=argv, prog_name="vpipe")
    except KeyboardInterrupt:
        errors.sync_native_stderr()
        sys.stderr.write("error: interrupted (Ctrl-C)\n")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the top of the command: every failure is reported here
        lines = errors.uncaught_text(e).splitlines()
        errors.sync_native_stderr()
        sys.stderr.write(f"error: {lines[0]}\n" + "".join(f"{ln}\n" for ln in lines[1:]))
        sys.stderr.flush()
        sys.exit(1)


if __name__ == "__main__":
    main()
