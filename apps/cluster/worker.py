"""What runs inside one worker process (a ``--jobs`` process or a Ray actor): whole graphs, one at
a time, with the process's threads capped to its CPU budget.

``GraphRunner(graph_path, plugins, cpus)`` imports the calculators and plugins and loads the graph
file once; ``run(job, attempt)`` runs one whole graph for one input and returns a small record
(status, frames, seconds, node, error). Frames never leave the process: only the record does.
The models a run loads stay loaded for the next run in the same process (``model_cache.hold_loaded``:
BlazeFace's OpenVINO compile alone measured 0.7-1.5 s here, against 2 s for the whole 120-frame
file), so a worker pays the import and the model load once, not once per file.

Thread budget: a graph given ``cpus`` CPUs runs with ``cpus`` scheduler threads, every node option
named ``threads`` (decoder, encoder, inference engine) that the graph leaves unset or automatic, or
sets higher, set to ``cpus``,
every named executor capped to ``cpus``, OpenCV's pool set to ``cpus`` and the OpenMP/BLAS
variables set before any engine loads. Two runs on two cores with default threads measured 36 fps
against 45 fps with one thread each: oversubscription costs more than the threads bring.

Capping thread pools is not enough for a run to use ``cpus`` cores: a graph's source, scheduler and
inference-executor threads run at once (face detection: about 0.35, 0.35 and 0.7 s of CPU for a
250-frame file), so an unpinned run spreads over every idle core, and two runs on two cores then
compete for both. With ``pin`` (the default) each worker process claims ``cpus`` cores of this
machine that no other worker holds (``claim_cpus``: a non-blocking ``flock`` on one file per core
in ``$VPIPE_CPU_SLOTS`` or the temporary folder, released when the process ends, whatever the Ray
node or batch that started it) and binds all its threads to them. A worker that finds every core
held (more workers than cores) runs unpinned. Linux only (``os.sched_setaffinity``).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from apps.cluster.plan import Job

#: environment variables read by OpenMP, BLAS and the engines' thread pools at load time
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "OPENCV_FOR_THREADS_NUM")


def thread_env(cpus: int) -> dict[str, str]:
    """The environment that caps native thread pools to ``cpus`` (set before engines import)."""
    return {k: str(cpus) for k in THREAD_ENV}


def worker_env(cpus: int) -> dict[str, str]:
    """The environment of a worker process: the thread caps, and the driver's ``$VPIPE_CPU_SLOTS``
    when it has one (the folder of core files its workers share)."""
    env = thread_env(cpus)
    if os.environ.get("VPIPE_CPU_SLOTS"):
        env["VPIPE_CPU_SLOTS"] = os.environ["VPIPE_CPU_SLOTS"]
    return env


def cap_process_threads(cpus: int) -> None:
    """Caps this process's native thread pools (call before loading any model)."""
    os.environ.update(thread_env(cpus))
    import cv2

    cv2.setNumThreads(cpus)


def slot_folder() -> Path:
    """Where this machine's core files are: ``$VPIPE_CPU_SLOTS``, else one folder per user in the
    temporary folder. Workers that share it never share a core."""
    given = os.environ.get("VPIPE_CPU_SLOTS")
    return Path(given) if given else Path(tempfile.gettempdir()) / f"vpipe-cpu-slots-{os.getuid()}"


def claim_cpus(cpus: int, folder: Path | None = None) -> tuple[list[int], list[IO]] | None:
    """Claims the first group of ``cpus`` cores of this process's allowed set (in order: cores 0-1,
    2-3, ... for 2) that no other worker holds; returns the cores and their open core files (their
    locks are the claim: keep them open; they end with the process), or None when every group is
    held or the platform cannot pin."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    import fcntl

    allowed = sorted(os.sched_getaffinity(0))
    folder = folder or slot_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(len(allowed) // cpus):
        cores, held = allowed[k * cpus:(k + 1) * cpus], []
        for core in cores:
            f = open(folder / f"core-{core}.lock", "a")  # noqa: SIM115 - held open: the lock is the claim
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                break
            held.append(f)
        if len(held) == len(cores):
            return cores, held
        for f in held:
            f.close()
    return None


def pin_process(cores: list[int]) -> None:
    """Binds every thread of this process (those running now; later ones inherit it) to ``cores``."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile


def limits() -> dict[str, Any]:
    """What this process's runs are held to: its cores, OpenCV's threads, the thread variables."""
    import cv2

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu_set": cores, "opencv_threads": cv2.getNumThreads(),
            "env": {k: os.environ.get(k) for k in THREAD_ENV}}


def cap_graph_threads(spec, cpus: int) -> list[str]:
    """Sets ``threads`` to ``cpus`` on every node whose options have such a field, where the graph
    leaves it unset or automatic (0) or asks for more; caps named executors. Returns
    ``node.threads`` for each value set (for the record)."""
    changed = []
    for node in spec.nodes:
        model = getattr(node.cls, "Options", None)
        fields = getattr(model, "model_fields", {}) if model is not None else {}
        if "threads" not in fields:
            continue
        given = node.options.get("threads")
        if given is None or given == 0 or (isinstance(given, int) and given > cpus):
            node.options = {**node.options, "threads": cpus}
            changed.append(f"{node.name}.threads")
    spec.executors = {name: min(n, cpus) for name, n in spec.executors.items()}
    return changed


