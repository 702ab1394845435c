"""Live streams on Ray: one actor per stream, restarted when it dies or stalls.

``run_streams(graph, "streams.yaml", address=...)`` starts one ``StreamActor`` per stream, each
running the whole graph with that stream's side packets in its own process. Ray restarts an actor
whose process or node dies (``max_restarts``); a supervisor in the driver polls every stream's
status and restarts a stream that produced no frame for ``stall_s`` seconds, or whose run ended with
an error (a camera that went away). A stream whose source ends cleanly (a file) is left ended.

A streams file:

```yaml
defaults: {engine: auto}          # side packets of every stream (optional)
stall_s: 10                       # no output frame for this long: restart the stream
max_restarts: 20                  # restarts of one stream (died or stalled); -1: without end
streams:
  door: {source: "rtsp://10.0.0.5/stream1", output: out/door.mp4}
  yard: {source: "rtsp://10.0.0.6/stream1"}
```

Frames are counted on the graph's first declared output stream (else its source's first output):
a stall anywhere in the graph shows. Ctrl-C or SIGTERM (or ``stop`` set) stops every stream
cleanly: each graph drains and its sinks finalize their files, then the actors end.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from apps.cluster.worker import GraphRunner, error_text
from pipeline.errors import did_you_mean

DEFAULT_STALL_S = 10.0
DEFAULT_MAX_RESTARTS = 20
#: a stream whose actor answered no call for this long is reported dead (out of restarts)
DEAD_AFTER_S = 30.0
#: how long a stopping stream may drain before it is cancelled
STOP_DRAIN_S = 10.0


class StreamsError(ValueError):
    """A streams file that cannot run (its line and the fix)."""


@dataclass
class StreamsSpec:
    streams: dict[str, dict[str, Any]]
    stall_s: float = DEFAULT_STALL_S
    max_restarts: int = DEFAULT_MAX_RESTARTS


def load_streams(source: str | os.PathLike | dict, declared: dict[str, Any]) -> StreamsSpec:
    """Reads a streams file (or the same mapping) and checks every side packet against the graph."""
    where = str(source) if not isinstance(source, dict) else "<streams>"
    if isinstance(source, dict):
        data = source
    else:
        try:
            data = yaml.safe_load(Path(source).read_text())
        except OSError as e:
            raise StreamsError(f"{where}: cannot read: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise StreamsError(f"{where}: not YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("streams"), dict) or not data["streams"]:
        raise StreamsError(f"{where}: expected a mapping with 'streams: {{name: {{side packet: value}}}}'")
    unknown = set(data) - {"streams", "defaults", "stall_s", "max_restarts"}
    if unknown:
        raise StreamsError(f"{where}: unknown key '{sorted(unknown)[0]}' (keys: streams, defaults, stall_s, max_restarts)")
    defaults = data.get("defaults") or {}
    streams = {}
    for name, sides in data["streams"].items():
        sides = {**defaults, **(sides or {})}
        for key in sides:
            if key not in declared:
                hint = did_you_mean(key, declared) or f"; it declares {', '.join(declared) or 'none'}"
                raise StreamsError(f"{where}: stream '{name}': the graph declares no side packet '{key}'{hint}")
        streams[str(name)] = sides
    try:
        stall_s = float(data.get("stall_s", DEFAULT_STALL_S))
        max_restarts = int(data.get("max_restarts", DEFAULT_MAX_RESTARTS))
    except (TypeError, ValueError) as e:
        raise StreamsError(f"{where}: stall_s must be a number and max_restarts an integer ({e})") from None
    if stall_s <= 0:
        raise StreamsError(f"{where}: stall_s must be above 0, got {stall_s}")
    return StreamsSpec(streams, stall_s, max_restarts)


def output_stream(graph) -> str | None:
    """The stream whose packets count as a stream's frames: the graph's first declared output,
    else its source's first output."""
    from apps.cluster.worker import counted_stream

    producers = graph.spec.producers()
    for s in graph.spec.outputs:
        if s in producers:
            return s
    return counted_stream(graph)


