"""What the graph commands share: finding a graph, ``--set`` values, plugins, and one-line errors.

Every command that takes a graph (run, validate, viz, profile, the demo) starts here:

- a graph argument is a path, or a name looked up in the directories of ``--graph-path`` /
  ``$VPIPE_GRAPH_PATH`` (separated like ``PATH``), then in the built-in ``graphs/``; an unknown name is
  an error that offers the closest names;
- ``--set`` values are YAML 1.2 scalars, read as graph files are (``--set threshold=0.5`` is a float,
  ``--set output=null`` is ``None``, ``--set source=clip.mp4`` a string, ``--set display=off`` the text
  ``off``, which switches a ``when: $display`` node off) and override the graph's declared side packets;
  a key the graph does not declare is refused with the closest names;
- ``--plugin`` modules (names or ``.py`` paths, ``pipeline.plugins``) are imported before the graph is
  loaded; the graph's own ``plugins:`` only with the user's consent (``--trust``, the allowlist);
- a user error is ``CliError``; ``fail()`` prints it as ``error: <one line>`` on stderr and gives the
  exit status (1: the graph is wrong or the run failed, 2: the command line is wrong).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import typer

from pipeline.errors import UserError, did_you_mean

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EXIT_FAILED = 1  # the graph is wrong or the run failed
EXIT_USAGE = 2  # the command line is wrong (unknown graph, bad --set, bad plugin)

PLUGIN_HELP = "Import a user calculator module: a module name (my_pkg.calcs) or a file path (./face_blur.py)."
TRUST_HELP = "Trust the graph file: import the plugins its 'plugins:' list names (and its subgraphs')."


class CliError(UserError):
    """A user error with a one-line message, reported as ``error: ...`` and a non-zero exit."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # pickles with its exit code (raised in a batch worker process)
        return (type(self), (self.args[0], self.code))


# ---------------------------------------------------------------------------------------------
# Graph names, --set values, plugins


GRAPH_PATH_HELP = ("A folder of graph files, searched for graph and subgraph names before $VPIPE_GRAPH_PATH "
                   "and the built-in graphs (repeatable; or several separated like PATH).")


def search_dirs(graph_path: list[str] | None) -> list[Path]:
    """``--graph-path`` values as folders (each may hold several, separated like ``PATH``)."""
    return [Path(p) for item in graph_path or [] for p in item.split(os.pathsep) if p]


def graph_dirs(graph_path: list[str] | None = None) -> list[Path]:
    """Where graph names are looked up: ``--graph-path``, ``$VPIPE_GRAPH_PATH``, the built-in graphs
    (``pipeline.config.graph_search_path``, which subgraph names follow too)."""
    from pipeline.config import graph_search_path

    return graph_search_path(search_dirs(graph_path))


def resolve_graph(ref: str, graph_path: list[str] | None = None) -> Path:
    """A graph argument → its file: an existing path, else the graph of that name on the search path."""
    from pipeline.config import find_graph_file, graph_names

    p = Path(ref)
    if p.is_file():
        return p
    if p.is_dir():
        raise CliError(f"graph '{ref}' is a directory, not a graph file")
    stem = p.name[: -len(p.suffix)] if p.suffix in (".yaml", ".yml") else p.name
    if p.parent == Path("."):
        found = find_graph_file(stem, None, search_dirs(graph_path))
        if found is not None:
            return found
    names = graph_names(search_dirs(graph_path))
    hint = did_you_mean(stem, names, cutoff=0.5) or (f"; known graphs: {', '.join(names)}" if names else "")
    where = " or ".join(str(d) for d in graph_dirs(graph_path))
    raise CliError(f"unknown graph '{ref}': no such file and no graph of that name in {where}{hint}")


def parse_set_value(raw: str) -> Any:
    """A ``--set`` value as a YAML 1.2 scalar, read as a graph file's values are: int, float, bool
    (only true/false), null or str (``off``, ``no``, ``2024-01-01`` and ``1:30`` stay text)."""
    from pipeline import GraphConfigError
    from pipeline.graph_yaml import load_yaml

    try:
        value = load_yaml(raw, "--set")
    except GraphConfigError as e:
        problem = e.problems[0].message.removeprefix("invalid YAML: ")
        raise ValueError(f"not a YAML scalar ({problem}); quote it to pass a string") from None
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
    """Imports the user calculator modules named with ``--plugin``: module names (from the import
    path as it is; the current folder is not added) or file paths (``./face_blur.py``)."""
    from pipeline import plugins

    for m in modules or []:
        try:
            plugins.load(m)
        except plugins.PluginError as e:
            raise CliError(str(e)) from e


