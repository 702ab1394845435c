"""``vpipe run`` and ``vpipe validate``, plus the helpers every graph command shares.

- ``vpipe run GRAPH [--set key=value ...] [--plugin module]`` runs a graph file (a path, or the name
  of a graph in the ``graphs`` package) with a rich progress bar: frames, fps and ETA when a source
  knows its frame count (a video file), live counters otherwise; then a summary (frames, fps, drops,
  time per node). On error the exit status is 1 and the first line of stderr is the one-line cause.
- ``vpipe validate GRAPH...`` loads every graph and reports every problem at once as
  ``file:line: message``; exit status 1 when any.

A graph name is looked up in the directories of ``$VPIPE_GRAPH_PATH`` (separated like ``PATH``),
then in ``graphs/``; an unknown name is an error that offers the closest names.

``--set`` values are YAML scalars (``--set threshold=0.5`` is a float, ``--set output=null`` is
``None``, ``--set source=clip.mp4`` a string) and override the graph's declared side packets.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXP_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

EXIT_FAILED = 1  # the graph is wrong or the run failed
EXIT_USAGE = 2  # the command line is wrong (unknown graph, bad --set, bad plugin)


class CliError(Exception):
    """A user error with a one-line message, reported as ``error: ...`` and a non-zero exit."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # pickles with its exit code (raised in a batch worker process)
        return (type(self), (self.args[0], self.code))


# ---------------------------------------------------------------------------------------------
# Graph names, --set values, plugins


def graphs_dir() -> Path:
    """The directory of the ready graph files (the ``graphs`` package)."""
    import graphs

    return Path(graphs.__file__).resolve().parent


def graph_dirs() -> list[Path]:
    """Where graph names are looked up: ``$VPIPE_GRAPH_PATH`` (os.pathsep-separated), then ``graphs/``."""
    extra = [Path(p) for p in os.environ.get("VPIPE_GRAPH_PATH", "").split(os.pathsep) if p]
    return [d for d in extra if d.is_dir()] + [graphs_dir()]


def graph_names() -> list[str]:
    """The names of the graphs that ``vpipe run NAME`` finds (file stems)."""
    return sorted({p.stem for d in graph_dirs() for p in d.iterdir()
                   if p.suffix in (".yaml", ".yml") and p.is_file()})


def resolve_graph(ref: str) -> Path:
    """A graph argument → its file: an existing path, else the graph of that name in ``graphs/``."""
    p = Path(ref)
    if p.is_file():
        return p
    if p.is_dir():
        raise CliError(f"graph '{ref}' is a directory, not a graph file")
    stem = p.name[: -len(p.suffix)] if p.suffix in (".yaml", ".yml") else p.name
    if p.parent == Path("."):
        for d in graph_dirs():
            for suffix in (".yaml", ".yml"):
                candidate = d / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    names = graph_names()
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.5)
    if close:
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?"
    elif names:
        hint = f"; known graphs: {', '.join(names)}"
    else:
        hint = ""
    where = " or ".join(str(d) for d in graph_dirs())
    raise CliError(f"unknown graph '{ref}': no such file and no graph of that name in {where}{hint}")


