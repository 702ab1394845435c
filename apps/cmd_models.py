"""``vpipe models list|pull|path``: the model and sample-media catalog from the command line.

    vpipe models list                 # a table of every entry and whether it is cached
    vpipe models pull --all           # fetch and verify everything (what CI's setup runs once)
    vpipe models pull blazeface-short carphone
    vpipe models path zoo:centerface  # print the local path (pulling it when needed)
"""

from __future__ import annotations

import typer


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="The model and sample-media catalog: list, pull, path.", no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def list_(kind: str = typer.Option(None, help="only 'model' or 'media' entries")) -> None:
        """List catalog entries with their task, format, size, licence and cache state."""
        from rich.console import Console
        from rich.table import Table

        from models.catalog import cache_dir, entries, is_cached

        table = Table(title=f"vpipe catalog (cache: {cache_dir()})")
        table.add_column("ref", no_wrap=True)
        for col in ("task", "format", "size", "licence", "cached"):
            table.add_column(col)
        for e in entries().values():
            if kind and e.kind != kind:
                continue
            ref = ("zoo:" if e.kind == "model" else "sample:") + e.name
            size = _human(e.size) if e.size else f"from {', '.join(e.derived.sources())}"
            table.add_row(ref, e.task, e.format, size, e.licence.split(" ")[0],
                          "yes" if is_cached(e) else "no")
        Console().print(table)

    @models.command("pull")
    def pull(
        names: list[str] = typer.Argument(None, help="entry names (zoo:/sample: prefixes accepted)"),
        all_: bool = typer.Option(False, "--all", help="pull every entry"),
    ) -> None:
        """Fetch entries into the cache and verify their checksums."""
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        from models.catalog import CatalogError, cached_path, entry, is_cached, pull_all

        if not names and not all_:
            raise typer.BadParameter("name one or more entries, or pass --all")
        try:
            todo = [entry(n).name for n in names] if names else None
        except CatalogError as err:
            raise typer.BadParameter(str(err)) from None
        console = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      console=console, transient=False) as bar:
            tasks: dict[str, int] = {}

            def progress(name: str, done: int, total: int | None, stage: str) -> None:
                key = f"{name}:{stage}"
                if key not in tasks:
                    tasks[key] = bar.add_task(f"{stage:8} {name}", total=total)
                bar.update(tasks[key], completed=done, total=total)

            try:
                paths = pull_all(todo, progress=progress)
            except CatalogError as err:
                console.print(f"[red]error:[/red] {err}")
                raise typer.Exit(1) from None
        total = sum(p.stat().st_size for p in paths.values())
        for name, p in paths.items():
            typer.echo(f"{name}\t{p}")
        console.print(f"{len(paths)} entries verified, {_human(total)} in cache")

    @models.command("path")
    def path(ref: str = typer.Argument(..., help="zoo:NAME, sample:NAME, NAME or a file path")) -> None:
        """Print the local path of an entry, pulling it when it is not cached."""
        from models.catalog import CatalogError, resolve

        try:
            typer.echo(str(resolve(ref)))
        except (CatalogError, FileNotFoundError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
