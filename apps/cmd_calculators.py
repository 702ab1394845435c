"""``vpipe calculators [NAME]``: the calculators a graph file can name.

- ``vpipe calculators``: a table of every registered calculator (family, ports, summary);
- ``vpipe calculators NAME``: one calculator's ports with their types, side packets, options with
  defaults and descriptions, and an example node (the same text as its page in docs/reference/);
- ``vpipe calculators --markdown DIR``: writes the reference pages (as ``python -m apps.gen_reference``).

``--plugin module`` adds a user module's calculators to the listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from apps.common import PLUGIN_HELP, fail, plugins_or_exit, stdout_console
from apps.gen_reference import all_calculators, calculator_markdown, describe, write


def calculators_command(
    name: Optional[str] = typer.Argument(None, help="A calculator to describe in full."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the reference pages into this directory."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help=PLUGIN_HELP),
) -> None:
    """Lists the built-in calculators, or describes one: ports, types, options, example node."""
    from rich.markdown import Markdown
    from rich.table import Table

    from pipeline import registry

    plugins_or_exit(plugin)
    console = stdout_console()
    if markdown is not None:
        for path in write(markdown):
            console.print(str(path))
        return
    if name is not None:
        cls = registry.find(name)
        if cls is None:
            raise fail(registry.unknown_message(name), 1)
        d = describe(cls, name)
        console.print(Markdown(calculator_markdown(d, level=1)))
        return
    docs = all_calculators(builtin_only=not plugin)
    table = Table(title=f"{len(docs)} calculators (vpipe calculators NAME for one in full)", title_justify="left")
    table.add_column("calculator", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("inputs → outputs")
    table.add_column("summary")
    for d in docs:
        ins = ", ".join(p.tag for p in d.inputs) or "—"
        outs = ", ".join(p.tag for p in d.outputs) or "—"
        table.add_row(d.name, d.family, f"{ins} → {outs}", d.summary)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("calculators")(calculators_command)
