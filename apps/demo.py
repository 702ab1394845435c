"""The face detection demo: ``python -m apps.demo [--source 0] [--output out/annotated.mp4] [--detections out/detections.jsonl]``.

It runs ``graphs/face_detection.yaml``, which reads any source: on a video file (default: the
sample carphone clip) or images it processes every frame and writes the annotated video and/or the
JSON lines; with a camera (``--source 0``, a device path) or a live stream it drops frames while the
detector is busy, and shows a window — or, where there is no display, serves a browser preview. At the end it prints per-node statistics (frames, drops, process times).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"


def build_graph(name: str, threads: int | None = None):
    """``graphs/NAME.yaml`` as a ``pipeline.Graph``; its optional sinks are switched on and off by
    their ``when: $side_packet`` at start."""
    from pipeline import Graph

    path = GRAPHS / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no graph {name!r}: {path} does not exist")
    return Graph.from_yaml(path, search_paths=[GRAPHS], threads=threads)


def resolve_source(source: str) -> str | int:
    """A camera index as an int (what ``CameraSource`` opens); anything else as given."""
    return int(source) if source.isdigit() else source


def is_live(source: str) -> bool:
    """A camera or a stream URL (MediaSource's own reading of ``source``)."""
    from calculators.sources.media import source_kind

    return source_kind(source) in ("camera", "stream")


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


def stop_on_ctrl_c(graph) -> None:
    """The first Ctrl-C ends the run cleanly (as ``q`` in the window does): the sources stop, the
    frames in flight drain and the files are finalized; a second one interrupts at once."""

    def handler(_signum, _frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        graph.request_stop()

    signal.signal(signal.SIGINT, handler)


def main(
    source: str = typer.Option("sample:carphone", help="video file, URL, sample:NAME, or a camera index"),
    output: Optional[str] = typer.Option(None, help="annotated video to write (.mp4)"),
    detections: Optional[str] = typer.Option(None, help="JSON lines to write, one per frame"),
    engine: str = typer.Option("auto", help="inference engine (auto, openvino, onnxruntime, ...)"),
    display: Optional[bool] = typer.Option(None, help="show a window (default: for live sources, when a display exists)"),
    preview: Optional[int] = typer.Option(None, help="serve a browser preview on this port"),
) -> None:
    from apps.common import stdout_console
    from apps.progress import run_or_exit, summary_table

    live = is_live(source)
    graph_name = "face_detection"
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
    graph = build_graph(graph_name)
    if preview is not None:
        print(f"browser preview: http://127.0.0.1:{preview}/")
    stop_on_ctrl_c(graph)
    result = run_or_exit(graph, side)
    stdout_console().print(summary_table(result, graph_name))
    for what, path in (("annotated video", output), ("detections", detections)):
        if path:
            print(f"{what}: {path}")


if __name__ == "__main__":
    typer.run(main)
