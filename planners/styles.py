"""Search over prompt styles: greedy decoding in several styles, the answer chosen by public tests.

The styles of ``search/problems/prompting.py`` fail on different problems (a model asked in a chat turn
and a model continuing raw code make different mistakes), and public tests can tell which answer
is right. This planner decodes greedily in each style in turn, runs each program on the public
tests, and stops at the first that passes them all; otherwise the best pass rate wins, ties going
to the earlier style.

Every style's program starts with the prompt, so the engine hands this planner the problem in
``completion`` style and the chosen answer is returned as the text that continues the prompt.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerParams, Search
from search.model.lm import GenerationParams
from search.problems.problem import Problem
from search.problems.prompting import render
from search.state.context import Candidate, SearchContext, stops_for

Style = Literal["completion", "chat", "chat-prefill"]
DEFAULT_ORDER: tuple[Style, ...] = ("chat-prefill", "completion", "chat")


class StylesParams(PlannerParams):
    styles: list[Style] = Field(
        default_factory=lambda: list(DEFAULT_ORDER),
        min_length=1,
        description="prompt styles to decode in, in order (ties go to the earlier one)",
    )
    max_new_tokens: int = Field(512, ge=1, le=8192, description="tokens per completion")
    early_stop: bool = Field(
        True, description="stop at the first style whose program passes all public tests"
    )


class StylesSearch(Search[StylesParams]):
    def run(self) -> str:
        for style in self.p.styles:
            self.candidates.append(self.decode(style))
            if self.p.early_stop and self.candidates[-1].reward == 1.0:
                return "solved_public"
        return "done"

    def outcome(self, reason: str) -> Outcome:
        best = max(self.candidates, key=lambda c: c.reward or 0.0, default=None)  # max keeps the first tie
        return Outcome(best, list(self.candidates), reason)

    def decode(self, style: str) -> Candidate:
        """Greedy in one style, scored on the public tests, as text that continues the prompt."""
        ctx = self.ctx
        rendered = render(self.problem, style, ctx.lm)
        prompt = ctx.lm.encode(rendered.model_text)
        params = GenerationParams(max_new_tokens=self.p.max_new_tokens)
        r = ctx.lm.rollouts([prompt], params, stops_for(rendered))[0]
        reward = ctx.reward(rendered, [r.text])[0] if rendered.public_tests else None
        cand = Candidate(
            rendered.prompt_completion(r.text),
            list(r.token_ids),
            r.sum_logprob,
            reward.pass_rate if reward is not None else None,
            reward.passed if reward is not None else None,
            reward.total if reward is not None else None,
            meta={"style": style, "finish": r.finish_reason},
        )
        ctx.emit("candidate", style=style, tokens=len(r.token_ids), best_reward=cand.reward)
        return cand


@register
class Styles(Planner[StylesParams]):
    name = "styles"
    description = "Greedy in several prompt styles; the program that passes most public tests wins."
    needs_sandbox = True
    renders_problem: ClassVar[bool] = True
    Params = StylesParams

    def start(self, problem: Problem, ctx: SearchContext) -> StylesSearch:
        return StylesSearch(self.params, problem, ctx)
