"""Batch workers on Ray: long-lived actors, each running whole graphs one file at a time.

One actor per ``cpus_per_run`` CPUs of the cluster (or ``jobs`` of them), placed with the SPREAD
strategy so runs land on every node before doubling up; each reserves ``num_cpus=cpus_per_run``
and starts with the native thread pools capped to that (``runtime_env`` variables) and, with
``pin``, its threads bound to cores of its own (``apps/cluster/worker.py``). The import and graph
load (~1 s) are paid once per actor, not per file.

An actor that dies (its process killed, its node lost) is replaced, and the file it held is
handed back to the driver as lost, to be retried elsewhere. An actor whose constructor fails (the
graph or a plugin cannot load on the workers) ends the batch with that error: every file would fail
the same way.
"""

from __future__ import annotations

import time
from typing import Any

from apps.cluster.batch import BatchError, Lost
from apps.cluster.plan import Job
from apps.cluster.worker import GraphRunner, limits, worker_env

#: how long the batch waits for Ray to place a worker when none is alive, before giving up
PLACEMENT_TIMEOUT_S = 120.0
#: the object store of a Ray started for a batch: only jobs and records go through it
LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise BatchError(f"Ray is not installed ({e}); install the extra: pip install 'vpipe[ray]'") from None
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connects this process to Ray; returns True when it did (and so must ``ray.shutdown()``).

    ``None``/``"local"``: a Ray started for this process (``num_cpus``, a small object store);
    ``"auto"``, ``"host:port"``, ``"ray://host:10001"``: an existing cluster. Already connected:
    that connection is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    common = dict(log_to_driver=False, logging_level="WARNING", include_dashboard=False)
    try:
        if address in (None, "", "local"):
            # address="local": always a new Ray, even when one runs on this machine (ray.init()
            # alone would join the cluster named in Ray's address file instead)
            ray.init(address="local", num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
        else:
            common.pop("include_dashboard")
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BatchError(f"cannot connect to Ray at {address or 'a local Ray'}: {type(e).__name__}: {e}") from None
    return True


class GraphActor:
    """The Ray actor of a batch worker (wrapped with ``ray.remote`` by ``RayBackend``)."""

    def __init__(self, graph_path: str, plugins: list[str] | None, cpus: int, trust: bool = False,
                 pin: bool = True) -> None:
        self.runner = GraphRunner(graph_path, plugins, cpus, trust=trust, pin=pin)

    def where(self) -> dict[str, Any]:
        """Where this worker runs and what it is held to (``limits``: cores, OpenCV threads, variables)."""
        return {"node": self.runner.node, "pid": self.runner.pid, **limits()}

    def run(self, job: Job, attempt: str) -> dict[str, Any]:
        return self.runner.run(job, attempt)

    def frames(self) -> int:
        return self.runner.frames_total


class RayBackend:
    def __init__(self, address: str | None, graph_path: str, plugins, cpus: int, jobs: int | None, n_jobs: int,
                 trust: bool = False, pin: bool = True) -> None:
        self.ray = import_ray()
        self.address = address
        self.args = (graph_path, plugins, cpus, trust, pin)
        self.cpus = cpus
        self.want = jobs
        self.n_jobs = n_jobs
        self.owns = False
        self.idle: list = []  # actors ready for a job
        self.where: dict = {}  # actor -> {"node", "pid"}
        self.starting: dict = {}  # ref of where() -> actor not yet ready
        self.running: dict = {}  # ref of run() -> actor
        self.frame_refs: dict = {}  # actor -> ref of frames() in flight
        self.frames_of: dict = {}  # actor -> last frames() answer
        self.frames_lost = 0
        self.no_worker_since: float | None = None

    def __enter__(self):
        ray = self.ray
        self.owns = connect(self.address, None if self.want is None else self.want * self.cpus)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        if cluster_cpus < self.cpus:
            self.close()
            raise BatchError(f"the Ray cluster has {cluster_cpus} CPUs; a run needs --cpus-per-run {self.cpus}")
        slots = self.want or max(1, cluster_cpus // self.cpus)
        self.slots = max(1, min(slots, self.n_jobs))
        cpus = self.cpus
        self.actor_cls = ray.remote(GraphActor).options(
            num_cpus=cpus, scheduling_strategy="SPREAD", max_restarts=0, max_concurrency=2,
            runtime_env={"env_vars": worker_env(cpus)})
        for _ in range(self.slots):
            self._start_actor()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _start_actor(self) -> None:
        actor = self.actor_cls.remote(*self.args)
        self.starting[actor.where.remote()] = actor

    def free(self) -> bool:
        return bool(self.idle)

    def submit(self, job: Job, attempt: str):
        actor = self.idle.pop()
        ref = actor.run.remote(job, attempt)
        self.running[ref] = actor
        return ref, self.where.get(actor, {})

    def wait(self, timeout: float):
        ray = self.ray
        refs = list(self.starting) + list(self.running)
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            if ref in self.starting:
                actor = self.starting.pop(ref)
                try:
                    self.where[actor] = ray.get(ref)
                    self.idle.append(actor)
                except ray.exceptions.RayActorError as e:
                    if e.actor_init_failed:
                        raise BatchError(f"a Ray worker could not load the graph: {_first_line(e)}") from None
                    self._start_actor()  # placed on a node that died meanwhile: try again
                continue
            actor = self.running.pop(ref)
            try:
                out.append((ref, ray.get(ref)))
                self.idle.append(actor)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError,
                    ray.exceptions.ObjectLostError) as e:
                out.append((ref, Lost(f"{type(e).__name__} on node {self.where.get(actor, {}).get('node', '?')[:12]}")))
                self._forget(actor)
                self._start_actor()
        self._check_placement()
        return out

    def _forget(self, actor) -> None:
        self.frames_lost += self.frames_of.pop(actor, 0)
        self.frame_refs.pop(actor, None)
        self.where.pop(actor, None)
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it is dead already
            pass

    def _check_placement(self) -> None:
        if self.idle or self.running:
            self.no_worker_since = None
            return
        now = time.monotonic()
        if self.no_worker_since is None:
            self.no_worker_since = now
        elif now - self.no_worker_since > PLACEMENT_TIMEOUT_S:
            raise BatchError(f"no Ray worker could be placed for {PLACEMENT_TIMEOUT_S:.0f} s (each needs "
                             f"{self.cpus} CPU; the cluster has {self.ray.cluster_resources().get('CPU', 0)} CPU)")

    def frames(self) -> int:
        """Frames decoded by every actor so far (polled, never waited for)."""
        ray = self.ray
        for actor in list(self.where):
            ref = self.frame_refs.get(actor)
            if ref is not None:
                done, _ = ray.wait([ref], timeout=0)
                if not done:
                    continue
                try:
                    self.frames_of[actor] = ray.get(ref)
                except ray.exceptions.RayError:
                    pass
            self.frame_refs[actor] = actor.frames.remote()
        return self.frames_lost + sum(self.frames_of.values())

    def close(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            return
        for actor in [*self.idle, *self.running.values(), *self.starting.values()]:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.idle, self.running, self.starting = [], {}, {}
        if self.owns:
            ray.shutdown()
            self.owns = False


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__
