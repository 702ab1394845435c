"""Beyond one process: many input files (batch) and many live streams, on local processes or Ray.

One whole graph per input file or per stream runs inside one worker process, with its model in
that process; only paths, side packets and small records cross processes, never frames.

- ``plan.py``: inputs and per-input side packets (templates, output files, temporary names)
- ``manifest.py``: the JSON-lines record of a batch (resume, exactly once)
- ``worker.py``: what runs in a worker process (a whole graph per input, thread caps)
- ``batch.py``: ``run_batch`` (the driver: dispatch, retries of lost workers, progress)
- ``ray_pool.py``: batch workers as Ray actors (imported only when Ray is used)
- ``live.py``: ``run_streams`` (one Ray actor per live stream, a supervisor for stalls)
- ``cli.py``: the ``vpipe run --inputs/--streams`` side of the command

Nothing here imports Ray until a Ray run is asked for, and importing the package imports none of
its modules: ``run_batch``/``run_streams`` are read from theirs when first used, so ``vpipe run`` on
one input (which needs ``cli.py``'s ``normalize_ray_flag`` only) loads no batch or stream machinery.
See docs/cluster.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {"run_batch": "batch", "run_streams": "live"}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from apps.cluster.batch import run_batch
    from apps.cluster.live import run_streams


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'apps.cluster' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
