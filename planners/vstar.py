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
``rollouts`` programs, when ``stop_after_passing`` distinct programs pass the public tests (0: never
early), when no expandable pair is left, or when the ``Budget`` is spent. A problem without public
tests gives no reward to steer by: its answer is the first (greedy) program, as in PG-TD.

**Sibling-relative advantages (Sibling-GRPO).** ``Tree.advantage_records()`` (search/state/tree.py) is
used as it is: for every node with two or more children carrying ``reward``, each child's
advantage is ``(reward - mean) / (std + 1e-6)`` over the *group of siblings including the child*
(GRPO's group normalisation with the siblings as the group; leaving the child out would make a
pair of siblings divide by a zero std), with the population std, so identical siblings get 0.
The ``reward`` on a node is its Monte-Carlo value (mean public-test reward of the programs below
it; for a leaf, its own reward), which is what ``treedec solve --planner vstar
--export-advantages FILE.jsonl`` exports.

Spend: tokens and passes are charged by ``ctx.lm`` and test runs by ``ctx.reward``;
``spend.extra`` counts ``vstar_rollouts``, ``vstar_expansions``, ``branch_points``,
``value_refits`` and ``vstar_tree_nodes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerError, PlannerParams, Search
from scorers.value import ValueModel, node_features
from search.limits.steps import in_context
from search.limits.stops import StopCondition, first_stop
from search.model.lm import GenerationParams, Rollout, TokenDist
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, stops_for
from search.state.tree import Tree


class VStarParams(PlannerParams):
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


# ----- decisive nodes (pure functions on a Tree) -----------------------------------------------


def decisiveness(tree: Tree, node: int, value: Callable[[int], float], entropy_scale: float) -> float:
    """Children's value gap (max - min) with two or more children, else normalised entropy."""
    kids = tree.children(node)
    if len(kids) >= 2:
        values = [value(c) for c in kids]
        return max(values) - min(values)
    h = tree[node].get("entropy") or 0.0
    return min(1.0, float(h) / entropy_scale) if entropy_scale > 0 else 0.0


def rank_decisive(
    tree: Tree, nodes: Sequence[int], value: Callable[[int], float], entropy_scale: float = math.log(3)
) -> list[int]:
    """``nodes`` from the most decisive to the least (ties: lower node id first)."""
    return sorted(nodes, key=lambda n: (-decisiveness(tree, n, value, entropy_scale), n))


# ----- the search ------------------------------------------------------------------------------


@dataclass
class _Node:
    gen: list[int]  # completion tokens up to this node
    lps: list[float]
    text: str  # completion text up to this node
    dist: TokenDist | None = None  # next-token distribution (branch nodes)
    tried: set[int] = field(default_factory=set)
    cached_pass: float | None = None
    cached_compiles: bool | None = None
    cont_lps: list[float] = field(default_factory=list)
    program: str | None = None  # leaves


