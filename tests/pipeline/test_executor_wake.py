"""Which worker an executor wakes (scheduler.py, ``Executor.sleeping``): the one that went idle
last, so a graph fed one packet at a time stays on one thread, where its caches are warm,
instead of moving to another worker at each packet (a first-come wake-up, FIFO, takes the
worker that has waited longest: each packet on the next thread in turn)."""

from __future__ import annotations

import threading

import pytest

from pipeline import Calculator, Graph, Input, Output, register
from pipeline.scheduler import Scheduler


@register
class TestWorkerName(Calculator):
    """Emits the name of the thread its call runs on."""

    inputs = {"IN": Input(object)}
    outputs = {"OUT": Output(str)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(threading.current_thread().name)


class IdleWorkers:
    """Counts the times a worker of the run went idle with nothing else busy
    (``Scheduler.executor_idle``, called once the worker is among the sleeping), and waits for
    a count, with a deadline."""

    def __init__(self, monkeypatch):
        self.count = 0
        self.cond = threading.Condition()
        original = Scheduler.executor_idle

        def executor_idle(sched, ex):
            original(sched, ex)
            with self.cond:
                self.count += 1
                self.cond.notify_all()

        monkeypatch.setattr(Scheduler, "executor_idle", executor_idle)

    def wait_for(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.count >= n, timeout=30), \
                f"{n} idle workers expected within 30 s, saw {self.count}"


@pytest.mark.parametrize("threads", [2, 3])
def test_each_packet_goes_to_the_worker_that_went_idle_last(monkeypatch, threads):
    idle = IdleWorkers(monkeypatch)
    g = Graph.from_dict({"inputs": ["in"], "outputs": ["out"],
                         "nodes": [{"calculator": "TestWorkerName", "inputs": ["in"], "outputs": ["out"]}]},
                        threads=threads)
    names: list[str] = []
    g.observe("out", lambda p: names.append(p.value))
    g.start()
    idle.wait_for(threads)  # every worker asleep
    for i in range(3 * threads):
        g.add_packet("in", i, i)
        idle.wait_for(threads + i + 1)  # its worker asleep again, on top of the others
    g.close_input("in")
    g.wait(30)
    assert len(names) == 3 * threads
    assert len(set(names)) == 1, f"the packets ran on {sorted(set(names))}, one after the other: {names}"
    assert names[0].startswith("vpipe-default-")