def parse_set_value(raw: str) -> Any:
    """A ``--set`` value as a YAML scalar: int, float, bool, null or str."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0]
        raise ValueError(f"not a YAML scalar ({problem}); quote it to pass a string") from None
    if isinstance(value, str) and _EXP_FLOAT.match(raw.strip()):
        return float(raw)  # YAML 1.1 reads 1e-3 as text; YAML 1.2 and every user read a number
    if isinstance(value, (datetime.date, datetime.datetime)):
        return raw.strip()  # YAML would turn 2024-01-01 into a date; a side packet wants the text
    if isinstance(value, (dict, list)):
        kind = "mapping" if isinstance(value, dict) else "list"
        raise ValueError(f"must be a scalar (int, float, bool, null or string), got a {kind}; "
                         "quote it to pass a string")
    return value


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` → ``{key: scalar}``; raises ``CliError`` naming the bad item."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq:
            raise CliError(f"bad --set '{item}': expected key=value")
        if not _KEY.match(key):
            raise CliError(f"bad --set '{item}': '{key}' is not a side packet name "
                           "(letters, digits and underscores)")
        try:
            out[key] = parse_set_value(raw)
        except ValueError as e:
            raise CliError(f"bad --set '{item}': value {e}") from None
    return out


def load_plugins(modules: list[str] | None) -> None:
    """Imports the user calculator modules named with ``--plugin``."""
    if not modules:
        return
    from pipeline import registry

    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # `vpipe --plugin my_calcs` finds my_calcs.py beside the user
    for m in modules:
        try:
            registry.load_plugin(m)
        except Exception as e:  # noqa: BLE001 - any import failure is the user's to see
            raise CliError(f"cannot import plugin '{m}': {type(e).__name__}: {e}") from None


def check_side_packets(graph, path: Path, values: dict[str, Any]) -> None:
    """Refuses a ``--set`` key that the graph does not declare, offering the closest names."""
    declared = set(declared_side_packets(graph))
    for key in values:
        if key not in declared:
            close = difflib.get_close_matches(key, sorted(declared), n=3, cutoff=0.5)
            if close:
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?"
            elif declared:
                hint = f"; it declares {', '.join(sorted(declared))}"
            else:
                hint = "; it declares none"
            raise CliError(f"bad --set '{key}': {path} declares no side packet '{key}'{hint}")


def declared_side_packets(graph) -> dict[str, Any]:
    return dict(graph.spec.side_packets)


def load_graph(ref: str, plugins: list[str] | None = None):
    """Resolves, imports plugins and loads a graph; returns (Graph, path)."""
    from pipeline import Graph

    path = resolve_graph(ref)
    load_plugins(plugins)
    return Graph.from_yaml(path), path


def load_or_exit(ref: str, plugins: list[str] | None = None, sets: list[str] | None = None):
    """What every graph command does first: parses ``--set``, imports plugins, loads the graph and
    checks the ``--set`` keys against it; returns (Graph, path, side packets) or exits with the
    one-line cause (status 2 for the command line, 1 for the graph)."""
    from pipeline import GraphConfigError

    try:
        sides = parse_sets(sets)
        g, path = load_graph(ref, plugins)
        check_side_packets(g, path, sides)
    except CliError as e:
        raise fail(str(e), e.code)
    except GraphConfigError as e:
        raise fail(config_message(e), EXIT_FAILED)
    return g, path, sides


def plugins_or_exit(modules: list[str] | None) -> None:
    """``load_plugins`` for a command: a plugin that does not import ends it with the cause."""
    try:
        load_plugins(modules)
    except CliError as e:
        raise fail(str(e), e.code)


# ---------------------------------------------------------------------------------------------
# Stats and topology access


def source_streams(topology: dict) -> list[tuple[str, str]]:
    """(node, stream) of every output of the graph's source nodes (nodes without inputs)."""
    out = []
    for n in topology["nodes"]:
        if not n["inputs"]:
            for stream in n["outputs"].values():
                out.append((n["name"], stream))
    return out


def expected_frames(graph, side_packets: dict[str, Any]) -> int | None:
    """The number of frames the graph's sources will emit, when they can tell (local video files),
    read before the run from each source's options (``$name`` resolved from the side packets);
    None when any source cannot tell."""
    from pipeline.config import option_refs

    sides = {**declared_side_packets(graph), **side_packets}
    sources = [n for n in graph.spec.nodes if n.cls is not None and n.cls.is_source()]
    if not sources:
        return None
    total = 0
    for node in sources:
        options = dict(node.options)
        for key, name in option_refs(options).items():
            options[key] = sides.get(name)
        try:
            n = _video_file_frames(options)
        except Exception:  # noqa: BLE001 - a progress total is a nicety, never a reason to fail
            return None
        if n is None:
            return None
        total += n
    return total


def _windowed(options: dict[str, Any]) -> bool:
    """Options that make a source emit other than the file's frames once (loops, time windows)."""
    return bool(options.get("loop")) or any(options.get(k) is not None for k in ("start_s", "stop_s"))


def _info_frames(graph) -> int | None:
    """Frame count from the sources' stream-info side packets (``VideoSource``'s INFO), once open."""
    total = 0
    for node in graph.spec.nodes:
        if node.cls is None or not node.cls.is_source():
            continue
        counts = [getattr(graph.side_packet(name), "frame_count", None) for name in node.side_outputs.values()]
        counts = [c for c in counts if isinstance(c, int) and c > 0]
        if not counts or _windowed(node.options):
            return None
        total += counts[0]
    return total or None


def _video_file_frames(options: dict[str, Any]) -> int | None:
    """Frame count of a source reading a local video file (option ``uri``/``path``/``source``).

    Reads the container's stream info with PyAV (the declared frame count, else duration x rate)
    and caps it by a ``max_frames``/``limit`` option when the node has one.
    """
    uri = next((options[k] for k in ("uri", "path", "source", "file") if isinstance(options.get(k), str)), None)
    if uri is None or _windowed(options):
        return None
    path: Path | None = Path(uri)
    if uri.startswith("sample:"):
        from calculators import catalog

        path = catalog.cached_path(uri.split(":", 1)[1]) if catalog.is_cached(uri.split(":", 1)[1]) else None
    if path is None or not path.is_file():
        return None
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        n = int(stream.frames or 0)
        if n <= 0 and stream.duration is not None and stream.average_rate:
            n = int(round(float(stream.duration * stream.time_base) * float(stream.average_rate)))
        if n <= 0 and container.duration and stream.average_rate:
            n = int(round(container.duration / 1e6 * float(stream.average_rate)))
    if n <= 0:
        return None
    for k in ("max_frames", "limit", "frames"):
        cap = options.get(k)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
            n = min(n, cap)
    return n


