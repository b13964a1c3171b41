"""Choosing a program by how it behaves, for every planner that searches code problems.

``SelectorParams`` are the parameters a planner takes to choose its answer by behaviour
(``selector=behaviour``); ``BehaviourSelector`` holds one search's selection state: the extra inputs
(built once: the public examples, mutations of them and the calls the model writes, whose tokens
are charged), the behaviours of the candidates probed so far (each probed once, every execution
charged), the choice among them (``scorers/behaviour.py``) and the stop rule (``dominant``: one
behaviour dominates the candidates so far). Best-of-N selects as it draws and stops drawing once one
behaviour dominates; PG-TD and V-STAR stop on that rule too, instead of at the first program that
passes the public tests; the tree searches (PG-TD, A*, V-STAR) choose among their complete programs
when their search ends (``reselect`` in ``planners/base.py``): the public pass rate still ranks first, so
behaviour breaks the ties among programs that pass the same public tests, and on a problem without
public tests the largest group of programs that behave alike wins.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from scorers.agreement import Behaviour
from scorers.behaviour import BehaviourProbe, Dominance, Selection, choose_by_behaviour, extra_inputs
from scorers.group_scores import GROUP_SCORES
from scorers.inputs import CallInput
from scorers.written_inputs import write_inputs
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext

GroupScoreName = Literal[
    "public-first",
    "dual",
    "handled-first",
    "dual-weighted",
    "public-share",
    "public-stated",
    "public-share-stated",
    "public-codet",
]


class SelectorParams(BaseModel):
    """How a planner chooses its answer among the programs it found."""

    selector: Literal["public", "behaviour"] = Field(
        "public",
        description="how the answer is chosen: public (best public-test pass rate) or behaviour "
        "(the largest group of programs that behave alike on extra inputs, public tests first)",
    )
    written_inputs: int = Field(
        8, ge=0, le=32, description="behaviour: calls the model is asked to write (its tokens count)"
    )
    mutated_inputs: int = Field(12, ge=0, le=64, description="behaviour: mutations of the examples' inputs")
    group_score: GroupScoreName = Field(
        "public-share-stated",
        description="behaviour: how groups rank (public-first: public pass rate, then inputs left "
        "unhandled, then size; public-share: public pass rate, then size only for a group holding a "
        "quarter of the programs; public-share-stated: public-share, then how many of the values the "
        "model stated for its own calls the group returns; dual: pass rate x size, as CodeT; see "
        "scorers/group_scores.py), ties by likelihood",
    )
    dominance_size: int = Field(
        5, ge=1, le=256, description="behaviour, early_stop: the best group holds at least this many programs"
    )
    dominance_share: float = Field(
        0.6, gt=0, le=1, description="behaviour, early_stop: ... and at least this share of the programs"
    )
    dominance_after: int = Field(5, ge=1, le=256, description="behaviour, early_stop: ... after this many")


def mean_logprob(c: Candidate) -> float:
    return c.logprob / max(1, len(c.token_ids))


class BehaviourSelector:
    """One search's selection by behaviour over a list of candidates that only grows."""

    def __init__(self, p: SelectorParams, problem: Problem, ctx: SearchContext, seed: int = 0) -> None:
        self.p, self.problem, self.ctx, self.seed = p, problem, ctx, seed
        scorer = ctx.scorer
        self.probe = BehaviourProbe(scorer.pool, cache=getattr(scorer, "cache", None))
        self.inputs: list[CallInput] | None = None
        self.expectations: list[tuple[int, Any]] = []
        self.written_built = 0
        self.behaviours: list[Behaviour] = []
        self.probed: list[str] = []  # the completions behind ``behaviours``, in order

    def reset(self) -> None:
        """Forget the behaviours (not the inputs): the next ``select`` probes its list afresh (the
        probe's cache answers for programs already run)."""
        self.behaviours, self.probed = [], []

    def select(self, candidates: list[Candidate]) -> Selection:
        """``candidates`` grouped by behaviour and the chosen one (only those not yet probed run)."""
        ctx, probe = self.ctx, self.probe
        before, hits = probe.executions, probe.cache_hits
        if self.inputs is None:
            self.inputs = self._build_inputs()
        new = [c.completion for c in candidates[len(self.behaviours) :]]
        self.behaviours += probe.behaviours(self.problem, new, self.inputs)
        self.probed += new
        ctx.meter.charge(executions=probe.executions - before, cached_executions=probe.cache_hits - hits)
        rates = [c.reward or 0.0 for c in candidates]
        likelihoods = [mean_logprob(c) for c in candidates]
        chosen, groups = choose_by_behaviour(
            self.behaviours, rates, likelihoods, GROUP_SCORES[self.p.group_score], self.expectations
        )
        return Selection(
            chosen,
            groups,
            self.inputs,
            self.written_built,
            probe.executions,
            probe.cache_hits,
            len(self.expectations),
        )

    def dominant(self, candidates: list[Candidate]) -> bool:
        """The stop rule (``Dominance``): after ``dominance_after`` candidates, the best group of
        those so far holds ``dominance_size`` of them and a ``dominance_share`` of all."""
        p = self.p
        if len(candidates) < p.dominance_after:
            return False
        rule = Dominance(p.dominance_size, p.dominance_share, p.dominance_after)
        return rule(self.select(candidates).groups)

    def mark(self, candidates: list[Candidate], selection: Selection) -> None:
        """Name each candidate's group and its size in its ``meta`` (every surface shows the groups)."""
        for i, (rank, size) in selection.group_of().items():
            candidates[i].meta.update(behaviour_group=rank, behaviour_group_size=size)
        groups = [g.size for g in selection.groups]
        self.ctx.emit("behaviour", groups=groups, inputs=len(selection.inputs))

    def _build_inputs(self) -> list[CallInput]:
        ctx, p = self.ctx, self.p
        before = ctx.meter.spend.generated_tokens
        written = write_inputs(ctx.lm, self.problem, p.written_inputs) if p.written_inputs else None
        ctx.count("input_writing_tokens", ctx.meter.spend.generated_tokens - before)
        calls = written.calls if written else []
        stated = written.stated if written else []
        extra = extra_inputs(self.probe, self.problem, calls, p.mutated_inputs, self.seed, stated)
        self.written_built, self.expectations = extra.written_built, extra.expectations
        ctx.count("behaviour_inputs", len(extra.inputs))
        ctx.count("stated_values", len(extra.expectations))
        return extra.inputs
