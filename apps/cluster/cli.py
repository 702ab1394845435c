"""``vpipe run`` over many inputs or many streams: the command-line side of ``apps/cluster``.

- ``vpipe run GRAPH --inputs 'videos/*.mp4' --set output='out/{stem}.mp4' [--jobs N | --ray [ADDRESS]]``
  runs GRAPH once per input (see ``batch.py``); exit status 0 when every input succeeded, 1 when
  any failed, 130 on Ctrl-C and 143 on SIGTERM (the manifest keeps what was done: ``--resume``
  goes on from there).
- ``vpipe run GRAPH --streams streams.yaml --ray [ADDRESS]`` runs one actor per live stream
  (see ``live.py``) until Ctrl-C or SIGTERM, showing a status table.

``--ray`` takes an optional address: alone (last, or followed by another option) it starts a local
Ray for the command; ``--ray auto``, ``--ray host:port``, ``--ray ray://host:10001`` join a cluster.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from typing import Any

from apps.common import EXIT_FAILED, EXIT_USAGE, CliError, fail, load_or_exit, stdout_console

_ADDRESS = re.compile(r"^(local|auto|ray://\S+|[A-Za-z0-9_.\-\[\]:]+:\d+)$")


def normalize_ray_flag(argv: list[str]) -> list[str]:
    """``--ray`` without a value (last, or before another option) becomes ``--ray=local``."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("--ray=local")
        else:
            out.append(arg)
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM during a batch: stopped like Ctrl-C, reported with exit status 143."""


@contextlib.contextmanager
def _sigterm_interrupts():
    def on_term(_signum, _frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def check_address(address: str) -> str:
    if not _ADDRESS.match(address):
        raise CliError(f"--ray '{address}' is not a Ray address (local, auto, host:port or ray://host:port); "
                       "put --ray after the graph, or write --ray=ADDRESS")
    return address


def many_or_exit(graph: str, sets, plugins, *, trust: bool = False, inputs, streams, jobs, ray, cpus_per_run: int,
                 manifest, resume: bool, retries: int, quiet: bool, pin: bool = True) -> int:
    """``vpipe run`` with --inputs, --streams, --jobs or --ray: checks they go together, runs."""
    if inputs and streams:
        raise fail("give --inputs (a batch) or --streams (live streams), not both", EXIT_USAGE)
    if streams:
        if sets:
            raise fail("--set does not go with --streams: give side packets per stream in the streams file",
                       EXIT_USAGE)
        return streams_or_exit(graph, streams, plugins=plugins, trust=trust, ray=ray, cpus_per_run=cpus_per_run,
                               quiet=quiet, pin=pin)
    if not inputs:
        raise fail("--ray and --jobs run many inputs or streams: give --inputs or --streams too", EXIT_USAGE)
    _g, _path, sides = load_or_exit(graph, plugins, sets, trust)
    return batch_or_exit(graph, inputs, sides, plugins=plugins, trust=trust, jobs=jobs, ray=ray, cpus_per_run=cpus_per_run,
                         manifest=manifest, resume=resume, retries=retries, quiet=quiet, pin=pin)


def batch_or_exit(graph: str, inputs: list[str], sides: dict[str, Any], *, plugins, trust: bool = False,
                  jobs: int | None,
                  ray: str | None, cpus_per_run: int, manifest: str | None, resume: bool, retries: int,
                  quiet: bool, pin: bool = True) -> int:
    """Runs the batch, prints the summary; returns the exit status."""
    from apps.cluster.batch import BatchError, exit_code, run_batch, summary_table
    from apps.cluster.plan import PlanError
    from pipeline import GraphConfigError

    try:
        if ray is not None:
            check_address(ray)
        if jobs is not None and jobs < 1:
            raise CliError(f"--jobs must be at least 1, got {jobs}")
        if cpus_per_run < 1:
            raise CliError(f"--cpus-per-run must be at least 1, got {cpus_per_run}")
        t0 = time.perf_counter()
        with _sigterm_interrupts():
            records = run_batch(graph, inputs, sides, address=ray, jobs=jobs, cpus_per_run=cpus_per_run,
                                manifest=manifest, resume=resume, plugins=plugins, trust=trust, retries=retries,
                                progress=not quiet, pin=pin)
    except CliError as e:
        raise fail(str(e), e.code)
    except PlanError as e:
        raise fail(str(e), EXIT_USAGE)
    except GraphConfigError as e:
        raise fail(str(e), EXIT_FAILED)
    except BatchError as e:
        raise fail(str(e), EXIT_FAILED)
    except Terminated:
        raise fail("terminated (SIGTERM): runs in flight were stopped; --resume goes on from the manifest", 143)
    except KeyboardInterrupt:
        raise fail("interrupted (Ctrl-C): runs in flight were stopped; --resume goes on from the manifest", 130)
    stdout_console().print(summary_table(records, time.perf_counter() - t0))
    return exit_code(records)


def streams_or_exit(graph: str, streams_file: str, *, plugins, trust: bool = False, ray: str | None,
                    cpus_per_run: int, quiet: bool, pin: bool = True) -> int:
    from apps.cluster.batch import BatchError
    from apps.cluster.live import StreamsError, run_streams, status_table

    try:
        if ray is None:
            raise CliError("--streams runs on Ray: add --ray (a local Ray) or --ray ADDRESS")
        check_address(ray)
        result = run_streams(graph, streams_file, address=ray, plugins=plugins, trust=trust, cpus_per_run=cpus_per_run,
                             show=not quiet, pin=pin)
    except CliError as e:
        raise fail(str(e), e.code)
    except (StreamsError, BatchError) as e:
        raise fail(str(e), EXIT_FAILED)
    stdout_console().print(status_table(result.statuses, title="streams (final)"))
    return result.exit_code
