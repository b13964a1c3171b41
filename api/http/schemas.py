"""The REST API's request models and the server's settings (pydantic v2, one definition each).

Every request is validated here, so a bad field fails with a 4xx that names it
(``budget.max_tokens``, ``problem.public_tests.0.kind``...). Test cases reuse
``search.problems.problem.TestCase``; a plain string is taken as assert-style test code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonDict, JsonValue

from api.core.contracts import JobStatus
from api.core.prompts import last_function
from search.limits.budget import Budget
from search.problems.answer_problems import AnswerRecord
from search.problems.loaders import parse_docstring_tests
from search.problems.problem import FunctionTest, Problem, TestCase, with_kind
from search.problems.prompt_styles import DEFAULT_STYLE, AnyStyle
from search.problems.verification import AnswerType, reference_error

M = TypeVar("M", bound=BaseModel)


def json_numbers(value: Any) -> Any:
    """``value`` with integral floats as ints: JSON Schema counts 3.0 as an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    return value


async def strict_body(request: Request, model: type[M]) -> M:
    """The request body validated with JSON's types as the schema states them: no string for a
    number, no 0 for a boolean (FastAPI's own validation is lax and coerces them). Route handlers
    call it after FastAPI has validated (and documented) the body."""
    from api.http.errors import read_json, validation_error

    try:
        return model.model_validate(json_numbers(await read_json(request)), strict=True)
    except ValidationError as e:
        raise validation_error(e) from e


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


# A string with at least one non-blank character: enforced here and stated in the schema.
NOT_BLANK_SCHEMA: JsonDict = {"minLength": 1, "pattern": r"\S"}
NonBlank = Annotated[str, Field(json_schema_extra=NOT_BLANK_SCHEMA), AfterValidator(_not_blank)]

# A problem's function tests need an entry point: given, or the prompt's last top-level ``def`` when
# the prompt is code to continue; IO tests alone need none (see ``search.problems.problem.Problem``).
DEF_PATTERN = r"(^|\n)def\s+[A-Za-z_][A-Za-z0-9_]*\s*\("
IO_TEST: JsonDict = {  # a test object that is (or, without a kind, is taken as) an IO test
    "type": "object",
    "anyOf": [
        {"required": ["kind"], "properties": {"kind": {"const": "io"}}},
        {
            "not": {"required": ["kind"]},
            "anyOf": [{"required": ["expected_stdout"]}, {"required": ["stdin"]}],
        },
    ],
}
IO_TESTS_ONLY: JsonDict = {"type": "array", "items": IO_TEST}
PROBLEM_ENTRY_POINT_RULE: list[JsonValue] = [
    {"required": ["entry_point"], "properties": {"entry_point": {"type": "string"}}},
    {"properties": {"public_tests": IO_TESTS_ONLY, "hidden_tests": IO_TESTS_ONLY}},
    {"properties": {"format": {"const": "completion"}, "prompt": {"pattern": DEF_PATTERN}}},
]


def _or_one_test(schema: JsonDict) -> None:
    """A tests field also takes one test as a plain string (``_tests_list``): say so."""
    array = {k: v for k, v in schema.items() if k not in ("title", "description", "default")}
    for key in array:
        del schema[key]
    schema["anyOf"] = [array, {"type": "string", **NOT_BLANK_SCHEMA}]


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
    keep_seconds: float = Field(
        86_400.0, gt=0, le=30 * 86_400, description="seconds a finished job is kept for GET /v1/jobs/{id}"
    )
    prm_models: list[str] = Field(
        default_factory=list,
        description="process reward models (paths or hub ids) a request may name as a planner's `prm`; "
        "none: requests use the code scorer only (no client makes the server load a model of its choice)",
    )
    evaluate_hidden: bool = Field(True, description="run the hidden tests given in requests")


