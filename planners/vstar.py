"""V-STAR value-guided decoding ("Spend Search Where It Pays: Value-Guided Efficient Decoding and
Sibling-GRPO", 2026), on the engine. The paper gives no code; every choice is written here.

**Tree.** A node is a prefix of the completion. The root is the prompt. Every non-leaf node is a
*branch point*: a prefix at which the model was unsure of the next token. An edge carries the
tokens from one branch point to the next; a leaf is a complete program (the problem's stop or
EOS) with its public-test reward.

**Greedy stretches, branching at high entropy.** Every rollout is greedy with ``record_top_k``:
it returns each position's top-k and the full distribution's entropy. The positions along it
whose entropy is at least ``entropy_threshold`` nats (at most ``max_branch_points`` per rollout,
the highest) become branch nodes; the confident stretches between them stay single edges,
decided by greedy decoding. The root is always a branch node. An *expansion* takes a branch node
n and one of its untried top-k alternatives a (renormalised top-k probability at least
``min_alt_prob``; EOS, and a token that would itself hit the problem's stop, are never
forced) and rolls out greedily from prefix(n) + a. Rollouts are batched, ``batch`` per round
(one call per distinct stop context).

**Values** (scorers/value.py): each node keeps ``visits`` and the sum of the rewards of the
rollouts that ended below it; ``reward`` = their mean (the Monte-Carlo value). ``value`` blends
it with a ridge value head over cheap features (prefix likelihood, entropy, depth, the cached
greedy completion's test result and likelihood), refitted every ``refit_every`` rollouts on
(features, MC value) of all visited nodes; the MC mean is weighted by its visit count.

**Where to spend.** A branch node's *decisiveness* is the gap between its children's values
(max - min) once it has two or more children, else its normalised next-token entropy
``min(1, H / ln(top_k))`` (a prior on how much the alternatives may disagree). The pair
(n, a) to expand next maximises::

    value(n) + c_ucb * sqrt(ln(1 + N_root) / (1 + visits(n)))      # upper confidence on value
             + gap_weight * decisiveness(n) + prior_weight * p(a | n)

so expansions go to prefixes whose children disagree (decisive nodes) and which may still pay
off, while prefixes whose alternatives agree are left to their greedy continuation.

**Answer.** The best program by (public-test reward, value, likelihood); the candidate set is
every distinct program (whitespace-normalised), the best first. The search stops after
``rollouts`` programs, when one behaviour dominates the programs found (``selector=behaviour``,
``planners/selection.py``), when ``stop_after_passing`` distinct programs pass the public tests (0: never
early), when no expandable pair is left, or when the ``Budget`` is spent. A problem without public
tests gives no reward to steer by: its answer is the first (greedy) program, as in PG-TD (with
``selector=behaviour``, the largest group of programs that behave alike).

**Sibling-relative advantages (Sibling-GRPO).** ``Tree.advantage_records()`` (search/state/tree.py) is
used as it is: for every node with two or more children carrying ``reward``, each child's
advantage is ``(reward - mean) / (std + 1e-6)`` over the *group of siblings including the child*
(GRPO's group normalisation with the siblings as the group; leaving the child out would make a
pair of siblings divide by a zero std), with the population std, so identical siblings get 0.
The ``reward`` on a node is its Monte-Carlo value (mean public-test reward of the programs below
it; for a leaf, its own reward), which is what ``treedec solve --planner vstar
--export-advantages FILE.jsonl`` exports.

**Answer problems** (a question with a checked final answer, no tests): a leaf's reward is the
agreement of its final answer (``scorers/answers.py``: the share of every answer the search's
rollouts reached that is the same answer), so a node's Monte-Carlo value is the mean agreement of
the rollouts below it: the value from rollouts. The search runs all ``rollouts``; the answer is
ranked by its answer's final vote share (then value, then likelihood), its confidence that share.

Spend: tokens and passes are charged by ``ctx.lm`` and test runs by ``ctx.reward``;
``spend.extra`` counts ``vstar_rollouts``, ``vstar_expansions``, ``branch_points``,
``value_refits`` and ``vstar_tree_nodes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerError, PlannerParams, Search
from planners.selection import SelectorParams
from scorers.value import ValueModel, node_features
from search.limits.steps import in_context
from search.limits.stops import StopCondition, first_stop
from search.model.lm import GenerationParams, Rollout, TokenDist
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, stops_for
from search.state.tree import Tree


class VStarParams(PlannerParams, SelectorParams):
    max_new_tokens_help = "cap on a program's tokens"
    rollouts: int = Field(8, ge=1, le=10_000, description="complete programs to generate at most")
    top_k: int = Field(3, ge=2, le=20, description="alternatives considered at a branch point")
    entropy_threshold: float = Field(
        0.7, ge=0, le=20, description="nats: positions at least this unsure branch"
    )
    max_branch_points: int = Field(
        4, ge=0, le=64, description="branch points kept per rollout (highest entropy)"
    )
    min_alt_prob: float = Field(
        0.05, ge=0, le=1, description="smallest renormalised top-k prob of an alternative"
    )
    batch: int = Field(2, ge=1, le=32, description="expansions rolled out per batched call")
    c_ucb: float = Field(0.5, ge=0, le=100, description="upper-confidence weight on a node's value")
    gap_weight: float = Field(1.0, ge=0, le=100, description="weight of decisiveness (children's value gap)")
    prior_weight: float = Field(0.5, ge=0, le=100, description="weight of the alternative's probability")
    refit_every: int = Field(2, ge=1, le=1000, description="refit the value head every this many rollouts")
    ridge: float = Field(1.0, ge=0, le=1e6, description="value head: ridge penalty")
    prior_strength: float = Field(1.0, ge=0, le=1e3, description="value head: weight against the MC mean")
    stop_after_passing: int = Field(
        0, ge=0, le=1000, description="stop after this many distinct passing programs"
    )


# ----- decisive nodes ----------------------------------------------------------------------------


def decisiveness(child_values: Sequence[float], entropy: float | None, entropy_scale: float) -> float:
    """Children's value gap (max - min) with two or more children, else normalised entropy.

    >>> round(decisiveness([0.1, 0.9], 0.2, math.log(3)), 6)
    0.8
    >>> decisiveness([0.4], 2.5, math.log(3))  # one child: the entropy stands in, capped at 1
    1.0
    """
    if len(child_values) >= 2:
        return max(child_values) - min(child_values)
    h = entropy or 0.0
    return min(1.0, float(h) / entropy_scale) if entropy_scale > 0 else 0.0


# ----- the search ------------------------------------------------------------------------------


@dataclass(eq=False)
class PrefixNode:
    """A node of the V-STAR tree: a prefix of the completion, a branch point (``dist``, its
    next-token top-k) or a complete program (``program``: a leaf), with its value statistics.

    ``entropy`` is the rounded next-token entropy the tree shows; ``visits`` and ``mc_sum`` count
    the rollouts that ended below the node and the sum of their rewards, ``reward`` is their mean
    (the Monte-Carlo value) and ``value`` its blend with the value head (``value_head``). A leaf
    keeps its program's ``pass_rate``, ``compile_error`` and ``finish`` reason. ``id`` is the
    node's id in the ``Tree`` that records the search.
    """

    id: int
    gen: list[int]  # completion tokens up to this node
    lps: list[float]
    text: str  # completion text up to this node
    dist: TokenDist | None = None  # next-token distribution (branch nodes)
    tried: set[int] = field(default_factory=set)
    cached_pass: float | None = None
    cached_compiles: bool | None = None
    cont_lps: list[float] = field(default_factory=list)
    program: str | None = None  # leaves
    parent: PrefixNode | None = None
    children: list[PrefixNode] = field(default_factory=list)
    entropy: float | None = None
    visits: int = 0
    mc_sum: float = 0.0
    reward: float | None = None
    value: float | None = None
    value_head: float | None = None
    pass_rate: float | None = None
    compile_error: bool | None = None
    finish: str | None = None

    def path(self) -> list[PrefixNode]:
        """Nodes from the root to this one."""
        out = [self]
        while (parent := out[-1].parent) is not None:
            out.append(parent)
        return out[::-1]

    def tree_attrs(self, decode: Callable[[list[int]], str]) -> dict[str, Any]:
        """What the tree (JSON) shows for this node, in its key order."""
        attrs: dict[str, Any] = {"visits": self.visits}
        if self.parent is None:
            attrs["kind"] = "branch"
            if self.dist is not None:
                attrs["entropy"] = self.entropy
        else:
            attrs["kind"] = "branch" if self.dist else "leaf"
            attrs["entropy"] = self.entropy
            attrs["alternatives"] = [decode([t]) for t in self.dist.token_ids] if self.dist else None
        if self.program is not None:
            attrs.update(
                complete=True, pass_rate=self.pass_rate, compile_error=self.compile_error, finish=self.finish
            )
        if self.visits:
            attrs.update(mc_sum=self.mc_sum, reward=self.reward)
        if self.value is not None:
            attrs.update(value=self.value, value_head=self.value_head)
        return attrs


@dataclass
class _Expansion:
    """A (branch node, alternative token) pair to roll out from, with its priority."""

    priority: float
    node: PrefixNode
    token: int
    prob: float


class _Search(Search[VStarParams]):
    """One V-STAR search: the tree of greedy stretches, its per-node record and the value model."""

    def __init__(self, p: VStarParams, problem: Problem, ctx: SearchContext) -> None:
        if ctx.scorer is None and problem.final_answer is None:
            raise PlannerError("vstar needs a sandbox: its values are public-test rewards")
        super().__init__(p, problem, ctx)
        if self.answer_problem:
            self.signal = "rollout-value"
        self.leaf_answers: dict[int, str | None] = {}  # answer problems: each leaf's final answer
        self.prompt = ctx.lm.encode(problem.model_text)
        self.base_stops: list[StopCondition] = stops_for(problem)
        self.tree = Tree()  # the search's record (JSON): structure now, statistics in ``outcome``
        self.root = PrefixNode(self.tree.add_root(text=problem.prompt), [], [], "")
        self.nodes: list[PrefixNode] = [self.root]  # in tree-id order
        self.values = ValueModel(ridge=p.ridge, prior_strength=p.prior_strength)
        self.rollouts_done = 0
        self.since_fit = 0
        self.entropy_scale = math.log(p.top_k)
        self.leaves: list[PrefixNode] = []

    # ----- the loop ------------------------------------------------------------------------
    def run(self) -> str:
        """One greedy rollout from the root, then rounds: expand the best (decisive node,
        alternative) pairs by greedy rollouts, back up their test rewards, refit the values."""
        self.ctx.meter.check()
        dist = self.ctx.lm.next_token_dists([self.prompt], self.p.top_k)[0]
        self.root.dist, self.root.entropy = dist, round(dist.entropy, 4)
        self.rollout_many([(self.root, None)])
        if not self.problem.public_tests and not self.answer_problem and self.p.selector == "public":
            return "no_public_tests"  # no reward to steer by: the greedy program is the answer
        self.refresh_values(refit=True)
        while self.rollouts_done < self.p.rollouts:
            if self.p.stop_after_passing and len(self.passing_programs()) >= self.p.stop_after_passing:
                return "passing_found"
            if self.by_behaviour and self.behaviour_selector().dominant(self.programs_so_far()):
                return "dominant_behaviour"
            self.ctx.meter.check()
            chosen = self.choose_expansions()
            if not chosen:
                return "tree_exhausted"
            for e in chosen:
                self.ctx.emit("expand", node=e.node.id, token=e.token, value=self.value(e.node))
            self.ctx.count("vstar_expansions", len(chosen))
            self.rollout_many([(e.node, e.token) for e in chosen])
            refit = self.since_fit >= self.p.refit_every
            if refit:
                self.since_fit = 0
            self.refresh_values(refit=refit)
        return "rollouts"

    # ----- values --------------------------------------------------------------------------
    def features(self, nd: PrefixNode) -> list[float]:
        return node_features(
            nd.lps,
            nd.entropy,
            len(nd.gen),
            self.p.max_new_tokens,
            nd.cached_pass,
            nd.cached_compiles,
            nd.cont_lps,
        )

    def value(self, nd: PrefixNode) -> float:
        return nd.value if nd.value is not None else 0.5

    def refresh_values(self, refit: bool) -> None:
        visited = [(n, n.reward) for n in self.nodes if n.reward is not None]  # set by the first visit
        if refit and self.values.fit([self.features(n) for n, _ in visited], [r for _, r in visited]):
            self.ctx.count("value_refits")
        for n in self.nodes:
            v = self.values.blend(n.reward, n.visits, self.features(n))
            n.value, n.value_head = round(v, 6), round(self.values.head(self.features(n)), 6)

    def backup(self, leaf: PrefixNode, reward: float) -> None:
        for n in leaf.path():
            n.visits, n.mc_sum = n.visits + 1, n.mc_sum + reward
            n.reward = round(n.mc_sum / n.visits, 6)

    # ----- choosing expansions -------------------------------------------------------------
    def choose_expansions(self) -> list[_Expansion]:
        """The best expandable pairs for this round: ``batch`` of them, fewer when the rollouts
        or the token budget left are fewer (at least one)."""
        room = self.ctx.meter.remaining_tokens()
        room = room if room is not None else 1 << 30
        size = min(self.p.batch, self.p.rollouts - self.rollouts_done, room)
        return self.expandable()[: max(1, size)]

    def expandable(self) -> list[_Expansion]:
        """Every expandable (node, alternative token) pair, the highest priority first."""
        out = []
        for nd in self.nodes:
            if nd.dist is None or len(nd.gen) >= self.p.max_new_tokens:
                continue
            base = (
                self.value(nd)
                + self.p.c_ucb * math.sqrt(math.log(1 + self.root.visits) / (1 + nd.visits))
                + self.p.gap_weight
                * decisiveness([self.value(c) for c in nd.children], nd.entropy, self.entropy_scale)
            )
            for tok, prob in zip(nd.dist.token_ids, nd.dist.topk_softmax(), strict=True):
                if tok in nd.tried or tok in self.ctx.lm.eos_token_ids or prob < self.p.min_alt_prob:
                    continue
                if self.ends_program(nd, tok):
                    nd.tried.add(tok)  # forcing it would only end the program here: no new program
                    continue
                out.append(_Expansion(base + self.p.prior_weight * prob, nd, tok, prob))
        out.sort(key=lambda e: (-e.priority, e.node.id, -e.prob))
        return out

    def ends_program(self, nd: PrefixNode, tok: int) -> bool:
        """Whether the token itself hits the problem's stop (e.g. a top-level ``def`` after the body)."""
        return first_stop(self.ctx.lm.decode([tok]), in_context(self.base_stops, nd.text)) is not None

    # ----- rollouts ------------------------------------------------------------------------
    def rollout_many(self, starts: list[tuple[PrefixNode, int | None]]) -> None:
        """Greedy rollouts from (node, forced first token or None), in one batched call: each row
        carries the problem's stops in its own context and its own token room."""
        self.ctx.meter.check()
        prefixes, texts, rooms, row_stops = [], [], [], []
        for nd, tok in starts:
            forced = nd.gen + ([tok] if tok is not None else [])
            text = self.ctx.lm.decode(forced)
            prefixes.append(self.prompt + forced)
            texts.append(text)
            rooms.append(max(1, self.p.max_new_tokens - len(forced)))
            row_stops.append(in_context(self.base_stops, text))
            if tok is not None:
                nd.tried.add(tok)
        params = GenerationParams(max_new_tokens=self.p.max_new_tokens, record_top_k=self.p.top_k)
        rolls = self.ctx.lm.rollouts(prefixes, params, (), row_stops=row_stops, row_max_new_tokens=rooms)
        self.rollouts_done += len(rolls)
        self.since_fit += len(rolls)
        self.ctx.count("vstar_rollouts", len(rolls))
        programs = [t + r.text for t, r in zip(texts, rolls, strict=True)]
        if self.answer_problem:
            self.add_answers(starts, rolls, programs)
            return
        rewards = self.ctx.reward(self.problem, programs)
        for (nd, tok), r, program, rw in zip(starts, rolls, programs, rewards, strict=True):
            self.add_path(nd, tok, r, program, float(rw.pass_rate), bool(rw.compile_error))

    def add_answers(
        self, starts: list[tuple[PrefixNode, int | None]], rolls: Sequence[Rollout], programs: list[str]
    ) -> None:
        """Answer problems: the rollouts' answers voted, each path rewarded by its agreement."""
        book = self.answers()
        answers = book.vote(programs, [r.finish_reason != "length" for r in rolls], self.ctx)
        for (nd, tok), r, program, answer in zip(starts, rolls, programs, answers, strict=True):
            self.add_path(nd, tok, r, program, book.agreement(answer), False)
            self.leaf_answers[self.leaves[-1].id] = answer.text

    def add_path(
        self, start: PrefixNode, tok: int | None, r: Rollout, program: str, reward: float, compile_error: bool
    ) -> None:
        """Split a rollout into branch nodes at its high-entropy positions and a leaf; back up."""
        seg = ([tok] if tok is not None else []) + list(r.token_ids)
        seg_lps = ([self._alt_logprob(start, tok)] if tok is not None else []) + list(r.logprobs)
        dists: list[TokenDist] = ([start.dist] if tok is not None and start.dist else []) + list(
            r.step_dists or []
        )
        limit = min(len(seg), len(dists))
        unsure = [j for j in range(1, limit) if dists[j].entropy >= self.p.entropy_threshold]
        cands = sorted(sorted(unsure, key=lambda j: -dists[j].entropy)[: self.p.max_branch_points])
        if start is self.root and tok is None:
            start.cached_pass, start.cached_compiles, start.cont_lps = (
                reward,
                not compile_error,
                list(seg_lps),
            )
        if seg:
            start.tried.add(seg[0])
        parent, prev = start, 0
        for j in cands:
            parent = self._add_node(
                parent, seg[prev:j], seg_lps[prev:j], dists[j], reward, compile_error, seg_lps[j:]
            )
            parent.tried.add(seg[j])  # its first child continues with the greedy token
            prev = j
            self.ctx.count("branch_points")
        leaf = self._add_node(
            parent, seg[prev:], seg_lps[prev:], None, reward, compile_error, [], program=program
        )
        leaf.pass_rate, leaf.compile_error, leaf.finish = reward, compile_error, r.finish_reason
        self.leaves.append(leaf)
        self.backup(leaf, reward)

    def _add_node(
        self,
        parent: PrefixNode,
        toks: list[int],
        lps: list[float],
        dist: TokenDist | None,
        reward: float,
        compile_error: bool,
        cont_lps: list[float],
        program: str | None = None,
    ) -> PrefixNode:
        gen = parent.gen + toks
        text = self.ctx.lm.decode(gen) if program is None else program
        edge_text = text[len(parent.text) :] if text.startswith(parent.text) else self.ctx.lm.decode(toks)
        node = PrefixNode(
            self.tree.add_child(parent.id, toks, edge_text),
            gen,
            parent.lps + lps,
            text,
            dist,
            set(),
            reward,
            not compile_error,
            cont_lps,
            program,
            parent=parent,
            entropy=round(dist.entropy, 4) if dist else None,
        )
        parent.children.append(node)
        self.nodes.append(node)
        return node

    @staticmethod
    def _alt_logprob(nd: PrefixNode, tok: int) -> float:
        assert nd.dist is not None
        return nd.dist.logprobs[nd.dist.token_ids.index(tok)]

    # ----- the answer ----------------------------------------------------------------------
    def programs_so_far(self) -> list[Candidate]:
        """Every distinct program of the leaves, in the order first found (a list that only grows)."""
        seen: set[str] = set()
        found = []
        for nd in self.leaves:
            key = normalise(nd.program or "")
            if key not in seen:
                seen.add(key)
                found.append(Candidate(nd.program or "", nd.gen, sum(nd.lps), float(nd.pass_rate or 0.0)))
        return found

    def passing_programs(self) -> set[str]:
        return {normalise(n.program or "") for n in self.leaves if n.pass_rate == 1.0}

    def outcome(self, reason: str) -> Outcome:
        if self.answer_problem:  # each leaf rewarded by its answer's final share of the votes
            votes = self.answers().votes
            for leaf in self.leaves:
                leaf.pass_rate = round(votes.share(self.leaf_answers.get(leaf.id)), 6)
        if self.leaves:
            self.refresh_values(refit=False)
        ranked = sorted(
            self.leaves,
            key=lambda n: (-(n.pass_rate or 0.0), -self.value(n), -self._mean_lp(n), n.id),
        )
        seen: set[str] = set()
        candidates: list[Candidate] = []
        total = len(self.problem.public_tests)
        for nd in ranked:
            key = normalise(nd.program or "")
            if key in seen:
                continue
            seen.add(key)
            rate = float(nd.pass_rate or 0.0)
            passed, tests = (None, None) if self.answer_problem else (round(rate * total), total)
            meta: dict[str, Any] = {"node": nd.id, "value": self.value(nd)}
            if self.answer_problem:
                meta.update(answer=self.leaf_answers.get(nd.id), finish=nd.finish)
            program = nd.program or ""
            candidates.append(Candidate(program, nd.gen, sum(nd.lps), rate, passed, tests, meta=meta))
        best = candidates[0] if candidates else None
        for nd in self.nodes:
            self.tree.update(nd.id, **nd.tree_attrs(self.ctx.lm.decode))
        if best is not None:
            self.tree.mark_path(int(best.meta["node"]))
        self.ctx.count("vstar_tree_nodes", len(self.tree))
        self.ctx.count("distinct_programs", len(candidates))
        self.ctx.count("distinct_passing_programs", len(self.passing_programs()))
        return Outcome(best, candidates, reason, self.tree.to_dict())

    @staticmethod
    def _mean_lp(nd: PrefixNode) -> float:
        return sum(nd.lps) / len(nd.lps) if nd.lps else 0.0


def normalise(program: str) -> str:
    """A program's identity for diversity counts: trailing whitespace and blank lines ignored."""
    return "\n".join(line.rstrip() for line in program.strip().splitlines() if line.strip())


@register
class VStar(Planner[VStarParams]):
    name = "vstar"
    description = (
        "V-STAR: greedy stretches, branching at high-entropy positions; expands decisive prefixes "
        "(children's value gap) under an upper-confidence rule on MC + learned values."
    )
    needs_sandbox = True
    Params = VStarParams

    def start(self, problem: Problem, ctx: SearchContext) -> Search[VStarParams]:
        return _Search(self.params, problem, ctx)


__all__ = ["PrefixNode", "VStar", "VStarParams", "decisiveness", "normalise"]