def counted_stream(graph) -> str | None:
    """The stream whose packets are counted as frames: the first output of the first source
    (what was decoded), as ``vpipe run`` counts them."""
    for n in graph.topology()["nodes"]:
        if not n["inputs"] and n["outputs"]:
            return next(iter(n["outputs"].values()))
    return None


def error_text(exc: BaseException) -> str:
    """One line naming what failed: a run error's own first line, else ``Type: message``."""
    from pipeline import GraphConfigError, GraphRunError

    if isinstance(exc, GraphRunError):
        return exc.args[0]
    if isinstance(exc, GraphConfigError):
        return "; ".join(str(p) for p in exc.problems)
    return f"{type(exc).__name__}: {exc}"


class GraphRunner:
    """Runs whole graphs for one input at a time, in this process."""

    def __init__(self, graph_path: str, plugins: list[str] | None = None, cpus: int = 1,
                 search_paths: list[str] | None = None, on_frame=None, trust: bool = False,
                 pin: bool = True) -> None:
        cap_process_threads(cpus)
        self.slot: list[IO] = []  # the claimed cores' files (open while this runner lives)
        if pin:
            claim = claim_cpus(cpus)
            if claim is not None:
                cores, self.slot = claim
                pin_process(cores)
        from pipeline import Graph
        from pipeline import plugins as user_plugins

        for module in plugins or []:
            user_plugins.load(module)  # as `vpipe run --plugin` does (apps/common.py)
        self.cpus = cpus
        self.graph_path = graph_path
        self.spec = Graph.from_yaml(Path(graph_path), search_paths=search_paths, trust=trust).spec
        self.capped = cap_graph_threads(self.spec, cpus)
        self.frames_now = 0  # frames of the run in progress (read by a progress poll)
        self.frames_total = 0  # frames of every run of this process
        self.on_frame = on_frame  # called per frame (a --jobs worker feeds the driver's counter)
        self._lock = threading.Lock()
        self.node = node_name()
        self.pid = os.getpid()
        self.held: list = []  # models kept loaded across runs (model_cache.hold_loaded)

    def new_graph(self):
        from pipeline import Graph

        return Graph(self.spec, threads=self.cpus)

    def run(self, job: Job, attempt: str) -> dict[str, Any]:
        """Runs ``job`` with its outputs under temporary names (renamed when the run ends well,
        removed when it fails); returns the record."""
        from calculators.inference import model_cache

        t0, c0 = time.perf_counter(), time.process_time()
        self.frames_now = 0
        tmp = job.temp_outputs(attempt)
        sides = {**job.side_packets, **tmp}
        record: dict[str, Any] = {"input": job.input, "index": job.index, "node": self.node, "pid": self.pid,
                                  "cpus": self.cpus, "capped": self.capped, "outputs": dict(job.outputs)}
        try:
            for path in tmp.values():
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            graph = self.new_graph()
            stream = counted_stream(graph)
            if stream is not None:
                graph.observe(stream, self._count)
            loads = model_cache.stats.loads
            graph.start(sides)  # opens every node: the models are loaded (or found loaded) now
            self._hold_models()
            record["models_loaded"] = model_cache.stats.loads - loads
            graph.wait()
            for name, path in tmp.items():
                if os.path.exists(path):
                    os.replace(path, job.outputs[name])
            record.update(status="ok", error=None)
        except Exception as e:  # noqa: BLE001 - a failing file is a record, never the worker's death
            for path in tmp.values():
                _remove(path)
            record.update(status="failed", error=error_text(e), error_type=type(e).__name__)
        # cpu_s: this process's CPU (every thread, user + system) over the run: one run at a time per process
        record.update(frames=self.frames_now, seconds=round(time.perf_counter() - t0, 4),
                      cpu_s=round(time.process_time() - c0, 4), cpu_set=limits()["cpu_set"])
        return record

    def _hold_models(self) -> None:
        """Keeps every model this process has loaded for the next file (a worker runs many)."""
        from calculators.inference import model_cache

        for shared in model_cache.hold_loaded(skip={h.key for h in self.held}):
            self.held.append(shared)

    def close(self) -> None:
        """Gives back the models kept loaded across runs."""
        from calculators.inference import model_cache

        held, self.held = self.held, []
        for shared in held:
            model_cache.release(shared)
        for f in self.slot:
            f.close()  # the cores are free for another worker
        self.slot = []

    def _count(self, _packet) -> None:
        with self._lock:
            self.frames_now += 1
            self.frames_total += 1
        if self.on_frame is not None:
            self.on_frame()


def node_name() -> str:
    """The Ray node id when running in a Ray worker, else the host name."""
    ray = sys.modules.get("ray")  # never imported here: a --jobs worker has no use for it
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return socket.gethostname()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
