"""Batches: one whole run of a graph per input file, on local processes or on a Ray cluster.

``run_batch(graph, inputs, side_packets, address=None, jobs=None, ...)`` plans one job per input
(``apps/cluster/plan.py``), skips what the manifest says is done when ``resume``, and hands the
jobs to workers: ``jobs`` local processes (``address=None``), or Ray actors (``address="local"``
starts a Ray for the batch; ``"auto"``, ``"host:port"`` or ``"ray://host:10001"`` join a
cluster). Either way the same ``GraphRunner`` runs each whole graph inside one worker process,
held to ``cpus_per_run`` threads and (``pin``) cores, and only the job (paths, side packets) and
its record cross processes.

- A file that fails (unreadable, corrupt, a calculator error) is one ``failed`` record with the
  error's own text; it is not retried. A worker that dies (a killed process, a lost node) has its
  file retried on another worker, up to ``retries`` times; its temporary outputs are removed.
- Records go to the manifest as runs end (``apps/cluster/manifest.py``); the call returns every
  input's record in input order.
- ``progress=True`` shows a bar on stderr: files done and failed, frames/s over all workers, ETA.
"""

from __future__ import annotations

import collections
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from apps.cluster.manifest import Manifest
from apps.cluster.plan import Job, expand_inputs, plan

#: a worker that died this many times under one file gives that file up (failed record)
DEFAULT_RETRIES = 3


class BatchError(RuntimeError):
    """The batch could not run at all (no worker could start, Ray is missing or unreachable)."""


class Lost:
    """The outcome of a run whose worker died before it returned."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def default_manifest(jobs: list[Job]) -> Path:
    """``vpipe-manifest.jsonl`` beside the first job's first output, else in the current folder."""
    for job in jobs:
        for path in job.outputs.values():
            return Path(path).parent / "vpipe-manifest.jsonl"
    return Path.cwd() / "vpipe-manifest.jsonl"


def local_jobs(jobs: int | None, cpus_per_run: int, n_inputs: int) -> int:
    """How many local worker processes: ``jobs``, else this machine's CPUs / ``cpus_per_run``;
    never more than there are inputs, never fewer than one."""
    want = jobs or (os.cpu_count() or 1) // cpus_per_run
    return max(1, min(want, n_inputs))


def run_batch(graph: str | os.PathLike, inputs: list[str] | str, side_packets: dict[str, Any] | None = None, *,
              address: str | None = None, jobs: int | None = None, cpus_per_run: int = 1,
              manifest: str | os.PathLike | None = None, resume: bool = False, plugins: list[str] | None = None,
              trust: bool = False, retries: int = DEFAULT_RETRIES, progress: bool = False,
              on_event: Callable[[str, dict], None] | None = None, pin: bool = True) -> list[dict[str, Any]]:
    """Runs ``graph`` once per input; returns the records (one per input, in input order).

    ``inputs``: glob patterns, paths or URIs. ``side_packets``: values for every run, templated
    per input (``{stem}``, ``{name}``, ``{parent}``, ``{index}``). ``address``: None for ``jobs``
    local processes, else Ray (``"local"``, ``"auto"``, ``"host:port"``, ``"ray://..."``), where
    ``jobs`` defaults to the cluster's CPUs divided by ``cpus_per_run``. ``trust``: import the plugins
    the graph file names (as ``vpipe run --trust``), in the driver and in every worker. ``on_event(kind, info)``
    is called in the driver for ``"started"`` (job, worker), ``"record"`` and ``"lost"`` events.
    ``pin``: each worker binds its threads to ``cpus_per_run`` cores no other worker holds
    (``apps/cluster/worker.py``); False leaves the placement of threads to the kernel.
    """
    from apps.common import load_graph

    graph_obj, path = load_graph(str(graph), plugins, trust)
    files = expand_inputs([inputs] if isinstance(inputs, str) else list(inputs))
    all_jobs = plan(graph_obj.spec, files, dict(side_packets or {}))
    book = Manifest(manifest or default_manifest(all_jobs))
    done = book.start(resume)
    todo = [j for j in all_jobs if j.input not in done]
    if cpus_per_run < 1:
        raise ValueError(f"cpus_per_run must be >= 1, got {cpus_per_run}")
    records: dict[str, dict] = dict(done)
    if todo:
        if address is None:
            backend = LocalBackend(str(path), plugins, cpus_per_run, local_jobs(jobs, cpus_per_run, len(todo)), trust,
                                   pin)
        else:
            from apps.cluster.ray_pool import RayBackend

            backend = RayBackend(address, str(path), plugins, cpus_per_run, jobs, len(todo), trust, pin)
        with backend:
            _drive(backend, todo, book, records, retries, progress, on_event, total=len(all_jobs), skipped=len(done))
    return [records[j.input] for j in all_jobs]