class _Search(Search[VStarParams]):
    """One V-STAR search: the tree of greedy stretches, its per-node record and the value model."""

    def __init__(self, p: VStarParams, problem: Problem, ctx: SearchContext) -> None:
        if ctx.scorer is None:
            raise PlannerError("vstar needs a sandbox: its values are public-test rewards")
        super().__init__(p, problem, ctx)
        self.prompt = ctx.lm.encode(problem.model_text)
        self.base_stops: list[StopCondition] = stops_for(problem)
        self.tree = Tree()
        self.nodes: dict[int, _Node] = {}
        self.values = ValueModel(ridge=p.ridge, prior_strength=p.prior_strength)
        self.rollouts_done = 0
        self.since_fit = 0
        self.entropy_scale = math.log(p.top_k)
        self.leaves: list[int] = []

    # ----- values --------------------------------------------------------------------------
    def features(self, n: int) -> list[float]:
        nd, a = self.nodes[n], self.tree[n]
        return node_features(
            nd.lps,
            a.get("entropy"),
            len(nd.gen),
            self.p.max_new_tokens,
            nd.cached_pass,
            nd.cached_compiles,
            nd.cont_lps,
        )

    def value(self, n: int) -> float:
        return float(self.tree[n].get("value", 0.5))

    def refresh_values(self, refit: bool) -> None:
        visited = [n for n in self.tree.nodes() if self.tree[n]["visits"] > 0]
        if refit and self.values.fit(
            [self.features(n) for n in visited], [self.tree[n]["reward"] for n in visited]
        ):
            self.ctx.count("value_refits")
        for n in self.tree.nodes():
            a = self.tree[n]
            v = self.values.blend(a.get("reward"), a["visits"], self.features(n))
            self.tree.update(n, value=round(v, 6), value_head=round(self.values.head(self.features(n)), 6))

    def backup(self, leaf: int, reward: float) -> None:
        for n in self.tree.path(leaf):
            a = self.tree[n]
            visits, total = a["visits"] + 1, a.get("mc_sum", 0.0) + reward
            self.tree.update(n, visits=visits, mc_sum=total, reward=round(total / visits, 6))

    # ----- choosing expansions -------------------------------------------------------------
    def expandable(self) -> list[tuple[float, int, int, float]]:
        """(priority, node, alternative token, its prob) for every expandable pair."""
        root_visits = self.tree[self.tree.root]["visits"] if self.tree.root is not None else 0
        out = []
        for n, nd in self.nodes.items():
            if nd.dist is None or len(nd.gen) >= self.p.max_new_tokens:
                continue
            a = self.tree[n]
            base = (
                self.value(n)
                + self.p.c_ucb * math.sqrt(math.log(1 + root_visits) / (1 + a["visits"]))
                + self.p.gap_weight * decisiveness(self.tree, n, self.value, self.entropy_scale)
            )
            for tok, prob in zip(nd.dist.token_ids, nd.dist.topk_softmax(), strict=True):
                if tok in nd.tried or tok in self.ctx.lm.eos_token_ids or prob < self.p.min_alt_prob:
                    continue
                if self.ends_program(nd, tok):
                    nd.tried.add(tok)  # forcing it would only end the program here: no new program
                    continue
                out.append((base + self.p.prior_weight * prob, n, tok, prob))
        out.sort(key=lambda c: (-c[0], c[1], -c[3]))
        return out

    def ends_program(self, nd: _Node, tok: int) -> bool:
        """Whether the token itself hits the problem's stop (e.g. a top-level ``def`` after the body)."""
        return first_stop(self.ctx.lm.decode([tok]), in_context(self.base_stops, nd.text)) is not None

    # ----- rollouts ------------------------------------------------------------------------
    def rollout_many(self, starts: list[tuple[int, int | None]]) -> None:
        """Greedy rollouts from (node, forced first token or None), in one batched call: each row
        carries the problem's stops in its own context and its own token room."""
        self.ctx.meter.check()
        prefixes, texts, rooms, row_stops = [], [], [], []
        for n, tok in starts:
            nd = self.nodes[n]
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
        rewards = self.ctx.reward(self.problem, programs)
        for (n, tok), r, program, rw in zip(starts, rolls, programs, rewards, strict=True):
            self.add_path(n, tok, r, program, float(rw.pass_rate), bool(rw.compile_error))

    def add_path(
        self, n: int, tok: int | None, r: Rollout, program: str, reward: float, compile_error: bool
    ) -> None:
        """Split a rollout into branch nodes at its high-entropy positions and a leaf; back up."""
        start = self.nodes[n]
        seg = ([tok] if tok is not None else []) + list(r.token_ids)
        seg_lps = ([self._alt_logprob(start, tok)] if tok is not None else []) + list(r.logprobs)
        dists: list[TokenDist] = ([start.dist] if tok is not None and start.dist else []) + list(
            r.step_dists or []
        )
        limit = min(len(seg), len(dists))
        unsure = [j for j in range(1, limit) if dists[j].entropy >= self.p.entropy_threshold]
        cands = sorted(sorted(unsure, key=lambda j: -dists[j].entropy)[: self.p.max_branch_points])
        if n == self.tree.root and tok is None:
            start.cached_pass, start.cached_compiles, start.cont_lps = (
                reward,
                not compile_error,
                list(seg_lps),
            )
        if seg:
            start.tried.add(seg[0])
        parent, prev = n, 0
        for j in cands:
            parent = self._add_node(
                parent, seg[prev:j], seg_lps[prev:j], dists[j], reward, compile_error, seg_lps[j:]
            )
            self.nodes[parent].tried.add(seg[j])  # its first child continues with the greedy token
            prev = j
            self.ctx.count("branch_points")
        leaf = self._add_node(
            parent, seg[prev:], seg_lps[prev:], None, reward, compile_error, [], program=program
        )
        self.tree.update(
            leaf,
            kind="leaf",
            complete=True,
            pass_rate=reward,
            compile_error=compile_error,
            finish=r.finish_reason,
        )
        self.leaves.append(leaf)
        self.backup(leaf, reward)

    def _add_node(
        self,
        parent: int,
        toks: list[int],
        lps: list[float],
        dist: TokenDist | None,
        reward: float,
        compile_error: bool,
        cont_lps: list[float],
        program: str | None = None,
    ) -> int:
        pn = self.nodes[parent]
        gen = pn.gen + toks
        text = self.ctx.lm.decode(gen) if program is None else program
        edge_text = text[len(pn.text) :] if text.startswith(pn.text) else self.ctx.lm.decode(toks)
        node = self.tree.add_child(
            parent,
            toks,
            edge_text,
            kind="branch" if dist else "leaf",
            entropy=round(dist.entropy, 4) if dist else None,
            alternatives=[self.ctx.lm.decode([t]) for t in dist.token_ids] if dist else None,
        )
        self.nodes[node] = _Node(
            gen, pn.lps + lps, text, dist, set(), reward, not compile_error, cont_lps, program
        )
        return node

    @staticmethod
    def _alt_logprob(nd: _Node, tok: int) -> float:
        assert nd.dist is not None
        return nd.dist.logprobs[nd.dist.token_ids.index(tok)]

    # ----- the loop ------------------------------------------------------------------------
    def run(self) -> str:
        """One greedy rollout from the root, then rounds: expand the best (decisive node,
        alternative) pairs by greedy rollouts, back up their test rewards, refit the values."""
        root = self.tree.add_root(text=self.problem.prompt, kind="branch")
        self.nodes[root] = _Node([], [], "")
        self.ctx.meter.check()
        dist = self.ctx.lm.next_token_dists([self.prompt], self.p.top_k)[0]
        self.nodes[root].dist = dist
        self.tree.update(root, entropy=round(dist.entropy, 4))
        self.rollout_many([(root, None)])
        if not self.problem.public_tests:
            return "no_public_tests"  # no reward to steer by: the greedy program is the answer
        self.refresh_values(refit=True)
        while self.rollouts_done < self.p.rollouts:
            if self.p.stop_after_passing and len(self.passing_programs()) >= self.p.stop_after_passing:
                return "passing_found"
            self.ctx.meter.check()
            room = self.ctx.meter.remaining_tokens()
            room = room if room is not None else 1 << 30
            size = min(self.p.batch, self.p.rollouts - self.rollouts_done, room)
            chosen = self.expandable()[: max(1, size)]
            if not chosen:
                return "tree_exhausted"
            for _, n, tok, _ in chosen:
                self.ctx.emit("expand", node=n, token=tok, value=self.value(n))
            self.ctx.count("vstar_expansions", len(chosen))
            self.rollout_many([(n, tok) for _, n, tok, _ in chosen])
            refit = self.since_fit >= self.p.refit_every
            if refit:
                self.since_fit = 0
            self.refresh_values(refit=refit)
        return "rollouts"

    def passing_programs(self) -> set[str]:
        return {
            normalise(self.nodes[n].program or "")
            for n in self.leaves
            if self.tree[n].get("pass_rate") == 1.0
        }

    def outcome(self, reason: str) -> Outcome:
        if self.leaves:
            self.refresh_values(refit=False)
        ranked = sorted(
            self.leaves,
            key=lambda n: (-(self.tree[n].get("pass_rate") or 0.0), -self.value(n), -self._mean_lp(n), n),
        )
        seen: set[str] = set()
        candidates: list[Candidate] = []
        total = len(self.problem.public_tests)
        for n in ranked:
            nd = self.nodes[n]
            key = normalise(nd.program or "")
            if key in seen:
                continue
            seen.add(key)
            rate = float(self.tree[n].get("pass_rate") or 0.0)
            candidates.append(
                Candidate(
                    nd.program or "",
                    nd.gen,
                    sum(nd.lps),
                    rate,
                    round(rate * total),
                    total,
                    meta={"node": n, "value": self.value(n)},
                )
            )
        best = candidates[0] if candidates else None
        if best is not None:
            self.tree.mark_path(int(best.meta["node"]))
        self.ctx.count("vstar_tree_nodes", len(self.tree))
        self.ctx.count("distinct_programs", len(candidates))
        self.ctx.count("distinct_passing_programs", len(self.passing_programs()))
        return Outcome(best, candidates, reason, self.tree.to_dict())

    def _mean_lp(self, n: int) -> float:
        lps = self.nodes[n].lps
        return sum(lps) / len(lps) if lps else 0.0


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


__all__ = ["VStar", "VStarParams", "decisiveness", "normalise", "rank_decisive"]
