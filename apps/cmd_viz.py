"""``vpipe viz GRAPH -o out.svg|png|html|mmd|dot``: a picture of a graph.

Each node is drawn with its name, calculator, input policy, executor and ``max_in_flight``, its
input ports on top and output ports below; each edge goes from an output port to an input port and
is labelled with its stream (and the queue's capacity and overflow policy when not the default).
A node switched by ``when: $name`` says so. Back edges are dashed and do not constrain the layout;
nodes sharing a named executor are boxed together; graph inputs (fed from Python) and declared
graph outputs are drawn as arrows in and out.

The picture is made by Graphviz ``dot`` (Debian package ``graphviz``) for ``.svg``/``.png``; the
Mermaid text (``.mmd``) needs nothing installed; ``.html`` embeds the Mermaid text, and the SVG
when ``dot`` is installed; ``.dot`` writes the Graphviz source.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import typer

from apps.common import EXIT_FAILED, PLUGIN_HELP, TRUST_HELP, CliError, fail, load_or_exit

DEFAULT_CAPACITY = 100
FORMATS = (".svg", ".png", ".html", ".mmd", ".dot")


def policy_text(policy: Any) -> str:
    """``"sync"``, ``{"latest": 2}`` or ``("latest", 2)`` → a short label."""
    if isinstance(policy, dict):
        return ", ".join(f"{k} {v}" for k, v in policy.items())
    if isinstance(policy, (tuple, list)):
        return " ".join(str(p) for p in policy)
    return str(policy or "sync")


def _queue_note(spec: dict) -> str:
    parts = []
    cap = spec.get("capacity")
    if cap is not None and cap != DEFAULT_CAPACITY:
        parts.append(f"cap {cap}")
    overflow = spec.get("overflow")
    if overflow and overflow != "block":
        parts.append(str(overflow))
    return ", ".join(parts)


def _node_notes(n: dict) -> str:
    notes = [policy_text(n.get("policy"))]
    executor = n.get("executor") or "default"
    if executor != "default":
        notes.append(f"executor {executor}")
    mif = n.get("max_in_flight") or 1
    if mif != 1:
        notes.append(f"in flight {mif}")
    if n.get("when"):
        notes.append(f"when ${n['when']}")
    return " · ".join(notes)


def wiring(topology: dict, graph_outputs: list[str] | None = None) -> dict:
    """Edges with their ports, from the nodes' port maps.

    Returns ``{"edges": [(src_node, src_tag, dst_node, dst_tag, stream, input_spec)],
    "graph_inputs": [(stream, dst_node, dst_tag, input_spec)], "graph_outputs": [(src_node, src_tag, stream)]}``.
    A stream that no node produces is a graph input (fed with ``add_packet``).
    """
    producer: dict[str, tuple[str, str]] = {}
    for n in topology["nodes"]:
        for tag, stream in n["outputs"].items():
            producer[stream] = (n["name"], tag)
    edges, inputs = [], []
    for n in topology["nodes"]:
        for tag, spec in n["inputs"].items():
            spec = spec if isinstance(spec, dict) else {"stream": spec}
            stream = spec["stream"]
            if stream in producer:
                src, src_tag = producer[stream]
                edges.append((src, src_tag, n["name"], tag, stream, spec))
            else:
                inputs.append((stream, n["name"], tag, spec))
    outputs = [(producer[s][0], producer[s][1], s) for s in (graph_outputs or []) if s in producer]
    return {"edges": edges, "graph_inputs": inputs, "graph_outputs": outputs}


def _ids(topology: dict) -> dict[str, str]:
    return {n["name"]: f"n{i}" for i, n in enumerate(topology["nodes"])}


def _port(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", tag)


def _by_executor(topology: dict) -> tuple[list[tuple[str, list[dict]]], list[dict]]:
    """([(executor, its nodes)] for each named executor, by name; the nodes on the default pool)."""
    groups: dict[str, list[dict]] = {}
    rest = []
    for n in topology["nodes"]:
        ex = n.get("executor") or "default"
        if ex == "default":
            rest.append(n)
        else:
            groups.setdefault(ex, []).append(n)
    return sorted(groups.items()), rest


# ---------------------------------------------------------------------------------------------
# Graphviz


def to_dot(topology: dict, name: str = "graph", graph_outputs: list[str] | None = None) -> str:
    """The Graphviz source: HTML-table nodes whose cells are the ports."""
    e = html.escape
    ids = _ids(topology)
    w = wiring(topology, graph_outputs)
    lines = [
        "digraph vpipe {",
        f'  label=<<b>{e(name)}</b>>; labelloc=t; rankdir=TB; newrank=true;',
        '  node [shape=plain, fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
    ]

    def node_decl(n: dict, indent: str) -> str:
        ins = "".join(f'<td port="i_{_port(t)}" bgcolor="#eef5ea">{e(t)}</td>' for t in n["inputs"])
        outs = "".join(f'<td port="o_{_port(t)}" bgcolor="#f7efe2">{e(t)}</td>' for t in n["outputs"])
        rows = []
        if ins:
            rows.append(f'<tr><td border="0"><table border="0" cellborder="1" cellspacing="0" cellpadding="3">'
                        f"<tr>{ins}</tr></table></td></tr>")
        rows.append(f'<tr><td bgcolor="#dde8f7" cellpadding="6"><b>{e(n["name"])}</b><br/>{e(str(n["calculator"]))}'
                    f'<br/><font point-size="9">{e(_node_notes(n))}</font></td></tr>')
        if outs:
            rows.append(f'<tr><td border="0"><table border="0" cellborder="1" cellspacing="0" cellpadding="3">'
                        f"<tr>{outs}</tr></table></td></tr>")
        table = f'<table border="0" cellborder="1" cellspacing="0" cellpadding="0">{"".join(rows)}</table>'
        return f'{indent}{ids[n["name"]]} [label=<{table}>];'

    groups, rest = _by_executor(topology)
    for i, (ex, ns) in enumerate(groups):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    label=<executor <b>{e(ex)}</b>>; style="rounded,dashed"; color="#7a7a7a"; fontsize=10;')
        lines += [node_decl(n, "    ") for n in ns]
        lines.append("  }")
    lines += [node_decl(n, "  ") for n in rest]

    for k, (stream, dst, dst_tag, spec) in enumerate(w["graph_inputs"]):
        lines.append(f'  gi{k} [shape=cds, style=filled, fillcolor="#e8e8e8", label=<{e(stream)}>];')
        note = _queue_note(spec)
        label = e(stream) + (f"<br/>{e(note)}" if note else "")
        lines.append(f'  gi{k} -> {ids[dst]}:i_{_port(dst_tag)}:n [label=<{label}>];')
    for src, src_tag, dst, dst_tag, stream, spec in w["edges"]:
        note = _queue_note(spec)
        attrs = []
        if spec.get("back_edge"):
            label = f"{e(stream)} (back edge)" + (f"<br/>{e(note)}" if note else "")
            attrs += ['style=dashed', 'color="#b03030"', 'fontcolor="#b03030"', "constraint=false"]
        else:
            label = e(stream) + (f"<br/>{e(note)}" if note else "")
        attrs.insert(0, f"label=<{label}>")
        # Compass points make forward edges leave downwards; a back edge routes freely instead.
        s_pt, d_pt = ("", "") if spec.get("back_edge") else (":s", ":n")
        lines.append(f'  {ids[src]}:o_{_port(src_tag)}{s_pt} -> {ids[dst]}:i_{_port(dst_tag)}{d_pt} [{", ".join(attrs)}];')
    for k, (src, src_tag, stream) in enumerate(w["graph_outputs"]):
        lines.append(f'  go{k} [shape=cds, style=filled, fillcolor="#e8e8e8", label=<{e(stream)}>];')
        lines.append(f"  {ids[src]}:o_{_port(src_tag)}:s -> go{k};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_executable() -> str | None:
    return shutil.which("dot")


def render_dot(dot_text: str, fmt: str) -> bytes:
    """Renders Graphviz source with ``dot`` (``fmt``: svg or png)."""
    exe = dot_executable()
    if exe is None:
        raise CliError("Graphviz 'dot' is not installed (Debian package graphviz); "
                       "write a .mmd or .html file instead", EXIT_FAILED)
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise CliError("Graphviz 'dot' did not finish within 120 s", EXIT_FAILED) from None
    if proc.returncode != 0:
        raise CliError(f"Graphviz 'dot' failed: {proc.stderr.decode(errors='replace').strip()}", EXIT_FAILED)
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# Mermaid


def _mm(text: str) -> str:
    """Text inside a quoted Mermaid label."""
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;"))


def to_mermaid(topology: dict, name: str = "graph", graph_outputs: list[str] | None = None) -> str:
    """A Mermaid flowchart: nodes with calculator and policy, edges labelled stream and ports."""
    ids = _ids(topology)
    w = wiring(topology, graph_outputs)
    lines = ["---", f"title: {_mm(name)}", "---", "flowchart TB"]

    def node_decl(n: dict, indent: str) -> str:
        label = f"<b>{_mm(n['name'])}</b><br/>{_mm(str(n['calculator']))}<br/><small>{_mm(_node_notes(n))}</small>"
        return f'{indent}{ids[n["name"]]}["{label}"]'

    groups, rest = _by_executor(topology)
    for i, (ex, ns) in enumerate(groups):
        lines.append(f'  subgraph ex{i}["executor {_mm(ex)}"]')
        lines += [node_decl(n, "    ") for n in ns]
        lines.append("  end")
    lines += [node_decl(n, "  ") for n in rest]
    for k, (stream, dst, dst_tag, spec) in enumerate(w["graph_inputs"]):
        lines.append(f'  gi{k}>"{_mm(stream)}"]')
        note = _queue_note(spec)
        lines.append(f'  gi{k} -- "→ {_mm(dst_tag)}{"<br/>" + _mm(note) if note else ""}" --> {ids[dst]}')
    back_links = []
    link = 0
    for src, src_tag, dst, dst_tag, stream, spec in w["edges"]:
        note = _queue_note(spec)
        label = f"{_mm(stream)}<br/>{_mm(src_tag)} → {_mm(dst_tag)}" + (f"<br/>{_mm(note)}" if note else "")
        if spec.get("back_edge"):
            lines.append(f'  {ids[src]} -. "{label} (back edge)" .-> {ids[dst]}')
            back_links.append(link)
        else:
            lines.append(f'  {ids[src]} -- "{label}" --> {ids[dst]}')
        link += 1
    for k, (src, src_tag, stream) in enumerate(w["graph_outputs"]):
        lines.append(f'  go{k}>"{_mm(stream)}"]')
        lines.append(f'  {ids[src]} -- "{_mm(src_tag)}" --> go{k}')
    offset = len(w["graph_inputs"])  # Mermaid numbers links in declaration order
    for b in back_links:
        lines.append(f"  linkStyle {b + offset} stroke:#b03030,color:#b03030")
    return "\n".join(lines) + "\n"


def to_html(topology: dict, name: str, graph_outputs: list[str] | None = None) -> str:
    """A standalone page: the SVG from ``dot`` when installed, and the Mermaid text."""
    mermaid = to_mermaid(topology, name, graph_outputs)
    svg = ""
    if dot_executable() is not None:
        svg = render_dot(to_dot(topology, name, graph_outputs), "svg").decode()
        svg = svg[svg.find("<svg"):]  # drop the XML prolog and doctype, which HTML does not take
    picture = (f'<section class="svg">{svg}</section>' if svg else
               "<p>Graphviz <code>dot</code> is not installed: paste the Mermaid text below into a "
               "Mermaid renderer to see the picture.</p>")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(name)}: vpipe graph</title>
<style>body {{ font-family: Helvetica, Arial, sans-serif; margin: 2em; }}
pre {{ background: #f4f4f4; padding: 1em; overflow: auto; }}</style>
</head>
<body>
<h1>{html.escape(name)}</h1>
{picture}
<h2>Mermaid</h2>
<pre class="mermaid">
{html.escape(mermaid)}</pre>
</body>
</html>
"""


