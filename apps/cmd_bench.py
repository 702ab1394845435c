"""``vpipe bench``: benchmarks from the command line.

- ``vpipe bench engines MODEL [--engines openvino,onnxruntime] [--precisions fp32,bf16]``: every
  engine and precision on one model (load time, latency p50/p90, throughput with 1 and N in flight,
  error against the reference engine); a table, JSON and a PNG chart.
- ``vpipe bench run NAME [-- ARGS]``: runs ``tests/bench/bench_NAME.py`` (e.g. ``inference_overhead``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

bench_app = typer.Typer(help="Benchmarks: engines on a model, and the benchmark files under tests/bench.",
                        no_args_is_help=True)

_BENCH_DIR = Path(__file__).resolve().parents[1] / "tests" / "bench"


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@bench_app.command("engines")
def engines_cmd(
    model: str = typer.Argument(..., help="model path or catalog name (zoo:centerface, zoo:blazeface-short)"),
    engines: str = typer.Option(None, "--engines", "-e", help="comma-separated engines (default: every installed one; those that cannot read the model run its checked conversion)"),
    precisions: str = typer.Option("fp32", "--precisions", "-p", help="comma-separated: fp32,fp16,bf16,int8"),
    iters: int = typer.Option(50, help="timed inferences per engine for the latency percentiles"),
    in_flight: int = typer.Option(2, "--in-flight", "-n", help="requests in flight for the throughput column"),
    seconds: float = typer.Option(2.0, help="duration of each throughput run"),
    shape: str = typer.Option(None, help="input shape for dynamic models, e.g. 1,3,480,640"),
    threads: int = typer.Option(None, help="runtime threads (default: the runtime's)"),
    devices: str = typer.Option("auto", "--devices", "-d",
                                help="comma-separated devices, each engine's names: cpu, cuda, GPU, vulkan, ..."),
    out: Path = typer.Option(Path("out/bench"), "--out", "-o", help="folder for the JSON and PNG"),
) -> None:
    """Measure every engine (and precision) on MODEL."""
    from rich.console import Console

    from models.catalog import CatalogError
    from apps import engine_bench as bench
    from calculators.inference.engine import InferenceError

    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        dims = [int(s) for s in shape.replace("x", ",").split(",")] if shape else None
    except ValueError:
        raise typer.BadParameter(f"takes integers, e.g. 1,3,480,640; got {shape!r}", param_hint="--shape") from None
    try:
        report = bench.bench_engines(
            model, _split(engines), _split(precisions) or ["fp32"], iters=iters, in_flight=in_flight,
            seconds=seconds, shape=dims, threads=threads, devices=_split(devices) or ["auto"],
            log=lambda m: console.print(m, style="dim"))
    except (InferenceError, CatalogError, ImportError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2)
    console.print(bench.table(report))
    stem = "engines-" + Path(model.split(":", 1)[-1]).stem
    js, png = bench.write(report, out, stem)
    console.print(f"wrote {js} and {png}")


@bench_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="benchmark name: tests/bench/bench_NAME.py")) -> None:
    """Run one benchmark file (extra arguments are passed on)."""
    script = _BENCH_DIR / f"bench_{name}.py"
    if not script.is_file():
        have = sorted(p.stem[len("bench_"):] for p in _BENCH_DIR.glob("bench_*.py"))
        typer.echo(f"no benchmark {name!r}; available: {', '.join(have)}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(subprocess.call([sys.executable, str(script), *ctx.args]))


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
