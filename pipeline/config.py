"""Graph files: safe YAML loading with line numbers, normalisation, subgraphs and validation.

A graph file is data: it is read with a safe loader (no tags that construct objects) and names
calculators only through the registry. Every problem is collected, each with its file and line,
and reported at once in one ``GraphConfigError`` before anything runs.
"""

from __future__ import annotations

import functools
import graphlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any as _Any

from . import plugins as _plugins
from . import registry
from .calculator import Any, type_name, types_compatible
from .errors import GraphConfigError, Problem, did_you_mean
from .graph_yaml import LDict, LList, decode, load_yaml  # noqa: F401 - LDict/LList/load_yaml are used by callers

OVERFLOW_POLICIES = ("block", "drop_oldest", "reject")
POLICIES = ("sync", "immediate", "latest")
DEFAULT_CAPACITY = 100
# Limits on what a graph file may ask for (docs/graphs.md, "Limits"); YAML's own are in graph_yaml.
MAX_NODES = 100_000  # nodes, subgraphs inlined
MAX_SUBGRAPHS = 1_000  # subgraph inclusions in one graph, at any depth
MAX_SUBGRAPH_DEPTH = 8  # subgraphs inside subgraphs
MAX_THREADS = 1024  # threads of one executor
MAX_IN_FLIGHT = 1024  # max_in_flight of one node
MAX_CAPACITY = 1_000_000  # an input queue's capacity, and N of policy {latest: N}
_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_TAG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::(\d+))?$")
GRAPH_KEYS = ("name", "description", "inputs", "outputs", "side_packets", "nodes", "executors", "plugins")
NODE_KEYS = ("name", "calculator", "subgraph", "inputs", "outputs", "side_inputs", "side_outputs",
             "options", "policy", "executor", "max_in_flight", "comment", "when")


_NO_KEY = object()


def _line(obj, key=_NO_KEY, default=None):
    if key is not _NO_KEY and isinstance(obj, LDict):
        return obj.line_of(key)
    if isinstance(obj, (LDict, LList)):
        return obj.line
    return default


# ---------------------------------------------------------------------------------------------
# Specs


@dataclass
class InputSpec:
    tag: str
    stream: str
    back_edge: bool = False
    capacity: int = DEFAULT_CAPACITY
    overflow: str = "block"
    line: int | None = None


@dataclass
class NodeSpec:
    name: str
    calculator: str
    cls: type | None
    inputs: list[InputSpec]
    outputs: dict[str, str]
    side_inputs: dict[str, str]
    side_outputs: dict[str, str]
    options: dict
    policy: str
    latest_size: int
    executor: str
    max_in_flight: int
    file: str
    line: int | None
    option_lines: dict = field(default_factory=dict)
    comment: str = ""
    when: str | None = None  # side packet name: the node runs only when its value is set and true


@dataclass
class GraphSpec:
    name: str
    file: str
    inputs: list[str]
    outputs: list[str]
    side_packets: dict[str, _Any]
    executors: dict[str, int]
    plugins: list[str]
    nodes: list[NodeSpec]
    line_of_side_packet: dict = field(default_factory=dict)
    description: str = ""

    def producers(self) -> dict[str, tuple[NodeSpec | None, str]]:
        prod: dict[str, tuple[NodeSpec | None, str]] = {s: (None, "graph input") for s in self.inputs}
        for n in self.nodes:
            for tag, s in n.outputs.items():
                prod[s] = (n, tag)
        return prod

    def predecessors(self) -> dict[str, list[str]]:
        """Each node's producers over its inputs that are not back edges, each once, in input order."""
        prod = self.producers()
        preds: dict[str, list[str]] = {}
        for n in self.nodes:
            mine = preds.setdefault(n.name, [])
            for i in n.inputs:
                src = prod.get(i.stream)
                if src and src[0] is not None and not i.back_edge and src[0].name not in mine:
                    mine.append(src[0].name)
        return preds

    def topological_order(self) -> list[str]:
        """The node names, each after its producers (back edges left out): the order networkx's
        ``topological_sort`` gives on ``nx_graph(include_back_edges=False)`` (same rounds, same order
        within each; tests/pipeline/test_topological_order.py compares them), from the standard
        library's ``graphlib``, so loading and running a graph never imports networkx. A cycle raises
        ``graphlib.CycleError``."""
        ts: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
        for n in self.nodes:
            ts.add(n.name)
        for name, preds in self.predecessors().items():
            ts.add(name, *preds)
        return list(ts.static_order())

    def nx_graph(self, include_back_edges: bool = True):
        """The graph as a ``networkx.MultiDiGraph`` (one edge per input, attributes ``stream`` and
        ``back_edge``): networkx is imported only here."""
        import networkx as nx

        g = nx.MultiDiGraph()
        prod = self.producers()
        for n in self.nodes:
            g.add_node(n.name)
        for n in self.nodes:
            for i in n.inputs:
                src = prod.get(i.stream)
                if src and src[0] is not None and (include_back_edges or not i.back_edge):
                    g.add_edge(src[0].name, n.name, stream=i.stream, back_edge=i.back_edge)
        return g


def split_tag(tag: str) -> tuple[str, int | None]:
    m = _TAG.match(tag)
    if not m:
        raise ValueError(tag)
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


# ---------------------------------------------------------------------------------------------
# Loading


