"""The batcher: groups concurrent requests for one model (from several timestamps in flight and/or
several nodes sharing it) into one batch of up to N rows, waiting at most T milliseconds."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .engine import Engine

class _Request:
    __slots__ = ("arrays", "n", "taken", "done", "result", "error")

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.arrays = arrays
        self.n = int(arrays[0].shape[0])
        self.taken = False
        self.done = threading.Event()
        self.result: list[np.ndarray] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Stacks concurrent requests along the batch axis: up to ``max_batch`` rows, or whatever has
    arrived ``timeout_s`` after the first request of a batch.

    No thread of its own (leader/follower): the first caller of a batch waits for company, the
    caller that fills the batch (or the first one, at its deadline) runs it and hands each caller
    its rows. Requests come from a node's concurrent ``process`` calls (``max_in_flight``) and from
    every node sharing the model, so it batches across timestamps and across streams.
    """

    def __init__(self, engine: Engine, max_batch: int, timeout_s: float) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._rows = 0
        self.batches: list[int] = []  # rows per batch run (bounded by callers; for stats/tests)

    def _take(self) -> list[_Request]:
        batch, rows = [], 0
        while self._pending and (not batch or rows + self._pending[0].n <= self.max_batch):
            r = self._pending.pop(0)
            r.taken = True
            rows += r.n
            batch.append(r)
        self._rows -= rows
        self._cond.notify_all()
        return batch

    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        req = _Request(arrays)
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            self._pending.append(req)
            self._rows += req.n
        while True:
            batch: list[_Request] = []
            with self._cond:
                while not req.taken:
                    head = self._pending[0] is req
                    left = deadline - time.monotonic() if head else None
                    if self._rows >= self.max_batch or (head and left <= 0):
                        batch = self._take()
                        break
                    self._cond.wait(left)
            if batch:
                self._run(batch)
            if req.taken:
                break
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result  # type: ignore[return-value]

    def _run(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                batch[0].result = self.engine.infer(batch[0].arrays)
            else:
                stacked = [np.concatenate([r.arrays[i] for r in batch], axis=0)
                           for i in range(len(batch[0].arrays))]
                outs = self.engine.infer(stacked)
                start = 0
                for r in batch:
                    r.result = [o[start:start + r.n] for o in outs]
                    start += r.n
            self.batches.append(sum(r.n for r in batch))
            if len(self.batches) > 10_000:
                del self.batches[:5_000]
        except BaseException as e:  # every waiter gets the error
            for r in batch:
                r.error = e
        finally:
            for r in batch:
                r.done.set()
