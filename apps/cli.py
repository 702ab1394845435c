"""The ``vpipe`` command.

Each ``apps/cmd_*.py`` module defines ``register(app)`` and adds its commands to the one Typer app,
so every sub-command (run, validate, viz, profile, calculators, models, convert, bench) hangs off
the same entry point.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    name="vpipe",
    help="vpipe: a streaming vision pipeline framework (graphs of calculators, any inference engine).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    import apps

    for info in sorted(pkgutil.iter_modules(apps.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"apps.{info.name}").register(app)


def main() -> None:
    import sys

    from apps.cluster.cli import normalize_ray_flag  # `--ray` alone means a local Ray

    _register_commands()
    app(args=normalize_ray_flag(sys.argv[1:]))


if __name__ == "__main__":
    main()
