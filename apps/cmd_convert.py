"""``vpipe convert MODEL --to openvino|ncnn|tensorrt|onnx``: convert a model and check it.

    vpipe convert zoo:centerface --to openvino
    vpipe convert zoo:blazeface-short --to onnx
    vpipe convert model.onnx --to tensorrt --fp16 --shape 1,3,480,640

The converted model is checked against its source on sample-video frames and random inputs; the
command prints the per-output max abs error and exits 1 (caching nothing) beyond the tolerance.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert(
        model: str = typer.Argument(..., help="a model path, zoo:NAME or catalog name (.onnx or .tflite)"),
        to: str = typer.Option(..., "--to", help="onnx | openvino | ncnn | tensorrt"),
        shape: str = typer.Option(None, help="input shape for dynamic models, e.g. 1,3,480,640"),
        value_range: str = typer.Option(None, "--range", help="input value range for the checks, e.g. -1,1"),
        fp16: bool = typer.Option(False, "--fp16", help="half-precision weights (openvino, ncnn, tensorrt)"),
        force: bool = typer.Option(False, "--force", help="convert again even when cached"),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="print every check"),
    ) -> None:
        """Convert a model to another engine's format; the result is checked against the source."""
        from rich.console import Console

        from models.catalog import CatalogError
        from models.convert import ConversionCheckError, ConversionError
        from models.convert import convert as do_convert

        console = Console(stderr=True)
        try:
            dims = [int(v) for v in shape.replace("x", ",").split(",")] if shape else None
            rng = tuple(float(v) for v in value_range.split(",")) if value_range else None
            if rng is not None and len(rng) != 2:
                raise ValueError("--range takes two numbers: LOW,HIGH")
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        try:
            report = do_convert(model, to, shape=dims, value_range=rng, fp16=fp16, force=force)
        except ConversionCheckError as err:
            console.print(f"[red]check failed:[/red] {err}")
            raise typer.Exit(1) from None
        except (ConversionError, CatalogError, FileNotFoundError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(1) from None
        if verbose:
            console.print(report.table())
        worst = max(report.checks, key=lambda c: c.max_abs_error)
        console.print(
            f"{'cached' if report.cached else 'converted'} {report.source} -> {report.target}: "
            f"max abs error {report.max_abs_error:.3g} (output {worst.output}, allowed {worst.allowed:.3g}) "
            f"over {len({c.input for c in report.checks})} inputs, reference {report.reference}"
        )
        typer.echo(str(report.path))
