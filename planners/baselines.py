"""Baselines every search planner is measured against: greedy, beam, sampling, best-of-N.

Best-of-N chooses among its samples with ``selector``: ``public`` (the best public-test pass rate,
ties by likelihood) or ``behaviour`` (``scorers/behaviour.py``: every sample runs on extra inputs,
the public examples, mutations of them and calls the model writes, and the answer comes from the
best group of samples that behave alike, by ``group_score``; each candidate's ``meta`` names its
group and the group's size). With ``selector=behaviour``, ``early_stop`` stops drawing once one
behaviour dominates (``scorers/behaviour.py``'s ``Dominance``: after ``dominance_after`` samples, the
best group holds at least ``dominance_size`` of them and a ``dominance_share`` of all), instead of
at the first sample that passes the public tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from planners import register
from planners.base import Outcome, P, Planner, PlannerParams, Search
from scorers.agreement import Behaviour
from scorers.behaviour import BehaviourProbe, Dominance, Selection, choose_by_behaviour, extra_inputs
from scorers.group_scores import GROUP_SCORES
from scorers.inputs import CallInput
from scorers.written_inputs import write_inputs
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


class BeamParams(PlannerParams):
    num_beams: int = Field(4, ge=2, le=32, description="beam width")


@register
class Beam(Planner[BeamParams]):
    name = "beam"
    description = "Beam search with length-normalised log-probability; returns the best beam."
    Params = BeamParams

    def start(self, problem: Problem, ctx: SearchContext) -> Search[BeamParams]:
        p = self.params
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


class BestOfNParams(SamplingParams):
    selector: Literal["public", "behaviour"] = Field(
        "public",
        description="how the answer is chosen: public (best public-test pass rate) or behaviour "
        "(the largest group of samples that behave alike on extra inputs, public tests first)",
    )
    written_inputs: int = Field(
        8, ge=0, le=32, description="behaviour: calls the model is asked to write (its tokens count)"
    )
    mutated_inputs: int = Field(12, ge=0, le=64, description="behaviour: mutations of the examples' inputs")
    group_score: Literal["public-first", "dual", "handled-first", "dual-weighted"] = Field(
        "public-first",
        description="behaviour: how groups rank (public-first: public pass rate, then inputs left "
        "unhandled, then size; dual: pass rate x size, as CodeT; see scorers/group_scores.py), "
        "ties by likelihood",
    )
    dominance_size: int = Field(
        5, ge=1, le=256, description="behaviour, early_stop: the best group holds at least this many samples"
    )
    dominance_share: float = Field(
        0.6, gt=0, le=1, description="behaviour, early_stop: ... and at least this share of the samples"
    )
    dominance_after: int = Field(5, ge=1, le=256, description="behaviour, early_stop: ... after this many")


class SampleRounds(Search[SamplingParams]):
    """Up to ``n`` completions drawn in batched rounds (the first greedy when ``include_greedy``);
    with ``score``, each is scored on the public tests and the rounds stop once one passes all."""

    def __init__(self, p: SamplingParams, problem: Problem, ctx: SearchContext, score: bool) -> None:
        super().__init__(p, problem, ctx)
        self.score = score
        self.by_behaviour = isinstance(p, BestOfNParams) and p.selector == "behaviour"
        self.selection: Selection | None = None
        self._inputs: list[CallInput] | None = None
        self._written_built = 0
        self._behaviours: list[Behaviour] = []
        self._probe: BehaviourProbe | None = None

    def run(self) -> str:
        reason = self._draw()
        if self.by_behaviour:
            self.selection = self._select_by_behaviour()
            for i, (rank, size) in self.selection.group_of().items():
                self.candidates[i].meta.update(behaviour_group=rank, behaviour_group_size=size)
            groups = [g.size for g in self.selection.groups]
            self.ctx.emit("behaviour", groups=groups, inputs=len(self.selection.inputs))
        return reason

    def _select_by_behaviour(self) -> Selection:
        """The samples drawn so far grouped by behaviour (each sample probed once, the written inputs'
        tokens and every execution charged)."""
        assert isinstance(self.p, BestOfNParams)
        ctx, probe = self.ctx, self._behaviour_probe()
        before, hits = probe.executions, probe.cache_hits
        if self._inputs is None:
            self._inputs = self._build_inputs(self.p, probe)
        new = [c.completion for c in self.candidates[len(self._behaviours) :]]
        self._behaviours += probe.behaviours(self.problem, new, self._inputs)
        executions, cache_hits = probe.executions - before, probe.cache_hits - hits
        ctx.meter.charge(executions=executions, cached_executions=cache_hits)
        rates = [c.reward or 0.0 for c in self.candidates]
        likelihoods = [c.logprob / max(1, len(c.token_ids)) for c in self.candidates]
        score = GROUP_SCORES[self.p.group_score]
        chosen, groups = choose_by_behaviour(self._behaviours, rates, likelihoods, score)
        return Selection(
            chosen, groups, self._inputs, self._written_built, probe.executions, probe.cache_hits
        )

    def _behaviour_probe(self) -> BehaviourProbe:
        if self._probe is None:
            scorer = self.ctx.scorer
            self._probe = BehaviourProbe(scorer.pool, cache=getattr(scorer, "cache", None))
        return self._probe

    def _build_inputs(self, p: BestOfNParams, probe: BehaviourProbe) -> list[CallInput]:
        ctx = self.ctx
        before = ctx.meter.spend.generated_tokens
        written = write_inputs(ctx.lm, self.problem, p.written_inputs) if p.written_inputs else None
        ctx.count("input_writing_tokens", ctx.meter.spend.generated_tokens - before)
        calls = written.calls if written else []
        inputs, self._written_built = extra_inputs(probe, self.problem, calls, p.mutated_inputs, p.seed)
        ctx.count("behaviour_inputs", len(inputs))
        return inputs

    def _dominant(self) -> bool:
        """selector=behaviour with early_stop: one behaviour dominates the samples drawn so far."""
        p = self.p
        assert isinstance(p, BestOfNParams)
        if len(self.candidates) < p.dominance_after:
            return False
        rule = Dominance(p.dominance_size, p.dominance_share, p.dominance_after)
        return rule(self._select_by_behaviour().groups)

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
            if self.score:
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
    Params = BestOfNParams

    def start(self, problem: Problem, ctx: SearchContext) -> SampleRounds:
        return SampleRounds(self.params, problem, ctx, score=True)
