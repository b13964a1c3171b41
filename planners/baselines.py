"""Baselines every search planner is measured against: greedy, beam, sampling, best-of-N."""

from __future__ import annotations

from pydantic import Field

from planners import register
from planners.base import Planner, PlannerParams
from search.budget import BudgetExhausted
from search.context import Candidate, SearchContext, SearchResult, best_candidate, stops_for
from search.lm import DecodeMode, GenerationParams, Rollout
from search.problem import Problem


def rollout_candidate(r: Rollout, **meta: object) -> Candidate:
    return Candidate(r.text, list(r.token_ids), r.sum_logprob, meta=dict(meta) if meta else {})


class GreedyParams(PlannerParams):
    max_new_tokens: int = Field(384, ge=1, le=8192, description="tokens per completion")


@register
class Greedy(Planner):
    name = "greedy"
    description = "Argmax decoding, one completion (the baseline)."
    Params = GreedyParams

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        p: GreedyParams = self.params  # type: ignore[assignment]
        prompt = ctx.lm.encode(problem.model_text)
        r = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=p.max_new_tokens), stops_for(problem))[
            0
        ]
        cand = rollout_candidate(r, finish=r.finish_reason)
        ctx.emit("candidate", tokens=len(r.token_ids))
        return SearchResult(self.name, problem.id, cand, [cand], ctx.meter.finish(), r.finish_reason)


class BeamParams(PlannerParams):
    max_new_tokens: int = Field(384, ge=1, le=8192, description="tokens per completion")
    num_beams: int = Field(4, ge=2, le=32, description="beam width")


@register
class Beam(Planner):
    name = "beam"
    description = "Beam search with length-normalised log-probability; returns the best beam."
    Params = BeamParams

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        p: BeamParams = self.params  # type: ignore[assignment]
        prompt = ctx.lm.encode(problem.model_text)
        params = GenerationParams(
            max_new_tokens=p.max_new_tokens, mode=DecodeMode.beam, num_beams=p.num_beams
        )
        r = ctx.lm.rollouts([prompt], params, stops_for(problem))[0]
        cand = rollout_candidate(r, finish=r.finish_reason)
        return SearchResult(self.name, problem.id, cand, [cand], ctx.meter.finish(), r.finish_reason)


class SamplingParams(PlannerParams):
    n: int = Field(8, ge=1, le=256, description="number of samples")
    batch_size: int = Field(4, ge=1, le=64, description="samples generated per batched call")
    temperature: float = Field(0.8, gt=0, le=5, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    seed: int = Field(0, description="base seed (samples are reproducible)")
    max_new_tokens: int = Field(384, ge=1, le=8192, description="tokens per sample")
    include_greedy: bool = Field(True, description="the first candidate is the greedy completion")
    early_stop: bool = Field(
        True,
        description="best_of_n: stop after the first round with a program that passes every public "
        "test (False: always draw all n, the textbook best-of-N)",
    )


def _sample_rounds(
    problem: Problem, ctx: SearchContext, p: SamplingParams, score: bool
) -> tuple[list[Candidate], str]:
    """Draw up to ``p.n`` completions in batched rounds; with ``score``, stop once one passes all public
    tests."""
    prompt = ctx.lm.encode(problem.model_text)
    stops = stops_for(problem)
    candidates: list[Candidate] = []
    reason = "done"
    round_no = 0
    try:
        while len(candidates) < p.n:
            ctx.meter.check()
            if p.include_greedy and not candidates:
                rolls = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=p.max_new_tokens), stops)
            else:
                count = min(p.batch_size, p.n - len(candidates))
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
            if score:
                for cand, reward in zip(new, ctx.reward(problem, [c.completion for c in new]), strict=True):
                    cand.reward, cand.public_passed, cand.public_total = (
                        reward.pass_rate,
                        reward.passed,
                        reward.total,
                    )
            candidates.extend(new)
            best = best_candidate(candidates)
            ctx.emit("candidates", count=len(candidates), best_reward=best.reward if best else None)
            if score and p.early_stop and any(c.reward == 1.0 for c in new):
                reason = "solved_public"
                break
    except BudgetExhausted as e:
        reason = str(e)
    return candidates, reason


@register
class Sampling(Planner):
    name = "sampling"
    description = "N temperature samples; returns the most likely one (no tests run)."
    Params = SamplingParams

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        p: SamplingParams = self.params  # type: ignore[assignment]
        cands, reason = _sample_rounds(problem, ctx, p, score=False)
        best = max(cands, key=lambda c: c.logprob / max(1, len(c.token_ids)), default=None)
        return SearchResult(self.name, problem.id, best, cands, ctx.meter.finish(), reason)


@register
class BestOfN(Planner):
    name = "best_of_n"
    description = "Sampling + filter: N samples scored on the public tests in the sandbox; best reward wins."
    needs_sandbox = True
    Params = SamplingParams

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        p: SamplingParams = self.params  # type: ignore[assignment]
        cands, reason = _sample_rounds(problem, ctx, p, score=True)
        return SearchResult(self.name, problem.id, best_candidate(cands), cands, ctx.meter.finish(), reason)
