"""The options commands share, each declared once: the engine's (model, cache, sandbox, device,
dtype) as ``EngineOptions``, and what ``solve`` and ``eval`` both take (planner, ``--set``
parameters, budget, prompt style) as ``RunOptions``. ``api/cli/groups.py`` shows a group to typer
as its options."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress

from api.cli.display import model_progress
from api.cli.errors import UserError
from search.problems.prompt_styles import DEFAULT_STYLE

if TYPE_CHECKING:
    from search.problems.problem import Problem


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
    str,
    typer.Option("--dtype", help="weights: auto | bf16 | fp16 | fp32 | int8 | int4 | w8a8 (quantized: CPU)"),
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
        help="code: completion | chat | chat-prefill; a question with a final answer: chain-of-thought | "
        "program-aided; auto: the model's measured style (chain-of-thought for a question)",
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

    def check(self, problems: Sequence[Problem] = ()) -> dict[str, Any]:
        """The planner's parameters, after checking them and the prompt style, and that both fit
        ``problems`` (before any model loads)."""
        import planners
        from search.problems.prompting import check_style, parse_any_style

        params = self.params()
        planners.create(self.planner, params)
        parse_any_style(self.prompt_style)
        for problem in problems:
            planners.refuse_unfit(self.planner, problem)
            check_style(problem, self.prompt_style)
        return params

    def budget(self) -> Any:
        from api.core.specs import budget_of

        return budget_of(
            {
                "max_tokens": self.max_tokens,
                "max_forward_passes": self.max_forward_passes,
                "max_executions": self.max_executions,
                "max_rollouts": self.max_rollouts,
                "max_seconds": self.max_seconds,
            }
        )
