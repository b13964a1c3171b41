"""Search over prompt styles: greedy decoding in several styles, the answer chosen by public tests.

The styles of ``search/problems/prompting.py`` fail on different problems (a model asked in a chat turn
and a model continuing raw code make different mistakes), and public tests can tell which answer
is right. This planner decodes greedily in each style in turn, runs each program on the public
tests, and stops at the first that passes them all; otherwise the best pass rate wins, ties going
to the earlier style.

The engine renders each style (``ctx.render``). Every style's program starts with the prompt, so
the chosen answer is returned as the text that continues the prompt (``completion`` style).
"""

from __future__ import annotations

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerParams, Search
from search.model.lm import GenerationParams
from search.problems.problem import Problem
from search.problems.prompt_styles import RenderedStyle
from search.state.context import Candidate, SearchContext, stops_for

DEFAULT_ORDER: tuple[RenderedStyle, ...] = ("chat-prefill", "completion", "chat")
ANSWER_STYLE: RenderedStyle = "completion"  # every answer is text that continues the prompt


class StylesParams(PlannerParams):
    max_new_tokens_default = 512
    styles: list[RenderedStyle] = Field(
        default_factory=lambda: list(DEFAULT_ORDER),
        min_length=1,
        description="prompt styles to decode in, in order (ties go to the earlier one)",
    )
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
        return Outcome(best, list(self.candidates), reason, answer_style=ANSWER_STYLE)

    def decode(self, style: str) -> Candidate:
        """Greedy in one style, scored on the public tests, as text that continues the prompt."""
        ctx = self.ctx
        rendered = ctx.render(self.problem, style)
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
    accepts_answer_problems = False
    Params = StylesParams

    def start(self, problem: Problem, ctx: SearchContext) -> StylesSearch:
        return StylesSearch(self.params, problem, ctx)
