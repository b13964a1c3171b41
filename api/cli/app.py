"""The ``treedec`` command: solve | eval | models | run-tests | calibrate | bench | serve | worker.

User mistakes (a missing file, an unknown planner, a bad budget) print one line and exit 2;
a traceback means a bug.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from search.problems.prompt_styles import DEFAULT_STYLE

if TYPE_CHECKING:
    from api.core.contracts import SolveReport, TestSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, help="treedec: search-based code decoding.")
models_app = typer.Typer(no_args_is_help=True, help="Bundled and local models.")
app.add_typer(models_app, name="models")
err = Console(stderr=True)
out = Console()


class UserError(Exception):
    """Shown as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from planners.base import PlannerError
    from search.cache.store import CacheConfigError
    from search.model.bundled import ModelError
    from search.problems.loaders import ProblemError
    from search.problems.prompting import PromptStyleError

    errors: list[type[BaseException]] = [
        UserError,
        PlannerError,
        CacheConfigError,
        ProblemError,
        ModelError,
        PromptStyleError,
        FileNotFoundError,
    ]
    try:
        from sandbox.executor import SandboxUnavailable

        errors.append(SandboxUnavailable)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or e.title
        _fail(f"invalid value for '{where}': {first['msg']}")
    except _user_errors() as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        _fail("interrupted")


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """``--set k=v`` pairs; values are JSON when they parse as JSON, else strings."""
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def model_progress(progress: Progress | None) -> Callable[[str, int, int], None] | None:
    if progress is None:
        return None
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            label = "verifying bundled model" if stage == "verify" else "converting model (once)"
            tasks[stage] = progress.add_task(label, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return update


@contextmanager
def progress_display(enabled: bool) -> Iterator[Progress | None]:
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        yield progress


def _engine(
    model: str, cache: str | None, sandbox: str, device: str, dtype: str, progress: Progress | None
) -> Any:
    from api.core.engine import Engine

    return Engine(
        model_spec=model,
        cache_spec=cache,
        sandbox=sandbox,
        device=device,
        dtype=dtype,
        progress=model_progress(progress),
    )


# Shared options ---------------------------------------------------------------------------------
# Each option is declared once, as an Annotated alias; a command takes it as `model: Model = "..."`.
Planner = Annotated[str, typer.Option("--planner", "-p", help="planner name (treedec planners)")]
Model = Annotated[str, typer.Option("--model", "-m", help="bundled name, local path, .gguf or hub id")]
Cache = Annotated[
    str | None, typer.Option("--cache", help="memory (default) or redis://host:port/db; env TREEDEC_CACHE")
]
Sandbox = Annotated[str, typer.Option("--sandbox", help="auto | process | docker")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Dtype = Annotated[
    str, typer.Option("--dtype", help="weights: auto | bf16 | fp16 | fp32 | int8 | int4 (int8/int4: CPU)")
]
Sets = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="planner parameter key=value (repeatable)")
]
# The budget: limits for one whole search (search/limits/budget.py), not one completion's length
# (that is a planner's max_new_tokens: --set max_new_tokens=N).
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="budget: generated tokens")]
MaxPasses = Annotated[int | None, typer.Option("--max-forward-passes", help="budget: model forward passes")]
MaxExecutions = Annotated[int | None, typer.Option("--max-executions", help="budget: sandbox executions")]
MaxRollouts = Annotated[int | None, typer.Option("--max-rollouts", help="budget: rollouts / samples")]
MaxSeconds = Annotated[float | None, typer.Option("--max-seconds", help="budget: wall-clock seconds")]
Style = Annotated[
    str,
    typer.Option(
        "--prompt-style",
        help="completion | chat | chat-prefill | auto (the model's measured style, else chat if it has one)",
    ),
]


@dataclass(frozen=True)
class EngineOptions:
    """The model and where it runs: what every command that builds an Engine takes."""

    model: Model = "bundled-default"
    cache: Cache = None
    sandbox: Sandbox = "auto"
    device: Device = "auto"
    dtype: Dtype = "auto"

    def build(self, progress: Progress | None) -> Any:
        return _engine(self.model, self.cache, self.sandbox, self.device, self.dtype, progress)


@dataclass(frozen=True)
class RunOptions:
    """What `solve` and `eval` both take: a planner and its parameters, the engine, the budget and
    the prompt style."""

    planner: Planner = "greedy"
    engine: EngineOptions = field(default_factory=EngineOptions)
    sets: Sets = None
    max_tokens: MaxTokens = None
    max_forward_passes: MaxPasses = None
    max_executions: MaxExecutions = None
    max_rollouts: MaxRollouts = None
    max_seconds: MaxSeconds = None
    prompt_style: Style = DEFAULT_STYLE

    def params(self) -> dict[str, Any]:
        return parse_sets(self.sets)

    def check(self) -> dict[str, Any]:
        """The planner's parameters, after checking them and the prompt style (before any model loads)."""
        import planners
        from search.problems.prompting import parse_style

        params = self.params()
        planners.create(self.planner, params)
        parse_style(self.prompt_style)
        return params

    def budget(self) -> Any:
        from search.limits.budget import Budget

        return Budget(
            max_tokens=self.max_tokens,
            max_forward_passes=self.max_forward_passes,
            max_executions=self.max_executions,
            max_rollouts=self.max_rollouts,
            max_seconds=self.max_seconds,
        )


