"""What every benchmark shares: interleaved rounds and the JSON record (machine, versions, command).

docs/benchmarks.md promises that a benchmark measures candidate and baseline interleaved in the
same run, keeps medians, and writes its figures as JSON with the machine, the library versions
and the command line. This module is the one place that does those things, so each
``bench_<subject>.py`` calls it rather than writing its own:

    from _meta import interleaved, median, write_json      # tests/bench is on sys.path when run

    runs = interleaved({"baseline": base_fn, "graph": graph_fn}, repeats=5)  # seconds per call
    write_json("out/bench/media.json", "media", {"runs_s": runs, ...}, libraries=["av"])

``write_json`` adds ``machine`` (CPU model, cores, accelerator), ``versions`` (python, numpy and
each library asked for that is installed), ``command`` (the exact command line, runnable again from
the repository root) and ``date`` (UTC) to the record. ``interleaved`` runs every case once per
round, in the same order, after one warm-up call each, so that a change in the machine's load hits
all cases of a round alike; compare cases by per-round ratios (``round_ratios``).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# Libraries whose versions every record carries when installed (a benchmark adds its own).
COMMON_LIBRARIES = ("numpy",)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerators() -> list[str]:
    """GPUs this process could use: NVIDIA ones by name (``nvidia-smi -L``); empty when none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def machine() -> dict:
    """The machine a figure came from: CPU model, logical cores, the ones this process may use,
    accelerators, OS and Python."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "cores_usable": usable,
        "accelerators": accelerators() or ["none"],
        "os": platform.platform(), "python": platform.python_version(),
    }


def versions(libraries: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of ``libraries`` (distribution names, e.g. ``av``, ``opencv-contrib-python``)
    plus the common ones; a library that is not installed is left out."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (*COMMON_LIBRARIES, *libraries):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            # an import name that differs from its distribution's (cv2): ask the module itself
            if importlib.util.find_spec(name) is not None:
                mod = __import__(name)
                out[name] = str(getattr(mod, "__version__", "?"))
    return out


def command() -> str:
    """The command line that started this process, as it can be pasted again."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def metadata(libraries: Iterable[str] = ()) -> dict:
    """``machine``, ``versions``, ``command`` and ``date`` for a benchmark's JSON record."""
    return {
        "machine": machine(), "versions": versions(libraries), "command": command(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def interleaved(cases: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1,
                measure: Callable[[Callable[[], object]], float] | None = None) -> dict[str, list[float]]:
    """Run each case ``warmup`` times, then ``repeats`` rounds of every case once, in order.

    Returns, per case, one figure per round: the seconds ``fn()`` took, or what ``measure(fn)``
    returns when given (e.g. a p50 latency the case measures itself)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    measure = measure or timed
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    runs: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for key, fn in cases.items():
            runs[key].append(measure(fn))
    return runs


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def round_ratios(runs: Mapping[str, list[float]], candidate: str, baseline: str) -> dict[str, float]:
    """candidate / baseline in each round (the load of a round cancels): median, min and max."""
    per_round = [a / b for a, b in zip(runs[candidate], runs[baseline], strict=True)]
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}


def write_json(path: str | Path, benchmark: str, results: Mapping, libraries: Iterable[str] = ()) -> Path:
    """Write ``results`` with the benchmark's name and ``metadata(libraries)`` to ``path``."""
    record = {"benchmark": benchmark, **metadata(libraries), **results}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    return out


def whole_process(argv: list[str], cwd: str | Path, timeout: float = 1800) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system, all its threads) of one whole
    process, which must succeed (else the benchmark stops with its stderr's end)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
