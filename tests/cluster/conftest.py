"""A real multi-node Ray cluster on this machine, started by the tests themselves.

``ray.cluster_utils.Cluster``: a head with 0 CPUs (it runs no vpipe work, as a real head would
not) and two worker nodes of 1 CPU each, 100 MB object stores (only jobs and records go through
them), health checks every 500 ms so a killed node is noticed within about two seconds, token
authentication set explicitly (a token made for the session, in the environment: nothing is
written to ~/.ray). Tests that kill a node add their own and kill that one.

At the end of the session the cluster is shut down and every process it started (raylets, GCS,
workers: every descendant of this process that appeared while it ran) must be gone.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

# Token authentication, set before Ray reads its configuration (at import): a token made for this
# session, given in the environment to the cluster's processes and to every vpipe command the
# tests start.
_SAVED_ENV = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = uuid.uuid4().hex + uuid.uuid4().hex

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vpipe[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

from tests.cluster.procs import alive, descendants  # noqa: E402

HERE = Path(__file__).resolve().parent
GRAPHS = HERE / "graphs"
PLUGIN = "tests.cluster.cluster_calcs"
OBJECT_STORE = 100 * 1024 * 1024
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                 "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


class LocalCluster:
    """The session's cluster and what the tests need of it."""

    def __init__(self) -> None:
        self.before = descendants(os.getpid())
        self.seen: set[int] = set()
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "object_store_memory": OBJECT_STORE, "include_dashboard": False,
            "_system_config": SYSTEM_CONFIG})
        self.workers = [self.add_node() for _ in range(2)]
        self.address = self.cluster.address
        ray.init(address=self.address, log_to_driver=False, logging_level="WARNING")
        self.cluster.wait_for_nodes()
        self.note_processes()

    def add_node(self):
        node = self.cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        self.note_processes()
        return node

    def remove_node(self, node) -> None:
        self.note_processes()
        self.cluster.remove_node(node, allow_graceful=False)

    def note_processes(self) -> None:
        self.seen |= descendants(os.getpid()) - self.before

    def wait_for_cpus(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while ray.available_resources().get("CPU", 0) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"the cluster did not free {n} CPUs within {timeout:.0f} s: "
                            f"{ray.available_resources()}")
            time.sleep(0.2)  # polling Ray's resource view: there is no event to wait on

    def shutdown(self) -> None:
        self.note_processes()
        ray.shutdown()
        self.cluster.shutdown()
        # multiprocessing's resource tracker (of a --jobs test) belongs to this process, not to Ray
        ours = {p for p in self.seen if alive(p) and "resource_tracker" not in _cmdline(p)}
        deadline = time.monotonic() + 30
        while any(alive(p) for p in ours) and time.monotonic() < deadline:
            time.sleep(0.2)  # processes exit asynchronously after the kill
        left = sorted(p for p in ours if alive(p))
        if left:
            names = {p: _cmdline(p) for p in left}
            pytest.fail(f"Ray processes of the tests outlived the cluster: {names}")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


@pytest.fixture(scope="session")
def ray_cluster():
    cluster = LocalCluster()
    try:
        yield cluster
    finally:
        cluster.shutdown()


def pytest_sessionfinish(session, exitstatus):
    for k, v in _SAVED_ENV.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """Two real videos of different content (carphone has a face, bikes has none), and a corrupt
    file with a video's name."""
    from models import catalog

    folder = tmp_path_factory.mktemp("videos")
    try:
        for name in ("carphone", "bikes"):
            shutil.copy(catalog.resolve(f"sample:{name}"), folder / f"{name}.mp4")
    except catalog.CatalogError as e:
        pytest.skip(f"sample videos are not available: {e}")
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2048))
    return folder
