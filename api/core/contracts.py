"""The typed contracts between the surfaces: what a search is asked (``SolveSpec``) and what it
answers (``SolveReport``).

``Engine.run(spec)`` (and ``Engine.solve(...)``) returns a ``SolveReport``; the CLI, the REST
routes, the OpenAI routes, the job backends (in memory and on Redis), the workers, the harness
plugin and the benchmarks read it by attribute. A ``SolveSpec`` is one search to run as a job:
the server, the OpenAI routes and the queue build it, the backends store it (as JSON on Redis) and
run it.

The JSON forms are the wire format and stay as they were: ``SolveReport.to_json()`` is the dict the
REST answers hold (``tree`` is absent when no tree was kept; a candidate's ``meta`` is absent when
empty), and ``SolveSpec.to_json()`` is what a queued job's record holds.

Numbers a planner computes (rewards, log-probs, planner counters) are ``int | float`` so a count
stays an integer and a rate stays a float, as the planner wrote them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from search.limits.budget import Budget, Spend
from search.problems.answers import AnswerVerdict
from search.problems.problem import Problem
from search.problems.prompt_styles import DEFAULT_STYLE, AnyStyle
from search.state.context import AnswerChoice, Candidate, SearchResult

Number = int | float
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")


class SolveSpec(BaseModel):
    """One search to run: the problem, the planner and its parameters, the budget and what to
    report. What ``/v1/solve``, ``/v1/jobs``, the OpenAI routes and the queue hand a job backend."""

    model_config = ConfigDict(extra="forbid")
    problem: Problem
    planner: str = "greedy"
    params: dict[str, Any] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    include_tree: bool = True
    evaluate_hidden: bool = False
    prompt_style: AnyStyle = DEFAULT_STYLE

    def to_json(self) -> dict[str, Any]:
        """The JSON form (a queued job's ``spec``)."""
        return {
            "problem": self.problem.model_dump(mode="json"),
            "planner": self.planner,
            "params": dict(self.params or {}),
            "budget": self.budget.model_dump(mode="json"),
            "include_tree": bool(self.include_tree),
            "evaluate_hidden": bool(self.evaluate_hidden),
            "prompt_style": str(self.prompt_style),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SolveSpec:
        return cls(
            problem=Problem.model_validate(data["problem"]),
            planner=data["planner"],
            params=dict(data.get("params") or {}),
            budget=Budget.model_validate(data["budget"]),
            include_tree=bool(data.get("include_tree", True)),
            evaluate_hidden=bool(data.get("evaluate_hidden", False)),
            prompt_style=data.get("prompt_style", DEFAULT_STYLE),
        )


class CandidateReport(BaseModel):
    """One finished answer a planner found (``search.state.context.Candidate``); ``meta`` is left out
    of the JSON when empty."""

    model_config = ConfigDict(extra="allow")
    completion: str
    tokens: int
    logprob: Number
    reward: Number | None = None
    public_passed: int | None = None
    public_total: int | None = None
    meta: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _without_empty_meta(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if not self.meta:
            out.pop("meta", None)
        return out

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateReport:
        return cls.model_validate(candidate.to_dict())


class GroupReport(BaseModel):
    """A group of candidates that behaved alike (best-of-N with ``selector=behaviour``): its rank
    (0: the group the answer came from), its size and its members (indices into ``candidates``)."""

    rank: int
    size: int
    members: list[int]

    @classmethod
    def of_candidates(cls, candidates: list[Candidate]) -> list[GroupReport] | None:
        """The groups the candidates' ``meta`` names, best first; None when no group was formed."""
        members: dict[int, list[int]] = {}
        for i, c in enumerate(candidates):
            rank = c.meta.get("behaviour_group")
            if isinstance(rank, int):
                members.setdefault(rank, []).append(i)
        if not members:
            return None
        return [cls(rank=r, size=len(m), members=m) for r, m in sorted(members.items())]


class TestSummary(BaseModel):
    """An answer's result on one set of tests (public or hidden)."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="allow")
    passed: int
    total: int
    pass_rate: float
    all_passed: bool
    compile_error: bool
    isolation: str | None = None
    verdicts: list[Any] = Field(default_factory=list)

    @classmethod
    def of(cls, reward: Any) -> TestSummary:
        """From a ``scorers.tests.TestReward``."""
        result = reward.result
        return cls(
            passed=reward.passed,
            total=reward.total,
            pass_rate=reward.pass_rate,
            all_passed=reward.total > 0 and reward.passed == reward.total,
            compile_error=reward.compile_error,
            isolation=getattr(result, "layer", None),
            verdicts=[
                v.model_dump() if hasattr(v, "model_dump") else v for v in getattr(result, "verdicts", [])
            ],
        )


class PublicTests(BaseModel):
    """Which public tests the search ran and where they came from (``request``, ``docstring``...)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    from_: str | None = Field(alias="from")
    tests: list[str]


class SolveReport(BaseModel):
    """What one search answered, evaluated: the search's result (planner, answer, candidates, spend,
    stop reason, tree), the program run, and its public and hidden test summaries."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True)
    planner: str
    problem_id: str
    completion: str | None
    best: CandidateReport | None
    candidates: list[CandidateReport]
    spend: Spend  # the search layer's own account; its fields are the report's keys
    stop_reason: str
    tree: dict[str, Any] | None = None
    model: str
    program: str
    prompt_style: str | None
    public_tests: PublicTests
    prompt_completion: str
    public: TestSummary | None
    hidden: TestSummary | None
    final_answer: AnswerVerdict | None = None  # an answer problem's answer found, and its verdict
    no_signal: str | None = None  # why the search had nothing to steer by (absent: it had, or needs none)
    groups: list[GroupReport] | None = None  # selection by behaviour: the groups, best first
    choice: AnswerChoice | None = None  # the answer the search chose, its vote share and its signal

    @model_serializer(mode="wrap")
    def _without_missing_tree(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.tree is None:
            out.pop("tree", None)
        if self.final_answer is None:
            out.pop("final_answer", None)
        if self.no_signal is None:
            out.pop("no_signal", None)
        if self.groups is None:
            out.pop("groups", None)
        if self.choice is None:
            out.pop("choice", None)
        return out

    @classmethod
    def of(
        cls,
        result: SearchResult,
        include_tree: bool,
        *,
        model: str,
        program: str,
        prompt_style: str | None,
        public_tests: PublicTests,
        prompt_completion: str,
        public: TestSummary | None,
        hidden: TestSummary | None,
        final_answer: AnswerVerdict | None = None,
    ) -> SolveReport:
        return cls(
            planner=result.planner,
            problem_id=result.problem_id,
            completion=result.best.completion if result.best else None,
            best=CandidateReport.of(result.best) if result.best else None,
            candidates=[CandidateReport.of(c) for c in result.candidates],
            spend=result.spend.rounded(),
            stop_reason=result.stop_reason,
            tree=result.tree if include_tree else None,
            model=model,
            program=program,
            prompt_style=prompt_style,
            public_tests=public_tests,
            prompt_completion=prompt_completion,
            public=public,
            hidden=hidden,
            final_answer=final_answer,
            no_signal=result.no_signal,
            groups=GroupReport.of_candidates(result.candidates),
            choice=result.choice,
        )

    def to_json(self, tree: bool = True) -> dict[str, Any]:
        """The report as the REST answers hold it (without the tree when ``tree`` is False)."""
        out = self.model_dump()
        if not tree:
            out.pop("tree", None)
        return out

    @property
    def public_pass_rate(self) -> float | None:
        return self.public.pass_rate if self.public is not None else None


def terminal_event(
    status: JobStatus | str,
    result: SolveReport | None = None,
    error: str | None = None,
    error_id: str | None = None,
) -> dict[str, Any]:
    """A job's last event (``succeeded`` / ``failed`` / ``cancelled``), the same on every backend."""
    event: dict[str, Any] = {"event": status}
    if result is not None:
        event.update(
            spend=result.spend.to_dict(), stop_reason=result.stop_reason, public=result.public_pass_rate
        )
    if error is not None:
        event.update(error=error, error_id=error_id)
    return event
