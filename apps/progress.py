"""Running a graph from the command line: a progress bar while it runs, a summary table after.

``run_with_progress`` starts a graph and shows frames, fps and ETA on stderr (the total read from
the sources' video files before the run, or from their stream info once open; live counters
otherwise); ``run_or_exit`` turns a failed run into the exit status (1, the cause first on stderr;
130 on Ctrl-C, 143 on SIGTERM); ``summary_table`` is the per-node table ``vpipe run`` and the demo
print (with the nodes left out because their outputs reach no sink or observer). While a graph
runs, SIGINT and SIGTERM stop it as ``pipeline/signals.py`` explains: the first cleanly (sources
stop, the graph drains into the sinks), the second at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.common import EXIT_FAILED, config_message, declared_side_packets, fail
from apps.errors import run_error_text

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
        from models import catalog

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
    left_out: tuple[str, ...] = ()  # nodes not run: their outputs reached no sink or observer


def run_with_progress(graph, side_packets: dict[str, Any], *, trace: bool = False,
                      quiet: bool = False) -> RunResult:
    """Starts the graph, shows progress on stderr until it ends, and returns what it did.

    Frames are counted on the sources' first output stream (what was decoded or captured), so
    the progress bar matches the frame count a video file declares even when a flow limiter
    drops frames further down.
    """
    topo = graph.topology()
    streams = source_streams(topo)
    counted = streams[0][1] if streams else None
    count = [0]
    lock = threading.Lock()
    # Only a terminal gets the live bar: in a log it would be noise before the error line. Without
    # a bar (``quiet``, a pipe) nothing is read for it before the run, and with ``quiet`` rich is
    # not even imported: the sources open and the model compiles that much sooner.
    progress = None if quiet else _progress_bar(graph)
    show = progress is not None and not progress[0].disable
    total = expected_frames(graph, side_packets) if show else None
    if show:
        progress[0].update(progress[1], total=total or None)
    t0 = [0.0]

    def on_frame(_packet) -> None:
        nonlocal total
        with lock:
            count[0] += 1
            n = count[0]
        if not show:
            return
        bar, task = progress
        if n == 1 and not total:
            # The sources are open now: a VideoSource has published its stream info.
            total = _info_frames(graph)
            if total:
                bar.update(task, total=total)
        if n % 8 == 0 or n == total:
            elapsed = time.perf_counter() - t0[0]
            bar.update(task, completed=n, fps=n / elapsed if elapsed > 0 else 0.0)

    if counted is not None:
        graph.observe(counted, on_frame, wanted=False)  # counts frames; asks for nothing to run
    from pipeline.signals import StopSignals

    stop_signals = StopSignals(graph, (signal.SIGINT, signal.SIGTERM), on_signal=_tell_stopping(graph))
    with progress[0] if progress is not None else contextlib.nullcontext():
        t0[0] = time.perf_counter()
        try:
            with stop_signals:
                try:
                    graph.start(side_packets, trace=trace)
                    graph.wait()
                except KeyboardInterrupt:
                    # A second signal while calculators opened (signals.py, rule 2): make sure the
                    # run is over, every calculator closed and no thread outlives the command.
                    _stop(graph)
                    raise
        except BaseException as e:
            if stop_signals.received:
                raise Interrupted(stop_signals.first or stop_signals.received[0], graph.errors) from e
            raise
        else:
            if stop_signals.received:
                raise Interrupted(stop_signals.first or stop_signals.received[0], graph.errors)
        finally:
            wall = time.perf_counter() - t0[0]
            n = count[0]
            if progress is not None:
                progress[0].update(progress[1], completed=n, total=total if total and n <= total else n or None,
                                   fps=n / wall if wall > 0 else 0.0)
    return RunResult(wall, count[0], graph.stats(), tuple(graph.left_out))


def _progress_bar(graph):
    """(a rich ``Progress`` on stderr, its task): disabled unless stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    # Without a known total (a live stream), the bar pulses and the counters still move.
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TextColumn("{task.fields[fps]:>7.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    bar = Progress(*columns, console=console, transient=False, disable=not console.is_terminal,
                   auto_refresh=True, refresh_per_second=5)
    return bar, bar.add_task(graph_name(graph), total=None, fps=0.0)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``); ``errors``: the run's errors, stuck nodes too."""

    def __init__(self, signum: int, errors: list):
        super().__init__(signum)
        self.signum = signum
        self.errors = errors

    def __reduce__(self):
        return (type(self), (self.signum, self.errors))


def _tell_stopping(graph):
    """What ``vpipe run`` prints on a terminal when a stop signal comes (from the signal helper
    thread; os.write, so it never waits on a stream the main thread is writing to)."""
    from pipeline.signals import NAMES

    def tell(signum: int, count: int) -> None:
        if not os.isatty(2):
            return  # in a log, the first line stays the one-line cause ("error: interrupted ...")
        name = NAMES.get(signum, f"signal {signum}")
        if count == 1:
            msg = (f"stopping ({name}): sources stopped, draining what is in the graph into the sinks "
                   f"(at most {graph.drain_timeout:g} s); {name} again to stop at once\n")
        else:
            msg = f"stopping at once ({name} again): finalizing the sinks\n"
        os.write(2, msg.encode())

    return tell


def run_or_exit(graph, side_packets: dict[str, Any], *, trace: bool = False, quiet: bool = False) -> RunResult:
    """``run_with_progress`` for a command: a failed run exits 1 with its cause first, Ctrl-C 130,
    SIGTERM 143 (with a line for each node found stuck)."""
    from pipeline import GraphConfigError, GraphRunError, NodeStuckError
    from pipeline.signals import EXIT_CODES, NAMES

    _exit_on_late_signals()
    try:
        return run_with_progress(graph, side_packets, trace=trace, quiet=quiet)
    except Interrupted as e:
        notes = [err.args[0] for err in e.errors if isinstance(err, NodeStuckError)]
        if graph.drain_expired:
            notes.insert(0, f"the drain did not finish within --drain-timeout {graph.drain_timeout:g} s: stopped at "
                            "once (the sinks kept what had reached them)")
        name = NAMES.get(e.signum, f"signal {e.signum}")
        raise fail("\n".join([f"interrupted ({name}): the run was stopped", *notes]), EXIT_CODES.get(e.signum, 130))
    except GraphRunError as e:
        if interrupted(e):
            raise fail("interrupted (Ctrl-C): the run was stopped", 130)
        raise fail(run_error_text(e), EXIT_FAILED)
    except GraphConfigError as e:  # side packet values are checked at start
        raise fail(config_message(e, "with the side packets"), EXIT_FAILED)
    except KeyboardInterrupt:
        raise fail("interrupted (Ctrl-C): the run was stopped", 130)


def _exit_on_late_signals() -> None:
    """Outside the run (before it, and while the command reports and exits after it), SIGINT and
    SIGTERM end the command at once with 130 / 143, instead of Python's defaults (a traceback, or
    death by the signal). The run's own handler (pipeline/signals.py) comes back to this one."""
    from pipeline.signals import EXIT_CODES

    def leave(signum, _frame):
        raise SystemExit(EXIT_CODES.get(signum, 128 + signum))

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, leave)


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
    if result.left_out:
        t.caption = f"left out (their outputs reach no sink or observer): {', '.join(result.left_out)}"
        t.caption_justify = "left"
    return t
