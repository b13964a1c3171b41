"""``treedec solve``: one problem with a planner; the program, its verdicts and the spend (a table,
or ``--json``), the search tree and its advantages on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from api.cli.display import err, out, progress_display
from api.cli.errors import UserError, user_errors
from api.cli.groups import option_groups
from api.cli.options import RunOptions

if TYPE_CHECKING:
    from api.core.contracts import SolveReport, TestSummary


@option_groups
def solve(
    problem: str = typer.Argument(..., help="a JSON/JSONL problem file or a dataset reference (humaneval:0)"),
    run: RunOptions = RunOptions(),  # the options solve and eval share (see option_groups)
    as_json: bool = typer.Option(False, "--json", help="print the machine-readable result"),
    no_hidden: bool = typer.Option(False, "--no-hidden", help="do not run the hidden tests"),
    tree_out: Path | None = typer.Option(None, "--tree-out", help="write the search tree as JSON here"),
    export_advantages: Path | None = typer.Option(
        None, "--export-advantages", help="write sibling-relative advantages (JSONL) of the search tree"
    ),
) -> None:
    """Solve one problem with a planner and print the program, its verdicts and the spend."""
    from search.problems.loaders import load_problem

    planner = run.planner
    with user_errors():
        prob = load_problem(problem)
        params = run.check()  # before loading the model
        budget = run.budget()
        with progress_display(not as_json) as progress:
            engine = run.engine.build(progress)
            engine.get_cache()  # a named cache that is unreachable fails before the model loads
            task = progress.add_task(f"{planner} on {prob.id}", total=None) if progress else None

            def on_event(event: dict[str, Any]) -> None:
                if progress is not None and task is not None:
                    s = event.get("spend", {})
                    best = event.get("best_reward")
                    progress.update(
                        task,
                        description=f"{planner} on {prob.id}: {event['event']} "
                        f"tokens={s.get('tokens')} execs={s.get('executions')}"
                        + (f" best={best:.2f}" if isinstance(best, (int, float)) else ""),
                    )

            report = engine.solve(
                prob,
                planner,
                params,
                budget,
                events=on_event,
                evaluate_hidden=not no_hidden,
                prompt_style=run.prompt_style,
            )
        if tree_out is not None:
            tree_out.write_text(json.dumps(report.tree, indent=1))
        if export_advantages is not None:
            _export_advantages(report, export_advantages)
    if as_json:
        print(json.dumps(report.to_json(), indent=1, default=str))
        return
    _print_report(report)


def _export_advantages(report: SolveReport, path: Path) -> None:
    tree = report.tree
    if not tree:
        raise UserError(
            "this planner keeps no search tree: --export-advantages needs one (try --planner vstar)"
        )
    from search.state.tree import Tree

    records = Tree.from_dict(tree).advantage_records()
    with open(path, "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    err.print(f"wrote {len(records)} advantage records to {path}")


def _print_report(report: SolveReport) -> None:
    from rich.syntax import Syntax

    out.print(Syntax(report.program, "python", line_numbers=False))
    table = Table(show_header=True, header_style="bold")
    for col in ("planner", "public", "hidden", "tokens", "forward passes", "executions", "seconds"):
        table.add_column(col)

    def verdict(summary: TestSummary | None) -> str:
        if summary is None:
            return "-"
        mark = "[green]pass[/]" if summary.all_passed else "[red]fail[/]"
        return f"{mark} {summary.passed}/{summary.total}"

    s = report.spend
    table.add_row(
        report.planner,
        verdict(report.public),
        verdict(report.hidden),
        str(s.generated_tokens),
        str(s.forward_passes),
        str(s.executions),
        f"{s.seconds:.1f}",
    )
    out.print(table)
    if report.groups is not None:
        sizes = ", ".join(str(g.size) for g in report.groups)
        out.print(f"behaviour groups (best first, the answer from the first): {sizes}")