class _Collector:
    """The problems found while loading one graph, and what bounds the work of loading it."""

    def __init__(self, trust: bool = False):
        self.problems: list[Problem] = []
        self.trust = trust
        self.allowlist: list[str] | None = None  # the user's, read when a plugin first needs it
        self.unloaded: list[str] = []  # plugins named but not loaded (no consent, or import failed)
        self.subgraphs = 0  # inclusions so far
        self.nodes = 0  # nodes so far, subgraphs inlined
        self.including: list[str] = []  # the chain of subgraph files being inlined
        self.files: dict[str, _Any] = {}  # subgraph file -> its data, read once however often included
        self.too_big = False

    def add(self, file, line, message):
        self.problems.append(Problem(file, line, _LONG_QUOTED.sub(_shorten, message)))


_LONG_QUOTED = re.compile(r"'([^'\s]{200,})'")  # a quoted name of 200+ characters (prose has spaces)


def _shorten(m: re.Match) -> str:
    """A name quoted in a message, cut to a readable length (a graph file's names may be huge)."""
    text = m.group(1)
    return f"'{text[:50]}...{text[-12:]}' ({len(text):,} characters)"


def parse(data: _Any, file: str, search_paths: list[Path] | None = None,
          _problems: _Collector | None = None, _depth: int = 0, *, trust: bool = False) -> GraphSpec:
    """Normalises a graph mapping into a ``GraphSpec``, inlining subgraphs; raises on problems.

    ``trust``: import the plugins the graph names without asking (see ``pipeline.plugins``).
    """
    pc = _problems or _Collector(trust)
    spec = _parse(data, file, pc, search_paths or [], _depth)
    if _problems is None:
        _validate(spec, pc)
        if pc.problems:
            raise GraphConfigError(pc.problems)
    return spec


def _as_list(v, file, line, what, pc) -> list[str]:
    """A list of names (a single name is a list of one); anything else is a problem."""
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        out = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                out.append(item)
            else:
                pc.add(file, v.line_of(i) if isinstance(v, LList) else line,
                       f"'{what}' must list names; item {i + 1} is {_kind(item)}")
        return out
    pc.add(file, line, f"'{what}' must be a list of names, got {_kind(v)}")
    return []