# ---------------------------------------------------------------------------------------------
# Running with progress


@dataclass
class RunResult:
    wall_s: float
    frames: int
    stats: dict[str, dict[str, Any]]


def _print_error(message: str) -> None:
    lines = str(message).splitlines() or [""]
    sys.stderr.write(f"error: {lines[0]}\n")
    if len(lines) > 1:
        sys.stderr.write("\n".join(lines[1:]) + "\n")
    sys.stderr.flush()


def config_message(e, what: str = "in the graph") -> str:
    """A ``GraphConfigError`` for stderr: the problem itself when one, else a count then each."""
    if len(e.problems) == 1:
        return str(e.problems[0])
    return f"{len(e.problems)} problems {what}\n{e}"


def fail(message: str, code: int) -> typer.Exit:
    _print_error(message)
    return typer.Exit(code)


def run_with_progress(graph, side_packets: dict[str, Any], *, trace: bool = False,
                      quiet: bool = False) -> RunResult:
    """Starts the graph, shows progress on stderr until it ends, and returns what it did.

    Frames are counted on the sources' first output stream (what was decoded or captured), so
    the progress bar matches the frame count a video file declares even when a flow limiter
    drops frames further down.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    topo = graph.topology()
    streams = source_streams(topo)
    counted = streams[0][1] if streams else None
    total = expected_frames(graph, side_packets)
    count = [0]
    lock = threading.Lock()

    console = Console(stderr=True)
    # Without a known total (a live stream), the bar pulses and the counters still move.
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TextColumn("{task.fields[fps]:>7.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    # Only a terminal gets the live bar: in a log it would be noise before the error line.
    progress = Progress(*columns, console=console, transient=False, disable=quiet or not console.is_terminal,
                        auto_refresh=True, refresh_per_second=5)
    task = progress.add_task(graph_name(graph), total=total or None, fps=0.0)
    t0 = [0.0]

    def on_frame(_packet) -> None:
        nonlocal total
        with lock:
            count[0] += 1
            n = count[0]
        if n == 1 and not total:
            # The sources are open now: a VideoSource has published its stream info.
            total = _info_frames(graph)
            if total:
                progress.update(task, total=total)
        if n % 8 == 0 or n == total:
            elapsed = time.perf_counter() - t0[0]
            progress.update(task, completed=n, fps=n / elapsed if elapsed > 0 else 0.0)

    if counted is not None:
        graph.observe(counted, on_frame)
    with progress:
        t0[0] = time.perf_counter()
        try:
            graph.start(side_packets, trace=trace)
            graph.wait()  # on Ctrl-C it cancels the run cleanly and re-raises
        except KeyboardInterrupt:
            # Ctrl-C may also land between start() and wait(): stop the run here too, so that
            # every calculator is closed and no thread outlives the command.
            _stop(graph)
            raise
        finally:
            wall = time.perf_counter() - t0[0]
            n = count[0]
            progress.update(task, completed=n, total=total if total and n <= total else n or None,
                            fps=n / wall if wall > 0 else 0.0)
    return RunResult(wall, count[0], graph.stats())


def run_or_exit(graph, side_packets: dict[str, Any], *, trace: bool = False, quiet: bool = False) -> RunResult:
    """``run_with_progress`` for a command: a failed run exits 1 with its cause first, Ctrl-C 130."""
    from pipeline import GraphConfigError, GraphRunError

    try:
        return run_with_progress(graph, side_packets, trace=trace, quiet=quiet)
    except GraphRunError as e:
        if interrupted(e):
            raise fail("interrupted (Ctrl-C): the run was stopped", 130)
        raise fail(str(e), EXIT_FAILED)
    except GraphConfigError as e:  # side packet values are checked at start
        raise fail(config_message(e, "with the side packets"), EXIT_FAILED)
    except KeyboardInterrupt:
        raise fail("interrupted (Ctrl-C): the run was stopped", 130)


def stdout_console():
    """The console for tables: the terminal's width, or 120 columns in a pipe or a log."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


def _stop(graph) -> None:
    graph.cancel()
    try:
        graph.wait(timeout=30)
    except (KeyboardInterrupt, RuntimeError, TimeoutError):
        pass  # not started (RuntimeError), or a second Ctrl-C: leave at once
    except Exception:  # noqa: BLE001 - the run's own error is not what the user asked about now
        pass


