"""Spend search only where plain decoding fails: greedy in several prompt styles first, then a
search planner in one style when no greedy program passes the public tests.

Most problems a model can solve, it solves greedily in one of its prompt styles
(``planners/styles.py``), and the public tests say which. Only the rest get the expensive search
(PG-TD by default), on the same budget and the same partial-state cache, so the search's own
greedy rollout from its root is the styles pass's answer served again. The answer is the best
public reward over every program tried, ties going to the earlier one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

import planners
from planners import register
from planners.base import Outcome, Planner, PlannerParams, Search
from planners.styles import ANSWER_STYLE, DEFAULT_ORDER, StylesParams
from search.problems.problem import Problem
from search.problems.prompt_styles import RenderedStyle
from search.state.context import Candidate, SearchContext


class CascadeParams(PlannerParams):
    max_new_tokens_default = 512
    max_new_tokens_help = "tokens per greedy completion"
    styles: list[RenderedStyle] = Field(
        default_factory=lambda: list(DEFAULT_ORDER), min_length=1, description="greedy styles tried first"
    )
    search: Literal["pgtd", "astar", "vstar", "best_of_n", "adadec"] = Field(
        "pgtd", description="the planner run when no greedy program passes the public tests"
    )
    search_style: RenderedStyle = Field("chat-prefill", description="the prompt style the search runs in")
    search_params: dict[str, Any] = Field(default_factory=dict, description="the search planner's parameters")

    @model_validator(mode="after")
    def _search_params_fit_the_search(self) -> CascadeParams:
        """Invalid ``search_params`` fail here, naming the field, not inside a running search."""
        try:
            planners.get(self.search).Params.model_validate(self.search_params)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "search_params"
            raise ValueError(f"search_params for {self.search}: field {where!r}: {first['msg']}") from None
        return self


class CascadeSearch(Search[CascadeParams]):
    def run(self) -> str:
        p, ctx = self.p, self.ctx
        search = planners.create(p.search, p.search_params)  # invalid parameters fail before any work
        greedy = StylesParams(styles=p.styles, max_new_tokens=p.max_new_tokens)
        first = planners.create("styles", greedy.model_dump()).solve(self.problem, ctx)
        self.candidates.extend(first.candidates)
        solved = first.best is not None and first.best.reward == 1.0
        if solved or not self.problem.public_tests or ctx.meter.exhausted():
            return first.stop_reason
        rendered = ctx.render(self.problem, p.search_style)
        ctx.count("searched", 1)
        second = search.solve(rendered, ctx)
        self.candidates.extend(_continuing_prompt(rendered, c) for c in second.candidates)
        self.tree = second.tree
        return second.stop_reason

    tree: dict[str, Any] | None = None

    def outcome(self, reason: str) -> Outcome:
        best = max(self.candidates, key=lambda c: c.reward if c.reward is not None else -1.0, default=None)
        return Outcome(best, list(self.candidates), reason, self.tree, ANSWER_STYLE)


@register
class Cascade(Planner[CascadeParams]):
    name = "cascade"
    description = (
        "Greedy in several prompt styles; only when no program passes the public tests, a search "
        "planner (PG-TD by default) in one style. Best public reward wins."
    )
    needs_sandbox = True
    accepts_answer_problems = False
    Params = CascadeParams

    def start(self, problem: Problem, ctx: SearchContext) -> CascadeSearch:
        return CascadeSearch(self.params, problem, ctx)


def _continuing_prompt(rendered: Problem, cand: Candidate) -> Candidate:
    """A candidate of a problem rendered in some style, as text that continues the prompt."""
    meta = {**cand.meta, "style": rendered.prompt_style}
    return Candidate(
        rendered.prompt_completion(cand.completion),
        cand.token_ids,
        cand.logprob,
        cand.reward,
        cand.public_passed,
        cand.public_total,
        meta,
    )
