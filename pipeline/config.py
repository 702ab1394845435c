"""Graph files: safe YAML loading with line numbers, normalisation, subgraphs and validation.

A graph file is data: it is read with a safe loader (no tags that construct objects) and names
calculators only through the registry. Every problem is collected, each with its file and line,
and reported at once in one ``GraphConfigError`` before anything runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any as _Any

import networkx as nx
import yaml

from . import registry
from .calculator import Any, type_name, types_compatible
from .errors import GraphConfigError, Problem, did_you_mean

OVERFLOW_POLICIES = ("block", "drop_oldest", "reject")
POLICIES = ("sync", "immediate", "latest")
DEFAULT_CAPACITY = 100
_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_TAG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::(\d+))?$")
GRAPH_KEYS = ("name", "description", "inputs", "outputs", "side_packets", "nodes", "executors", "plugins")
NODE_KEYS = ("name", "calculator", "subgraph", "inputs", "outputs", "side_inputs", "side_outputs",
             "options", "policy", "executor", "max_in_flight", "comment", "when")


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class LDict(dict):
    """A mapping that remembers the line of each key (1-based)."""

    line: int | None = None
    key_lines: dict

    def line_of(self, key) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LList(list):
    line: int | None = None
    item_lines: list

    def line_of(self, index: int) -> int | None:
        lines = getattr(self, "item_lines", [])
        return lines[index] if index < len(lines) else self.line


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    d = LDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        d[key] = loader.construct_object(value_node, deep=True)
        d.key_lines[key] = key_node.start_mark.line + 1
    return d


def _construct_sequence(loader, node):
    lst = LList(loader.construct_object(child, deep=True) for child in node.value)
    lst.line = node.start_mark.line + 1
    lst.item_lines = [child.start_mark.line + 1 for child in node.value]
    return lst


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, file: str) -> _Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise GraphConfigError([Problem(file, line, f"invalid YAML: {e.problem}")]) from None
    except yaml.YAMLError as e:
        raise GraphConfigError([Problem(file, None, f"invalid YAML: {e}")]) from None


def _line(obj, key=None, default=None):
    if key is not None and isinstance(obj, LDict):
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

    def nx_graph(self, include_back_edges: bool = True) -> nx.MultiDiGraph:
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
    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, file, line, message):
        self.problems.append(Problem(file, line, message))


def parse(data: _Any, file: str, search_paths: list[Path] | None = None,
          _problems: _Collector | None = None, _depth: int = 0) -> GraphSpec:
    """Normalises a graph mapping into a ``GraphSpec``, inlining subgraphs; raises on problems."""
    pc = _problems or _Collector()
    spec = _parse(data, file, pc, search_paths or [], _depth)
    if _problems is None:
        _validate(spec, pc)
        if pc.problems:
            raise GraphConfigError(pc.problems)
    return spec


def _as_list(v, file, line, what, pc) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return list(v)
    pc.add(file, line, f"'{what}' must be a list of names, got {type(v).__name__}")
    return []


def _parse(data, file, pc: _Collector, search_paths, depth) -> GraphSpec:
    if not isinstance(data, dict):
        pc.add(file, _line(data), "a graph file must be a mapping with a 'nodes' list")
        return GraphSpec("graph", file, [], [], {}, {}, [], [])
    for key in data:
        if key not in GRAPH_KEYS:
            pc.add(file, _line(data, key), f"unknown graph key '{key}' (allowed: {', '.join(GRAPH_KEYS)})")
    name = str(data.get("name") or Path(file).stem)
    inputs = [str(s) for s in _as_list(data.get("inputs"), file, _line(data, "inputs"), "inputs", pc)]
    outputs = [str(s) for s in _as_list(data.get("outputs"), file, _line(data, "outputs"), "outputs", pc)]
    sp = data.get("side_packets") or {}
    side_packets: dict[str, _Any] = {}
    sp_lines = {}
    if isinstance(sp, list):
        for i, s in enumerate(sp):
            side_packets[str(s)] = None
            sp_lines[str(s)] = _line(sp, None) if not isinstance(sp, LList) else sp.line_of(i)
    elif isinstance(sp, dict):
        for k, v in sp.items():
            side_packets[str(k)] = v
            sp_lines[str(k)] = _line(sp, k)
    else:
        pc.add(file, _line(data, "side_packets"), "'side_packets' must be a mapping name: default")
    executors: dict[str, int] = {}
    ex = data.get("executors") or {}
    if not isinstance(ex, dict):
        pc.add(file, _line(data, "executors"), "'executors' must be a mapping name: {threads: N}")
        ex = {}
    for k, v in ex.items():
        threads = v.get("threads", 1) if isinstance(v, dict) else v
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            pc.add(file, _line(ex, k), f"executor '{k}': threads must be a positive integer, got {threads!r}")
            threads = 1
        executors[str(k)] = threads
    plugins = [str(p) for p in _as_list(data.get("plugins"), file, _line(data, "plugins"), "plugins", pc)]
    for i, mod in enumerate(plugins):
        try:
            registry.load_plugin(mod)
        except Exception as e:  # noqa: BLE001 - report every import problem as config problem
            pl = data.get("plugins")
            pc.add(file, pl.line_of(i) if isinstance(pl, LList) else _line(data, "plugins"),
                   f"cannot import plugin module '{mod}': {type(e).__name__}: {e}")
    spec = GraphSpec(name, file, inputs, outputs, side_packets, executors, plugins, [],
                     sp_lines, str(data.get("description") or ""))
    nodes = data.get("nodes")
    if nodes is None:
        pc.add(file, _line(data), "the graph has no 'nodes' list")
        nodes = []
    if not isinstance(nodes, list):
        pc.add(file, _line(data, "nodes"), "'nodes' must be a list")
        nodes = []
    used_names: dict[str, int] = {}
    for idx, nd in enumerate(nodes):
        line = nodes.line_of(idx) if isinstance(nodes, LList) else None
        if not isinstance(nd, dict):
            pc.add(file, line, f"node #{idx + 1} must be a mapping with a 'calculator'")
            continue
        if "subgraph" in nd:
            _inline_subgraph(spec, nd, file, line, pc, search_paths, depth, used_names)
            continue
        node = _parse_node(nd, idx, file, line, pc, used_names)
        if node is not None:
            spec.nodes.append(node)
    return spec


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
            pc.add(file, _line(nd, key), f"unknown node key '{key}' (allowed: {', '.join(NODE_KEYS)})")
    calc_name = nd.get("calculator")
    if not isinstance(calc_name, str) or not calc_name:
        pc.add(file, line, f"node #{idx + 1} has no 'calculator' (the name of a registered calculator)")
        return None
    cls = registry.find(calc_name)
    if cls is None:
        pc.add(file, _line(nd, "calculator"), registry.unknown_message(calc_name))
    explicit = nd.get("name")
    if explicit is not None:
        name = str(explicit)
        if name in used_names:
            pc.add(file, _line(nd, "name"), f"node name '{name}' is used twice")
        used_names[name] = used_names.get(name, 0) + 1
    else:
        name = _unique_name(calc_name, used_names)
    default_policy = getattr(cls, "policy", "sync") if cls else "sync"
    policy, latest_size = _parse_policy(nd.get("policy", default_policy), file, _line(nd, "policy"), name, pc)
    executor = str(nd.get("executor", "default"))
    mif = nd.get("max_in_flight", getattr(cls, "max_in_flight", 1) if cls else 1)
    if not isinstance(mif, int) or isinstance(mif, bool) or mif < 1:
        pc.add(file, _line(nd, "max_in_flight"), f"node '{name}': max_in_flight must be a positive integer, got {mif!r}")
        mif = 1
    options = nd.get("options") or {}
    if not isinstance(options, dict):
        pc.add(file, _line(nd, "options"), f"node '{name}': 'options' must be a mapping")
        options = {}
    opt_lines = {k: _line(options, k) for k in options}
    inputs = _parse_inputs(nd.get("inputs"), cls, name, file, _line(nd, "inputs", line), pc)
    outputs = _parse_names(nd.get("outputs"), cls, "outputs", name, file, _line(nd, "outputs", line), pc)
    side_inputs = _parse_names(nd.get("side_inputs"), cls, "side_inputs", name, file, _line(nd, "side_inputs", line), pc)
    side_outputs = _parse_names(nd.get("side_outputs"), cls, "side_outputs", name, file, _line(nd, "side_outputs", line), pc)
    when = None
    if "when" in nd:
        m = _REF.match(str(nd["when"])) if isinstance(nd["when"], str) else None
        if m is None:
            pc.add(file, _line(nd, "when"), f"node '{name}': 'when' must name a side packet as $name, got {nd['when']!r}")
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
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
            return "latest", n
    pc.add(file, line, f"node '{name}': unknown policy {p!r} (use sync, immediate, latest or {{latest: N}})")
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
    pc.add(file, line, f"node '{name}': '{kind}' must be a list of streams or a mapping TAG: stream")
    return []


def _check_tag(tag: str, cls, kind, name, file, line, pc) -> str | None:
    if cls is None or tag.startswith("#"):
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
                pc.add(file, ln, f"node '{name}': input '{tag}' needs 'stream: NAME'")
                continue
            cap = v.get("capacity", DEFAULT_CAPACITY)
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                pc.add(file, _line(v, "capacity", ln), f"node '{name}': input '{tag}': capacity must be a positive integer, got {cap!r}")
                cap = DEFAULT_CAPACITY
            ov = v.get("overflow", "block")
            if ov not in OVERFLOW_POLICIES:
                pc.add(file, _line(v, "overflow", ln), f"node '{name}': input '{tag}': unknown overflow policy {ov!r} "
                                                       f"(use {', '.join(OVERFLOW_POLICIES)})")
                ov = "block"
            result.append(InputSpec(tag, stream, bool(v.get("back_edge", False)), cap, ov, ln))
        else:
            pc.add(file, ln, f"node '{name}': input '{tag}' must be a stream name or a mapping with 'stream'")
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
            pc.add(file, ln, f"node '{name}': {kind[:-1].replace('_', ' ')} '{tag}' must be {what}, got {v!r}")
            continue
        result[tag] = v
    return result


# ---------------------------------------------------------------------------------------------
# Subgraphs


def find_graph_file(ref: str, base_dir: Path | None, search_paths: list[Path]) -> Path | None:
    candidates = []
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        candidates += [p] if p.is_absolute() else ([base_dir / p] if base_dir else []) + [p]
    else:
        for d in ([base_dir] if base_dir else []) + list(search_paths):
            candidates += [d / f"{ref}.yaml", d / f"{ref}.yml"]
    for c in candidates:
        if c.is_file():
            return c
    return None


def _inline_subgraph(spec: GraphSpec, nd: dict, file, line, pc: _Collector, search_paths, depth, used_names):
    ref = str(nd.get("subgraph"))
    if depth > 8:
        pc.add(file, line, f"subgraph '{ref}' nests more than 8 levels (a subgraph including itself?)")
        return
    base_dir = Path(file).parent if file and not file.startswith("<") else None
    path = find_graph_file(ref, base_dir, search_paths)
    if path is None:
        pc.add(file, _line(nd, "subgraph", line), f"subgraph '{ref}' not found (looked beside {file} and in "
                                                  f"{', '.join(map(str, search_paths)) or 'no search path'})")
        return
    inner_pc = _Collector()
    sub = _parse(load_yaml(path.read_text(), str(path)), str(path), inner_pc, search_paths, depth + 1)
    pc.problems.extend(inner_pc.problems)
    prefix = _unique_name(str(nd.get("name") or sub.name), used_names)
    # Outer wiring: tags are the subgraph's stream names upper-cased, or positions.
    def wiring(key, names):
        items = nd.get(key)
        mapping = {}
        if items is None:
            return mapping
        if isinstance(items, list):
            if len(items) > len(names):
                pc.add(file, _line(nd, key, line), f"subgraph '{ref}' has {len(names)} {key}, {len(items)} wired")
            for i, v in enumerate(items[: len(names)]):
                mapping[names[i]] = v
        elif isinstance(items, dict):
            upper = {n.upper(): n for n in names}
            for k, v in items.items():
                inner = upper.get(str(k).upper())
                if inner is None:
                    pc.add(file, _line(items, k, line), f"subgraph '{ref}' has no {key[:-1]} '{k}' "
                                                        f"(it has: {', '.join(n.upper() for n in names)})")
                    continue
                mapping[inner] = v
        return mapping

    in_map = wiring("inputs", sub.inputs)
    out_map = wiring("outputs", sub.outputs)
    side_map = {}
    for k, v in (nd.get("side_inputs") or {}).items():
        side_map[str(k).lower()] = str(v)

    def rename(stream: str) -> str:
        if stream in in_map:
            v = in_map[stream]
            return v["stream"] if isinstance(v, dict) else str(v)
        if stream in out_map:
            return str(out_map[stream])
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
        default = "required" if f.is_required() else f"default {f.default!r}"
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

    try:
        model.model_validate({k: v for k, v in options.items() if k not in skip})
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc = err.get("loc") or ()
            key = str(loc[0]) if loc else ""
            if key in skip:
                continue
            if err.get("type") == "missing" and key in skip:
                continue
            where = ".".join(str(x) for x in loc)
            got = err.get("input")
            msg = err.get("msg")
            if err.get("type") == "extra_forbidden":
                msg = "unknown option"
            got_s = "" if err.get("type") in ("missing",) else f" (got {got!r})"
            out.append((node.option_lines.get(key, node.line),
                        f"node '{node.name}': option '{where}': {msg}{got_s}; {cls.name} options: {schema_text(model)}"))
        return out
    return []


def _validate(spec: GraphSpec, pc: _Collector) -> None:
    file = spec.file
    producers: dict[str, list[tuple[str, int | None]]] = {}
    for s in spec.inputs:
        producers.setdefault(s, []).append(("graph input", None))
    for n in spec.nodes:
        for tag, s in n.outputs.items():
            producers.setdefault(s, []).append((f"node '{n.name}' output {tag}", n.line))
    for s, prods in producers.items():
        if len(prods) > 1:
            pc.add(file, prods[1][1], f"stream '{s}' has {len(prods)} producers ({'; '.join(p for p, _ in prods)}); "
                                      "a stream has exactly one producer")
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
                pc.add(file, i.line, f"node '{n.name}': input {i.tag} reads stream '{i.stream}', which has no producer{hint}")
            elif cls is not None:
                src_node, src_tag = prod_map[i.stream]
                if src_node is not None and src_node.cls is not None:
                    ob, _ = split_tag(src_tag)
                    ib, _ = split_tag(i.tag)
                    ot = src_node.cls.outputs[ob].type
                    it = cls.inputs[ib].type
                    if not types_compatible(ot, it):
                        pc.add(file, i.line,
                               f"type mismatch on stream '{i.stream}': node '{src_node.name}' output {src_tag} "
                               f"carries {type_name(ot)}, but node '{n.name}' input {i.tag} takes {type_name(it)}")
        if cls is None:
            continue
        wired_in = {split_tag(i.tag)[0] for i in n.inputs}
        for tag, port in cls.inputs.items():
            if not port.optional and tag not in wired_in:
                pc.add(file, n.line, f"node '{n.name}': required input '{tag}' of {cls.name} is not connected")
        wired_side = set(n.side_inputs)
        for tag, port in cls.side_inputs.items():
            if not port.optional and tag not in wired_side:
                pc.add(file, n.line, f"node '{n.name}': required side input '{tag}' of {cls.name} is not connected")
        for tag, sp in n.side_inputs.items():
            if sp not in side_available:
                pc.add(file, n.line, f"node '{n.name}': side input {tag} names side packet '{sp}', which is not declared "
                                     "under 'side_packets:' nor produced by a node")
        refs = option_refs(n.options)
        for key, sp in refs.items():
            if sp not in side_available:
                pc.add(file, n.option_lines.get(key, n.line),
                       f"node '{n.name}': option '{key}' refers to side packet '${sp}', which is not declared under 'side_packets:'")
        if n.when is not None and n.when not in side_available:
            pc.add(file, n.line, f"node '{n.name}': 'when: ${n.when}' names a side packet that is not declared "
                                 "under 'side_packets:'")
        for line, msg in validate_options(n, n.options, skip=set(refs)):
            pc.add(file, line, msg)
        if n.executor != "default" and n.executor not in spec.executors:
            pc.add(file, n.line, f"node '{n.name}': unknown executor '{n.executor}' (declare it under 'executors:')")
    for s in spec.outputs:
        if s not in prod_map:
            pc.add(file, None, f"graph output '{s}' is not produced by any node")
    # Cycles without a back edge.
    g = spec.nx_graph(include_back_edges=False)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [e[0] for e in cycle] + [cycle[-1][1]]
        first = next((n for n in spec.nodes if n.name == cycle[-1][1]), None)
        pc.add(file, first.line if first else None,
               f"cycle without a back edge: {' -> '.join(names)}; mark the input that closes the loop "
               "with 'back_edge: true'")


def load(source, search_paths: list[Path] | None = None) -> GraphSpec:
    """Loads a graph from a path, YAML text or a mapping."""
    if isinstance(source, dict):
        return parse(source, "<dict>", search_paths)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and source.strip().endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.is_file():
            raise GraphConfigError([Problem(str(path), None, "graph file not found")])
        return parse(load_yaml(path.read_text(), str(path)), str(path), search_paths)
    return parse(load_yaml(str(source), "<string>"), "<string>", search_paths)