class StreamActor:
    """Runs one stream's graph in this process (wrapped with ``ray.remote`` by ``run_streams``)."""

    def __init__(self, graph_path: str, plugins: list[str] | None, cpus: int, name: str,
                 side_packets: dict[str, Any], trust: bool = False, pin: bool = True) -> None:
        self.name = name
        self.started_at = time.time()  # tells the supervisor a new incarnation began
        self.t_start = time.monotonic()
        self.frames = 0
        self.last_frame: float | None = None
        self.error: str | None = None
        self.ended = threading.Event()
        self.runner = GraphRunner(graph_path, plugins, cpus, trust=trust, pin=pin)
        self.graph = self.runner.new_graph()
        stream = output_stream(self.graph)
        if stream is not None:
            self.graph.observe(stream, self._on_frame)
        self._poll = (time.monotonic(), 0)
        self.opened = False
        try:
            self.graph.start(side_packets)
        except Exception as e:  # noqa: BLE001 - reported as the stream's error; the supervisor restarts it
            self.error = error_text(e)
            self.ended.set()
            return
        self.opened = True
        self.waiter = threading.Thread(target=self._wait, name=f"vpipe-stream-{name}", daemon=True)
        self.waiter.start()

    def _on_frame(self, _packet) -> None:
        self.frames += 1
        self.last_frame = time.monotonic()

    def _wait(self) -> None:
        try:
            self.graph.wait()
        except Exception as e:  # noqa: BLE001
            self.error = error_text(e)
        finally:
            self.ended.set()

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        t_prev, n_prev = self._poll
        fps = (self.frames - n_prev) / (now - t_prev) if now > t_prev else 0.0
        self._poll = (now, self.frames)
        stats = self.graph.stats() if self.opened else {}
        drops = sum(int(s.get("drops") or 0) for s in stats.values())
        since = self.last_frame if self.last_frame is not None else self.t_start
        return {"stream": self.name, "frames": self.frames, "fps": round(fps, 2), "drops": drops,
                "last_frame_age_s": round(now - since, 3), "got_frame": self.last_frame is not None,
                "ended": self.ended.is_set(), "error": self.error, "node": self.runner.node,
                "pid": self.runner.pid, "started_at": self.started_at}

    def stop(self, drain_s: float = STOP_DRAIN_S) -> dict[str, Any]:
        """Stops the run cleanly (sources stop, what is in flight drains, sinks finalize)."""
        if not self.ended.is_set():
            self.graph.request_stop()
            if not self.ended.wait(drain_s):
                self.graph.cancel()
                self.ended.wait(drain_s)
        return self.status()


@dataclass
class StreamState:
    """What the supervisor knows of one stream."""

    name: str
    actor: Any = None
    status: dict[str, Any] = field(default_factory=dict)
    state: str = "starting"  # starting | running | stalled | restarting | ended | dead | stopped
    restarts: int = 0
    last_error: str | None = None
    incarnation: float | None = None
    restart_asked: bool = False
    ref: Any = None
    failing_since: float | None = None

    def row(self) -> dict[str, Any]:
        s = self.status
        return {"stream": self.name, "state": self.state, "fps": s.get("fps", 0.0), "frames": s.get("frames", 0),
                "drops": s.get("drops", 0), "last_frame_age_s": s.get("last_frame_age_s"),
                "restarts": self.restarts, "node": s.get("node"), "last_error": self.last_error}


@dataclass
class StreamsResult:
    statuses: list[dict[str, Any]]
    exit_code: int


def run_streams(graph: str | os.PathLike, streams: str | os.PathLike | dict, *, address: str | None = "local",
                plugins: list[str] | None = None, trust: bool = False, cpus_per_run: int = 1,
                stall_s: float | None = None,
                max_restarts: int | None = None, stop: threading.Event | None = None,
                on_status: Callable[[list[dict]], None] | None = None, show: bool = False,
                poll_s: float = 0.5, pin: bool = True) -> StreamsResult:
    """Runs one actor per stream until ``stop`` is set, Ctrl-C or SIGTERM; returns the last status of
    every stream and the exit status (0; 130 Ctrl-C; 143 SIGTERM; 1 when a stream ran out of restarts).

    ``on_status(rows)`` is called in the driver after every poll with one row per stream: stream,
    state, fps, frames, drops, last_frame_age_s, restarts, node, last_error. ``pin``: each stream's
    actor binds its threads to ``cpus_per_run`` cores no other worker holds (as a batch's workers).
    """
    from apps.cluster.ray_pool import connect, import_ray
    from apps.cluster.worker import worker_env
    from apps.common import load_graph

    ray = import_ray()
    graph_obj, path = load_graph(str(graph), plugins, trust)
    spec = load_streams(streams, dict(graph_obj.spec.side_packets))
    stall = stall_s if stall_s is not None else spec.stall_s
    restarts_max = max_restarts if max_restarts is not None else spec.max_restarts
    stop = stop or threading.Event()
    signalled: list[int] = []
    old_term = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, _frame):
            signalled.append(signum)
            stop.set()
        old_term = signal.signal(signal.SIGTERM, on_term)
    owns = connect(address)
    actor_cls = ray.remote(StreamActor).options(
        num_cpus=cpus_per_run, scheduling_strategy="SPREAD", max_restarts=restarts_max, max_concurrency=4,
        runtime_env={"env_vars": worker_env(cpus_per_run)})
    states = {name: StreamState(name) for name in spec.streams}
    code = 0
    display = _StatusDisplay(show)
    try:
        for name, sides in spec.streams.items():
            states[name].actor = actor_cls.remote(str(Path(path).resolve()), plugins, cpus_per_run, name, sides, trust, pin)
        with display:
            while not stop.is_set():
                _poll(ray, states, stall, poll_s, restarts_max)
                rows = [s.row() for s in states.values()]
                display.update(rows)
                if on_status is not None:
                    on_status(rows)
                if all(s.state in ("ended", "dead") for s in states.values()):
                    break
        if any(s.state == "dead" for s in states.values()):
            code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        if signalled:
            code = 143
        rows = _stop_all(ray, states)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if owns:
            ray.shutdown()
    return StreamsResult(rows, code)