def _kind(v) -> str:
    """What a YAML value is, in words, for a message."""
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"
    if isinstance(v, str):
        return f"the text {v!r}" if len(v) <= 40 else "a text"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _bounded_int(v, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _shown(v) -> str:
    """A value for a message, never longer than a line (a value may be huge)."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


_FALSE_WORDS = ("false", "no", "off")
_TRUE_WORDS = ("true", "yes", "on")


def as_bool(v) -> bool | None:
    """A value where the graph expects a boolean: true/false, or the words yes/no/on/off (any case)
    that YAML 1.1 read as booleans; None when it is none of these (the caller reports it)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        w = v.strip().lower()
        if w in _TRUE_WORDS:
            return True
        if w in _FALSE_WORDS:
            return False
    return None


def switched_on(value) -> bool:
    """Whether a node with ``when: $name`` runs for this side packet value: it runs unless the value is
    null, false, 0, empty, or the text false/no/off (so ``--set display=off`` switches it off)."""
    if isinstance(value, str):
        return bool(value.strip()) and value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def _parse(data, file, pc: _Collector, search_paths, depth) -> GraphSpec:
    if not isinstance(data, dict):
        what = "empty" if data is None else _kind(data)
        pc.add(file, _line(data, default=1), f"a graph file must be a mapping with a 'nodes' list; this one is {what}")
        return GraphSpec("graph", file, [], [], {}, {}, [], [])
    for key in data:
        if key not in GRAPH_KEYS:
            pc.add(file, _line(data, key), f"unknown graph key {_shown(key)} (allowed: {', '.join(GRAPH_KEYS)})")
    name = data.get("name")
    if name is not None and not isinstance(name, (str, int, float)):
        pc.add(file, _line(data, "name"), f"'name' must be a text, got {_kind(name)}")
        name = None
    name = str(name or Path(file).stem)
    inputs = _as_list(data.get("inputs"), file, _line(data, "inputs"), "inputs", pc)
    outputs = _as_list(data.get("outputs"), file, _line(data, "outputs"), "outputs", pc)
    sp = data.get("side_packets") or {}
    side_packets: dict[str, _Any] = {}
    sp_lines = {}
    if isinstance(sp, list):
        for i, s in enumerate(sp):
            if not isinstance(s, str):
                pc.add(file, sp.line_of(i) if isinstance(sp, LList) else _line(data, "side_packets"),
                       f"'side_packets' must list names; item {i + 1} is {_kind(s)}")
                continue
            side_packets[s] = None
            sp_lines[s] = sp.line_of(i) if isinstance(sp, LList) else _line(data, "side_packets")
    elif isinstance(sp, dict):
        for k, v in sp.items():
            side_packets[str(k)] = v
            sp_lines[str(k)] = _line(sp, k)
    else:
        pc.add(file, _line(data, "side_packets"), f"'side_packets' must be a mapping name: default, got {_kind(sp)}")
    executors: dict[str, int] = {}
    ex = data.get("executors") or {}
    if not isinstance(ex, dict):
        pc.add(file, _line(data, "executors"), f"'executors' must be a mapping name: {{threads: N}}, got {_kind(ex)}")
        ex = {}
    for k, v in ex.items():
        if isinstance(v, dict):
            for key in v:
                if key != "threads":
                    pc.add(file, _line(v, key, _line(ex, k)), f"executor {_shown(str(k))}: unknown key {_shown(key)} (allowed: threads)")
        threads = v.get("threads", 1) if isinstance(v, dict) else v
        if not _bounded_int(threads, 1, MAX_THREADS):
            pc.add(file, _line(v, "threads", _line(ex, k)),
                   f"executor {_shown(str(k))}: threads must be an integer from 1 to {MAX_THREADS}, got {_shown(threads)}")
            threads = 1
        executors[str(k)] = threads
    plugins = _as_list(data.get("plugins"), file, _line(data, "plugins"), "plugins", pc)
    _load_plugins(plugins, data, file, pc)
    spec = GraphSpec(name, file, inputs, outputs, side_packets, executors, plugins, [],
                     sp_lines, str(data.get("description") or ""))
    nodes = data.get("nodes")
    if nodes is None:
        pc.add(file, _line(data), "the graph has no 'nodes' list")
        nodes = []
    if not isinstance(nodes, list):
        pc.add(file, _line(data, "nodes"), f"'nodes' must be a list, got {_kind(nodes)}")
        nodes = []
    used_names: dict[str, int] = {}
    for idx, nd in enumerate(nodes):
        line = nodes.line_of(idx) if isinstance(nodes, LList) else None
        if pc.too_big:
            break
        if not isinstance(nd, dict):
            pc.add(file, line, f"node #{idx + 1} must be a mapping with a 'calculator', got {_kind(nd)}")
            continue
        if "subgraph" in nd:
            _inline_subgraph(spec, nd, file, line, pc, search_paths, depth, used_names)
            continue
        pc.nodes += 1
        if pc.nodes > MAX_NODES:
            pc.too_big = True
            pc.add(file, line, f"the graph has more than {MAX_NODES:,} nodes (subgraphs included)")
            break
        node = _parse_node(nd, idx, file, line, pc, used_names)
        if node is not None:
            spec.nodes.append(node)
    return spec


def _load_plugins(plugins: list[str], data, file: str, pc: _Collector) -> None:
    """Imports the graph's plugins that the user consented to (see ``pipeline.plugins``); every other
    one is a problem that says how to consent."""
    base_dir = Path(file).resolve().parent if file and not file.startswith("<") else None
    listed = data.get("plugins")
    for i, ref in enumerate(plugins):
        line = listed.line_of(i) if isinstance(listed, LList) else _line(data, "plugins")
        if _plugins.is_loaded(ref, base_dir):
            continue
        if not pc.trust:
            if pc.allowlist is None:
                try:
                    pc.allowlist = _plugins.allowlist()
                except GraphConfigError as e:
                    pc.problems.extend(e.problems)
                    pc.allowlist = []
            if not _plugins.is_allowed(ref, base_dir, pc.allowlist):
                pc.unloaded.append(ref)
                pc.add(file, line, f"plugin '{ref}' is not loaded: {_plugins.consent_hint(ref)}")
                continue
        try:
            _plugins.load(ref, base_dir)
        except _plugins.PluginError as e:
            pc.unloaded.append(ref)
            pc.add(file, line, str(e))


def _unique_name(base: str, used: dict[str, int]) -> str:
    if base not in used:
        used[base] = 1
        return base
    used[base] += 1
    name = f"{base}_{used[base]}"
    while name in used:
        used[base] += 1
        name = f"{base}_{used[base]}"
    used[name] = 1
    return name


def _parse_node(nd: dict, idx: int, file: str, line, pc: _Collector, used_names) -> NodeSpec | None:
    for key in nd:
        if key not in NODE_KEYS:
            pc.add(file, _line(nd, key), f"unknown node key {_shown(key)} (allowed: {', '.join(NODE_KEYS)})")
    calc_name = nd.get("calculator")
    if not isinstance(calc_name, str) or not calc_name:
        got = "" if calc_name is None else f", got {_kind(calc_name)}"
        pc.add(file, _line(nd, "calculator", line),
               f"node #{idx + 1} has no 'calculator' (the name of a registered calculator){got}")
        return None
    cls = registry.find(calc_name)
    if cls is None:
        pc.add(file, _line(nd, "calculator"), registry.unknown_message(calc_name, pc.unloaded))
    explicit = nd.get("name")
    if explicit is not None and not isinstance(explicit, (str, int, float)):
        pc.add(file, _line(nd, "name"), f"node #{idx + 1}: 'name' must be a text, got {_kind(explicit)}")
        explicit = None
    if explicit is not None:
        name = str(explicit)
        if name in used_names:
            pc.add(file, _line(nd, "name"), f"node name '{name}' is used twice")
        used_names[name] = used_names.get(name, 0) + 1
    else:
        name = _unique_name(calc_name, used_names)
    default_policy = getattr(cls, "policy", "sync") if cls else "sync"
    policy, latest_size = _parse_policy(nd.get("policy", default_policy), file, _line(nd, "policy"), name, pc)
    executor = nd.get("executor", "default")
    if not isinstance(executor, str):
        pc.add(file, _line(nd, "executor"), f"node '{name}': 'executor' must name an executor, got {_kind(executor)}")
        executor = "default"
    mif = nd.get("max_in_flight", getattr(cls, "max_in_flight", 1) if cls else 1)
    if not _bounded_int(mif, 1, MAX_IN_FLIGHT):
        pc.add(file, _line(nd, "max_in_flight"),
               f"node '{name}': max_in_flight must be an integer from 1 to {MAX_IN_FLIGHT}, got {_shown(mif)}")
        mif = 1
    options = nd.get("options") or {}
    if not isinstance(options, dict):
        pc.add(file, _line(nd, "options"), f"node '{name}': 'options' must be a mapping, got {_kind(options)}")
        options = {}
    for k in [k for k in options if not isinstance(k, str)]:
        pc.add(file, _line(options, k), f"node '{name}': option names are text, got {_kind(k)}")
    options = {k: v for k, v in options.items() if isinstance(k, str)}
    opt_lines = {k: _line(nd.get("options"), k) for k in options}
    inputs = _parse_inputs(nd.get("inputs"), cls, name, file, _line(nd, "inputs", line), pc)
    outputs = _parse_names(nd.get("outputs"), cls, "outputs", name, file, _line(nd, "outputs", line), pc)
    side_inputs = _parse_names(nd.get("side_inputs"), cls, "side_inputs", name, file, _line(nd, "side_inputs", line), pc)
    side_outputs = _parse_names(nd.get("side_outputs"), cls, "side_outputs", name, file, _line(nd, "side_outputs", line), pc)
    when = None
    if "when" in nd:
        m = _REF.match(str(nd["when"])) if isinstance(nd["when"], str) else None
        if m is None:
            pc.add(file, _line(nd, "when"), f"node '{name}': 'when' must name a side packet as $name, "
                                            f"got {_shown(nd['when'])}")
        else:
            when = m.group(1)
    return NodeSpec(name, calc_name, cls, inputs, outputs, side_inputs, side_outputs, dict(options), policy,
                    latest_size, executor, mif, file, line, opt_lines, str(nd.get("comment") or ""), when)


def _parse_policy(p, file, line, name, pc) -> tuple[str, int]:
    if isinstance(p, str):
        if p == "latest":
            return "latest", 1
        if p in POLICIES:
            return p, 1
    elif isinstance(p, dict) and len(p) == 1 and "latest" in p:
        n = p["latest"]
        if _bounded_int(n, 1, MAX_CAPACITY):
            return "latest", n
        pc.add(file, _line(p, "latest", line), f"node '{name}': policy {{latest: N}} keeps N timestamps, an integer "
                                               f"from 1 to {MAX_CAPACITY:,}; got {_shown(n)}")
        return "sync", 1
    pc.add(file, line, f"node '{name}': unknown policy {_shown(p)} (use sync, immediate, latest or {{latest: N}})")
    return "sync", 1


def _port_names(cls, kind) -> dict:
    return dict(getattr(cls, kind, {}) or {})


def _canonical_tags(items: list, cls, kind, name, file, line, pc) -> list[tuple[str, _Any, int | None]]:
    """Turns a list or mapping of port wiring into (tag, value, line) with canonical tags."""
    out = []
    if isinstance(items, list):
        ports = _port_names(cls, kind) if cls else {}
        order = list(ports)
        for i, v in enumerate(items):
            ln = items.line_of(i) if isinstance(items, LList) else line
            if cls is None:
                out.append((f"#{i}", v, ln))
                continue
            if len(order) == 1 and ports[order[0]].multiple:
                out.append((f"{order[0]}:{i}", v, ln))
            elif i < len(order):
                tag = order[i]
                out.append((f"{tag}:0" if ports[tag].multiple else tag, v, ln))
            elif order and ports[order[-1]].multiple:
                base = order[-1]
                out.append((f"{base}:{i - len(order) + 1}", v, ln))
            else:
                pc.add(file, ln, f"node '{name}': {cls.name} has {len(order)} {kind} "
                                 f"({', '.join(order) or 'none'}), but {len(items)} are wired by position")
        return out
    if isinstance(items, dict):
        for k, v in items.items():
            out.append((str(k), v, _line(items, k, line)))
        return out
    pc.add(file, line, f"node '{name}': '{kind}' must be a list of names or a mapping TAG: name, got {_kind(items)}")
    return []


def _check_tag(tag: str, cls, kind, name, file, line, pc) -> str | None:
    if cls is None:  # a calculator not found: its positions (#0, #1, ...) kept, nothing to check them against
        return tag
    ports = _port_names(cls, kind)
    try:
        base, index = split_tag(tag)
    except ValueError:
        pc.add(file, line, f"node '{name}': '{tag}' is not a port tag (TAG or TAG:N)")
        return None
    port = ports.get(base)
    if port is None:
        hint = did_you_mean(base, ports, n=2, cutoff=0.4)
        pc.add(file, line, f"node '{name}': {cls.name} has no {kind[:-1].replace('_', ' ')} port '{base}'"
                           f" (it has: {', '.join(ports) or 'none'}){hint}")
        return None
    if index is not None and not getattr(port, "multiple", False):
        pc.add(file, line, f"node '{name}': port '{base}' of {cls.name} is not indexed; write '{base}', not '{tag}'")
        return None
    if index is None and getattr(port, "multiple", False):
        return f"{base}:0"
    return tag


def _parse_inputs(items, cls, name, file, line, pc) -> list[InputSpec]:
    if items is None:
        return []
    result = []
    seen = set()
    for tag, v, ln in _canonical_tags(items, cls, "inputs", name, file, line, pc):
        tag = _check_tag(tag, cls, "inputs", name, file, ln, pc)
        if tag is None:
            continue
        if tag in seen:
            pc.add(file, ln, f"node '{name}': input '{tag}' is wired twice")
        seen.add(tag)
        if isinstance(v, str):
            result.append(InputSpec(tag, v, line=ln))
        elif isinstance(v, dict):
            for k in v:
                if k not in ("stream", "back_edge", "capacity", "overflow"):
                    pc.add(file, _line(v, k, ln), f"node '{name}': input '{tag}' has unknown key '{k}' "
                                                  "(allowed: stream, back_edge, capacity, overflow)")
            stream = v.get("stream")
            if not isinstance(stream, str):
                got = "" if stream is None else f", got {_kind(stream)}"
                pc.add(file, _line(v, "stream", ln), f"node '{name}': input '{tag}' needs 'stream: NAME'{got}")
                continue
            cap = v.get("capacity", DEFAULT_CAPACITY)
            if not _bounded_int(cap, 1, MAX_CAPACITY):
                pc.add(file, _line(v, "capacity", ln), f"node '{name}': input '{tag}': capacity must be an integer "
                                                       f"from 1 to {MAX_CAPACITY:,}, got {_shown(cap)}")
                cap = DEFAULT_CAPACITY
            ov = v.get("overflow", "block")
            if not isinstance(ov, str) or ov not in OVERFLOW_POLICIES:
                pc.add(file, _line(v, "overflow", ln), f"node '{name}': input '{tag}': unknown overflow policy "
                                                       f"{_shown(ov)} (use {', '.join(OVERFLOW_POLICIES)})")
                ov = "block"
            back_edge = as_bool(v.get("back_edge", False))
            if back_edge is None:
                pc.add(file, _line(v, "back_edge", ln), f"node '{name}': input '{tag}': back_edge must be true or "
                                                        f"false, got {_shown(v.get('back_edge'))}")
                back_edge = False
            result.append(InputSpec(tag, stream, back_edge, cap, ov, ln))
        else:
            pc.add(file, ln, f"node '{name}': input '{tag}' must be a stream name or a mapping with 'stream', "
                             f"got {_kind(v)}")
    return result


def _parse_names(items, cls, kind, name, file, line, pc) -> dict[str, str]:
    """Outputs (stream names) and side inputs/outputs (side packet names): {canonical tag: name}."""
    if items is None:
        return {}
    result = {}
    what = "a stream name" if kind == "outputs" else "a side packet name"
    for tag, v, ln in _canonical_tags(items, cls, kind, name, file, line, pc):
        tag = _check_tag(tag, cls, kind, name, file, ln, pc)
        if tag is None:
            continue
        if not isinstance(v, str):
            pc.add(file, ln, f"node '{name}': {kind[:-1].replace('_', ' ')} '{tag}' must be {what}, got {_kind(v)}")
            continue
        result[tag] = v
    return result


# ---------------------------------------------------------------------------------------------
# Subgraphs


@functools.lru_cache(maxsize=1)
def _builtin_graph_dirs() -> tuple[Path, ...]:
    return tuple(builtin_graph_dirs_uncached())


def builtin_graph_dirs() -> list[Path]:
    """The folders of the ready graphs (looked up once per process; see ``builtin_graph_dirs_uncached``)."""
    return list(_builtin_graph_dirs())


def builtin_graph_dirs_uncached() -> list[Path]:
    """The folders of the ready graphs: the packages of the ``vpipe.graphs`` entry point group, else
    the ``graphs`` package of a source tree; found without importing anything."""
    import importlib.util
    from importlib.metadata import entry_points

    names = [ep.value.split(":")[0] for ep in entry_points(group="vpipe.graphs")] or ["graphs"]
    dirs = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        for loc in (spec.submodule_search_locations or []) if spec is not None else []:
            dirs.append(Path(loc))
    return dirs


def graph_search_path(search_paths: list[Path] | None = None) -> list[Path]:
    """Where a graph named without a path is looked up, in order: ``search_paths`` (the caller's,
    e.g. ``--graph-path``), the folders of ``$VPIPE_GRAPH_PATH`` (separated like ``PATH``), then
    the built-in graphs."""
    env = [Path(p) for p in os.environ.get("VPIPE_GRAPH_PATH", "").split(os.pathsep) if p]
    seen, out = set(), []
    for d in [*(Path(p) for p in (search_paths or [])), *env, *builtin_graph_dirs()]:
        key = os.path.abspath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def graph_names(search_paths: list[Path] | None = None) -> list[str]:
    """The names (file stems) of every graph found on the search path."""
    return sorted({p.stem for d in graph_search_path(search_paths) if d.is_dir() for p in d.iterdir()
                   if p.suffix in (".yaml", ".yml") and p.is_file()})


def find_graph_file(ref: str, base_dir: Path | None, search_paths: list[Path] | None = None) -> Path | None:
    """The file of a graph named ``ref`` (a name, or a ``.yaml`` path): beside ``base_dir`` (the
    including file's folder) first, then on ``graph_search_path(search_paths)``."""
    candidates = []
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        candidates += [p] if p.is_absolute() else ([base_dir / p] if base_dir else []) + [p]
    else:
        for d in ([base_dir] if base_dir else []) + graph_search_path(search_paths):
            candidates += [d / f"{ref}.yaml", d / f"{ref}.yml"]
    for c in candidates:
        try:
            if c.is_file():
                return c
        except (OSError, ValueError):  # a name too long for the file system, or with a NUL
            continue
    return None


def not_found_message(ref: str, base_dir: Path | None, search_paths: list[Path] | None = None) -> str:
    """Says where a graph named ``ref`` was looked for, with the closest names found there."""
    where = ", ".join(str(d) for d in graph_search_path(search_paths)) or "no search path"
    beside = f"beside {base_dir} and " if base_dir else ""
    return f"looked {beside}in {where}{did_you_mean(ref, graph_names(search_paths))}"


# _read_graph_file's answer for a file it could not read, its problem added (None is an empty file's data)
_UNREADABLE = object()


def _read_graph_file(path: Path, file: str, line, pc: _Collector):
    """A graph file's data (None for an empty file, which ``_parse`` reports), or ``_UNREADABLE``
    after adding the problem (unreadable, not UTF-8, bad YAML)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        pc.add(file, line, f"cannot read graph file {path}: {e.strerror or e}")
        return _UNREADABLE
    try:
        return load_yaml(decode(data, str(path)), str(path))
    except GraphConfigError as e:
        pc.problems.extend(e.problems)
        return _UNREADABLE


def _inline_subgraph(spec: GraphSpec, nd: dict, file, line, pc: _Collector, search_paths, depth, used_names):
    ref = nd.get("subgraph")
    if not isinstance(ref, str) or not ref:
        pc.add(file, _line(nd, "subgraph", line), f"'subgraph' must name a graph file, got {_kind(ref)}")
        return
    if depth >= MAX_SUBGRAPH_DEPTH:
        pc.add(file, _line(nd, "subgraph", line), f"subgraph '{ref}' nests more than {MAX_SUBGRAPH_DEPTH} levels deep")
        return
    pc.subgraphs += 1
    if pc.subgraphs > MAX_SUBGRAPHS:
        pc.too_big = True
        pc.add(file, _line(nd, "subgraph", line), f"the graph includes more than {MAX_SUBGRAPHS:,} subgraphs "
                                                  "(counting every inclusion, at any depth)")
        return
    base_dir = Path(file).parent if file and not file.startswith("<") else None
    path = find_graph_file(ref, base_dir, search_paths)
    if path is None:
        pc.add(file, _line(nd, "subgraph", line), f"subgraph '{ref}' not found ({not_found_message(ref, base_dir, search_paths)})")
        return
    key = str(path.resolve())
    if key in pc.including:
        chain = " -> ".join(Path(f).name for f in pc.including[pc.including.index(key):] + [key])
        pc.add(file, _line(nd, "subgraph", line), f"subgraph '{ref}' includes itself ({chain})")
        return
    if key not in pc.files:
        pc.files[key] = _read_graph_file(path, file, _line(nd, "subgraph", line), pc)
    data = pc.files[key]
    if data is _UNREADABLE:  # (an empty file is parsed: it is reported as one, not left out)
        return
    pc.including.append(key)
    try:
        sub = _parse(data, str(path), pc, search_paths, depth + 1)
    finally:
        pc.including.pop()
    label = nd.get("name")
    prefix = _unique_name(str(label) if isinstance(label, (str, int, float)) and label != "" else sub.name, used_names)
    # Outer wiring: tags are the subgraph's stream names upper-cased, or positions.
    def wiring(key, names):
        items = nd.get(key)
        mapping = {}
        if items is None:
            return mapping
        if isinstance(items, list):
            if len(items) > len(names):
                pc.add(file, _line(nd, key, line), f"subgraph '{ref}' has {len(names)} {key}, {len(items)} wired")
            pairs = [(names[i], v, items.line_of(i) if isinstance(items, LList) else _line(nd, key, line))
                     for i, v in enumerate(items[: len(names)])]
        elif isinstance(items, dict):
            upper = {n.upper(): n for n in names}
            pairs = []
            for k, v in items.items():
                inner = upper.get(str(k).upper())
                if inner is None:
                    pc.add(file, _line(items, k, line), f"subgraph '{ref}' has no {key[:-1]} {_shown(k)} "
                                                        f"(it has: {', '.join(n.upper() for n in names) or 'none'})")
                    continue
                pairs.append((inner, v, _line(items, k, line)))
        else:
            pc.add(file, _line(nd, key, line), f"subgraph '{ref}': '{key}' must be a list of streams or a mapping "
                                               f"NAME: stream, got {_kind(items)}")
            return mapping
        for inner, v, ln in pairs:
            stream = v.get("stream") if isinstance(v, dict) else v
            if not isinstance(stream, str):
                pc.add(file, ln, f"subgraph '{ref}': {key[:-1]} '{inner}' must be wired to a stream name, got {_kind(v)}")
                continue
            mapping[inner] = stream
        return mapping

    in_map = wiring("inputs", sub.inputs)
    out_map = wiring("outputs", sub.outputs)
    side_map = {}
    side = nd.get("side_inputs")
    if isinstance(side, dict):
        for k, v in side.items():
            if isinstance(v, str):
                side_map[str(k).lower()] = v
            else:
                pc.add(file, _line(side, k, line), f"subgraph '{ref}': side input {_shown(k)} must name a side "
                                                   f"packet, got {_kind(v)}")
    elif side is not None:
        pc.add(file, _line(nd, "side_inputs", line), f"subgraph '{ref}': 'side_inputs' must be a mapping "
                                                     f"INNER: outer (side packet names), got {_kind(side)}")

    def rename(stream: str) -> str:
        if stream in in_map:
            return in_map[stream]
        if stream in out_map:
            return out_map[stream]
        return f"{prefix}/{stream}"

    for k, v in sub.side_packets.items():
        outer = side_map.get(k.lower(), k)
        if outer not in spec.side_packets:
            spec.side_packets[outer] = v
            spec.line_of_side_packet[outer] = sub.line_of_side_packet.get(k)
    for n in sub.nodes:
        n.name = f"{prefix}/{n.name}"
        used_names[n.name] = 1
        for i in n.inputs:
            i.stream = rename(i.stream)
        n.outputs = {t: rename(s) for t, s in n.outputs.items()}
        n.side_inputs = {t: side_map.get(s.lower(), s) for t, s in n.side_inputs.items()}
        n.side_outputs = {t: side_map.get(s.lower(), s) for t, s in n.side_outputs.items()}
        if n.when is not None:
            n.when = side_map.get(n.when.lower(), n.when)
        n.options = {k: (f"${side_map.get(m.group(1).lower(), m.group(1))}" if isinstance(v, str) and (m := _REF.match(v)) else v)
                     for k, v in n.options.items()}
        spec.nodes.append(n)
    for name, threads in sub.executors.items():
        spec.executors.setdefault(name, threads)


# ---------------------------------------------------------------------------------------------
# Validation


def option_refs(options: dict) -> dict[str, str]:
    """{option key: side packet name} for options written as ``$name``."""
    return {k: m.group(1) for k, v in options.items() if isinstance(v, str) and (m := _REF.match(v))}


def schema_text(model) -> str:
    parts = []
    for fname, f in model.model_fields.items():
        ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        if f.is_required():
            default = "required"
        else:  # a field with a default_factory has no plain default (pydantic's PydanticUndefined)
            default = f"default {f.default_factory()!r}" if f.default_factory is not None else f"default {f.default!r}"
        parts.append(f"{fname}: {ann} ({default})")
    return "{" + "; ".join(parts) + "}"


def validate_options(node: NodeSpec, options: dict, skip: set[str] = frozenset()) -> list[tuple[int | None, str]]:
    """Validates ``options`` against the node's schema; returns (line, message) problems."""
    cls = node.cls
    model = getattr(cls, "Options", None)
    if model is None:
        if options:
            return [(node.line, f"node '{node.name}': {cls.name} takes no options, got {', '.join(options)}")]
        return []
    from pydantic import ValidationError

    out: list[tuple[int | None, str]] = []
    if model.model_config.get("extra") != "allow":
        # A plain BaseModel ignores keys it does not know: a typo would run with the default. Every
        # calculator's options refuse them, as those declared with extra="forbid" do.
        known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
        for key in options:
            if key not in known and key not in skip:
                out.append((node.option_lines.get(key, node.line),
                            f"node '{node.name}': option '{key}': unknown option{did_you_mean(key, known)}; "
                            f"{cls.name} options: {schema_text(model)}"))
        if out:
            return out
    try:
        model.model_validate({k: v for k, v in options.items() if k not in skip})
    except ValidationError as e:
        for err in e.errors():
            loc = err.get("loc") or ()
            if loc and str(loc[0]) in skip:  # given as $name: checked at start, with the side packet's value
                continue
            msg = err.get("msg")
            if err.get("type") == "extra_forbidden":
                msg = "unknown option"
            elif err.get("type") == "value_error" and str(msg).startswith("Value error, "):
                msg = str(msg)[len("Value error, "):]  # a validator's own sentence
            if not loc:  # a check of the options together (a model validator): at the node's line
                out.append((node.line, f"node '{node.name}': options: {msg}; {cls.name} options: {schema_text(model)}"))
                continue
            where = ".".join(str(x) for x in loc)
            got_s = "" if err.get("type") == "missing" else f" (got {_shown(err.get('input'))})"
            out.append((node.option_lines.get(str(loc[0]), node.line),
                        f"node '{node.name}': option '{where}': {msg}{got_s}; {cls.name} options: {schema_text(model)}"))
        return out
    return []


def _validate(spec: GraphSpec, pc: _Collector) -> None:
    file = spec.file
    # A node's problems name the file it was written in: an inlined subgraph's own (its lines are that file's)
    producers: dict[str, list[tuple[str, str, int | None]]] = {}
    for s in spec.inputs:
        producers.setdefault(s, []).append(("graph input", file, None))
    for n in spec.nodes:
        for tag, s in n.outputs.items():
            producers.setdefault(s, []).append((f"node '{n.name}' output {tag}", n.file, n.line))
    for s, prods in producers.items():
        if len(prods) > 1:
            pc.add(prods[1][1], prods[1][2], f"stream '{s}' has {len(prods)} producers "
                                             f"({'; '.join(p for p, _, _ in prods)}); a stream has exactly one producer")
    prod_map = spec.producers()
    side_available = set(spec.side_packets)
    for n in spec.nodes:
        for s in n.side_outputs.values():
            side_available.add(s)
    for n in spec.nodes:
        cls = n.cls
        for i in n.inputs:
            if i.stream not in prod_map:
                hint = (did_you_mean(i.stream, prod_map, n=2)
                        or "; produce it with a node output or declare it under 'inputs:'")
                pc.add(n.file, i.line, f"node '{n.name}': input {i.tag} reads stream '{i.stream}', which has no producer{hint}")
            elif cls is not None:
                src_node, src_tag = prod_map[i.stream]
                if src_node is not None and src_node.cls is not None:
                    ob, _ = split_tag(src_tag)
                    ib, _ = split_tag(i.tag)
                    ot = src_node.cls.outputs[ob].type
                    it = cls.inputs[ib].type
                    if not types_compatible(ot, it):
                        pc.add(n.file, i.line,
                               f"type mismatch on stream '{i.stream}': node '{src_node.name}' output {src_tag} "
                               f"carries {type_name(ot)}, but node '{n.name}' input {i.tag} takes {type_name(it)}")
        if cls is None:
            continue
        wired_in = {split_tag(i.tag)[0] for i in n.inputs}
        for tag, port in cls.inputs.items():
            if not port.optional and tag not in wired_in:
                pc.add(n.file, n.line, f"node '{n.name}': required input '{tag}' of {cls.name} is not connected")
        wired_side = set(n.side_inputs)
        for tag, port in cls.side_inputs.items():
            if not port.optional and tag not in wired_side:
                pc.add(n.file, n.line, f"node '{n.name}': required side input '{tag}' of {cls.name} is not connected")
        for tag, sp in n.side_inputs.items():
            if sp not in side_available:
                pc.add(n.file, n.line, f"node '{n.name}': side input {tag} names side packet '{sp}', which is not declared "
                                     "under 'side_packets:' nor produced by a node")
        refs = option_refs(n.options)
        for key, sp in refs.items():
            if sp not in side_available:
                pc.add(n.file, n.option_lines.get(key, n.line),
                       f"node '{n.name}': option '{key}' refers to side packet '${sp}', which is not declared under 'side_packets:'")
        if n.when is not None and n.when not in side_available:
            pc.add(n.file, n.line, f"node '{n.name}': 'when: ${n.when}' names a side packet that is not declared "
                                 "under 'side_packets:'")
        for line, msg in validate_options(n, n.options, skip=set(refs)):
            pc.add(n.file, line, msg)
        if n.executor != "default" and n.executor not in spec.executors:
            pc.add(n.file, n.line, f"node '{n.name}': unknown executor {_shown(n.executor)} (declare it under 'executors:')")
    for s in spec.outputs:
        if s not in prod_map:
            pc.add(file, None, f"graph output '{s}' is not produced by any node")
    # Cycles without a back edge: found by graphlib, named by networkx (the one import of it).
    try:
        spec.topological_order()
        cycle = None
    except graphlib.CycleError:
        import networkx as nx

        cycle = nx.find_cycle(spec.nx_graph(include_back_edges=False))
    if cycle:
        names = [e[0] for e in cycle] + [cycle[-1][1]]
        first = next((n for n in spec.nodes if n.name == cycle[-1][1]), None)
        pc.add(first.file if first else file, first.line if first else None,
               f"cycle without a back edge: {' -> '.join(names)}; mark the input that closes the loop "
               "with 'back_edge: true'")


_GRAPH_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def load(source, search_paths: list[Path] | None = None, *, trust: bool = False) -> GraphSpec:
    """Loads a graph from a path, the name of a graph on the search path (``face_detection``: see
    ``graph_search_path``), YAML text (str or bytes) or a mapping.

    ``trust``: import the plugins the graph names without asking (see ``pipeline.plugins``).
    """
    if isinstance(source, dict):
        return parse(source, "<dict>", search_paths, trust=trust)
    if isinstance(source, bytes):
        return parse(load_yaml(decode(source, "<string>"), "<string>"), "<string>", search_paths, trust=trust)
    if isinstance(source, str) and _GRAPH_NAME.match(source.strip()) and not source.strip().endswith((".yaml", ".yml")):
        name = source.strip()
        source = find_graph_file(name, None, search_paths)
        if source is None:
            raise GraphConfigError([Problem(name, None, "no graph file of that name "
                                                        f"({not_found_message(name, None, search_paths)})")])
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and source.strip().endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.is_file():
            what = "is a folder, not a graph file" if path.is_dir() else "graph file not found"
            raise GraphConfigError([Problem(str(path), None, what)])
        pc = _Collector(trust)
        data = _read_graph_file(path, str(path), None, pc)
        if pc.problems:
            raise GraphConfigError(pc.problems)
        pc.including.append(str(path.resolve()))
        spec = _parse(data, str(path), pc, search_paths or [], 0)
        _validate(spec, pc)
        if pc.problems:
            raise GraphConfigError(pc.problems)
        return spec
    return parse(load_yaml(str(source), "<string>"), "<string>", search_paths, trust=trust)