def _option_fields(group: type) -> list[inspect.Parameter]:
    """A group's options as command parameters, a nested group's in its place."""
    hints = get_type_hints(group, include_extras=True)
    out: list[inspect.Parameter] = []
    for f in fields(group):
        if is_dataclass(hints[f.name]):
            out.extend(_option_fields(hints[f.name]))
        else:
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            out.append(inspect.Parameter(f.name, kind, default=f.default, annotation=hints[f.name]))
    return out


def _take_group(group: type, values: dict[str, Any]) -> Any:
    """The group built from (and taken out of) the parsed ``values``."""
    hints = get_type_hints(group)
    return group(
        **{
            f.name: _take_group(hints[f.name], values) if is_dataclass(hints[f.name]) else values.pop(f.name)
            for f in fields(group)
        }
    )


def option_groups(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with each parameter typed as an option group (``RunOptions``, ``EngineOptions``)
    shown to typer as the group's options, in that parameter's place (so ``--help`` lists them
    where they stand); the command is called with the group built from them."""
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type] = {
        p.name: p.annotation
        for p in signature.parameters.values()
        if isinstance(p.annotation, type) and is_dataclass(p.annotation)
    }
    parameters = [
        q
        for p in signature.parameters.values()
        for q in (_option_fields(p.annotation) if p.name in groups else [p])
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        built = {name: _take_group(group, kwargs) for name, group in groups.items()}
        command(**built, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


@app.command()
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


# Unknown options go through to the harness (treedec eval --harness lm-eval --tasks ...).
EVAL_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("eval", context_settings=EVAL_CONTEXT)
@option_groups
def evaluate(
    dataset: str = typer.Option(
        "humaneval", "--dataset", "-d", help="humaneval, humaneval:A-B, humaneval:3,10-19 or a JSONL file"
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
        1, "--parallel", min=1, max=64, help="problems solved at a time, their model calls batched together"
    ),
) -> None:
    """Run a dataset; print pass@1 on hidden tests and the total spend. Resumes from --out."""
    if harness is not None:
        from api.harness import run_harness_cli

        raise typer.Exit(run_harness_cli(harness, sys.argv[sys.argv.index("--harness") + 2 :]))
    from api.core.evaluation import ResultsLog
    from search.problems.loaders import load_problems

    planner = run.planner
    with user_errors():
        problems = load_problems(dataset, limit=limit, offset=offset)
        params = run.check()
        budget = run.budget()
        results = ResultsLog(out_path, key=lambda row: row["task_id"])
        done = results.done
        with progress_display(not as_json) as progress:
            engine = run.engine.build(progress)
            if parallel > 1:  # concurrent searches share batched forward passes, as on the server
                from search.model.batching import BatchingLM

                engine.lm = BatchingLM(engine.model())
            engine.get_cache()
            task = (
                progress.add_task(f"{planner}: {len(done)} done", total=len(problems), completed=len(done))
                if progress
                else None
            )

            def solve_one(prob: Any) -> dict[str, Any]:
                report = engine.solve(
                    prob, planner, params, budget, include_tree=False, prompt_style=run.prompt_style
                )
                return {
                    "task_id": prob.id,
                    "completion": report.prompt_completion,
                    "prompt_style": report.prompt_style,
                    "solution": report.program,
                    "planner": planner,
                    "passed": bool(report.hidden and report.hidden.all_passed),
                    "public_passed": bool(report.public and report.public.all_passed),
                    "spend": report.spend.to_dict(),
                    "stop_reason": report.stop_reason,
                }

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
        out.print(
            f"pass@1 (hidden tests): {summary['passed']}/{summary['problems']} = {summary['pass@1']:.3f}"
        )
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
    return {
        "planner": planner,
        "problems": len(rows),
        "passed": passed,
        "pass@1": passed / len(rows) if rows else 0.0,
        "spend": spend,
    }


@app.command("planners")
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
        table.add_row(row["name"], row["description"], params)
    out.print(table)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the bundled models and whether they are prepared."""
    from search.model.bundled import list_models

    rows = list_models()
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("name", "aliases", "installed", "description")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["aliases"]), "yes" if r["installed"] else "no", r["description"])
    out.print(table)


@models_app.command("install")
def models_install(
    name: str = typer.Argument("bundled-default", help="bundled model name"),
    force: bool = typer.Option(False, "--force", help="convert again even if prepared"),
) -> None:
    """Verify, dequantise and save a bundled model once (later loads take seconds)."""
    from search.model.bundled import install

    with user_errors(), progress_display(True) as progress:
        path = install(name, progress=model_progress(progress), force=force)
    out.print(f"{name}: ready at {path}")


