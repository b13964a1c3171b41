"""What every route of the server shares: the engine, the settings, the job backend, the metrics,
and the checks a request passes before a search is queued (``ServerState``).

``api/http/server.py`` (the REST routes) and ``api/http/openai_routes.py`` (the OpenAI routes) both take it;
it knows neither, so the routes modules sit side by side above it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

import planners
from api.core.contracts import SolveSpec
from api.core.engine import Engine
from api.core.specs import build_solve_spec
from api.http.errors import APIError, validation_error
from api.http.metrics import Metrics
from api.http.schemas import ServerSettings, SolveRequest
from api.jobs.backend import JobBackend, JobView, QueueFull
from planners.base import PlannerError
from search.limits.budget import Budget
from search.problems.problem import Problem
from search.problems.prompting import PromptStyleError, check_style

SOLVE_GRACE_SECONDS = 60.0  # evaluation after the search (sandbox) may take a little longer


@dataclass
class ServerState:
    engine: Engine
    settings: ServerSettings
    jobs: JobBackend
    metrics: Metrics

    # ----- validation shared by /v1/solve, /v1/jobs and the OpenAI routes ------------------------
    def check_planner(
        self, name: str, params: dict[str, Any], param_name: str = "planner", params_prefix: str = "params"
    ) -> type[planners.Planner]:
        try:
            cls = planners.get(name)
        except PlannerError as e:
            raise APIError(400, str(e), param_name) from e
        try:
            cls(cls.Params.model_validate(params, strict=True))  # JSON types only, as the schema says
        except ValidationError as e:
            raise validation_error(e, params_prefix) from e
        self.check_prm(params, params_prefix)
        for param in cls.required_params(self.engine.lm):
            if params.get(param) is None:
                raise APIError(
                    422,
                    f"invalid value for '{params_prefix}.{param}': planner {name!r} needs it with this model",
                    f"{params_prefix}.{param}",
                )
        return cls

    def check_prm(self, params: dict[str, Any], prefix: str) -> None:
        """A process reward model only from the server's list (``settings.prm_models``)."""
        allowed = self.settings.prm_models
        if params.get("scorer") == "prm" and not allowed:
            raise APIError(
                422,
                f"invalid value for '{prefix}.scorer': this server loads no process reward model; use 'code'",
                f"{prefix}.scorer",
            )
        prm = params.get("prm")
        if (prm is not None and prm not in allowed) or (params.get("scorer") == "prm" and prm is None):
            raise APIError(
                422,
                f"invalid value for '{prefix}.prm': give one of this server's models: {', '.join(allowed)}"
                if allowed
                else f"invalid value for '{prefix}.prm': this server loads no process reward model",
                f"{prefix}.prm",
            )

    def check_problem(self, problem: Problem, prefix: str = "problem") -> None:
        """Refuse a problem above this server's limits. A problem without public tests (none given, no
        docstring examples) is not refused, as in the CLI and ``treedec eval``: every planner still
        answers without a test reward (PG-TD and V-STAR with their first program, ``stop_reason``
        ``no_public_tests``), and the response's ``public_tests`` lists none."""
        s = self.settings
        if len(problem.prompt) > s.max_prompt_chars:
            raise APIError(
                413,
                f"'{prefix}.prompt' is {len(problem.prompt)} characters; this server accepts at "
                f"most {s.max_prompt_chars}",
                f"{prefix}.prompt",
            )
        for name in ("public_tests", "hidden_tests"):
            tests = getattr(problem, name)
            if len(tests) > s.max_tests:
                raise APIError(
                    413,
                    f"'{prefix}.{name}' has {len(tests)} tests; at most {s.max_tests} are accepted",
                    f"{prefix}.{name}",
                )
            size = sum(len(t.model_dump_json()) for t in tests)
            if size > s.max_tests_chars:
                raise APIError(
                    413,
                    f"'{prefix}.{name}' is {size} characters; at most {s.max_tests_chars}",
                    f"{prefix}.{name}",
                )

    def check_fit(
        self, planner: str, problem: Problem, prompt_style: str, planner_param: str = "planner"
    ) -> None:
        """Refuse a planner or prompt style that does not fit the problem's kind (a code-only planner
        or a code style for a question with a final answer; a reasoning style for code)."""
        try:
            planners.refuse_unfit(planner, problem)
        except PlannerError as e:
            raise APIError(422, f"invalid value for '{planner_param}': {e}", planner_param) from e
        try:
            check_style(problem, prompt_style)
        except PromptStyleError as e:
            raise APIError(422, f"invalid value for 'prompt_style': {e}", "prompt_style") from e

    def effective_budget(self, budget: Budget, prefix: str = "budget") -> Budget:
        s = self.settings
        if budget.max_tokens is not None and budget.max_tokens > s.max_budget_tokens:
            raise APIError(
                422,
                f"invalid value for '{prefix}.max_tokens': {budget.max_tokens} is above this "
                f"server's limit of {s.max_budget_tokens}",
                f"{prefix}.max_tokens",
            )
        seconds = min(budget.max_seconds or s.max_seconds, s.max_seconds)
        tokens = budget.max_tokens if budget.max_tokens is not None else s.default_max_tokens
        return budget.model_copy(update={"max_seconds": seconds, "max_tokens": tokens})

    def submit(self, specs: list[SolveSpec]) -> list[JobView]:
        try:
            return list(self.jobs.submit_many(specs))
        except QueueFull as e:
            self.metrics.rejected.inc(len(specs))
            raise APIError(
                429,
                f"the server is busy ({e}); retry later",
                None,
                "rate_limit_error",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            ) from e

    async def wait(self, jobs: list[JobView]) -> None:
        """Wait for jobs; cancel them if the client goes away or the server's time cap passes."""
        timeout = max(j.budget.max_seconds or self.settings.max_seconds for j in jobs) + SOLVE_GRACE_SECONDS
        futures = [asyncio.wrap_future(j.future) for j in jobs if j.future is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError as e:
            for j in jobs:
                j.cancel.set()
            raise APIError(
                504,
                f"the search did not finish within {timeout:.0f} s; it was cancelled",
                None,
                "timeout_error",
            ) from e
        except asyncio.CancelledError:
            for j in jobs:
                j.cancel.set()
            raise

    def solve_spec(self, req: SolveRequest) -> SolveSpec:
        self.check_planner(req.planner, req.params)
        try:
            problem = req.problem.to_problem()
        except ValidationError as e:
            raise _problem_error(e) from e
        self.check_problem(problem)
        self.check_fit(req.planner, problem, req.prompt_style)
        return build_solve_spec(
            problem,
            req.planner,
            req.params,
            self.effective_budget(req.budget),
            include_tree=req.options.include_tree,
            evaluate_hidden=req.options.evaluate_hidden and self.settings.evaluate_hidden,
            prompt_style=req.prompt_style,
        )


def _problem_error(e: ValidationError) -> APIError:
    """Problem-level checks (empty prompt, tests without an entry point) name their field."""
    first = e.errors()[0]
    msg = str(first.get("msg", ""))
    for field in ("entry_point", "prompt"):
        if field in msg:
            return APIError(
                422,
                f"invalid value for 'problem.{field}': {msg.removeprefix('Value error, ')}",
                f"problem.{field}",
            )
    return validation_error(e, "problem")