def interrupted(e: BaseException) -> bool:
    """Ctrl-C, directly or as the cause of a run error (it landed inside a calculator's open)."""
    return isinstance(e, KeyboardInterrupt) or isinstance(getattr(e, "cause", None), KeyboardInterrupt)


def graph_name(graph) -> str:
    return graph.name or "graph"


def summary_table(result: RunResult, title: str = "summary"):
    """A rich table: per node calls, time, mean time per call, share of the wall time, drops."""
    from rich.table import Table

    fps = result.frames / result.wall_s if result.wall_s > 0 else 0.0
    drops = sum(int(s.get("drops") or 0) for s in result.stats.values())
    t = Table(title=f"{title}: {result.frames} frames in {result.wall_s:.2f} s, {fps:.1f} fps, "
                    f"{drops} dropped", title_justify="left")
    for col in ("node", "calculator", "calls", "time s", "ms/call", "% wall", "q peak", "drops"):
        t.add_column(col, justify="left" if col in ("node", "calculator") else "right",
                     no_wrap=col in ("node", "calculator"))
    for name, s in result.stats.items():
        count = int(s.get("count") or 0)
        time_s = float(s.get("time_s") or 0.0)
        t.add_row(name, str(s.get("calculator") or ""), str(count), f"{time_s:.3f}",
                  f"{1e3 * time_s / count:.3f}" if count else "-",
                  f"{100 * time_s / result.wall_s:.1f}" if result.wall_s > 0 else "-",
                  str(s.get("queue_peak") if s.get("queue_peak") is not None else "-"),
                  str(int(s.get("drops") or 0)))
    return t


# ---------------------------------------------------------------------------------------------
# Commands


def run_command(
    graph: str = typer.Argument(..., help="A graph file, or the name of a graph in graphs/."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a side packet: key=value (YAML scalar)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Import a user calculator module."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    inputs: Optional[list[str]] = typer.Option(
        None, "--inputs", help="Run once per input: a glob ('videos/*.mp4'), a path or a URI, as the 'source' "
                               "side packet; --set values may use {stem} {name} {parent} {index}. Repeatable."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="With --inputs: runs at once (local processes; "
                                                                  "on Ray, actors). Default: CPUs / --cpus-per-run."),
    ray: Optional[str] = typer.Option(None, "--ray", help="With --inputs or --streams: run on Ray. Alone: a local "
                                                          "Ray; or an address: auto, host:port, ray://host:10001."),
    cpus_per_run: int = typer.Option(1, "--cpus-per-run", help="CPUs (threads) each run may use; engines, "
                                                               "FFmpeg and vpipe threads are capped to it."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="With --inputs: the JSON-lines manifest "
                                                                    "(default: vpipe-manifest.jsonl beside the outputs)."),
    resume: bool = typer.Option(False, "--resume", help="With --inputs: skip inputs the manifest has as done."),
    retries: int = typer.Option(3, "--retries", help="With --inputs: retries of a file whose worker died "
                                                     "(a failing file is never retried)."),
    streams: Optional[str] = typer.Option(None, "--streams", help="A streams file (YAML): one live run of the "
                                                                  "graph per stream, on Ray (--ray)."),
) -> None:
    """Runs a graph with a progress bar and prints a summary; with --inputs once per input (batch),
    with --streams once per live stream (see docs/cluster.md)."""
    if inputs or streams:
        from apps.cluster import cli as many

        if inputs and streams:
            raise fail("give --inputs (a batch) or --streams (live streams), not both", 2)
        if streams:
            raise typer.Exit(many.streams_or_exit(graph, streams, plugins=plugin, ray=ray, cpus_per_run=cpus_per_run,
                                                  quiet=quiet))
        _g, _path, sides = load_or_exit(graph, plugin, set_)
        raise typer.Exit(many.batch_or_exit(graph, inputs, sides, plugins=plugin, jobs=jobs, ray=ray,
                                            cpus_per_run=cpus_per_run, manifest=manifest, resume=resume,
                                            retries=retries, quiet=quiet))
    if ray is not None or jobs is not None:
        raise fail("--ray and --jobs run many inputs or streams: give --inputs or --streams too", 2)
    g, _path, sides = load_or_exit(graph, plugin, set_)
    stdout_console().print(summary_table(run_or_exit(g, sides, quiet=quiet)))


def validate_command(
    graphs: list[str] = typer.Argument(..., help="Graph files or names of graphs in graphs/."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Import a user calculator module."),
) -> None:
    """Checks graph files without running them; prints every problem as file:line: message."""
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
            g = Graph.from_yaml(path)
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
