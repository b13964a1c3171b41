"""Beam search over reasoning steps (search-and-learn's beam search), for answer problems.

A beam is a partial chain of thought (or a partial ``solution()``) cut at step ends
(``search/limits/steps.py``: a blank line by default, or every newline). One round samples
``expand`` next steps from every live beam in one batched call, scores each extended beam, and
keeps the ``num_beams`` best that are not finished; a beam that reaches the end of its answer (EOS,
the style's own stop, or ``max_new_tokens``) is finished and waits. The search stops when
``num_beams`` beams are finished, none is live, after ``max_steps`` rounds, or when the budget is
spent; the answer is the best-scoring finished beam (else the best live one, as it is).

The score of a beam is a process reward model's score of its steps (``prm``: the signal the
result names), or without one the mean log-probability of its tokens (the result then says it had
no signal, as the token-level beam on code has none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import Field

from planners.base import Outcome, PlannerParams, Search
from scorers.prm import HFProcessRewardModel, PRMMode, load_prm
from search.limits.steps import ReasoningStep, in_context, reasoning_step_stop
from search.limits.stops import first_stop
from search.model.lm import DecodeMode, GenerationParams, Rollout
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, stops_for


class StepBeamParams(PlannerParams):
    num_beams: int = Field(4, ge=2, le=32, description="beam width")
    expand: int = Field(2, ge=1, le=16, description="answer problems: next steps sampled from each beam")
    reasoning_step: ReasoningStep = Field(
        "blank-line", description="answer problems: a step ends at a blank-line or at every newline"
    )
    step_tokens: int = Field(128, ge=1, le=2048, description="answer problems: cap on one step's tokens")
    max_steps: int = Field(24, ge=1, le=1000, description="answer problems: rounds before the search stops")
    temperature: float = Field(0.8, gt=0, le=5, description="answer problems: temperature of the steps")
    top_p: float = Field(0.95, gt=0, le=1, description="answer problems: nucleus mass of the steps")
    seed: int = Field(0, description="answer problems: base seed (round i uses seed + 7919 * i)")
    prm: str | None = Field(None, description="answer problems: a process reward model scoring the beams")
    prm_mode: PRMMode = Field("tag", description="how the PRM gives step scores")


SP = TypeVar("SP", bound=StepBeamParams)


@dataclass
class _Beam:
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    steps: list[str] = field(default_factory=list)
    finish: str = ""
    score: float = 0.0

    @property
    def likelihood(self) -> float:
        return math.exp(sum(self.logprobs) / len(self.logprobs)) if self.logprobs else 1.0


class StepBeamSearch(Search[SP]):
    """One beam search over reasoning steps (module docstring)."""

    def __init__(self, p: SP, problem: Problem, ctx: SearchContext) -> None:
        super().__init__(p, problem, ctx)
        self.prm: HFProcessRewardModel | None = load_prm(p.prm, mode=p.prm_mode) if p.prm else None
        self.signal = "prm" if self.prm is not None else "none"
        self.prompt = ctx.lm.encode(problem.model_text)
        self.base_stops = stops_for(problem)
        self.live: list[_Beam] = [_Beam()]
        self.done: list[_Beam] = []

    def run(self) -> str:
        p = self.p
        for round_no in range(p.max_steps):
            if len(self.done) >= p.num_beams:
                return "beams_finished"
            if not self.live:
                return "no_live_beam"
            self.ctx.meter.check()
            children = self.extend(round_no)
            self.rank(children)
            self.done += [b for b in children if b.finish]
            live = sorted((b for b in children if not b.finish), key=lambda b: -b.score)
            self.live = live[: p.num_beams]
            self.ctx.count("beam_rounds")
            self.ctx.emit("beam", round=round_no, live=len(self.live), finished=len(self.done))
        return "max_steps"

    def extend(self, round_no: int) -> list[_Beam]:
        """``expand`` sampled next steps of every live beam, in one call (duplicates dropped)."""
        p = self.p
        rows = [b for b in self.live for _ in range(p.expand)]
        rooms = [max(1, min(p.step_tokens, p.max_new_tokens - len(b.tokens))) for b in rows]
        params = GenerationParams(
            max_new_tokens=max(rooms),
            mode=DecodeMode.sample,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed + 7919 * round_no,
        )
        kind = p.reasoning_step
        stops = [[reasoning_step_stop(kind, b.text), *in_context(self.base_stops, b.text)] for b in rows]
        rolls = self.ctx.lm.rollouts(
            [self.prompt + b.tokens for b in rows], params, (), row_stops=stops, row_max_new_tokens=rooms
        )
        children: dict[str, _Beam] = {}
        for b, r in zip(rows, rolls, strict=True):
            child = self.child(b, r)
            if child.text in children:
                self.ctx.count("duplicate_steps")
                continue
            children[child.text] = child
        return list(children.values())

    def child(self, b: _Beam, r: Rollout) -> _Beam:
        full = self.ctx.lm.decode(r.token_ids)
        cut = first_stop(full, in_context(self.base_stops, b.text))
        step = full[:cut] if cut is not None else r.text
        tokens = b.tokens + list(r.token_ids)
        finish = ""
        if cut is not None or r.finish_reason == "eos":
            finish = "stop" if cut is not None else "eos"
        elif len(tokens) >= self.p.max_new_tokens:
            finish = "length"
        return _Beam(tokens, b.logprobs + list(r.logprobs), b.text + step, [*b.steps, step], finish)

    def rank(self, beams: list[_Beam]) -> None:
        """Each beam's score: the PRM's score of its steps, else its likelihood."""
        if self.prm is None:
            for b in beams:
                b.score = b.likelihood
            return
        before = self.prm.forward_passes
        scores = self.prm.step_scores(self.problem.prompt, [b.steps for b in beams])
        self.ctx.meter.charge(scorer_calls=len(beams))
        self.ctx.count("prm_forward_passes", self.prm.forward_passes - before)
        self.ctx.count("process_scorer_calls", len(beams))
        for b, s in zip(beams, scores, strict=True):
            b.score = self.prm.aggregate_scores(s)

    def outcome(self, reason: str) -> Outcome:
        pool = self.done or self.live
        ranked = sorted(pool, key=lambda b: -b.score)
        candidates = [
            Candidate(
                b.text,
                b.tokens,
                sum(b.logprobs),
                meta={"finish": b.finish or "unfinished", "score": round(b.score, 6), "steps": len(b.steps)},
            )
            for b in ranked
            if b.tokens
        ]
        if not self.done and candidates:
            reason = f"{reason}: no finished beam; returned the best live beam as it is"
        return Outcome(candidates[0] if candidates else None, candidates, reason)
