"""Spend search only where plain decoding fails: greedy in several prompt styles first, then a
search planner in one style when no greedy program passes the public tests.

Most problems a model can solve, it solves greedily in one of its prompt styles
(``planners/styles.py``), and the public tests say which. Only the rest get the expensive search
(PG-TD by default), on the same budget and the same partial-state cache, so the search's own
greedy rollout from its root is the styles pass's answer served again. The answer is the best
public reward over every program tried, ties going to the earlier one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

import planners
from planners import register
from planners.base import Planner, PlannerParams
from planners.styles import DEFAULT_ORDER, Style, StylesParams
from search.context import Candidate, SearchContext, SearchResult
from search.problem import Problem
from search.prompting import render


class CascadeParams(PlannerParams):
    styles: list[Style] = Field(
        default_factory=lambda: list(DEFAULT_ORDER), min_length=1, description="greedy styles tried first"
    )
    max_new_tokens: int = Field(512, ge=1, le=8192, description="tokens per greedy completion")
    search: Literal["pgtd", "astar", "vstar", "best_of_n", "adadec"] = Field(
        "pgtd", description="the planner run when no greedy program passes the public tests"
    )
    search_style: Style = Field("chat-prefill", description="the prompt style the search runs in")
    search_params: dict[str, Any] = Field(default_factory=dict, description="the search planner's parameters")


@register
class Cascade(Planner):
    name = "cascade"
    description = (
        "Greedy in several prompt styles; only when no program passes the public tests, a search "
        "planner (PG-TD by default) in one style. Best public reward wins."
    )
    needs_sandbox = True
    renders_problem: ClassVar[bool] = True
    Params = CascadeParams

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        p: CascadeParams = self.params  # type: ignore[assignment]
        search = planners.create(p.search, p.search_params)  # invalid parameters fail before any work
        styles = planners.create(
            "styles", StylesParams(styles=p.styles, max_new_tokens=p.max_new_tokens).model_dump()
        )
        first = styles.solve(problem, ctx)
        solved = first.best is not None and first.best.reward == 1.0
        if solved or not problem.public_tests or ctx.meter.exhausted():
            return self._result(problem, first.candidates, first.stop_reason, ctx)
        rendered = render(problem, p.search_style, ctx.lm)
        ctx.meter.spend.add_extra("searched", 1)
        second = search.solve(rendered, ctx)
        found = [_continuing_prompt(rendered, c) for c in second.candidates]
        return self._result(problem, first.candidates + found, second.stop_reason, ctx, second.tree)

    def _result(
        self,
        problem: Problem,
        candidates: list[Candidate],
        reason: str,
        ctx: SearchContext,
        tree: dict[str, Any] | None = None,
    ) -> SearchResult:
        best = max(candidates, key=lambda c: c.reward if c.reward is not None else -1.0, default=None)
        return SearchResult(self.name, problem.id, best, candidates, ctx.meter.finish(), reason, tree=tree)


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
