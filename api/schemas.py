"""The REST API's request models and the server's settings (pydantic v2, one definition each).

Every request is validated here, so a bad field fails with a 4xx that names it
(``budget.max_tokens``, ``problem.public_tests.0.kind``...). Test cases reuse
``search.problem.TestCase``; a plain string is taken as assert-style test code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.prompts import last_function
from search.budget import Budget
from search.loaders import parse_docstring_tests
from search.problem import FunctionTest, Problem, TestCase, with_kind


class ServerSettings(BaseModel):
    """Limits and sizes of one server. Every limit is a setting, not a constant in a handler."""

    model_config = ConfigDict(extra="forbid")
    max_running: int = Field(2, ge=1, le=256, description="searches that run at once")
    max_waiting: int = Field(
        16, ge=0, le=10_000, description="searches that may wait for a slot; beyond: 429"
    )
    retry_after_seconds: int = Field(2, ge=1, le=3600, description="Retry-After sent with a 429")
    max_seconds: float = Field(120.0, gt=0, le=86_400, description="server cap on a search's wall time")
    default_max_tokens: int = Field(4096, ge=1, le=10_000_000, description="token budget when none is given")
    max_budget_tokens: int = Field(200_000, ge=1, le=10_000_000, description="largest token budget accepted")
    max_prompt_chars: int = Field(32_000, ge=1, description="longest prompt accepted")
    max_tests: int = Field(200, ge=0, description="most public tests accepted")
    max_tests_chars: int = Field(200_000, ge=1, description="largest total size of the tests")
    max_n: int = Field(8, ge=1, le=128, description="largest OpenAI `n`")
    max_prompts: int = Field(16, ge=1, le=1024, description="most prompts in one OpenAI completions call")
    batch_window_ms: float | None = Field(
        10.0, ge=0, le=1000, description="merge window for concurrent model calls (None: no batching wrapper)"
    )
    batch_max_rows: int = Field(32, ge=1, le=1024, description="most rows in one merged model call")
    keep_jobs: int = Field(1000, ge=1, description="finished jobs kept for GET /v1/jobs/{id}")
    evaluate_hidden: bool = Field(True, description="run the hidden tests given in requests")


class ProblemIn(BaseModel):
    """A problem as a client sends it."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field("request", min_length=1, max_length=200)
    prompt: str = Field(description="code to continue (format=completion) or a task text (format=program)")
    entry_point: str | None = Field(None, description="the function the tests call")
    public_tests: list[TestCase | str] = Field(default_factory=list, description="tests the search may run")
    hidden_tests: list[TestCase | str] = Field(default_factory=list, description="tests for evaluation only")
    format: Literal["completion", "program"] = Field(
        "completion",
        description="completion: the answer continues the prompt; program: the answer is the program",
    )
    stop: list[str] | None = Field(None, max_length=16, description="extra stop strings")

    @field_validator("public_tests", "hidden_tests", mode="before")
    @classmethod
    def _tests_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [with_kind(t) for t in value]
        return value

    def to_problem(self) -> Problem:
        """The problem; a code prompt without public tests gets its docstring examples as public
        tests (``public_tests_from="docstring"``), and its last function as the entry point."""

        def tests(items: list[Any]) -> list[Any]:
            return [FunctionTest(code=t) if isinstance(t, str) else t for t in items]

        is_code = self.format == "completion"
        entry = self.entry_point or (last_function(self.prompt) if is_code else None)
        public = tests(self.public_tests)
        derived = not public and is_code and entry is not None
        if derived and entry is not None:
            public = list(parse_docstring_tests(self.prompt, entry))
        return Problem(
            id=self.id,
            prompt=self.prompt,
            entry_point=entry,
            public_tests=public,
            hidden_tests=tests(self.hidden_tests),
            prompt_is_code=is_code,
            stop=self.stop,
            public_tests_from="docstring" if derived and public else "request",
        )


class SolveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_tree: bool = Field(True, description="keep the search tree in the result")
    evaluate_hidden: bool = Field(True, description="run the hidden tests (if the server allows it)")


class SolveRequest(BaseModel):
    """Body of ``POST /v1/solve`` and ``POST /v1/jobs``."""

    model_config = ConfigDict(extra="forbid")
    problem: ProblemIn
    planner: str = Field("greedy", description="a planner name (GET /v1/planners)")
    params: dict[str, Any] = Field(default_factory=dict, description="the planner's parameters")
    budget: Budget = Field(default_factory=Budget)  # type: ignore[arg-type]
    prompt_style: Literal["auto", "completion", "chat", "chat-prefill"] = Field(
        "auto", description="how the problem is put to the model (auto: the model's measured default)"
    )
    options: SolveOptions = Field(default_factory=SolveOptions)  # type: ignore[arg-type]