class ProblemIn(BaseModel):
    """A problem as a client sends it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": PROBLEM_ENTRY_POINT_RULE})
    id: str = Field("request", min_length=1, max_length=200)
    prompt: str = Field(
        json_schema_extra=NOT_BLANK_SCHEMA,
        description="code to continue (format=completion) or a task text (format=program); not blank",
    )
    entry_point: str | None = Field(
        None,
        min_length=1,
        description="the function the tests call; needed with function tests unless the prompt is code "
        "(format=completion) whose last top-level def is taken",
    )
    public_tests: list[TestCase | NonBlank] = Field(
        default_factory=list,
        description="tests the search may run (a string: assert-style code)",
        json_schema_extra=_or_one_test,
    )
    hidden_tests: list[TestCase | NonBlank] = Field(
        default_factory=list, description="tests for evaluation only", json_schema_extra=_or_one_test
    )
    format: Literal["completion", "program"] = Field(
        "completion",
        description="completion: the answer continues the prompt; program: the answer is the program",
    )
    stop: list[str] | None = Field(None, max_length=16, description="extra stop strings")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt is empty: give the code or the task text the model should continue")
        return value

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


class AnswerProblemIn(BaseModel):
    """A question with a checked final answer, as a client sends it: the model reasons to an answer,
    which is extracted from its text (or returned by its ``solution()``) and, when ``answer`` is
    given, checked against it (the reference only judges: the search never sees it)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field("request", min_length=1, max_length=200)
    question: NonBlank = Field(description="the question, as the model will read it; not blank")
    answer_type: AnswerType = Field(
        "number", description="number, math (LaTeX or an expression), choice or string"
    )
    choices: list[NonBlank] | None = Field(
        None, min_length=2, max_length=26, description="a choice question's options (labelled A, B, C...)"
    )
    answer: Annotated[str, Field(json_schema_extra=NOT_BLANK_SCHEMA)] | int | float | None = Field(
        None, description="the reference answer (it only judges); without it there is no verdict"
    )

    @field_validator("answer")
    @classmethod
    def _checkable(cls, answer: str | int | float | None, info: ValidationInfo) -> str | None:
        if answer is None:
            return None
        text = answer if isinstance(answer, str) else str(answer)
        why = reference_error(text, info.data.get("answer_type", "number"), info.data.get("choices"))
        if why is not None:
            raise ValueError(why)
        return text

    def to_problem(self) -> Problem:
        """The answer problem (its reference was checked against its type on validation)."""
        answer = None if self.answer is None else str(self.answer)
        record = AnswerRecord(
            id=self.id,
            question=self.question,
            answer=answer,
            answer_type=self.answer_type,
            choices=self.choices,
        )
        return record.to_problem(self.id)


_ANSWER_KEYS = ("question", "answer_type", "answer", "choices")


def _problem_kind(value: Any) -> str:
    """Which kind of problem a body holds: a question with a final answer when it names any of
    their fields, else a code problem. (The tags are capitalised so error paths leave them out.)"""
    fields = value if isinstance(value, dict) else vars(value) if isinstance(value, BaseModel) else {}
    return "Answer" if any(k in fields for k in _ANSWER_KEYS) else "Code"


AnyProblemIn = Annotated[
    Annotated[ProblemIn, Tag("Code")] | Annotated[AnswerProblemIn, Tag("Answer")],
    Discriminator(_problem_kind),
]


class SolveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_tree: bool = Field(True, description="keep the search tree in the result")
    evaluate_hidden: bool = Field(True, description="run the hidden tests (if the server allows it)")


class SolveRequest(BaseModel):
    """Body of ``POST /v1/solve`` and ``POST /v1/jobs``."""

    model_config = ConfigDict(extra="forbid")
    problem: AnyProblemIn = Field(
        description="a code problem (prompt, tests) or a question with a checked final answer (question, "
        "answer_type, answer)"
    )
    planner: str = Field("greedy", description="a planner name (GET /v1/planners)")
    params: dict[str, Any] = Field(default_factory=dict, description="the planner's parameters")
    budget: Budget = Field(default_factory=Budget)  # type: ignore[arg-type]
    prompt_style: AnyStyle = Field(
        DEFAULT_STYLE,
        description="how the problem is put to the model (auto: the model's measured default); a question "
        "with a final answer takes auto, chain-of-thought or program-aided, a code problem the others",
    )
    options: SolveOptions = Field(default_factory=SolveOptions)  # type: ignore[arg-type]


class JobCreated(BaseModel):
    """Answer of ``POST /v1/jobs``: where to follow the job."""

    id: str = Field(description="the job id (GET/DELETE /v1/jobs/{id})")
    status: JobStatus
    events: str = Field(description="path of its server-sent events")
    tree: str = Field(description="path of its search tree")
