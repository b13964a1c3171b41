"""``treedec solve``: one problem with a planner; the program, its verdicts and the spend (a table,
or ``--json``), the search tree and its advantages on request. A question with a final answer shows
the reasoning, the final answer, the rule that found it and, with a reference, its verdict; a file
of several questions (``examples/word_problems.json``) is solved one question after another."""

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
    from search.problems.problem import Problem


@option_groups
def solve(
    problem: str = typer.Argument(
        ..., help="a JSON/JSONL problem file or a dataset reference (humaneval:0, gsm8k:3)"
    ),
    run: RunOptions = RunOptions(),  # the options solve and eval share (see option_groups)
    as_json: bool = typer.Option(False, "--json", help="print the machine-readable result"),
    no_hidden: bool = typer.Option(False, "--no-hidden", help="do not run the hidden tests"),
    tree_out: Path | None = typer.Option(None, "--tree-out", help="write the search tree as JSON here"),
    export_advantages: Path | None = typer.Option(
        None, "--export-advantages", help="write sibling-relative advantages (JSONL) of the search tree"
    ),
) -> None:
    """Solve one problem with a planner and print the program, its verdicts and the spend."""
    from search.problems.loaders import load_problem, load_problems

    with user_errors():
        probs = load_problems(problem)
        if len(probs) != 1 and (tree_out or export_advantages or any(p.final_answer is None for p in probs)):
            load_problem(problem)  # several code problems: the one-line error that asks for one
        params = run.check(probs)  # before loading the model
        budget = run.budget()
        reports = []
        with progress_display(not as_json) as progress:
            engine = run.engine.build(progress)
            engine.get_cache()  # a named cache that is unreachable fails before the model loads
            for prob in probs:
                reports.append(_solve_one(engine, prob, run, params, budget, progress, no_hidden))
        report = reports[0]
        if tree_out is not None:
            tree_out.write_text(json.dumps(report.tree, indent=1))
        if export_advantages is not None:
            _export_advantages(report, export_advantages)
    if as_json:
        data = [r.to_json() for r in reports] if len(reports) > 1 else report.to_json()
        print(json.dumps(data, indent=1, default=str))
        return
    for report in reports:
        if report.final_answer is not None:
            _print_answer(report)
        else:
            _print_report(report)


def _solve_one(
    engine: Any,
    prob: Problem,
    run: RunOptions,
    params: dict[str, Any],
    budget: Any,
    progress: Any,
    no_hidden: bool,
) -> SolveReport:
    planner = run.planner
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

    report: SolveReport = engine.solve(
        prob,
        planner,
        params,
        budget,
        events=on_event,
        evaluate_hidden=not no_hidden,
        prompt_style=run.prompt_style,
    )
    return report


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


def _print_answer(report: SolveReport) -> None:
    """A question's result: the reasoning (or the program-aided code), then the final answer, the
    rule that found it (or why there is none), the verdict and the spend."""
    from rich.markup import escape
    from rich.syntax import Syntax
    from rich.text import Text

    verdict = report.final_answer
    assert verdict is not None
    text = report.completion or ""
    out.print(f"[bold]{escape(report.problem_id)}[/] ({report.prompt_style})")
    if report.prompt_style == "program-aided":
        out.print(Syntax(report.program, "python", line_numbers=False))
    else:
        out.print(Text(text.strip()), highlight=False)  # as written: a LaTeX \[ is text, not markup
    answer = verdict.answer
    if answer.text is not None:
        out.print(Text.assemble("final answer: ", (answer.text, "bold"), f" (rule: {answer.rule})"))
    else:
        out.print(f"final answer: none ({escape(answer.reason or 'no answer')})")
    mark = {True: "[green]correct[/]", False: "[red]wrong[/]", None: "- (no reference answer given)"}
    out.print(f"verdict: {mark[verdict.correct]}")
    table = Table(show_header=True, header_style="bold")
    for col in ("planner", "tokens", "forward passes", "executions", "seconds"):
        table.add_column(col)
    s = report.spend
    table.add_row(
        report.planner, str(s.generated_tokens), str(s.forward_passes), str(s.executions), f"{s.seconds:.1f}"
    )
    out.print(table)
    if report.no_signal:
        err.print(f"note: {report.planner} had no signal: {report.no_signal}")
