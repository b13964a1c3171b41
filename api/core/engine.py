"""The one flow: problem + planner + budget -> planner.solve(problem, ctx) -> evaluated result.

``Engine`` holds what is shared between requests (one model, one cache, one sandbox) and is used
by the CLI, the REST server and the harness plugin alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import planners
from api.core.contracts import PublicTests, SolveReport, SolveSpec, TestSummary
from api.core.specs import build_solve_spec
from search.cache.factory import open_cache
from search.cache.store import Cache
from search.limits.budget import Budget, Meter
from search.model.batching import request_guard
from search.model.bundled import DEFAULT_MODEL, ProgressFn, default_prompt_style
from search.model.lm import LanguageModel
from search.model.loader import load_model
from search.problems.extraction import Answer, extract_answer
from search.problems.problem import Problem
from search.problems.prompt_styles import DEFAULT_STYLE
from search.problems.prompting import check_style, parse_any_style, render
from search.state.context import EventSink, SearchContext, SearchResult


@dataclass
class Engine:
    """Shared resources, created lazily: the model is loaded on first use."""

    model_spec: str = DEFAULT_MODEL
    cache_spec: str | None = None
    sandbox: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    progress: ProgressFn | None = None
    lm: LanguageModel | None = None
    cache: Cache | None = None
    _scorer: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # a model run in process: an unusable --device or --dtype fails here, at start-up, with one
        # line naming the choices, not at the first request
        if self.lm is None and not self.model_spec.startswith(("http://", "https://")):
            from search.model.weights import check_model_options

            check_model_options(self.device, self.dtype)

    def weights(self) -> str:
        """The served model's weight format (``bfloat16``, ``int8``, ``int4``...) as its identity
        names it, known before the model is loaded; ``remote`` for a model behind a server."""
        if self.lm is not None:
            return self.lm.identity.dtype
        if self.model_spec.startswith(("http://", "https://")):
            return "remote"
        from search.model.weights import check_model_options, identity_dtype

        return identity_dtype(check_model_options(self.device, self.dtype))

    def model(self) -> LanguageModel:
        with self._lock:
            if self.lm is None:
                self.lm = load_model(
                    self.model_spec, device=self.device, dtype=self.dtype, progress=self.progress
                )
            return self.lm

    def get_cache(self) -> Cache:
        with self._lock:
            if self.cache is None:
                self.cache = open_cache(self.cache_spec)
            return self.cache

    def scorer(self) -> Any:
        with self._lock:
            if self._scorer is None:
                from sandbox import open_executor
                from scorers.tests import TestScorer

                self._scorer = TestScorer(open_executor(self.sandbox), cache=self.cache)
            return self._scorer

    def render(self, problem: Problem, prompt_style: str = DEFAULT_STYLE) -> Problem:
        """The problem in a prompt style (``auto``: the model's measured default, see
        ``search/model/bundled.py``); an unusable style raises ``PromptStyleError``."""
        if problem.model_prompt is not None:
            return problem  # rendered by the caller (the OpenAI chat route keeps the client's turn)
        return self.restyle(problem, prompt_style)

    def restyle(self, problem: Problem, prompt_style: str) -> Problem:
        """The problem rendered afresh in a prompt style, whatever it was rendered in before: what
        a search's context renders with (``SearchContext.render``)."""
        lm = self.model()
        name = lm.identity.name
        return render(problem, prompt_style, lm, default=default_prompt_style(name), name=name)

    def context(
        self,
        budget: Budget | None = None,
        events: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> SearchContext:
        lm, cache = self.model(), self.get_cache()
        meter = Meter(budget=budget or Budget())
        if cancel is not None:
            meter.cancelled = cancel
        return SearchContext.create(
            lm, meter=meter, cache=cache, scorer=self.scorer(), events=events, renderer=self.restyle
        )

    def solve(
        self,
        problem: Problem,
        planner: str = "greedy",
        params: dict[str, Any] | None = None,
        budget: Budget | None = None,
        events: EventSink | None = None,
        evaluate_hidden: bool = True,
        include_tree: bool = True,
        cancel: threading.Event | None = None,
        on_result: Callable[[SearchResult], None] | None = None,
        prompt_style: str = DEFAULT_STYLE,
    ) -> SolveReport:
        """Run one search and evaluate its answer on the public (and hidden) tests."""
        spec = build_solve_spec(
            problem,
            planner,
            params,
            budget,
            include_tree=include_tree,
            evaluate_hidden=evaluate_hidden,
            prompt_style=parse_any_style(prompt_style),
        )
        return self.run(spec, events=events, cancel=cancel, on_result=on_result)

    def run(
        self,
        spec: SolveSpec,
        events: EventSink | None = None,
        cancel: threading.Event | None = None,
        on_result: Callable[[SearchResult], None] | None = None,
    ) -> SolveReport:
        """Run the search ``spec`` asks for and evaluate its answer on the public (and, if the spec
        says so, hidden) tests; ``cancel`` stops the search at its next step."""
        instance = planners.create(spec.planner, spec.params)
        planners.refuse_unfit(spec.planner, spec.problem)  # a code-only planner and a question
        if spec.problem.model_prompt is None:
            check_style(spec.problem, spec.prompt_style)
        problem = self.render(spec.problem, spec.prompt_style)
        ctx = self.context(spec.budget, events, cancel)
        # the search's one stop (cancel + wall-time deadline), handed down to every model call
        with request_guard(guard=ctx.meter.guard()):
            result = instance.solve(problem.for_search(), ctx)  # an answer problem's reference only judges
        if result.answer_style is not None:  # the search chose the style of its answer (styles, cascade)
            problem = self.render(spec.problem, result.answer_style)
        if on_result is not None:
            on_result(result)
        completion = result.best.completion if result.best else ""
        scorer = self.scorer()
        public = TestSummary.of(scorer.score(problem, completion)) if problem.public_tests else None
        hidden = None
        if spec.evaluate_hidden and problem.hidden_tests:
            hidden = TestSummary.of(scorer.score(problem, completion, hidden=True))
        final_answer = None
        if problem.final_answer is not None:
            cut_off = result.best is not None and len(result.best.token_ids) >= instance.params.max_new_tokens
            final_answer = problem.final_answer.judge(self.answer_of(problem, completion, not cut_off))
        return SolveReport.of(
            result,
            spec.include_tree,
            model=ctx.lm.identity.name,
            program=problem.program(completion),
            prompt_style=problem.prompt_style,
            public_tests=PublicTests.model_validate(
                {"from": problem.public_tests_from, "tests": [t.describe() for t in problem.public_tests]}
            ),
            prompt_completion=problem.prompt_completion(completion),
            public=public,
            hidden=hidden,
            final_answer=final_answer,
        )

    def answer_of(self, problem: Problem, completion: str, complete: bool = True) -> Answer:
        """An answer problem's final answer in a completion: what ``solution()`` returns in the
        sandbox for a program-aided one, else what the text says (``complete``: not cut off)."""
        if problem.prompt_style == "program-aided":
            from scorers.program_answers import program_answer

            return program_answer(completion, self.scorer().executor)
        answer_type = problem.final_answer.type if problem.final_answer else "number"
        return extract_answer(completion, answer_type, complete)