def check_side_packets(graph, path: Path, values: dict[str, Any]) -> None:
    """Refuses a ``--set`` key that the graph does not declare, offering the closest names."""
    declared = set(declared_side_packets(graph))
    for key in values:
        if key not in declared:
            hint = did_you_mean(key, sorted(declared), cutoff=0.5) or (
                f"; it declares {', '.join(sorted(declared))}" if declared else "; it declares none")
            raise CliError(f"bad --set '{key}': {path} declares no side packet '{key}'{hint}")


def declared_side_packets(graph) -> dict[str, Any]:
    return dict(graph.spec.side_packets)


def load_graph(ref: str, plugins: list[str] | None = None, trust: bool = False,
               graph_path: list[str] | None = None):
    """Resolves, imports plugins and loads a graph (``trust``: import the plugins it names);
    returns (Graph, path)."""
    from pipeline import Graph

    path = resolve_graph(ref, graph_path)
    load_plugins(plugins)
    return Graph.from_yaml(path, search_paths=search_dirs(graph_path), trust=trust), path


def load_or_exit(ref: str, plugins: list[str] | None = None, sets: list[str] | None = None, trust: bool = False,
                 *, fed: bool = False, graph_path: list[str] | None = None):
    """What every graph command does first: parses ``--set``, imports plugins, loads the graph and
    checks the ``--set`` keys against it (and, with ``fed``, that it has no inputs only Python could
    feed: the commands that run it); returns (Graph, path, side packets) or exits with the
    one-line cause (status 2 for the command line, 1 for the graph)."""
    from pipeline import GraphConfigError

    try:
        sides = parse_sets(sets)
        g, path = load_graph(ref, plugins, trust, graph_path)
        check_side_packets(g, path, sides)
        if fed:
            check_fed(g, path)
    except CliError as e:
        raise fail(str(e), e.code)
    except GraphConfigError as e:
        raise fail(config_message(e), EXIT_FAILED)
    return g, path, sides


def run_flags(graph, path: Path, sides: dict[str, Any], pace: str | None, loop: bool) -> dict[str, Any]:
    """``--pace`` and ``--loop`` as the graph's ``pace`` and ``loop`` side packets (what the ready
    graphs hand to their source); a graph that declares none of that name is told how to."""
    flags = {k: v for k, v in (("pace", pace), ("loop", True if loop else None)) if v is not None}
    declared = declared_side_packets(graph)
    for key, value in flags.items():
        if key not in declared:
            raise CliError(f"--{key}: {path} declares no side packet '{key}'; declare it (side_packets: "
                           f"{{{key}: {'fast' if key == 'pace' else 'false'}}}) and give it to the source "
                           f"({key}: ${key} in its options)")
    return {**sides, **flags}


def check_fed(graph, path: Path) -> None:
    """Refuses a graph with declared ``inputs:``: on the command line nothing feeds them, and the
    run would wait for packets that never come."""
    inputs = list(graph.spec.inputs)
    if inputs:
        name = graph.name or path.stem
        raise CliError(
            f"graph '{name}' ({path}) reads inputs that nothing feeds from the command line: "
            f"{', '.join(inputs)}; use it as a node of another graph (`- subgraph: {name}` with "
            f"inputs: {{{', '.join(f'{i.upper()}: ...' for i in inputs)}}}) or feed it from Python "
            "(Graph.add_packet)", EXIT_FAILED)


def plugins_or_exit(modules: list[str] | None) -> None:
    """``load_plugins`` for a command: a plugin that does not import ends it with the cause."""
    try:
        load_plugins(modules)
    except CliError as e:
        raise fail(str(e), e.code)


def _print_error(message: str) -> None:
    from apps.errors import sync_native_stderr

    lines = str(message).splitlines() or [""]
    sync_native_stderr()  # a native line written before the failure is printed before its line
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


def stdout_console():
    """The console for tables: the terminal's width, or 120 columns in a pipe or a log."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)
