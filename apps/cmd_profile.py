"""``vpipe profile GRAPH [--set key=value ...] -o trace.json``: where the time goes in a run.

Runs the graph with tracing on (``Graph.start(..., trace=True)``; ``Graph.trace_events()`` gives one
``(node, thread, timestamp_us, start_ns, end_ns)`` per ``process`` call) and writes:

- a table per node: calls, p50/p99/max process time, queue peak, drops, share of the wall time;
- end-to-end latency percentiles: for each packet timestamp, from its birth (the end of the
  source call that emitted it) to the end of the last ``process`` call at that timestamp;
- a Chrome trace event file (``-o``) that opens in Perfetto (ui.perfetto.dev, "Open trace file")
  or chrome://tracing: one track per node and thread ("X" complete events with ``pid``/``tid`` and
  ``thread_name`` metadata), and one flow per packet timestamp (``s`` → ``t`` … → ``f`` events
  with ``id`` = the timestamp) linking the calls that handled it across nodes;
- a PNG (``--plot``, default: the trace path with ``.png``) of each node's process time over the
  run and of the end-to-end latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional

import typer

from apps.common import PLUGIN_HELP, TRUST_HELP, fail, load_or_exit, stdout_console
from apps.errors import silence_native_stderr
from apps.progress import RunResult, graph_name, run_or_exit

TraceEvent = tuple  # (node, thread, timestamp_us | None, start_ns, end_ns)


def percentiles(values: Iterable[float], qs=(50, 90, 99)) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return {f"p{q}": float("nan") for q in qs} | {"max": float("nan")}
    out = {f"p{q}": float(np.percentile(arr, q)) for q in qs}
    out["max"] = float(arr.max())
    return out


def node_order(events: list[TraceEvent], order: list[str] | None = None) -> list[str]:
    """Node names in graph order (``order``), then any others in order of first appearance."""
    seen: list[str] = list(order or [])
    for ev in events:
        if ev[0] not in seen:
            seen.append(ev[0])
    present = {ev[0] for ev in events}
    return [n for n in seen if n in present or n in (order or [])]


def node_table(events: list[TraceEvent], stats: dict[str, dict], wall_s: float,
               order: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per node: calls, process time percentiles (ms), busy time, queue peak, drops, share."""
    by_node: dict[str, list[float]] = {}
    for node, _thread, _ts, start, end in events:
        by_node.setdefault(node, []).append((end - start) / 1e6)
    rows = []
    for node in node_order(events, order):
        if node not in by_node and node not in stats:
            continue  # in the graph file but left out of this run (a sink whose side packet is null)
        durs = by_node.get(node, [])
        s = stats.get(node, {})
        p = percentiles(durs, (50, 99))
        busy_s = sum(durs) / 1e3
        rows.append({
            "node": node, "calculator": s.get("calculator"), "count": len(durs),
            "p50_ms": p["p50"], "p99_ms": p["p99"], "max_ms": p["max"], "busy_s": busy_s,
            "share": busy_s / wall_s if wall_s > 0 else float("nan"),
            "queue_peak": s.get("queue_peak"), "drops": int(s.get("drops") or 0),
        })
    return rows


def end_to_end(events: list[TraceEvent], sources: Iterable[str] = ()) -> dict[int, float]:
    """{packet timestamp: latency in ms} from the packet's birth to the end of the last call at it.

    The birth is the end of the source call that emitted it (a source's call also holds its
    waiting for the next frame, which is not latency), else the start of the first call at it.
    """
    sources = set(sources)
    spans: dict[int, list[int]] = {}
    for node, _thread, ts, start, end in events:
        if ts is None:
            continue
        if node in sources:
            start = end
        span = spans.get(ts)
        if span is None:
            spans[ts] = [start, end]
        else:
            span[0] = min(span[0], start)
            span[1] = max(span[1], end)
    return {ts: (e - s) / 1e6 for ts, (s, e) in sorted(spans.items())}


