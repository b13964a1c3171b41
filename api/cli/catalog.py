"""What treedec offers: ``treedec planners`` (each planner with its parameters) and ``treedec
models list`` / ``install`` (the bundled models, prepared once)."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from api.cli.display import model_progress, out, progress_display
from api.cli.errors import user_errors


def list_planners(as_json: bool = typer.Option(False, "--json")) -> None:
    """List planners with their parameters."""
    import planners

    rows = planners.describe()
    if as_json:
        print(json.dumps(rows, indent=1, default=str))
        return
    table = Table("planner", "description", "parameters (default)")
    for row in rows:
        params = ", ".join(f"{k}={v['default']}" for k, v in row["params"].items())
        table.add_row(row["name"], escape(row["description"]), params)
    out.print(table)


def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the bundled models and whether they are prepared."""
    from search.model.bundled import list_models

    rows = list_models()
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("name", "aliases", "installed", "description")
    for r in rows:
        installed = "yes" if r["installed"] else "no"
        table.add_row(r["name"], ", ".join(r["aliases"]), installed, escape(r["description"]))
    out.print(table)


def models_install(
    name: str = typer.Argument("bundled-default", help="bundled model name"),
    force: bool = typer.Option(False, "--force", help="convert again even if prepared"),
) -> None:
    """Verify, dequantise and save a bundled model once (later loads take seconds)."""
    from search.model.bundled import install

    with user_errors(), progress_display(True) as progress:
        path = install(name, progress=model_progress(progress), force=force)
    out.print(f"{name}: ready at {path}")
