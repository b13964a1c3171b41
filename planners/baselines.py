"""Baselines every search planner is measured against: greedy, beam, sampling, best-of-N.

Best-of-N chooses among its samples with ``selector``: ``public`` (the best public-test pass rate,
ties by likelihood) or ``behaviour`` (``scorers/behaviour.py``: every sample runs on extra inputs,
the public examples, mutations of them and calls the model writes, and the answer comes from the
best group of samples that behave alike, by ``group_score``; each candidate's ``meta`` names its
group and the group's size). With ``selector=behaviour``, ``early_stop`` stops drawing once one
behaviour dominates (``scorers/behaviour.py``'s ``Dominance``: after ``dominance_after`` samples, the
best group holds at least ``dominance_size`` of them and a ``dominance_share`` of all), instead of
at the first sample that passes the public tests.

On an answer problem (a question with a checked final answer) greedy and sampling have no signal
(the result says so; its confidence is the chosen answer's share among their own completions);
best-of-N votes (self-consistency: ``vote=majority``, every sample one vote, or ``vote=weighted``,
each sample weighted by its likelihood or by a process reward model's score) and answers with the
most likely sample of the winning answer; beam searches over reasoning steps
(``planners/step_beam.py``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from planners import register
from planners.base import Outcome, P, Planner, PlannerError, PlannerParams, Search
from planners.selection import SelectorParams
from planners.step_beam import StepBeamParams, StepBeamSearch
from scorers.behaviour import Selection
from scorers.prm import PRMMode, load_prm
from search.limits.steps import split_steps
from search.model.lm import DecodeMode, GenerationParams, Rollout
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, best_candidate, stops_for


def rollout_candidate(r: Rollout, **meta: object) -> Candidate:
    return Candidate(r.text, list(r.token_ids), r.sum_logprob, meta=dict(meta) if meta else {})


class GreedyParams(PlannerParams):
    pass  # max_new_tokens alone (PlannerParams)


class OneRollout(Search[P]):
    """One completion of the prompt with fixed generation settings (greedy, beam)."""

    def __init__(
        self, p: P, problem: Problem, ctx: SearchContext, params: GenerationParams, emit: bool
    ) -> None:
        super().__init__(p, problem, ctx)
        self.params, self.emit = params, emit

    def run(self) -> str:
        prompt = self.ctx.lm.encode(self.problem.model_text)
        r = self.ctx.lm.rollouts([prompt], self.params, stops_for(self.problem))[0]
        self.candidates.append(rollout_candidate(r, finish=r.finish_reason))
        if self.emit:
            self.ctx.emit("candidate", tokens=len(r.token_ids))
        return r.finish_reason


@register
class Greedy(Planner[GreedyParams]):
    name = "greedy"
    description = "Argmax decoding, one completion (the baseline)."
    Params = GreedyParams

    def start(self, problem: Problem, ctx: SearchContext) -> Search[GreedyParams]:
        params = GenerationParams(max_new_tokens=self.params.max_new_tokens)
        return OneRollout(self.params, problem, ctx, params, emit=True)


class BeamParams(StepBeamParams):
    num_beams: int = Field(4, ge=2, le=32, description="beam width")


@register
class Beam(Planner[BeamParams]):
    name = "beam"
    description = "Beam search with length-normalised log-probability; returns the best beam."
    Params = BeamParams

    def start(self, problem: Problem, ctx: SearchContext) -> Search[BeamParams]:
        p = self.params
        if problem.final_answer is not None:
            return StepBeamSearch(p, problem, ctx)
        beam = DecodeMode.beam
        params = GenerationParams(max_new_tokens=p.max_new_tokens, mode=beam, num_beams=p.num_beams)
        return OneRollout(p, problem, ctx, params, emit=False)


class SamplingParams(PlannerParams):
    max_new_tokens_help = "tokens per sample"
    n: int = Field(8, ge=1, le=256, description="number of samples")
    batch_size: int = Field(4, ge=1, le=64, description="samples generated per batched call")
    temperature: float = Field(0.8, gt=0, le=5, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    seed: int = Field(0, description="base seed (samples are reproducible)")
    include_greedy: bool = Field(True, description="the first candidate is the greedy completion")
    early_stop: bool = Field(
        True,
        description="best_of_n: stop after the first round with a program that passes every public "
        "test (False: always draw all n, the textbook best-of-N)",
    )


class BestOfNParams(SamplingParams, SelectorParams):
    vote: Literal["majority", "weighted"] = Field(
        "majority",
        description="answer problems: a majority vote over the samples' final answers (self-consistency), "
        "or a vote weighted by `weight`",
    )
    weight: Literal["likelihood", "prm"] = Field(
        "likelihood", description="vote=weighted: a sample's weight, exp(mean log-prob) or the PRM's score"
    )
    prm: str | None = Field(None, description="path or hub id of a process reward model (weight=prm)")
    prm_mode: PRMMode = Field("tag", description="how the PRM gives step scores")


class SampleRounds(Search[SamplingParams]):
    """Up to ``n`` completions drawn in batched rounds (the first greedy when ``include_greedy``);
    with ``score``, each is scored on the public tests and the rounds stop once one passes all."""

    def __init__(self, p: SamplingParams, problem: Problem, ctx: SearchContext, score: bool) -> None:
        super().__init__(p, problem, ctx)
        self.score = score
        self.selection: Selection | None = None

    def run(self) -> str:
        reason = self._draw()
        if self.by_behaviour:
            self.selection = self._select_by_behaviour()
            self.behaviour_selector().mark(self.candidates, self.selection)
        return reason

    @property
    def voting(self) -> bool:
        """Best-of-N on an answer problem: the samples vote."""
        return self.score and self.answer_problem

    def _vote(self, new: list[Candidate]) -> None:
        """Cast the new samples' answers as votes, weighted as the parameters say."""
        p = self.p
        weights = None
        if isinstance(p, BestOfNParams) and p.vote == "weighted":
            weights = self._weights(p, new)
            for c, w in zip(new, weights, strict=True):
                c.meta["weight"] = round(w, 6)
        ended = [self.finished(c) for c in new]
        answers = self.answers().vote([c.completion for c in new], ended, self.ctx, weights)
        for c, a in zip(new, answers, strict=True):
            c.meta["answer"] = a.text

    def _weights(self, p: BestOfNParams, new: list[Candidate]) -> list[float]:
        if p.weight == "likelihood":
            return [math.exp(c.logprob / max(1, len(c.token_ids))) for c in new]
        if not p.prm:
            raise PlannerError("weight=prm needs --set prm=PATH_OR_HUB_ID (a process reward model)")
        prm = load_prm(p.prm, mode=p.prm_mode)
        scores = prm.step_scores(self.problem.prompt, [split_steps(c.completion) or [""] for c in new])
        self.ctx.meter.charge(scorer_calls=len(new))
        self.ctx.count("process_scorer_calls", len(new))
        return [prm.aggregate_scores(s) for s in scores]

    def _select_by_behaviour(self) -> Selection:
        """The samples drawn so far grouped by behaviour (each sample probed once, the written inputs'
        tokens and every execution charged)."""
        return self.behaviour_selector().select(self.candidates)

    def _dominant(self) -> bool:
        """selector=behaviour with early_stop: one behaviour dominates the samples drawn so far."""
        return self.behaviour_selector().dominant(self.candidates)

    def _draw(self) -> str:
        p, ctx = self.p, self.ctx
        prompt = ctx.lm.encode(self.problem.model_text)
        stops = stops_for(self.problem)
        round_no = 0
        while len(self.candidates) < p.n:
            ctx.meter.check()
            if p.include_greedy and not self.candidates:
                rolls = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=p.max_new_tokens), stops)
            else:
                count = min(p.batch_size, p.n - len(self.candidates))
                params = GenerationParams(
                    max_new_tokens=p.max_new_tokens,
                    mode=DecodeMode.sample,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    seed=p.seed + 7919 * round_no,
                )
                rolls = ctx.lm.rollouts([prompt] * count, params, stops)
                round_no += 1
            new = [rollout_candidate(r, finish=r.finish_reason) for r in rolls]
            if self.voting:
                self._vote(new)
            elif self.score:
                rewards = ctx.reward(self.problem, [c.completion for c in new])
                for cand, reward in zip(new, rewards, strict=True):
                    cand.reward, cand.public_passed, cand.public_total = (
                        reward.pass_rate,
                        reward.passed,
                        reward.total,
                    )
            self.candidates.extend(new)
            best = best_candidate(self.candidates)
            ctx.emit("candidates", count=len(self.candidates), best_reward=best.reward if best else None)
            if p.early_stop and self.by_behaviour and len(self.candidates) < p.n and self._dominant():
                return "dominant_behaviour"
            if self.score and p.early_stop and not self.by_behaviour and any(c.reward == 1.0 for c in new):
                return "solved_public"
        return "done"

    def outcome(self, reason: str) -> Outcome:
        if self.voting:  # the most likely sample of the answer with the most votes
            votes = self.answers().votes
            winners = [c for c in self.candidates if votes.agrees_with_leader(c.meta.get("answer"))]
            pool = winners or self.candidates
            best = max(pool, key=lambda c: c.logprob / max(1, len(c.token_ids)), default=None)
            return Outcome(best, list(self.candidates), reason)
        if self.selection is not None and self.selection.chosen is not None:
            return Outcome(self.candidates[self.selection.chosen], list(self.candidates), reason)
        if self.score:  # best public-test reward, ties broken by likelihood
            return super().outcome(reason)
        best = max(self.candidates, key=lambda c: c.logprob / max(1, len(c.token_ids)), default=None)
        return Outcome(best, list(self.candidates), reason)


@register
class Sampling(Planner[SamplingParams]):
    name = "sampling"
    description = "N temperature samples; returns the most likely one (no tests run)."
    Params = SamplingParams

    def start(self, problem: Problem, ctx: SearchContext) -> SampleRounds:
        return SampleRounds(self.params, problem, ctx, score=False)


@register
class BestOfN(Planner[SamplingParams]):
    name = "best_of_n"
    description = (
        "Sampling + filter: N samples scored on the public tests in the sandbox; best reward wins "
        "(selector=behaviour: the largest group that behaves alike on extra inputs)."
    )
    needs_sandbox = True
    selects_while_searching = True  # selector=behaviour groups the samples as they are drawn
    Params = BestOfNParams

    def start(self, problem: Problem, ctx: SearchContext) -> SampleRounds:
        p = self.params
        search = SampleRounds(p, problem, ctx, score=True)
        if problem.final_answer is not None:
            weighted = isinstance(p, BestOfNParams) and p.vote == "weighted"
            search.signal = "weighted-agreement" if weighted else "agreement"
        return search