def chrome_trace(events: list[TraceEvent], name: str = "graph", order: list[str] | None = None,
                 metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Chrome trace event format (JSON object form), times in microseconds from the first call."""
    pid = 1
    t0 = min((ev[3] for ev in events), default=0)
    tracks: dict[tuple[str, str], int] = {}
    rank = {n: i for i, n in enumerate(node_order(events, order))}
    for node, thread, *_ in sorted(events, key=lambda e: (rank.get(e[0], 1 << 30), e[3])):
        tracks.setdefault((node, thread), len(tracks) + 1)
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"vpipe: {name}"}},
    ]
    for (node, thread), tid in tracks.items():
        out.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                    "args": {"name": f"{node} [{thread}]"}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})

    def us(ns: int) -> float:
        return round((ns - t0) / 1e3, 3)

    flows: dict[int, list[tuple[int, int]]] = {}
    for node, thread, ts, start, end in sorted(events, key=lambda e: e[3]):
        tid = tracks[(node, thread)]
        args = {"thread": thread}
        if ts is not None:
            args["timestamp"] = ts
            flows.setdefault(ts, []).append((start, tid))
        out.append({"name": node, "cat": "process", "ph": "X", "ts": us(start),
                    "dur": round(max(end - start, 0) / 1e3, 3), "pid": pid, "tid": tid, "args": args})
    for ts, calls in flows.items():
        if len(calls) < 2:
            continue
        for k, (start, tid) in enumerate(calls):
            ph = "s" if k == 0 else ("f" if k == len(calls) - 1 else "t")
            ev = {"name": "packet", "cat": "timestamp", "ph": ph, "id": ts, "ts": us(start),
                  "pid": pid, "tid": tid}
            if ph == "f":
                ev["bp"] = "e"  # bind to the enclosing slice, not the next one
            out.append(ev)
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": dict(metadata or {})}


def plot_latency(events: list[TraceEvent], latency: dict[int, float], out: Path, title: str,
                 order: list[str] | None = None) -> None:
    """PNG: each node's process time over the run, and end-to-end latency per timestamp."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min((ev[3] for ev in events), default=0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, constrained_layout=True)
    for node in node_order(events, order):
        pts = sorted(((ev[3] - t0) / 1e9, (ev[4] - ev[3]) / 1e6) for ev in events if ev[0] == node)
        if pts:
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], ".-", markersize=3, linewidth=0.8, label=node)
    ax1.set_ylabel("process time (ms)")
    ax1.set_title(f"{title}: per-node process time")
    ax1.grid(True, alpha=0.3)
    if events:
        ax1.legend(fontsize=8, loc="upper right", ncol=2)
    ends: dict[int, int] = {}
    for _n, _t, ts, _s, e in events:
        if ts in latency:
            ends[ts] = max(ends.get(ts, e), e)
    pts = sorted(((ends[ts] - t0) / 1e9, ms) for ts, ms in latency.items())
    ax2.plot([p[0] for p in pts], [p[1] for p in pts], ".-", markersize=3, linewidth=0.8, color="#b03030")
    ax2.set_xlabel("time since first call (s); latency plotted when the packet finished")
    ax2.set_ylabel("end-to-end latency (ms)")
    ax2.grid(True, alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def profile_tables(rows: list[dict], latency: dict[int, float], result: RunResult, title: str):
    from rich.table import Table

    fps = result.frames / result.wall_s if result.wall_s > 0 else 0.0
    t = Table(title=f"{title}: {result.frames} frames in {result.wall_s:.2f} s ({fps:.1f} fps)",
              title_justify="left")
    for col in ("node", "calculator", "calls", "p50 ms", "p99 ms", "max ms", "q peak", "drops", "% wall"):
        t.add_column(col, justify="left" if col in ("node", "calculator") else "right",
                     no_wrap=col in ("node", "calculator"))
    for r in rows:
        ms = [f"{r[k]:.3f}" if r["count"] else "-" for k in ("p50_ms", "p99_ms", "max_ms")]
        t.add_row(r["node"], str(r["calculator"] or ""), str(r["count"]), *ms,
                  "-" if r["queue_peak"] is None else str(r["queue_peak"]), str(r["drops"]),
                  f"{100 * r['share']:.1f}")
    lat = Table(title=f"end-to-end latency over {len(latency)} timestamps (ms)", title_justify="left",
                min_width=60)
    p = percentiles(latency.values())
    for k in p:
        lat.add_column(k, justify="right")
    lat.add_row(*(f"{v:.3f}" for v in p.values()))
    return t, lat


def profile_command(
    graph: str = typer.Argument(..., help="A graph file, or the name of a graph in graphs/."),
    output: Path = typer.Option(Path("trace.json"), "--output", "-o", help="Chrome trace file to write."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Latency PNG (default: the trace path with .png)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a side packet: key=value (YAML scalar)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Runs a graph with tracing: per-node table, latency percentiles, Perfetto trace and a plot."""
    if output.suffix.lower() != ".json":
        raise fail(f"cannot write '{output}': the trace is a .json file", 2)
    plot = plot or output.with_suffix(".png")
    if quiet:
        silence_native_stderr()
    g, path, sides = load_or_exit(graph, plugin, set_, trust)
    result = run_or_exit(g, sides, trace=True, quiet=quiet)
    events = [tuple(ev) for ev in g.trace_events()]
    order = [n["name"] for n in g.topology()["nodes"]]
    name = graph_name(g)
    rows = node_table(events, result.stats, result.wall_s, order)
    sources = [n["name"] for n in g.topology()["nodes"] if not n["inputs"]]
    latency = end_to_end(events, sources)
    trace = chrome_trace(events, name, order, {
        "graph": str(path), "side_packets": {k: repr(v) for k, v in sides.items()},
        "wall_s": result.wall_s, "frames": result.frames,
        "end_to_end_ms": percentiles(latency.values()),
    })
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(_finite(trace), allow_nan=False, default=str))
    tmp.replace(output)
    plot_latency(events, latency, plot, name, order)
    console = stdout_console()
    for table in profile_tables(rows, latency, result, name):
        console.print(table)
    console.print(f"wrote {output} (open it in Perfetto) and {plot}", soft_wrap=True)


def _finite(obj):
    """NaN is not JSON: percentiles of nothing become null."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_command)