@app.command()
@option_groups
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    engine: EngineOptions = EngineOptions(),
    max_running: int = typer.Option(2, "--max-running", help="searches that run at once"),
    max_waiting: int = typer.Option(16, "--max-waiting", help="searches that may wait; beyond: 429"),
    max_seconds: float = typer.Option(120.0, "--max-seconds", help="server cap on a search's wall time"),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="serve only OpenAI-compatible /v1/completions of the "
        "model (no search; token ids, log-probs, entropy): a backend for --model http://...",
    ),
    queue: str | None = typer.Option(
        None,
        "--queue",
        help="redis://host:port/db: enqueue jobs for `treedec worker` processes instead of running them here",
    ),
    max_queued: int = typer.Option(1000, "--max-queued", help="with --queue: jobs that may wait (then 429)"),
) -> None:
    """Serve the REST API (solve, jobs, SSE progress, trees, OpenAI-compatible routes) on one model."""
    from api.http.schemas import ServerSettings
    from api.http.server import serve as run_server

    with user_errors():
        if plain:
            from api.http.plain import serve_plain
            from search.model.loader import load_model

            serve_plain(load_model(engine.model, device=engine.device, dtype=engine.dtype), host, port)
            return
        settings = ServerSettings(max_running=max_running, max_waiting=max_waiting, max_seconds=max_seconds)
        if queue is not None:
            from api.jobs.queue import serve_queued

            serve_queued(
                host,
                port,
                queue,
                engine.model,
                engine.cache,
                settings,
                device=engine.device,
                dtype=engine.dtype,
                max_queued=max_queued,
            )
            return
        run_server(
            host,
            port,
            engine.model,
            engine.cache,
            engine.sandbox,
            settings,
            device=engine.device,
            dtype=engine.dtype,
        )


@app.command()
@option_groups
def worker(
    queue: str = typer.Option(..., "--queue", help="redis://host:port/db of the job queue (as for serve)"),
    engine: EngineOptions = EngineOptions(),
    lease: int = typer.Option(30, "--lease", help="seconds without a heartbeat before a job is abandoned"),
    name: str | None = typer.Option(None, "--name", help="worker name (default host-pid-random)"),
    burst: bool = typer.Option(False, "--burst", help="exit when the queue is empty"),
) -> None:
    """Load the model once and run solve jobs from the Redis queue until stopped (SIGTERM: after the job)."""
    from api.jobs.worker import run_worker

    with user_errors():
        built = engine.build(None)
        try:
            run_worker(built, queue, name=name, lease_s=lease, burst=burst)
        except ConnectionError as e:
            raise UserError(str(e)) from e


@app.command("run-tests")
def run_tests(
    program: Path = typer.Argument(..., help="the Python program to run"),
    problem: str = typer.Option(..., "--problem", help="problem file or dataset reference"),
    hidden: bool = typer.Option(False, "--hidden", help="run the hidden tests instead of the public ones"),
    as_json: bool = typer.Option(False, "--json"),
    sandbox: Sandbox = "auto",
) -> None:
    """Run a program against a problem's tests in the sandbox; exit 0 only when all pass."""
    from api.cli.run_tests import run_tests_main

    raise typer.Exit(run_tests_main(str(program), problem, hidden, as_json, sandbox))


@app.command()
def calibrate(
    model: Model = "bundled-default",
    source: str = typer.Option("stdlib", "--source", help="stdlib, or humaneval:A-B (exclude it in evals)"),
    limit: int | None = typer.Option(120, "--limit", "-n", help="at most this many functions"),
    out_path: Path | None = typer.Option(None, "--out", "-o", help="default: $TREEDEC_HOME/thresholds.json"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    prompt_style: str = typer.Option(
        "completion", "--prompt-style", help="completion | chat | chat-prefill: the style to calibrate for"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the fit as JSON"),
) -> None:
    """Learn AdaDec's entropy threshold for a model by teacher forcing; store it and print the fit."""
    from planners.calibration import run, summarise
    from search.problems.prompting import parse_style

    with user_errors():
        if parse_style(prompt_style) == "auto":
            raise UserError("calibrate for one prompt style: completion, chat or chat-prefill")

    with user_errors(), progress_display(not as_json) as progress:
        task = progress.add_task("teacher forcing", total=None) if progress else None

        def on_progress(done: int, total: int) -> None:
            if progress is not None and task is not None:
                progress.update(task, completed=done, total=total, description=f"functions {done}/{total}")

        cal, path, identity = run(
            model, source, limit, out_path, device, dtype, progress=on_progress, prompt_style=prompt_style
        )
    if as_json:
        print(json.dumps({**cal.to_dict(), "file": str(path), "model": identity.name, "key": identity.key()}))
        return
    out.print(summarise(cal, path, identity.name), highlight=False)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("TREEDEC_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_transformers()
    app()


def _quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", message=".*GGUF.*")


if __name__ == "__main__":
    main()
