"""``vpipe run`` and ``vpipe validate``.

- ``vpipe run GRAPH [--set key=value ...] [--plugin module] [--pace realtime] [--loop]`` runs a graph
  file (a path, or the name of a graph: see ``apps/common.py`` for the lookup) with a progress bar,
  then prints a summary (frames, fps, drops, time per node). ``--pace``/``--loop`` set the graph's
  ``pace``/``loop`` side packets (a file played as a live source, for the preview). On error the exit status is 1 and the first line of stderr is
  the one-line cause. Ctrl-C or SIGTERM stops the run cleanly (the graph drains into the sinks for at
  most ``--drain-timeout`` s, files are finalized) and exits 130 or 143; a second signal stops it at
  once; a calculator stuck in a call for ``--stuck-timeout`` s is named and abandoned.
- ``vpipe validate GRAPH...`` loads every graph and reports every problem at once as
  ``file:line: message``; exit status 1 when any.
"""

from __future__ import annotations

import enum
import sys
from typing import Optional

import typer

from apps.common import (EXIT_FAILED, GRAPH_PATH_HELP, PLUGIN_HELP, TRUST_HELP, CliError, fail, load_or_exit,
                         plugins_or_exit, resolve_graph, run_flags, search_dirs, stdout_console)
from apps.errors import silence_native_stderr
from apps.progress import run_or_exit, summary_table
from pipeline.signals import DRAIN_TIMEOUT_S, STUCK_TIMEOUT_S  # not pipeline.graph: `vpipe --help` loads no scheduler

# ---------------------------------------------------------------------------------------------
# Commands


class Pace(str, enum.Enum):
    fast = "fast"
    realtime = "realtime"


def run_command(
    graph: str = typer.Argument(..., help="A graph file, or a graph's name (looked up in --graph-path, $VPIPE_GRAPH_PATH, then the built-in graphs)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a side packet: key=value (YAML scalar)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, and no messages that native "
                                                             "libraries (TFLite, OpenCV) print themselves."),
    inputs: Optional[list[str]] = typer.Option(
        None, "--inputs", help="Run once per input: a glob ('videos/*.mp4'), a path or a URI, as the 'source' "
                               "side packet; --set values may use {stem} {name} {parent} {index}. Repeatable."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="With --inputs: runs at once (local processes; "
                                                                  "on Ray, actors). Default: CPUs / --cpus-per-run."),
    ray: Optional[str] = typer.Option(None, "--ray", help="With --inputs or --streams: run on Ray. Alone: a local "
                                                          "Ray; or an address: auto, host:port, ray://host:10001."),
    cpus_per_run: int = typer.Option(1, "--cpus-per-run", help="CPUs (threads) each run may use; engines, "
                                                               "FFmpeg and vpipe threads are capped to it."),
    pin: bool = typer.Option(True, "--pin/--no-pin", help="With --inputs or --streams: bind each worker's threads "
                                                          "to --cpus-per-run cores no other worker holds."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="With --inputs: the JSON-lines manifest "
                                                                    "(default: vpipe-manifest.jsonl beside the outputs)."),
    resume: bool = typer.Option(False, "--resume", help="With --inputs: skip inputs the manifest has as done."),
    retries: int = typer.Option(3, "--retries", help="With --inputs: retries of a file whose worker died "
                                                     "(a failing file is never retried)."),
    streams: Optional[str] = typer.Option(None, "--streams", help="A streams file (YAML): one live run of the "
                                                                  "graph per stream, on Ray (--ray)."),
    graph_path: Optional[list[str]] = typer.Option(None, "--graph-path", help=GRAPH_PATH_HELP),
    pace: Optional[Pace] = typer.Option(None, "--pace", help="realtime: files play at their own rate, as a live "
                                        "source would (for the preview); fast: as fast as the graph goes. Sets "
                                        "the graph's `pace` side packet."),
    loop: bool = typer.Option(False, "--loop", help="Files and images start again at the end (until Ctrl-C). "
                                                    "Sets the graph's `loop` side packet."),
    drain_timeout: float = typer.Option(DRAIN_TIMEOUT_S, "--drain-timeout", min=0,
                                        help="On Ctrl-C/SIGTERM, seconds to drain the graph into the sinks."),
    stuck_timeout: float = typer.Option(STUCK_TIMEOUT_S, "--stuck-timeout", min=0,
                                        help="Seconds to wait for a call still running at the stop before "
                                             "naming the node as stuck."),
) -> None:
    """Runs a graph with a progress bar and prints a summary; with --inputs once per input (batch),
    with --streams once per live stream (see docs/cluster.md).

    Exit status: 0 done, 1 the graph or the run failed, 2 bad command line, 130 stopped by Ctrl-C,
    143 stopped by SIGTERM."""
    if quiet:
        silence_native_stderr()
    if inputs or streams or ray is not None or jobs is not None:
        from apps.cluster.cli import many_or_exit

        raise typer.Exit(many_or_exit(graph, set_, plugin, trust=trust, inputs=inputs, streams=streams, jobs=jobs,
                                      ray=ray, cpus_per_run=cpus_per_run, pin=pin, manifest=manifest, resume=resume,
                                      retries=retries, quiet=quiet))
    g, path, sides = load_or_exit(graph, plugin, set_, trust, fed=True, graph_path=graph_path)
    g.drain_timeout, g.stuck_timeout = drain_timeout, stuck_timeout
    try:
        sides = run_flags(g, path, sides, pace.value if pace else None, loop)
    except CliError as e:
        raise fail(str(e), e.code)
    result = run_or_exit(g, sides, quiet=quiet)  # first: the console (rich) is made after the run
    stdout_console().print(summary_table(result))


def validate_command(
    graphs: list[str] = typer.Argument(..., help="Graph files or graph names (looked up as for vpipe run)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    graph_path: Optional[list[str]] = typer.Option(None, "--graph-path", help=GRAPH_PATH_HELP),
) -> None:
    """Checks graph files without running them; prints every problem as file:line: message.
    It imports only the plugins given with --plugin, allowed in the user config, or of a --trust-ed file."""
    from pipeline import Graph, GraphConfigError

    plugins_or_exit(plugin)
    problems = 0
    for ref in graphs:
        try:
            path = resolve_graph(ref, graph_path)
        except CliError as e:
            print(f"{ref}: {e}")
            problems += 1
            continue
        try:
            g = Graph.from_yaml(path, search_paths=search_dirs(graph_path), trust=trust)
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