def _drive(backend, todo: list[Job], book: Manifest, records: dict, retries: int, progress: bool,
           on_event, total: int, skipped: int) -> None:
    pending = collections.deque(todo)
    lost_count: collections.Counter = collections.Counter()
    inflight: dict[Any, tuple[Job, str, Any]] = {}
    bar = BatchProgress(total, skipped, enabled=progress)
    frames_done = 0
    t0 = time.perf_counter()
    emit = on_event or (lambda kind, info: None)
    try:
        with bar:
            while pending or inflight:
                while pending and backend.free():
                    job = pending.popleft()
                    attempt = f"{job.index}-{lost_count[job.input]}-{uuid.uuid4().hex[:8]}"
                    handle, worker = backend.submit(job, attempt)
                    inflight[handle] = (job, attempt, worker)
                    emit("started", {"job": job, "attempt": attempt, "worker": worker})
                for handle, outcome in backend.wait(0.5):
                    job, attempt, worker = inflight.pop(handle)
                    if isinstance(outcome, Lost):
                        for tmp in job.temp_outputs(attempt).values():
                            _remove(tmp)
                        lost_count[job.input] += 1
                        emit("lost", {"job": job, "attempt": attempt, "worker": worker, "reason": outcome.reason})
                        if lost_count[job.input] <= retries:
                            pending.appendleft(job)
                            bar.note(f"retrying {job.input}: its worker was lost ({outcome.reason})")
                            continue
                        outcome = {"input": job.input, "index": job.index, "status": "failed", "frames": 0,
                                   "seconds": 0.0, "node": None, "pid": None, "outputs": dict(job.outputs),
                                   "error": f"its worker was lost {lost_count[job.input]} times; last: {outcome.reason}",
                                   "error_type": "WorkerLost"}
                    record = {**outcome, "attempts": lost_count[job.input] + 1}
                    book.append(record)
                    records[job.input] = record
                    frames_done += int(record.get("frames") or 0)
                    emit("record", record)
                    bar.finished(record)
                elapsed = time.perf_counter() - t0
                bar.update(frames=max(backend.frames(), frames_done), elapsed=elapsed)
    except BaseException:
        # Ctrl-C or a driver error: end the workers first, then remove what they were writing.
        backend.close()
        for job, attempt, _ in inflight.values():
            for tmp in job.temp_outputs(attempt).values():
                _remove(tmp)
        raise


class BatchProgress:
    """The progress bar of a batch (rich): files done of all, failed, frames/s, ETA."""

    def __init__(self, total: int, skipped: int, enabled: bool, console=None) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.failed = 0
        self.progress = Progress(
            TextColumn("[bold]files"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[fps]:>7.1f} frames/s"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, disable=not (enabled and self.console.is_terminal),
            refresh_per_second=4)
        self.task = self.progress.add_task("files", total=total, completed=skipped, failed=0, fps=0.0)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def finished(self, record: dict) -> None:
        if record["status"] != "ok":
            self.failed += 1
            if self.enabled:
                self.console.print(f"[red]failed[/red] {record['input']}: {record['error']}", markup=True,
                                   highlight=False, soft_wrap=True)
        self.progress.update(self.task, advance=1, failed=self.failed)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=True)

    def update(self, frames: int, elapsed: float) -> None:
        self.progress.update(self.task, fps=frames / elapsed if elapsed > 0 else 0.0)


# ---------------------------------------------------------------------------------------------
# Local processes


def _local_worker(conn, graph_path: str, plugins, cpus: int, trust: bool, pin: bool, counter) -> None:
    """The loop of one local worker process: a job in, its record out, until told to stop."""
    import signal

    from apps.cluster.worker import GraphRunner, limits

    # Ctrl-C reaches the whole process group: the driver handles it and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def count() -> None:
        with counter.get_lock():
            counter.value += 1

    runner = GraphRunner(graph_path, plugins, cpus, on_frame=count, trust=trust, pin=pin)
    conn.send(("ready", {"node": "local", "pid": os.getpid(), **limits()}))
    while True:
        msg = conn.recv()
        if msg is None:
            runner.close()
            return
        job, attempt = msg
        conn.send(("record", runner.run(job, attempt)))


class _Slot:
    def __init__(self, proc, conn) -> None:
        self.proc, self.conn = proc, conn
        self.ready = False
        self.where: dict = {"node": "local", "pid": proc.pid}  # and the worker's limits, once ready
        self.job: tuple | None = None  # (handle, job, attempt) in flight


