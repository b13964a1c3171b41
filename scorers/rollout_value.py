"""Rollout value: how likely a partial solution of an answer problem leads to the agreed answer.

A process scorer (the ``ProcessScorer`` protocol of ``scorers/prm.py``) that needs no reward model,
only the bundled model itself. The value of a partial solution (a chain of thought cut after some
steps, or a partial ``solution()``) is

    r = share of its ``rollouts`` lookahead completions whose final answer *reaches*

where reaching (``AnswerScorer.reaches``) is agreeing with the current majority answer of the
search, or, program-aided, a program that runs without error and returns an answer. Every
rollout's answer is cast as a vote first (``AnswerScorer.vote``), so the majority grows with the
search and the tokens spent on a rollout are never thrown away: they are what the majority is.

A complete state is judged by its own answer: 1 when it reaches, else 0 (its answer is voted
once). Every rollout comes back in ``StepScore.rollouts`` (its ``pass_rate``: 1 when it reached),
so a search can keep it as a complete solution (A* does) without voting it again.
``evaluate(..., lookahead=False)`` is the cheap, lazy form A* asks for a new state: the
parent's value (``PartialState.prior_pass``), not exact, so the rollouts run only when the state
reaches the top of A*'s queue.

Rollouts are sampled (``temperature``, seeded: the first with ``seed``, each later call with the
next seed) up to what is left of ``max_new_tokens`` after the state, in one batched call per
``evaluate`` (each row with the problem's stops seen after its own state's text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from scorers.answers import AnswerScorer
from scorers.prm import Lookahead, PartialState, ProcessScorer, StepScore
from search.limits.steps import in_context
from search.model.lm import DecodeMode, GenerationParams
from search.problems.problem import Problem
from search.state.context import stops_for

if TYPE_CHECKING:
    from search.state.context import SearchContext

LAZY_PRIOR = 0.5
"""A state's lazy value when its parent has none yet."""


def line_of(state: PartialState) -> str | None:
    """The line of reasoning a vote from ``state`` belongs to: its first step (every rollout from
    one first step shares that prefix); None from the root, where each rollout is a line of its own.

    >>> line_of(PartialState("a\\n\\nb", [], [], ["a\\n\\n", "b"])), line_of(PartialState("", [], [], []))
    ('a\\n\\n', None)
    """
    return state.steps[0] if state.steps else None


class RolloutValueScorer(ProcessScorer):
    """r = the share of a state's lookahead rollouts that reach the majority answer (module
    docstring); ``answers`` is the search's own ``AnswerScorer`` (the votes it holds are the
    majority)."""

    def __init__(
        self,
        answers: AnswerScorer,
        max_new_tokens: int,
        rollouts: int = 2,
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int = 0,
    ) -> None:
        if rollouts < 1 or max_new_tokens < 1:
            raise ValueError("rollouts and max_new_tokens must be >= 1")
        self.answers, self.max_new_tokens, self.rollouts = answers, max_new_tokens, rollouts
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.calls = 0
        self.drawn = 0  # rollouts sampled so far

    def score_steps(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext
    ) -> list[float]:
        return [s.r for s in self.evaluate(problem, states, ctx)]

    def evaluate(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext, lookahead: bool = True
    ) -> list[StepScore]:
        ctx.meter.charge(scorer_calls=len(states))
        ctx.count("process_scorer_calls", len(states))
        scores: list[StepScore | None] = [None] * len(states)
        done = [i for i, s in enumerate(states) if s.complete]
        if done:
            answers = self.answers.vote(
                [states[i].completion for i in done],
                [self._ended(states[i]) for i in done],
                ctx,
                lines=[line_of(states[i]) for i in done],
            )
            for i, answer in zip(done, answers, strict=True):
                r = float(self.answers.reaches(answer))
                scores[i] = StepScore(r, True, None, {"reaches": r})
        partial = [i for i, s in enumerate(states) if not s.complete]
        if lookahead and partial:
            valued = self._rollout_values(problem, [states[i] for i in partial], ctx)
            for i, score in zip(partial, valued, strict=True):
                scores[i] = score
        for i in partial:
            if scores[i] is None:
                prior = states[i].prior_pass
                scores[i] = StepScore(LAZY_PRIOR if prior is None else prior, False)
        return [s for s in scores if s is not None]

    def _ended(self, s: PartialState) -> bool:
        return len(s.token_ids) < self.max_new_tokens

    def _rollout_values(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext
    ) -> list[StepScore]:
        """``rollouts`` sampled completions of each state in one call, voted, then valued."""
        m = self.rollouts
        rows = [s for s in states for _ in range(m)]
        rooms = [max(1, self.max_new_tokens - len(s.token_ids)) for s in rows]
        params = GenerationParams(
            max_new_tokens=max(rooms),
            mode=DecodeMode.sample,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed + 7919 * self.calls,
        )
        self.calls += 1
        prompt = ctx.lm.encode(problem.model_text)
        base = stops_for(problem)
        rolls = ctx.lm.rollouts(
            [prompt + s.token_ids for s in rows],
            params,
            (),
            row_stops=[in_context(base, s.completion) for s in rows],
            row_max_new_tokens=rooms,
        )
        self.drawn += len(rolls)
        ctx.count("value_rollouts", len(rolls))
        ctx.count("value_rollout_tokens", sum(len(r.token_ids) for r in rolls))
        texts = [s.completion + r.text for s, r in zip(rows, rolls, strict=True)]
        ended = [r.finish_reason != "length" for r in rolls]
        answers = self.answers.vote(texts, ended, ctx, lines=[line_of(s) for s in rows])
        out = []
        for j in range(len(states)):
            mine = answers[j * m : (j + 1) * m]
            reach = [float(self.answers.reaches(a)) for a in mine]
            r = sum(reach) / m
            kept = [
                Lookahead(list(roll.token_ids), list(roll.logprobs), roll.text, roll.finish_reason, hit)
                for roll, hit in zip(rolls[j * m : (j + 1) * m], reach, strict=True)
            ]
            parts = {"rollout_value": r, "rollouts": float(m)}
            out.append(StepScore(r, True, kept[0], parts, kept))
        return out
