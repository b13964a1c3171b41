"""PG-TD: Planning-Guided Transformer Decoding (Zhang et al., "Planning with Large Language
Models for Code Generation", ICLR 2023), on the engine.

Monte-Carlo tree search over tokens. A tree node is a token prefix (the prompt plus the tokens
chosen on the way down); its children are the top-``width`` next tokens, each with the prior
``P(a|s)`` = softmax over the top-k logits only. One iteration:

1. **Selection** by P-UCB from the root::

       Q(s,a) + beta(s) * P(a|s) * sqrt(ln N(s)) / (1 + N(s,a)),
       beta(s) = ln((N(s) + c_base + 1) / c_base) + c

   where ``Q(s,a)`` is the *maximum* return seen below the child (not the mean) and 0 for an
   unvisited child. As in the reference code ``ln N(s)`` uses the parent's visit count;
   ``N(s)`` is clamped to at least 1, so the exploration term is 0 until the parent has been
   visited twice and the choice then falls to ``Q`` and, among equal scores, the higher prior
   (the reference code's child order). Selection stops at the first unvisited node or at a
   terminal one.
2. **Evaluation**: a lookahead rollout from that node to a complete program (greedy, or beam),
   whose reward is the pass rate on the problem's *public* tests (``ctx.reward``; the hidden
   tests never reach the search). A terminal node (its prefix ends with EOS, its text hits a
   stop condition, or it is ``max_new_tokens`` deep) is its own program: no rollout.
3. **Expansion**: the node's top-k next tokens become its children. The greedy rollout ran with
   ``record_top_k=width``, so ``MeteredLM`` already stored every prefix along its path in the
   tree cache: the expansion is a cache hit, no forward pass.
4. **Backpropagation**: every node on the path gets a visit and ``q = max(q, reward)``.

Caches: a rollout from a node on an earlier greedy rollout's path is read off that path by
``MeteredLM`` (greedy decoding from a point on a greedy path *is* the rest of that path; counted
as ``spend.path_hits``, source ``sequence_cache``). In ``spend.extra``: ``tree_cache_hits`` are
expansions served from the cache; ``rollout_cache_hits`` are exact repeats served by
``MeteredLM``'s rollout cache.

With ``parallel_rollouts > 1`` several leaves are selected per step (a pending leaf carries a
virtual loss, so the next selection goes elsewhere) and evaluated in one batched rollout call.

**Answer problems** (a question with a checked final answer, no tests): the reward of a leaf's
completion is the *agreement* of its final answer (``scorers/answers.py``): the share of every
answer the search's rollouts reached so far that is the same answer (the completion's own vote
included; no answer is 0). The search runs all ``rollouts`` iterations; the answer is the most
likely completion of the answer with the most votes, its confidence that answer's vote share, and
each candidate's ``reward`` is its answer's final share.

The search stops when a program passes all public tests (``early_stop``; with ``selector=behaviour``
instead when one behaviour dominates the programs found, ``planners/selection.py``), after
``rollouts`` iterations (the paper's budget knob), or when the ``Budget`` is spent. The answer is the complete
program with the best public-test reward, ties broken by likelihood; all distinct complete
programs are returned as candidates, and the tree (JSON) marks the path to the chosen one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerParams, Search
from planners.selection import SelectorParams
from search.limits.stops import StopCondition, first_stop
from search.model.lm import DecodeMode, GenerationParams, Rollout
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, best_candidate, stops_for
from search.state.tree import Tree


class PGTDParams(PlannerParams, SelectorParams):
    max_new_tokens_help = "horizon: tokens of a complete program (tree path + lookahead rollout)"
    rollouts: int = Field(
        16, ge=1, le=10_000, description="MCTS iterations (programs evaluated), the paper's budget"
    )
    width: int = Field(3, ge=1, le=50, description="k: a node expands into its top-k next tokens")
    c: float = Field(4.0, ge=0, le=100, description="P-UCB exploration constant c")
    c_base: float = Field(
        10.0, gt=0, le=1e6, description="P-UCB base: beta(s) = ln((N(s)+c_base+1)/c_base) + c"
    )
    lookahead: Literal["greedy", "beam"] = Field("greedy", description="how a leaf is completed")
    num_beams: int = Field(2, ge=2, le=16, description="beam width when lookahead=beam")
    parallel_rollouts: int = Field(
        4, ge=1, le=16, description="leaves evaluated per batched rollout call (virtual loss spreads them)"
    )
    virtual_loss: float = Field(1.0, ge=0, le=10, description="Q penalty per pending evaluation of a child")
    reward: Literal["pass_rate", "shaped"] = Field(
        "pass_rate",
        description="pass_rate, or shaped (-1 compile error, -0.6 runtime error, -0.3 nothing passed)",
    )
    early_stop: bool = Field(True, description="stop once a program passes all public tests")


# ----- nodes, P-UCB and backup ----------------------------------------------------------------


@dataclass(eq=False)
class TokenNode:
    """A node of the search tree: a token prefix and its P-UCB statistics.

    ``tokens`` are the generated tokens after the prompt, ``logprob`` their summed log-probability;
    ``prior`` is P(a|s) of the node's own token and ``token_logprob`` that token's log-probability;
    ``visits`` is N(s,a) and ``q`` the maximum return seen below the node (None until visited);
    ``reward`` is the reward of the node's own evaluation (with ``rollout_tokens`` and ``source``,
    the lookahead that completed it). ``pending`` counts evaluations in flight (batched rollouts).
    ``id`` is the node's id in the ``Tree`` that records the search.
    """

    id: int
    tokens: list[int]
    logprob: float
    prior: float
    token_logprob: float
    terminal: bool
    parent: TokenNode | None = None
    children: list[TokenNode] = field(default_factory=list)
    expanded: bool = False
    visits: int = 0
    q: float | None = None
    reward: float | None = None
    rollout_tokens: int | None = None
    source: str | None = None
    pending: int = 0

    def path(self) -> list[TokenNode]:
        """Nodes from the root to this one."""
        out = [self]
        while (parent := out[-1].parent) is not None:
            out.append(parent)
        return out[::-1]

    def tree_attrs(self) -> dict[str, Any]:
        """The statistics the tree (JSON) shows for this node, in its key order."""
        attrs: dict[str, Any] = {
            "visits": self.visits,
            "prior": self.prior,
            "logprob": self.token_logprob,
            "q": self.q,
            "reward": self.reward,
            "terminal": self.terminal,
        }
        if self.source is not None:
            attrs.update(rollout_tokens=self.rollout_tokens, source=self.source)
        return attrs


def pucb(q: float, prior: float, parent_visits: float, child_visits: float, c: float, c_base: float) -> float:
    """P-UCB score of a child (``ln N(s)`` with ``N(s)`` clamped to >= 1).

    >>> round(pucb(0.0, 0.5, 3, 0, 4.0, 10.0), 4)
    2.2726
    >>> pucb(0.7, 0.9, 1, 0, 4.0, 10.0)  # a parent visited once: no exploration yet
    0.7
    """
    beta = math.log((parent_visits + c_base + 1) / c_base) + c
    return q + beta * prior * math.sqrt(math.log(max(parent_visits, 1.0))) / (1 + child_visits)


def select_child(node: TokenNode, c: float, c_base: float, virtual_loss: float = 1.0) -> TokenNode:
    """The child of ``node`` with the highest P-UCB score; ties go to the higher prior.

    Evaluations in flight (``pending``, batched rollouts) add to the visit counts and take
    ``virtual_loss`` off the child's Q each, so a batch spreads over different leaves.
    """
    if not node.children:
        raise ValueError(f"node {node.id} has no children to select from")
    parent_n = node.visits + node.pending

    def score(child: TokenNode) -> tuple[float, float]:
        q = child.q if child.q is not None else 0.0
        s = pucb(
            q - virtual_loss * child.pending, child.prior, parent_n, child.visits + child.pending, c, c_base
        )
        return s, child.prior

    return max(node.children, key=score)


def backup(node: TokenNode, reward: float) -> None:
    """One visit and ``q = max(q, reward)`` on every node from the root to ``node``."""
    for n in node.path():
        n.visits += 1
        n.q = reward if n.q is None else max(n.q, reward)


# ----- the search ---------------------------------------------------------------------------------


@dataclass
class _Program:
    """A complete program reached from a leaf."""

    tokens: list[int]  # generated tokens after the prompt (node's + rollout's)
    logprob: float
    source: str  # model | sequence_cache | rollout_cache | model+rollout_cache | terminal


class _Search(Search[PGTDParams]):
    """The state of one PG-TD search (tree, caches, candidates)."""

    def __init__(self, p: PGTDParams, problem: Problem, ctx: SearchContext) -> None:
        super().__init__(p, problem, ctx)
        self.stops: list[StopCondition] = stops_for(problem)
        self.prompt = ctx.lm.encode(problem.model_text)
        self.eos = ctx.lm.eos_token_ids
        self.tree = Tree()  # the search's record (JSON): structure now, statistics in ``outcome``
        self.root = TokenNode(
            self.tree.add_root(text=""), [], 0.0, prior=1.0, token_logprob=0.0, terminal=False
        )
        self.nodes: list[TokenNode] = [self.root]  # in tree-id order
        self.rewards: dict[str, Any] = {}  # completion -> TestReward (local memo)
        self.programs: dict[str, Candidate] = {}  # completion -> its most likely candidate
        self.iterations = 0
        if p.lookahead == "beam":
            self.gparams = GenerationParams(
                max_new_tokens=p.max_new_tokens, mode=DecodeMode.beam, num_beams=p.num_beams
            )
        else:
            self.gparams = GenerationParams(max_new_tokens=p.max_new_tokens, record_top_k=p.width)

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> str:
        """The paper's loop, a batch of leaves at a time: select leaves by P-UCB, evaluate them
        (lookahead rollout + public-test reward), back the rewards up, expand the leaves."""
        p = self.p
        while self.iterations < p.rollouts:
            self.ctx.meter.check()
            leaves = self._select_batch(self._batch_size())
            programs = self._complete(leaves)
            self.iterations += len(leaves)
            rewards = self._reward(leaves, programs)
            for leaf, reward in zip(leaves, rewards, strict=True):
                for n in leaf.path():
                    n.pending -= 1
                backup(leaf, reward)
            self._expand([n for n in leaves if not n.terminal and not n.expanded])
            self._report(rewards)
            if p.early_stop and self.by_behaviour:
                if self.behaviour_selector().dominant(list(self.programs.values())):
                    return "dominant_behaviour"
            elif p.early_stop and any(self._solved(c) for c in self.programs.values()):
                return "solved_public"
            if not self.problem.public_tests and not self.answer_problem and self.p.selector == "public":
                return "no_public_tests"  # no signal to search on: the first program is the answer
        return "rollouts"

    def _batch_size(self) -> int:
        """Leaves per step: ``parallel_rollouts``, but never past the iteration or rollout budget."""
        size = min(self.p.parallel_rollouts, self.p.rollouts - self.iterations)
        cap = self.ctx.meter.budget.max_rollouts
        if cap is not None:
            size = min(size, max(1, cap - self.ctx.meter.spend.rollouts))
        return size

    def _report(self, rewards: list[float]) -> None:
        best = max((c.reward for c in self.programs.values() if c.reward is not None), default=None)
        self.ctx.emit(
            "rollout",
            iteration=self.iterations,
            best_reward=best,
            nodes=len(self.tree),
            rewards=[round(r, 4) for r in rewards],
        )

    def _solved(self, c: Candidate) -> bool:
        return bool(c.public_total) and c.public_passed == c.public_total

    # -- 1. selection ------------------------------------------------------------------------------
    def _select_batch(self, size: int) -> list[TokenNode]:
        """Up to ``size`` distinct leaves; each is pending (virtual loss) until it is backed up."""
        leaves: list[TokenNode] = []
        for _ in range(size):
            leaf = self._select()
            if leaf in leaves:
                break  # every path leads to a pending leaf: evaluate what we have
            leaves.append(leaf)
            for n in leaf.path():
                n.pending += 1
        return leaves

    def _select(self) -> TokenNode:
        """Down from the root by P-UCB to the first unvisited or terminal node."""
        node = self.root
        while True:
            if node.terminal or node.visits == 0:
                return node
            if not node.expanded:
                self._expand([node])
            if not node.children:
                node.terminal = True
                return node
            node = select_child(node, self.p.c, self.p.c_base, self.p.virtual_loss)

    # -- 2. evaluation: a complete program per leaf, and its reward ----------------------------------
    def _complete(self, leaves: list[TokenNode]) -> dict[TokenNode, _Program]:
        """Each leaf's program: a terminal node is its own, the others are rolled out in one call."""
        programs: dict[TokenNode, _Program] = {}
        to_roll: list[TokenNode] = []
        for leaf in leaves:
            if leaf.terminal:
                programs[leaf] = self._terminal_program(leaf)
            else:
                to_roll.append(leaf)
        if to_roll:
            programs.update(self._rollout(to_roll))
        return programs

    def _terminal_program(self, leaf: TokenNode) -> _Program:
        self.ctx.count("terminal_evals")
        toks = leaf.tokens
        if toks and toks[-1] in self.eos:
            return _Program(toks[:-1], leaf.logprob - leaf.token_logprob, "terminal")
        return _Program(list(toks), leaf.logprob, "terminal")

    def _rollout(self, leaves: list[TokenNode]) -> dict[TokenNode, _Program]:
        """One batched lookahead call for ``leaves``; each row is held to its own horizon (a leaf
        on an earlier greedy path is read off it by ``MeteredLM``: no model call)."""
        ctx = self.ctx
        remaining = [self.p.max_new_tokens - len(n.tokens) for n in leaves]
        sources: list[str] = []
        rolls: Sequence[Rollout] = ctx.lm.rollouts(
            [self.prompt + n.tokens for n in leaves],
            self.gparams,
            self.stops,
            row_max_new_tokens=remaining,
            sources=sources,
            path_stops=True,  # a node on a finished path completes as that path's program
        )
        run = [s for s in sources if s != "path"]
        cached = run.count("cache")
        source = "model" if cached == 0 else "rollout_cache" if cached == len(run) else "model+rollout_cache"
        ctx.count("rollout_cache_hits", cached)
        if run:
            ctx.count("rollout_calls")
        out = {}
        for leaf, r, origin in zip(leaves, rolls, sources, strict=True):
            toks = leaf.tokens + list(r.token_ids)
            lp = leaf.logprob + sum(r.logprobs)
            out[leaf] = _Program(toks, lp, "sequence_cache" if origin == "path" else source)
        return out

    def _reward(self, leaves: list[TokenNode], programs: dict[TokenNode, _Program]) -> list[float]:
        """The public-test reward of each leaf's program (one batched scorer call for the new
        ones); each program is kept as a candidate."""
        completions = {leaf: self._completion(e.tokens) for leaf, e in programs.items()}
        if self.answer_problem:
            return self._agreement(leaves, programs, completions)
        self._score(list(completions.values()))
        return [self._record(leaf, programs[leaf], completions[leaf]) for leaf in leaves]

    def _agreement(
        self, leaves: list[TokenNode], programs: dict[TokenNode, _Program], completions: dict[TokenNode, str]
    ) -> list[float]:
        """Each leaf's completion's answer voted, then its agreement with every vote so far."""
        book = self.answers()
        ended = [len(programs[leaf].tokens) < self.p.max_new_tokens for leaf in leaves]
        answers = book.vote([completions[leaf] for leaf in leaves], ended, self.ctx)
        values = []
        for leaf, answer in zip(leaves, answers, strict=True):
            value = book.agreement(answer)
            e, completion = programs[leaf], completions[leaf]
            if leaf.reward is None:
                leaf.reward, leaf.source = value, e.source
                leaf.rollout_tokens = len(e.tokens) - len(leaf.tokens)
            old = self.programs.get(completion)
            if old is None or e.logprob > old.logprob:
                meta = {"node": leaf.id, "iteration": self.iterations, "source": e.source}
                meta["answer"] = answer.text
                self.programs[completion] = Candidate(completion, list(e.tokens), e.logprob, value, meta=meta)
            values.append(value)
        return values

    def _completion(self, tokens: list[int]) -> str:
        text = self.ctx.lm.decode(tokens)
        cut = first_stop(text, self.stops)
        return text if cut is None else text[:cut]

    def _score(self, completions: list[str]) -> None:
        todo = list(dict.fromkeys(c for c in completions if c not in self.rewards))
        if todo:
            for c, r in zip(todo, self.ctx.reward(self.problem, todo), strict=True):
                self.rewards[c] = r

    def _record(self, leaf: TokenNode, e: _Program, completion: str) -> float:
        r = self.rewards[completion]
        value = float(r.shaped if self.p.reward == "shaped" else r.pass_rate)
        if leaf.reward is None:
            leaf.reward = value
            leaf.rollout_tokens = len(e.tokens) - len(leaf.tokens)
            leaf.source = e.source
        old = self.programs.get(completion)
        if old is None or e.logprob > old.logprob:
            self.programs[completion] = Candidate(
                completion,
                list(e.tokens),
                e.logprob,
                reward=value,
                public_passed=r.passed,
                public_total=r.total,
                meta={"node": leaf.id, "iteration": self.iterations, "source": e.source},
            )
        return value

    # -- 3. expansion ------------------------------------------------------------------------------
    def _expand(self, nodes: list[TokenNode]) -> None:
        """Each node's top-``width`` next tokens become its children (served by the tree cache when
        a greedy rollout went through the node)."""
        if not nodes:
            return
        ctx = self.ctx
        hits_before = ctx.meter.spend.cache_hits
        dists = ctx.lm.next_token_dists([self.prompt + n.tokens for n in nodes], self.p.width)
        hits = ctx.meter.spend.cache_hits - hits_before
        ctx.count("tree_cache_hits", hits)
        ctx.count("expansions", len(nodes))
        for node, dist in zip(nodes, dists, strict=True):
            priors = dist.topk_softmax()
            for tok, lp, prior in zip(dist.token_ids, dist.logprobs, priors, strict=True):
                gen = node.tokens + [tok]
                child = TokenNode(
                    self.tree.add_child(node.id, [tok], ctx.lm.decode([tok])),
                    gen,
                    node.logprob + lp,
                    prior=prior,
                    token_logprob=lp,
                    terminal=self._is_terminal(gen),
                    parent=node,
                )
                node.children.append(child)
                self.nodes.append(child)
            node.expanded = True

    def _is_terminal(self, gen: list[int]) -> bool:
        if gen[-1] in self.eos or len(gen) >= self.p.max_new_tokens:
            return True
        return first_stop(self.ctx.lm.decode(gen), self.stops) is not None

    # -- result ------------------------------------------------------------------------------------
    def outcome(self, reason: str) -> Outcome:
        cands = list(self.programs.values())
        best = self._voted_best(cands) if self.answer_problem else best_candidate(cands)
        for node in self.nodes:
            self.tree.update(node.id, **node.tree_attrs())
        if best is not None:
            self.tree.mark_path(int(best.meta["node"]))
        self.ctx.count("iterations", self.iterations)
        self.ctx.count("tree_nodes", len(self.tree))
        return Outcome(best, cands, reason, self.tree.to_dict())

    def _voted_best(self, cands: list[Candidate]) -> Candidate | None:
        """Every candidate rewarded by its answer's final vote share; the most likely one of the
        answer with the most votes."""
        book = self.answers()
        for c in cands:
            c.reward = round(book.votes.share(c.meta.get("answer")), 6)
        winners = [c for c in cands if book.votes.agrees_with_leader(c.meta.get("answer"))]
        return max(winners or cands, key=lambda c: c.logprob / max(1, len(c.token_ids)), default=None)


@register
class PGTD(Planner[PGTDParams]):
    name = "pgtd"
    description = (
        "PG-TD: MCTS over top-k tokens with P-UCB (max-Q), greedy/beam lookahead rollouts rewarded by "
        "public-test pass rate; tree and sequence caches."
    )
    needs_sandbox = True
    Params = PGTDParams

    def start(self, problem: Problem, ctx: SearchContext) -> Search[PGTDParams]:
        search = _Search(self.params, problem, ctx)
        if search.answer_problem:
            search.signal = "agreement"
        return search
