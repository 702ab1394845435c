"""The face detection demo: ``python -m apps.demo [--source 0] [--output out/annotated.mp4] [--detections out/detections.jsonl]``.

On a video file (default: the sample carphone clip) it runs ``graphs/face_detection.yaml`` over
every frame and writes the annotated video and/or the JSON lines. With a camera (``--source 0``,
a device path) or a live stream it runs ``graphs/face_detection_live.yaml``, which drops frames
while the detector is busy, and shows a window — or, where there is no display, serves a browser
preview. At the end it prints per-node statistics (frames, drops, process times).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
_LIVE_SCHEMES = ("rtsp://", "rtmp://", "udp://", "tcp://", "srt://")


def build_graph(name: str, side_packets: dict[str, Any] | None = None, threads: int | None = None):
    """``graphs/NAME.yaml`` as a ``pipeline.Graph`` (its optional sinks are switched by their
    ``when: $side_packet`` at start)."""
    from pipeline import Graph

    path = GRAPHS / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no graph {name!r}: {path} does not exist")
    return Graph.from_yaml(path, search_paths=[GRAPHS], threads=threads)


def resolve_source(source: str) -> str | int:
    """A camera index as an int; catalog samples (``sample:NAME``) as a local path; others as given."""
    if source.isdigit():
        return int(source)
    if source.startswith("sample:"):
        from calculators.catalog import resolve

        return str(resolve(source))
    return source


def is_live(source: str) -> bool:
    return source.isdigit() or source.startswith("/dev/video") or source.startswith(_LIVE_SCHEMES)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


def main(
    source: str = typer.Option("sample:carphone", help="video file, URL, sample:NAME, or a camera index"),
    output: Optional[str] = typer.Option(None, help="annotated video to write (.mp4)"),
    detections: Optional[str] = typer.Option(None, help="JSON lines to write, one per frame"),
    engine: str = typer.Option("auto", help="inference engine (auto, openvino, onnxruntime, ...)"),
    display: Optional[bool] = typer.Option(None, help="show a window (default: for live sources, when a display exists)"),
    preview: Optional[int] = typer.Option(None, help="serve a browser preview on this port"),
) -> None:
    import calculators  # noqa: F401  (registers the built-in calculators)

    live = is_live(source)
    graph_name = "face_detection_live" if live else "face_detection"
    if display is None:
        display = live and has_display()
    if live and not display and preview is None:
        preview = 8080
    if not live and output is None and detections is None and not display and preview is None:
        output, detections = "out/annotated.mp4", "out/detections.jsonl"
    for path in (output, detections):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    side = {
        "source": resolve_source(source),
        "engine": engine,
        "output": output,
        "detections": detections,
        "display": "vpipe face detection" if display else None,
        "preview": preview,
    }
    graph = build_graph(graph_name, side)
    if preview is not None:
        print(f"browser preview: http://127.0.0.1:{preview}/")
    try:
        graph.run(side)
    except KeyboardInterrupt:
        pass
    print_stats(graph)
    for what, path in (("annotated video", output), ("detections", detections)):
        if path:
            print(f"{what}: {path}")


def print_stats(graph) -> None:
    from rich.console import Console
    from rich.table import Table

    stats = graph.stats()
    table = Table(title="per node")
    for col in ("node", "frames", "dropped", "mean ms", "p95 ms"):
        table.add_column(col, justify="left" if col == "node" else "right")
    nodes = stats.get("nodes", stats) if isinstance(stats, dict) else {}
    for name, s in nodes.items():
        if not isinstance(s, dict):
            continue
        def f(*keys, scale=1.0, fmt="{:.2f}"):
            for k in keys:
                if s.get(k) is not None:
                    v = s[k]
                    return fmt.format(v * scale) if isinstance(v, float) else str(v)
            return "-"
        table.add_row(name, f("count", "processed"), f("drops", "dropped"), f("mean_ms", "time_mean_ms"),
                      f("p95_ms", "time_p95_ms"))
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