class LocalBackend:
    """``jobs`` worker processes, each with its own pipe: one that dies loses only its own file,
    and is replaced. Spawned, so no thread or lock of the driver is inherited."""

    def __init__(self, graph_path: str, plugins, cpus: int, jobs: int, trust: bool = False, pin: bool = True) -> None:
        import multiprocessing as mp

        from apps.cluster.worker import worker_env

        self.ctx = mp.get_context("spawn")
        self.args = (graph_path, plugins, cpus, trust, pin)
        self.env = worker_env(cpus)
        self.jobs = max(1, jobs)
        self.counter = self.ctx.Value("q", 0)
        self.slots: list[_Slot] = []
        self.handles = 0

    def __enter__(self):
        self.slots = [self._spawn() for _ in range(self.jobs)]
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _spawn(self) -> _Slot:
        ours, theirs = self.ctx.Pipe()
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # the child reads these at start, before any engine loads
        try:
            proc = self.ctx.Process(target=_local_worker, args=(theirs, *self.args, self.counter),
                                    name="vpipe-batch-worker", daemon=True)
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        theirs.close()
        return _Slot(proc, ours)

    def free(self) -> bool:
        return any(s.ready and s.job is None for s in self.slots)

    def submit(self, job: Job, attempt: str):
        slot = next(s for s in self.slots if s.ready and s.job is None)
        self.handles += 1
        slot.job = (self.handles, job, attempt)
        slot.conn.send((job, attempt))
        return self.handles, dict(slot.where)

    def wait(self, timeout: float):
        from multiprocessing.connection import wait

        waitables = [s.conn for s in self.slots] + [s.proc.sentinel for s in self.slots]
        ready = set(wait(waitables, timeout))
        out = []
        for i, slot in enumerate(self.slots):
            if slot.conn in ready:
                try:
                    kind, value = slot.conn.recv()
                except (EOFError, OSError):
                    kind, value = "died", None
                if kind == "ready":
                    slot.ready = True
                    slot.where = value
                    continue
                if kind == "record":
                    handle, _, _ = slot.job
                    slot.job = None
                    out.append((handle, value))
                    continue
            if slot.proc.sentinel in ready or not slot.proc.is_alive():
                slot.proc.join(5)
                code = slot.proc.exitcode
                if slot.job is None and not slot.ready:
                    raise BatchError(f"a worker process could not start (exit status {code}): the graph or a "
                                     "plugin does not load in a fresh process")
                if slot.job is not None:
                    handle, _, _ = slot.job
                    out.append((handle, Lost(f"its worker process (pid {slot.proc.pid}) died with exit status {code}")))
                slot.conn.close()
                self.slots[i] = self._spawn()
        return out

    def frames(self) -> int:
        return int(self.counter.value)

    def close(self) -> None:
        """Ends the workers; runs still in flight (Ctrl-C, a driver error) are not waited for."""
        for slot in self.slots:
            try:
                if slot.job is None and slot.proc.is_alive():
                    slot.conn.send(None)
            except OSError:
                pass
        for slot in self.slots:
            if slot.job is not None and slot.proc.is_alive():
                slot.proc.terminate()
        for slot in self.slots:
            slot.proc.join(10)
            if slot.proc.is_alive():
                slot.proc.kill()
                slot.proc.join(5)
            slot.conn.close()
        self.slots = []


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def exit_code(records: list[dict]) -> int:
    """0 when every input succeeded, 1 otherwise."""
    return 0 if all(r.get("status") == "ok" for r in records) else 1


def summary_table(records: list[dict], wall_s: float):
    """A rich table: files ok and failed, frames, frames/s; then each failed file with its error."""
    from rich.table import Table

    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    frames = sum(int(r.get("frames") or 0) for r in records)
    fps = frames / wall_s if wall_s > 0 else 0.0
    t = Table(title=f"batch: {len(ok)} ok, {len(failed)} failed of {len(records)} files; {frames} frames in "
                    f"{wall_s:.1f} s, {fps:.1f} frames/s", title_justify="left")
    for col in ("input", "status", "frames", "seconds", "node", "error"):
        t.add_column(col, justify="right" if col in ("frames", "seconds") else "left", overflow="fold")
    for r in records:
        t.add_row(str(r["input"]), r["status"], str(r.get("frames", 0)), f"{float(r.get('seconds') or 0):.2f}",
                  str(r.get("node") or "")[:12], r.get("error") or "")
    return t

