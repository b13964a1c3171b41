"""AdaDec: greedy decoding that pauses where the model is uncertain and re-ranks by lookahead.

"Towards Better Code Generation: Adaptive Decoding with Uncertainty Guidance" (2025). At each
step, with ``H`` the Shannon entropy (nats) of the full next-token distribution:

- ``H < H*``: take the argmax token;
- otherwise *pause*: take the top-B tokens, look ahead ``L`` tokens greedily after each (a
  lookahead ends early where the function body ends, ``FunctionBodyEnd``), score each candidate
  ``(log p(c) + lambda * sum(lookahead log-probs)) / (lookahead length + 1)`` and commit the best.

``H*`` is learned per model (``treedec calibrate``, see ``planners/calibration.py``) or given.
``_Walk.run`` is this rule; the tests keep it written out step by step (one model call per step
and per candidate, ``tests/test_adadec.py``) and hold the planner to it.

How it runs without one model call per token: greedy runs ahead in chunks (one ``rollouts`` call
with ``record_top_k``, which also returns every step's entropy and top-B), and the walk over a
chunk commits tokens until the first step at or above ``H*``. There the B lookaheads run as one
batched call, also recording their steps. If the argmax wins the pause, the chunk goes on being
walked (nothing is wasted); if another candidate wins, its lookahead *is* the greedy path after
it, so the walk continues on that lookahead, and only the rest of the old chunk is wasted
(counted as ``wasted_tokens``). With ``greedy_chunk=1`` this is the plain step-by-step loop; the
committed tokens are the same for every chunk size in exact arithmetic (tested on the float32 tiny
model); in bfloat16 a reused path's log-probs and a fresh batched rollout's differ in the last bits,
which can flip a pause whose candidate scores nearly tie.

Three savings keep the lookahead cost down without changing a committed token:

- *reuse*: at a pause inside a greedy path that ran ahead (a chunk, or a winner's lookahead), the
  path's continuation after the pause *is* the argmax candidate's greedy lookahead, so
  ``MeteredLM`` reads it off the path (``search/state/paths.py``: cut by the same rules as the rollout,
  counted as ``spend.path_hits``/``path_tokens``, no forward pass) and only the other B-1
  candidates are rolled out. When the path ends (by length) before the lookahead is decided, it is
  first extended by a greedy chunk of ``L + 1`` tokens (``path_extensions``), which the walk goes
  on with when the argmax wins (most pauses) and which is wasted when another candidate wins.
- *prune*: when the argmax's lookahead was reused, its score is known before any rollout. A
  candidate's score is at most ``log p(c) / (L + 1)`` (lookahead log-probs are <= 0), so candidates
  whose bound does not exceed the argmax's score cannot win and are not rolled out
  (``lookahead_pruned``).
- *skip*: a pause whose outcome cannot change the completion gets no lookahead at all
  (``outcome_is_fixed``): every top-B candidate is a real token (not end-of-sequence), and with it
  appended the problem's stop conditions cut the text strictly inside the text already committed,
  at the same place for every candidate. The completion then ends there, with the same text and
  tokens whichever candidate wins, so the argmax is committed and the decode stops. Counted as a
  pause and as ``lookahead_skipped``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerError, PlannerParams, Search
from planners.thresholds import lookup
from search.limits.steps import in_context
from search.limits.stops import FunctionBodyEnd, StopCondition, first_stop
from search.model.lm import CallStats, GenerationParams, LanguageModel, Rollout, TokenDist
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, stops_for


class AdaDecParams(PlannerParams):
    entropy_threshold: float | None = Field(
        None,
        ge=0,
        description="pause when the next-token entropy (nats) is at least this; "
        "default: the model's calibrated value (treedec calibrate)",
    )
    num_candidates: int = Field(3, ge=1, le=32, description="B: top tokens re-ranked at a pause")
    lookahead_tokens: int = Field(5, ge=1, le=64, description="L: greedy lookahead tokens per candidate")
    lookahead_weight: float = Field(1.0, ge=0, le=10, description="lambda: weight of the lookahead log-prob")
    greedy_chunk: int = Field(
        16,
        ge=1,
        le=1024,
        description="greedy tokens generated per model call between pauses "
        "(1 = one call per step; the output is the same for any value, up to the rounding of "
        "batched half-precision kernels on near-ties)",
    )
    prune: bool = Field(
        True,
        description="skip the lookahead of candidates that cannot outscore the argmax whatever their "
        "lookahead (exact: the committed tokens are the same as without pruning)",
    )


@dataclass
class ScoredCandidate:
    """One candidate at a pause: its token, log-prob, lookahead and score."""

    token: int
    logprob: float
    lookahead: Rollout | None
    score: float

    @property
    def lookahead_len(self) -> int:
        return len(self.lookahead.token_ids) if self.lookahead is not None else 0


def candidate_score(logprob: float, lookahead_logprobs: Sequence[float], weight: float) -> float:
    """AdaDec's length-normalised score of a candidate.

    >>> candidate_score(-1.0, [-0.5, -0.5], 1.0)
    -0.6666666666666666
    >>> candidate_score(-1.0, [], 1.0)
    -1.0
    """
    return (logprob + weight * float(sum(lookahead_logprobs))) / (len(lookahead_logprobs) + 1)


def score_upper_bound(logprob: float, lookahead_tokens: int) -> float:
    """The best score a candidate of log-prob ``logprob`` can reach, whatever its lookahead.

    Lookahead log-probs are at most 0 and the weight is not negative, so the score is at most
    ``logprob / (n + 1)`` for a lookahead of ``n <= L`` tokens, largest at ``n = L``.

    >>> round(score_upper_bound(-1.2, 5), 6)
    -0.2
    """
    return logprob / (lookahead_tokens + 1)


def prunable(candidates: Sequence[tuple[int, float]], argmax_score: float, lookahead_tokens: int) -> set[int]:
    """Candidates after the first that cannot beat the argmax's known score: the winner is the first
    candidate with the highest score, so one whose upper bound is at most ``argmax_score`` never wins."""
    return {tok for tok, lp in candidates[1:] if score_upper_bound(lp, lookahead_tokens) <= argmax_score}


def score_candidates(
    lm: LanguageModel,
    prefix: Sequence[int],
    candidates: Sequence[tuple[int, float]],
    lookahead_tokens: int,
    weight: float = 1.0,
    record_top_k: int = 0,
    stats: CallStats | None = None,
    skip: set[int] | None = None,
) -> list[ScoredCandidate]:
    """Score ``(token, logprob)`` candidates after ``prefix`` with greedy lookaheads, all in one
    batched ``rollouts`` call (a lookahead on an earlier greedy path is read off it by
    ``MeteredLM``). An end-of-sequence candidate has no lookahead; a candidate in ``skip`` is not
    scored (its score is -inf: see ``prunable``)."""
    skip = skip or set()
    runnable = [tok for tok, _ in candidates if tok not in lm.eos_token_ids and tok not in skip]
    rolls: dict[int, Rollout] = {}
    if runnable:
        params = GenerationParams(max_new_tokens=lookahead_tokens, record_top_k=record_top_k)
        out = lm.rollouts(
            [list(prefix) + [tok] for tok in runnable], params, [FunctionBodyEnd()], stats=stats
        )
        rolls.update(zip(runnable, out, strict=True))
    scored = []
    for tok, lp in candidates:
        roll = rolls.get(tok)
        if tok in skip:
            scored.append(ScoredCandidate(tok, lp, None, -math.inf))
            continue
        scored.append(
            ScoredCandidate(tok, lp, roll, candidate_score(lp, roll.logprobs if roll else [], weight))
        )
    return scored


def outcome_is_fixed(
    lm: LanguageModel, tokens: Sequence[int], candidates: Sequence[int], stops: Sequence[StopCondition]
) -> bool:
    """Whether the completion ends the same way whichever of ``candidates`` follows ``tokens``.

    True when no candidate is end-of-sequence, the committed text has no stop yet, and with each
    candidate appended the stop conditions cut the text at the same index strictly before the end
    of the committed text (so the kept text and tokens never include the candidate, and later
    tokens cannot move the earliest cut). A pause there needs no lookahead.
    """
    if not tokens or not candidates or any(c in lm.eos_token_ids for c in candidates):
        return False
    base = lm.decode(list(tokens))
    if first_stop(base, stops) is not None:
        return False
    kept: str | None = None
    for c in candidates:
        text = lm.decode(list(tokens) + [c])
        cut = first_stop(text, stops)
        if cut is None or cut >= len(base):
            return False
        if kept is None:
            kept = text[:cut]
        elif text[:cut] != kept:
            return False
    return kept is not None and base.startswith(kept)


@dataclass
class _Segment:
    """Greedy steps known ahead of the walk: tokens, their log-probs and each step's distribution
    (one more distribution than tokens when the path ended in end-of-sequence)."""

    tokens: list[int]
    logprobs: list[float]
    dists: list[TokenDist]
    chunk_start: int  # tokens from here on were generated by greedy chunk calls, before: a lookahead
    finish: str  # why the path ends where it does (the last rollout's finish reason)
    pos: int = 0

    @classmethod
    def of(cls, r: Rollout, from_chunk: bool) -> _Segment:
        _need_dists(r)
        start = 0 if from_chunk else len(r.token_ids)
        return cls(list(r.token_ids), list(r.logprobs), list(r.step_dists or []), start, r.finish_reason)

    def origin(self, j: int) -> str:
        return "chunk" if j >= self.chunk_start else "lookahead"

    def extend(self, r: Rollout) -> None:
        """Append a greedy chunk generated from the end of this path."""
        _need_dists(r)
        self.tokens += r.token_ids
        self.logprobs += r.logprobs
        self.dists += r.step_dists or []
        self.finish = r.finish_reason


def _need_dists(r: Rollout) -> None:
    if r.step_dists is None:
        raise PlannerError("adadec needs a model backend that records step distributions (record_top_k)")


class _Walk(Search[AdaDecParams]):
    """The state of one AdaDec decode."""

    def __init__(
        self, p: AdaDecParams, problem: Problem, ctx: SearchContext, threshold: float, source: str
    ) -> None:
        super().__init__(p, problem, ctx)
        self.threshold, self.threshold_source = threshold, source
        self.prompt = ctx.lm.encode(problem.model_text)
        self.stops: list[StopCondition] = stops_for(problem)
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.pauses: list[dict[str, Any]] = []
        self.origins: list[str] = []  # per committed token: chunk | lookahead | pause
        self.chunk_tokens = 0  # tokens the greedy chunk calls generated
        self.counts: dict[str, int] = {
            "pauses": 0,
            "switches": 0,
            "lookahead_tokens": 0,
            "greedy_calls": 0,
            "lookahead_calls": 0,
            "lookahead_skipped": 0,
            "lookahead_pruned": 0,
            "path_extensions": 0,
        }

    def run(self) -> str:
        """AdaDec's rule, one committed token at a time, until a stop, end-of-sequence or the token
        limit; returns the finish reason. ``path`` holds the greedy steps known ahead (a chunk, or
        a pause winner's lookahead), each with its next-token distribution and entropy H:

        - H < H*: commit the argmax (the path's next token);
        - H >= H*: pause, re-rank the top-B tokens by lookahead score and commit the best; the
          walk goes on along the winner's own greedy path.
        """
        path: _Segment | None = None
        while len(self.tokens) < self.p.max_new_tokens:
            if path is None or path.pos >= len(path.dists):  # nothing known ahead: run greedy ahead
                if self._stop_cut() is not None:
                    return "stop"
                path = self._chunk()
                continue
            j, dist = path.pos, path.dists[path.pos]
            if dist.entropy < self.threshold:
                if j >= len(path.tokens):
                    return "eos"  # the argmax here is end-of-sequence
                self._commit(path.tokens[j], path.logprobs[j], path.origin(j))
                path.pos += 1
                continue
            if self._stop_cut() is not None:
                return "stop"
            best = self._pause(dist, path)
            if best is None:  # every candidate ends the completion here: take the argmax, stop
                self._commit(dist.token_ids[0], dist.logprobs[0], "pause")
                return "stop"
            if best.token in self.ctx.lm.eos_token_ids:
                return "eos"
            self._commit(best.token, best.logprob, "pause")
            path = self._follow(path, best)
        return "length"

    def _pause(self, dist: TokenDist, path: _Segment) -> ScoredCandidate | None:
        """The top-B candidates at ``path.pos`` scored by their lookaheads: the first with the
        highest score wins. None when the pause cannot change the output (no lookahead runs)."""
        self.ctx.meter.check()
        b = self.p.num_candidates
        cands = list(zip(dist.token_ids[:b], dist.logprobs[:b], strict=True))
        self.counts["pauses"] += 1
        if outcome_is_fixed(self.ctx.lm, self.tokens, [t for t, _ in cands], self.stops):
            self.counts["lookahead_skipped"] += 1
            self._record(dist, cands, None, cands[0][0])
            return None
        scored = self._lookahead_scores(cands, path)
        best = max(scored, key=lambda c: c.score)
        self._record(dist, cands, scored, best.token)
        return best

    def _follow(self, path: _Segment, best: ScoredCandidate) -> _Segment:
        """Where the walk goes on after committing a pause's winner: along the same path when the
        winner is its token, else along the winner's lookahead (the greedy path after it)."""
        j = path.pos
        if j < len(path.tokens) and path.tokens[j] == best.token:
            path.pos += 1
            return path
        self.counts["switches"] += 1
        assert best.lookahead is not None
        return _Segment.of(best.lookahead, from_chunk=False)

    def _chunk(self) -> _Segment:
        return _Segment.of(self._greedy(self.tokens), from_chunk=True)

    def _greedy(self, tokens: list[int], size: int | None = None) -> Rollout:
        """One greedy chunk after ``tokens`` (the completion so far), recording each step's top-B."""
        self.ctx.meter.check()
        n = min(size or self.p.greedy_chunk, self.p.max_new_tokens - len(tokens))
        params = GenerationParams(max_new_tokens=max(1, n), record_top_k=self.p.num_candidates)
        stats = CallStats()
        # The problem's stops see the committed text too, so a chunk that begins right after a
        # newline stops on the next top-level line instead of running on past the completion's end.
        stops = in_context(self.stops, self.ctx.lm.decode(tokens)) if tokens else self.stops
        roll = self.ctx.lm.rollouts([self.prompt + tokens], params, stops, stats=stats)[0]
        self.counts["greedy_calls"] += 1
        self.chunk_tokens += stats.generated_tokens
        return roll

    def _argmax_lookahead(self, path: _Segment, j: int) -> Rollout | None:
        """The argmax's lookahead at a pause at ``path.pos == j`` as ``MeteredLM`` reads it off the
        path (``path_rollout``); when the path ends too soon (by length, not by a stop or
        end-of-sequence) it is extended first by a short greedy chunk, which the walk goes on with
        if the argmax wins (so the argmax costs no lookahead tokens of its own, and the others can
        be pruned against its score)."""
        prefix = self.prompt + self.tokens + [path.tokens[j]]
        params = GenerationParams(max_new_tokens=self.p.lookahead_tokens, record_top_k=self.p.num_candidates)

        def read() -> Rollout | None:
            return self.ctx.lm.path_rollout(prefix, params, [FunctionBodyEnd()])

        reused = read()
        room = self.p.max_new_tokens - len(self.tokens) - (len(path.tokens) - j)
        if reused is None and path.finish == "length" and room > 0:
            # L + 1 tokens always decide the lookahead; a longer extension is wasted on a switch
            path.extend(self._greedy(self.tokens + path.tokens[j:], self.p.lookahead_tokens + 1))
            self.counts["path_extensions"] += 1
            reused = read()
        return reused

    def _lookahead_scores(self, cands: Sequence[tuple[int, float]], path: _Segment) -> list[ScoredCandidate]:
        """``score_candidates`` with the savings that keep every score: the argmax's lookahead is
        read off the path (reuse) and candidates that cannot beat it are not rolled out (prune)."""
        j = path.pos
        on_path = j < len(path.tokens) and path.tokens[j] == cands[0][0]
        top = self._argmax_lookahead(path, j) if on_path else None
        known = {cands[0][0]} if top is not None else set()  # read off the path by MeteredLM
        skip: set[int] = set()
        if self.p.prune and top is not None:
            top_score = candidate_score(cands[0][1], top.logprobs, self.p.lookahead_weight)
            skip = prunable(cands, top_score, self.p.lookahead_tokens)
            self.counts["lookahead_pruned"] += len(skip)
        stats = CallStats()
        scored = score_candidates(
            self.ctx.lm,
            self.prompt + self.tokens,
            cands,
            self.p.lookahead_tokens,
            self.p.lookahead_weight,
            record_top_k=self.p.num_candidates,
            stats=stats,
            skip=skip,
        )
        eos = self.ctx.lm.eos_token_ids
        if any(t not in eos and t not in known and t not in skip for t, _ in cands):
            self.counts["lookahead_calls"] += 1  # score_candidates made one batched rollouts call
        self.counts["lookahead_tokens"] += stats.generated_tokens
        return scored

    def _record(
        self,
        dist: TokenDist,
        cands: Sequence[tuple[int, float]],
        scored: Sequence[ScoredCandidate] | None,
        chosen: int,
    ) -> None:
        """Keep the pause in the candidate's meta (``scored`` None: the lookahead was skipped)."""
        record: dict[str, Any] = {
            "position": len(self.tokens),
            "entropy": round(dist.entropy, 4),
            "candidates": [
                {
                    "token": c.token,
                    "text": self.ctx.lm.decode([c.token]),
                    "logprob": round(c.logprob, 4),
                    "lookahead": c.lookahead_len,
                    "score": round(c.score, 4) if math.isfinite(c.score) else None,
                }
                for c in scored
            ]
            if scored is not None
            else [
                {
                    "token": t,
                    "text": self.ctx.lm.decode([t]),
                    "logprob": round(lp, 4),
                    "lookahead": 0,
                    "score": None,
                }
                for t, lp in cands
            ],
            "chosen": chosen,
            "switched": chosen != cands[0][0],
        }
        if scored is None:
            record["lookahead_skipped"] = True
        self.pauses.append(record)
        self.ctx.emit(
            "pause", position=record["position"], entropy=record["entropy"], switched=record["switched"]
        )

    def _commit(self, token: int, logprob: float, origin: str) -> None:
        self.tokens.append(token)
        self.logprobs.append(logprob)
        self.origins.append(origin)

    def _stop_cut(self) -> int | None:
        """Where the completion's text ends by the problem's stop conditions, or None."""
        return first_stop(self.ctx.lm.decode(self.tokens), self.stops) if self.tokens else None

    def outcome(self, reason: str) -> Outcome:
        cand = self.candidate(reason)
        cand.meta["threshold_source"] = self.threshold_source
        for name, n in self.counts.items():
            self.ctx.count(name, n)
        self.ctx.emit("candidate", tokens=len(cand.token_ids), pauses=self.counts["pauses"])
        return Outcome(cand, [cand], cand.meta["finish"])

    def candidate(self, reason: str) -> Candidate:
        """The finished completion: text cut at the stop, tokens up to the one in which it began."""
        text = self.ctx.lm.decode(self.tokens)
        cut = first_stop(text, self.stops)
        tokens, logprobs = self.tokens, self.logprobs
        if cut is not None:
            n = next(
                (i for i in range(1, len(tokens) + 1) if len(self.ctx.lm.decode(tokens[:i])) > cut),
                len(tokens),
            )
            tokens, logprobs, text = tokens[:n], logprobs[:n], text[:cut]
            reason = "stop"
        kept = self.origins[: len(tokens)]
        # Every generated token is lookahead, or a chunk token that was kept, or waste.
        self.counts["wasted_tokens"] = max(0, self.chunk_tokens - kept.count("chunk"))
        self.counts["tokens_from_lookahead"] = kept.count("lookahead")
        return Candidate(
            text,
            list(tokens),
            float(sum(logprobs)),
            meta={"finish": reason, "threshold": self.threshold, "pauses": self.pauses},
        )


def resolve_threshold(
    p: AdaDecParams, ctx: SearchContext, prompt_style: str = "completion"
) -> tuple[float, str]:
    """The entropy threshold to use and where it came from (the one calibrated in this prompt
    style, else the completion-style one, said in the source); refuses when there is none."""
    if p.entropy_threshold is not None:
        return p.entropy_threshold, "param"
    entry = lookup(ctx.lm.identity, prompt_style=prompt_style)
    if entry is None and prompt_style != "completion":
        entry = lookup(ctx.lm.identity)
        if entry is not None:
            entry = {
                **entry,
                "file": f"{entry['file']} (completion style; not calibrated for {prompt_style})",
            }
    if entry is None or not isinstance(entry.get("entropy_threshold"), (int, float)):
        name = ctx.lm.identity.name
        raise PlannerError(
            f"adadec has no entropy threshold for model {name!r}: run `treedec calibrate --model {name}` "
            "or pass --set entropy_threshold=H (nats)"
        )
    value = float(entry["entropy_threshold"])
    if not math.isfinite(value) or value < 0:
        raise PlannerError(
            f"the stored entropy threshold for {ctx.lm.identity.name!r} is invalid ({value}): "
            "run `treedec calibrate` again"
        )
    return value, entry["file"]


@register
class AdaDec(Planner[AdaDecParams]):
    name = "adadec"

    @classmethod
    def required_params(cls, lm: Any) -> list[str]:
        """``entropy_threshold`` unless this model has a calibrated one."""
        if lm is None:
            return []
        entry = lookup(lm.identity)
        value = entry.get("entropy_threshold") if entry is not None else None
        usable = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
        return [] if usable else ["entropy_threshold"]

    description = (
        "Greedy with entropy-triggered pauses: at uncertain steps the top-B tokens are re-ranked "
        "by a short greedy lookahead (learned threshold per model)."
    )
    Params = AdaDecParams

    def start(self, problem: Problem, ctx: SearchContext) -> Search[AdaDecParams]:
        threshold, source = resolve_threshold(self.params, ctx, problem.prompt_style)
        return _Walk(self.params, problem, ctx, threshold, source)