def write_picture(topology: dict, name: str, out: Path, graph_outputs: list[str] | None = None) -> None:
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise CliError(f"cannot write '{out}': unknown picture format '{suffix or '(none)'}'; "
                       f"use one of {', '.join(FORMATS)}")
    if suffix in (".svg", ".png"):
        data = render_dot(to_dot(topology, name, graph_outputs), suffix[1:])
    elif suffix == ".dot":
        data = to_dot(topology, name, graph_outputs).encode()
    elif suffix == ".mmd":
        data = to_mermaid(topology, name, graph_outputs).encode()
    else:
        data = to_html(topology, name, graph_outputs).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)


def viz_command(
    graph: str = typer.Argument(..., help="A graph file, or the name of a graph in graphs/."),
    output: Path = typer.Option(..., "--output", "-o", help="Picture to write: .svg, .png, .html, .mmd or .dot."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
) -> None:
    """Draws a graph: ports, policies, back edges and executors."""
    g, path, _ = load_or_exit(graph, plugin, trust=trust)
    topology = g.topology()
    for n, spec in zip(topology["nodes"], g.spec.nodes):
        n["when"] = spec.when  # optional nodes (`when: $name`) are drawn with their switch
    try:
        write_picture(topology, topology["name"] or path.stem, output, topology["outputs"])
    except CliError as e:
        raise fail(str(e), e.code)
    print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("viz")(viz_command)
