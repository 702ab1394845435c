"""``vpipe run`` and ``vpipe validate``.

- ``vpipe run GRAPH [--set key=value ...] [--plugin module]`` runs a graph file (a path, or the name
  of a graph: see ``apps/common.py`` for the lookup) with a progress bar, then prints a summary
  (frames, fps, drops, time per node). On error the exit status is 1 and the first line of stderr is
  the one-line cause. Ctrl-C or SIGTERM stops the run cleanly (the graph drains into the sinks for at
  most ``--drain-timeout`` s, files are finalized) and exits 130 or 143; a second signal stops it at
  once; a calculator stuck in a call for ``--stuck-timeout`` s is named and abandoned.
- ``vpipe validate GRAPH...`` loads every graph and reports every problem at once as
  ``file:line: message``; exit status 1 when any.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from apps.common import (EXIT_FAILED, PLUGIN_HELP, TRUST_HELP, CliError, load_or_exit, plugins_or_exit, resolve_graph,
                         stdout_console)
from apps.errors import silence_native_stderr
from apps.progress import run_or_exit, summary_table
from pipeline.graph import DRAIN_TIMEOUT_S, STUCK_TIMEOUT_S

# ---------------------------------------------------------------------------------------------
# Commands


def run_command(
    graph: str = typer.Argument(..., help="A graph file, or the name of a graph in graphs/."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a side packet: key=value (YAML scalar)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, and no messages that native "
                                                             "libraries (TFLite, OpenCV) print themselves."),
    drain_timeout: float = typer.Option(DRAIN_TIMEOUT_S, "--drain-timeout", min=0,
                                        help="On Ctrl-C/SIGTERM, seconds to drain the graph into the sinks."),
    stuck_timeout: float = typer.Option(STUCK_TIMEOUT_S, "--stuck-timeout", min=0,
                                        help="Seconds to wait for a call still running at the stop before "
                                             "naming the node as stuck."),
) -> None:
    """Runs a graph with a progress bar and prints a summary.

    Exit status: 0 done, 1 the graph or the run failed, 2 bad command line, 130 stopped by Ctrl-C,
    143 stopped by SIGTERM."""
    if quiet:
        silence_native_stderr()
    g, _path, sides = load_or_exit(graph, plugin, set_, trust)
    g.drain_timeout, g.stuck_timeout = drain_timeout, stuck_timeout
    stdout_console().print(summary_table(run_or_exit(g, sides, quiet=quiet)))


def validate_command(
    graphs: list[str] = typer.Argument(..., help="Graph files or names of graphs in graphs/."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
) -> None:
    """Checks graph files without running them; prints every problem as file:line: message.
    It imports only the plugins given with --plugin, allowed in the user config, or of a --trust-ed file."""
    from pipeline import Graph, GraphConfigError

    plugins_or_exit(plugin)
    problems = 0
    for ref in graphs:
        try:
            path = resolve_graph(ref)
        except CliError as e:
            print(f"{ref}: {e}")
            problems += 1
            continue
        try:
            g = Graph.from_yaml(path, trust=trust)
        except GraphConfigError as e:
            for p in e.problems:
                print(str(p))
            problems += len(e.problems)
            continue
        n = len(g.topology()["nodes"])
        print(f"{path}: ok ({n} nodes)", file=sys.stderr)
    if problems:
        print(f"{problems} problem(s) found", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("validate")(validate_command)