def _poll(ray, states: dict[str, StreamState], stall_s: float, poll_s: float, max_restarts: int) -> None:
    for st in states.values():
        if st.ref is None and st.state != "dead":
            st.ref = st.actor.status.remote()
    refs = [st.ref for st in states.values() if st.ref is not None]
    if not refs:
        time.sleep(poll_s)  # every stream is dead: nothing to wait on but the next check
        return
    deadline = time.monotonic() + poll_s
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=poll_s)
    ready = set(ready)
    for st in states.values():
        if st.ref is None or st.ref not in ready:
            continue
        ref, st.ref = st.ref, None
        try:
            status = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            # Died: Ray is restarting it (calls fail meanwhile), or it is out of restarts; the
            # latter is certain once it has used them all, else once no call succeeded for long.
            now = time.monotonic()
            st.failing_since = st.failing_since or now
            if not st.restart_asked:  # our own restart's unavailability is not news
                st.last_error = _last_line(e)
            used_up = 0 <= max_restarts <= st.restarts + (1 if st.restart_asked else 0)
            if (isinstance(e, ray.exceptions.ActorDiedError) and used_up) or \
                    now - st.failing_since > max(DEAD_AFTER_S, 3 * stall_s):
                st.state = "dead"
                st.last_error = f"out of restarts ({max_restarts}); last error: {st.last_error}"
            else:
                st.state = "restarting"
            continue
        st.failing_since = None
        if st.incarnation is not None and status["started_at"] != st.incarnation:
            st.restarts += 1  # a new process: restarted by Ray (died) or by us (stalled)
            st.restart_asked = False
        st.incarnation = status["started_at"]
        st.status = status
        if status.get("error"):
            st.last_error = status["error"]
        if st.restart_asked:
            continue
        if status["ended"]:
            if status.get("error"):
                st.state = "restarting"
                _restart(ray, st)
            else:
                st.state = "ended"
        elif status["last_frame_age_s"] > stall_s:
            st.state = "stalled"
            st.last_error = f"no frame for {status['last_frame_age_s']:.1f} s (stall_s {stall_s:g}): restarted"
            _restart(ray, st)
        else:
            st.state = "running" if status["got_frame"] else "starting"
    left = deadline - time.monotonic()
    if left > 0 and len(ready) == len(refs):
        time.sleep(left)  # every status came back early: poll at the stated rate, not faster


def _restart(ray, st: StreamState) -> None:
    """Kills the stream's process; Ray starts a new one (this counts against max_restarts)."""
    st.restart_asked = True
    try:
        ray.kill(st.actor, no_restart=False)
    except Exception as e:  # noqa: BLE001 - it died meanwhile: Ray restarts it anyway
        st.last_error = f"restart: {e}"


def _stop_all(ray, states: dict[str, StreamState]) -> list[dict]:
    refs = {}
    for st in states.values():
        if st.actor is not None and st.state != "dead":
            refs[st.name] = st.actor.stop.remote()
    if refs:
        ray.wait(list(refs.values()), num_returns=len(refs), timeout=STOP_DRAIN_S * 2 + 5)
    for name, ref in refs.items():
        st = states[name]
        try:
            st.status = ray.get(ref, timeout=0)
            if st.state not in ("ended",):
                st.state = "stopped"
        except Exception as e:  # noqa: BLE001 - it died while stopping: report it, end it anyway
            st.last_error = st.last_error or _last_line(e)
    for st in states.values():
        if st.actor is not None:
            try:
                ray.kill(st.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - gone already
                pass
    return [st.row() for st in states.values()]


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def status_table(rows: list[dict[str, Any]], title: str = "streams"):
    """A rich table, one row per stream: state, fps, frames, drops, last frame age, restarts, error."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in ("stream", "state", "fps", "frames", "drops", "last frame", "restarts", "node", "last error"):
        t.add_column(col, justify="right" if col in ("fps", "frames", "drops", "last frame", "restarts") else "left",
                     overflow="fold")
    for r in rows:
        age = r.get("last_frame_age_s")
        t.add_row(r["stream"], r["state"], f"{float(r.get('fps') or 0):.1f}", str(r.get("frames", 0)),
                  str(r.get("drops", 0)), "-" if age is None else f"{age:.1f} s", str(r["restarts"]),
                  str(r.get("node") or "")[:12], r.get("last_error") or "")
    return t


class _StatusDisplay:
    """The status table, redrawn in place on a terminal (rich Live); nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live(status_table([]), console=self.console, refresh_per_second=2,
                         transient=False) if enabled and self.console.is_terminal else None

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            return self.live.__exit__(*exc)
        return False

    def update(self, rows: list[dict]) -> None:
        if self.live is not None:
            self.live.update(status_table(rows))
