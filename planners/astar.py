"""A*-decoding (Chatziveroglou, "A*-Decoding: Token-Efficient Inference Scaling", 2025), on the engine.

Best-first search over *partial solutions at step granularity* (search/limits/steps.py: a ``line``, a
Python ``statement`` or a blank-line ``chunk``). Each state s is the prompt plus the steps chosen
so far; a process scorer (scorers/prm.py) gives it r(s) in [0, 1]. The priority is::

    f(s) = g_weight * g(s) + h(s),        h(s) = 1 - r(s)

and ``g`` is the accumulated cost of the path from the root, one of (``g`` param)

- ``one_minus_r`` (default): sum over the path's steps of ``1 - r`` of the state each step
  reached (the root costs 0); default ``g_weight`` 0.5;
- ``nll``: the negative log-likelihood (nats) of the path's tokens; default ``g_weight`` 0.01
  (an NLL of 100 nats weighs as much as h going from 0 to 1).

One iteration pops the state with the lowest f (ties: complete states first, then the older
one) and, unless it is complete, samples K next steps from it in one batched call
(``ctx.lm.rollouts([prefix] * K, sample, stops=[step end, problem stops])``), drops duplicate
steps, scores the new states in one batched scorer call and pushes them (heapq).

A state is *complete* when the problem's own stop (a new top-level statement: the function body
is done) or EOS ended its last step. The first complete state popped that is a *goal* is the
answer: with public tests a goal is a program that passes them all (a complete program that fails
is a dead end, kept as a candidate; ``accept_failing=True`` makes every complete state a goal,
pure A*); without tests every complete state is a goal.

With the code-aware scorer, scoring a state runs a greedy *lookahead* completion and its public
tests. That completion is a complete program, so it is pushed as a complete child of the state
(``kind="lookahead"``, ``lookahead_as_candidate``): tokens already spent are never thrown away, and
when greedy decoding already solves the problem the search ends after one completion, as
best-of-N would. New states are first scored *lazily* (``lazy``, after Lazy A*, Tolpin et al.
2013): the cheap terms plus the parent's pass rate; the lookahead runs only when such a state
reaches the top of the queue, and the state is then re-pushed with its exact score.

The search stops at a goal, when the queue is empty, after ``max_expansions`` expansions, or when
the ``Budget`` is spent. Without a goal the answer is the best complete candidate (public reward,
then likelihood); if there is none, the best partial state (lowest f) is completed greedily (what
is left of the budget caps that completion) and ``stop_reason`` says so.

**Answer problems** (a question with a checked final answer): a step of reasoning ends at a blank
line (``reasoning_step``: or at every newline); r is a process reward model's score when ``prm``
names one, else the state's *rollout value* (``scorers/rollout_value.py``: the share of its
``value_rollouts`` sampled completions whose final answer is the search's current majority answer;
program-aided, whose ``solution()`` runs and returns one). The rollouts' answers are the votes the
majority is made of, and each one that ended on its own is also kept as a complete chain (a child of
the state it valued, ``kind="rollout"``, scored by its own answer and not voted again): the tokens
a value costs are never thrown away. A goal is an answer the votes settle on: once the leading
answer holds ``goal_votes`` votes, the search ends with the complete chain holding it that has the
lowest f. Rollouts stop at ``max_value_rollouts`` (self-consistency's cost is its samples: so is
this search's); past it a state keeps the value it inherited and the search goes on by steps alone.
With ``independent_votes`` a line of reasoning (a first step and every state below it) votes
once for an answer however many of its rollouts reach it (``Votes``' lines), since rollouts that
share a prefix agree with each other more than independent samples do; the majority and a goal are
then counted in lines. Once as many votes as a goal needs have been cast and they have not
settled (a hard problem, whose rollouts will all be spent), a popped lazy state is valued
together with the lazy states right below it in the queue (up to ``value_batch``; they are the
states lazy A* would value next), their rollouts in one batched call: a CPU decodes a batch of 8
rows about twice as fast a token as 2.
Without a goal (``max_expansions``, the budget) the answer is the best complete chain of the
leading answer; its confidence is its answer's share of every vote cast.

Spend: tokens and passes of steps and lookaheads are charged by ``ctx.lm`` (a lookahead read off
an earlier greedy path is ``spend.path_hits``); test runs by ``ctx.reward``; ``spend.extra`` counts
``astar_expansions``, ``astar_pops``, ``steps_sampled``, ``duplicate_steps``,
``process_scorer_calls``, ``lookaheads`` and ``lookahead_tokens``. The tree (JSON) has every state
with its g, h, f, r, completeness and pop order, and marks the path to the answer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from planners import register
from planners.base import Outcome, Planner, PlannerError, PlannerParams, Search
from planners.selection import SelectorParams
from scorers.prm import (
    CodeAwareScorer,
    Lookahead,
    PartialState,
    PRMMode,
    ProcessScorer,
    StepScore,
    has_public_tests,
    load_prm,
)
from scorers.rollout_value import RolloutValueScorer
from search.limits.steps import ReasoningStep, StepKind, in_context, reasoning_step_stop, step_stop
from search.limits.stops import StopCondition, first_stop
from search.model.lm import DecodeMode, GenerationParams, Rollout
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext, best_candidate, stops_for
from search.state.tree import Tree

G_DEFAULT_WEIGHT = {"one_minus_r": 0.5, "nll": 0.01}


class AStarParams(PlannerParams, SelectorParams):
    max_new_tokens_help = "cap on a whole completion's tokens"
    k: int = Field(
        4, ge=1, le=64, description="K: candidate next steps sampled per expansion (one batched call)"
    )
    step: StepKind = Field("line", description="step granularity: line, statement or chunk")
    reasoning_step: ReasoningStep = Field(
        "blank-line", description="answer problems: a reasoning step ends at a blank-line or every newline"
    )
    value_rollouts: int = Field(
        2, ge=1, le=64, description="answer problems without a PRM: sampled rollouts that value a state"
    )
    goal_votes: int = Field(
        3,
        ge=1,
        le=256,
        description="answer problems: the search ends once the leading answer holds this many votes",
    )
    independent_votes: bool = Field(
        False,
        description="answer problems: one vote per line of reasoning (a first step and all below it; "
        "each rollout from the root is a line of its own), so a goal is goal_votes lines that agree",
    )
    max_value_rollouts: int = Field(
        12,
        ge=0,
        le=4096,
        description="answer problems: value rollouts at most; past it a state keeps its inherited value",
    )
    value_batch: int = Field(
        4,
        ge=1,
        le=64,
        description="answer problems: lazily scored states at the top of the queue valued together, "
        "their rollouts in one batched call, once goal_votes votes are cast and unsettled",
    )
    step_tokens: int = Field(64, ge=1, le=2048, description="cap on one step's tokens")
    max_expansions: int = Field(16, ge=1, le=10_000, description="expansions before the search gives up")
    temperature: float = Field(0.8, gt=0, le=5, description="sampling temperature of the steps")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus mass of the steps")
    seed: int = Field(0, description="base seed (expansion i uses seed + 7919 * i)")
    g: Literal["one_minus_r", "nll"] = Field(
        "one_minus_r", description="path cost g: accumulated 1-r, or token NLL"
    )
    g_weight: float | None = Field(
        None,
        ge=0,
        le=100,
        description="weight of g in f = w*g + h (default 0.5 for one_minus_r, 0.01 for nll)",
    )
    scorer: Literal["code", "prm"] = Field(
        "code", description="process scorer: code (offline) or prm (a model)"
    )
    prm: str | None = Field(None, description="path or hub id of a process reward model (scorer=prm)")
    prm_mode: PRMMode = Field(
        "tag", description="how the PRM gives step scores: tag, token_classification, value_head, reward_head"
    )
    prm_step_tag: str | None = Field(
        None, description="step tag whose position carries a step's score (PRM; default: the mode's own)"
    )
    w_lp: float = Field(0.3, ge=0, le=100, description="code scorer: weight of exp(mean log-prob)")
    w_pass: float = Field(0.7, ge=0, le=100, description="code scorer: weight of the lookahead's pass rate")
    lookahead_tokens: int = Field(256, ge=1, le=8192, description="code scorer: cap on a greedy lookahead")
    lazy: bool = Field(True, description="score new states cheaply; run their lookahead only when popped")
    lookahead_as_candidate: bool = Field(
        True, description="keep each lookahead completion as a complete state"
    )
    accept_failing: bool = Field(
        False, description="a complete program that fails public tests still ends the search"
    )


@dataclass(eq=False)
class _State:
    node: int
    tokens: list[int]
    logprobs: list[float]
    text: str
    steps: list[str]
    complete: bool
    g: float = 0.0
    h: float = 1.0
    r: float = 0.0
    exact: bool = True
    reward: float | None = None
    pass_hint: float | None = None  # the pass rate this state's children may borrow
    meta: dict[str, Any] = field(default_factory=dict)

    def partial(self, prior_pass: float | None = None) -> PartialState:
        return PartialState(
            self.text, self.tokens, self.logprobs, self.steps, self.complete, self.reward, prior_pass
        )


class _Search(Search[AStarParams]):
    """One A* search: its tree, queue and bookkeeping."""

    def __init__(self, p: AStarParams, problem: Problem, ctx: SearchContext) -> None:
        super().__init__(p, problem, ctx)
        self.scorer: ProcessScorer = CodeAwareScorer()  # the planner sets the search's own
        self.g_weight = self.p.g_weight if self.p.g_weight is not None else G_DEFAULT_WEIGHT[self.p.g]
        self.prompt = ctx.lm.encode(problem.model_text)
        self.base_stops: list[StopCondition] = stops_for(problem)
        self.tests = has_public_tests(problem, ctx)
        self.tree = Tree()
        self.heap: list[tuple[float, int, int, _State]] = []
        self.counter = itertools.count()
        self.pops = 0
        self.expansions = 0
        self.complete: list[_State] = []
        self.programs: set[str] = set()
        self.parents: dict[int, _State] = {}
        self.partials: list[_State] = []
        self.partial_nodes: set[int] = set()
        self.clock = itertools.count(1)
        self.answer: _State | None = None  # the goal state popped

    # ----- queue ------------------------------------------------------------------------------
    def push(self, s: _State) -> None:
        f = self.g_weight * s.g + s.h
        self.tree.update(s.node, pushed_at=next(self.clock))
        self.tree.update(
            s.node, g=round(s.g, 6), h=round(s.h, 6), f=round(f, 6), r=round(s.r, 6), exact=s.exact
        )
        heapq.heappush(self.heap, (f, 0 if s.complete else 1, next(self.counter), s))

    def f(self, s: _State) -> float:
        return self.g_weight * s.g + s.h

    # ----- scoring ----------------------------------------------------------------------------
    def score(self, states: Sequence[_State], lookahead: bool) -> list[StepScore]:
        unjudged = [s for s in states if s.complete and s.reward is None]
        if unjudged and self.tests:
            for s, rw in zip(
                unjudged, self.ctx.reward(self.problem, [s.text for s in unjudged]), strict=True
            ):
                s.reward = float(rw.pass_rate)
        partials = [s.partial(self.parent_pass(s)) for s in states]
        exact = lookahead or not self.p.lazy  # lazy A*: new states get the scorer's cheap form first
        scores = self.scorer.evaluate(self.problem, partials, self.ctx, lookahead=exact)
        for s, ps in zip(states, partials, strict=True):
            s.reward = ps.reward if s.reward is None else s.reward
        return scores

    def parent_pass(self, s: _State) -> float | None:
        parent = self.parents.get(s.node)
        return parent.pass_hint if parent is not None else None

    def apply(self, s: _State, sc: StepScore, step_cost_nll: float) -> None:
        """Set r, h and g of a (re)scored state from its parent's g."""
        parent = self.parents.get(s.node)
        g_parent = parent.g if parent is not None else 0.0
        s.r, s.h, s.exact = sc.r, 1.0 - sc.r, sc.exact
        if parent is None:
            s.g = 0.0
        elif self.p.g == "one_minus_r":
            s.g = g_parent + (1.0 - sc.r)
        else:
            s.g = g_parent + step_cost_nll
        if sc.lookahead is not None and sc.lookahead.pass_rate is not None:
            s.pass_hint = sc.lookahead.pass_rate
        elif s.pass_hint is None and parent is not None:
            s.pass_hint = parent.pass_hint
        self.tree.update(s.node, **{f"score_{k}": round(v, 6) for k, v in sc.parts.items() if v == v})

    def score_and_push(self, states: Sequence[_State], lookahead: bool) -> None:
        if not states:
            return
        scores = self.score(states, lookahead)
        new_lookaheads: list[tuple[_State, Lookahead]] = []
        new_rollouts: list[tuple[_State, Lookahead]] = []
        for s, sc in zip(states, scores, strict=True):
            step_nll = (
                -sum(s.logprobs[len(self.parents[s.node].logprobs) :]) if s.node in self.parents else 0.0
            )
            self.apply(s, sc, step_nll)
            if sc.parts.get("completable") == 0.0 and s.node != self.tree.root:
                self.tree.update(s.node, pruned="not completable", r=0.0)
                self.ctx.count("pruned_states")
                continue
            if s.complete:
                self.tree.update(s.node, reward=s.reward)
                self.complete.append(s)
            elif s.node not in self.partial_nodes:
                self.partial_nodes.add(s.node)
                self.partials.append(s)
            keep = self.p.lookahead_as_candidate and sc.exact
            if keep and self.answer_problem:
                new_rollouts += [(s, la) for la in sc.rollouts]
            elif keep and sc.lookahead is not None:
                new_lookaheads.append((s, sc.lookahead))
            self.push(s)
        self.push_lookaheads(new_lookaheads)
        self.push_rollouts(new_rollouts)

    def complete_child(self, parent: _State, la: Lookahead, kind: str) -> _State | None:
        """A completion run from ``parent`` as a complete child state (None: it was cut off at the
        token cap, or that text is already a state)."""
        text = parent.text + la.text
        if la.finish_reason not in ("stop", "eos") or text in self.programs:
            return None
        self.programs.add(text)
        node = self.tree.add_child(parent.node, la.token_ids, la.text, kind=kind, complete=True)
        self.parents[node] = parent
        tokens, logprobs = parent.tokens + la.token_ids, parent.logprobs + la.logprobs
        return _State(node, tokens, logprobs, text, parent.steps + [la.text], True)

    def push_lookaheads(self, items: list[tuple[_State, Lookahead]]) -> None:
        """Code problems: each lookahead program becomes a complete child, scored as any state is."""
        children = []
        for parent, la in items:
            child = self.complete_child(parent, la, "lookahead")
            if child is not None:
                child.reward = la.pass_rate
                children.append(child)
        if children:
            self.score_and_push(children, lookahead=False)

    def push_rollouts(self, items: list[tuple[_State, Lookahead]]) -> None:
        """Answer problems: each value rollout that ended on its own becomes a complete chain, a
        child of the state it started from, scored by its own answer (1: it reached the majority
        when it was voted; it is not voted again)."""
        for parent, la in items:
            child = self.complete_child(parent, la, "rollout")
            if child is not None:
                self.apply(child, StepScore(la.pass_rate or 0.0, True), -sum(la.logprobs))
                self.complete.append(child)
                self.push(child)

    def may_value(self) -> bool:
        """Whether a lazily scored state may still be valued exactly: always, except that rollout
        values stop at ``max_value_rollouts`` (then a state keeps the value it inherited)."""
        scorer = self.scorer
        if not isinstance(scorer, RolloutValueScorer):
            return True
        return scorer.drawn + scorer.rollouts <= self.p.max_value_rollouts

    def leading_chain(self, min_votes: float) -> _State | None:
        """Answer problems: the complete chain holding the leading answer with the lowest f (ties:
        the likelier), once that answer holds at least ``min_votes`` votes; else None."""
        votes = self.answers().votes
        leader = votes.leader()
        if leader is None or votes.votes_for(leader) < min_votes or not self.complete:
            return None
        ended = [len(s.tokens) < self.p.max_new_tokens for s in self.complete]
        read = self.answers().read([s.text for s in self.complete], ended, self.ctx)
        holders = [s for s, a in zip(self.complete, read, strict=True) if votes.agrees_with_leader(a.text)]
        return min(holders, key=lambda s: (self.f(s), -sum(s.logprobs) / max(1, len(s.tokens))), default=None)

    # ----- expansion --------------------------------------------------------------------------
    def expand(self, s: _State) -> None:
        p = self.p
        room = p.max_new_tokens - len(s.tokens)
        params = GenerationParams(
            mode=DecodeMode.sample,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed + 7919 * self.expansions,
            max_new_tokens=max(1, min(p.step_tokens, room)),
        )
        problem_stops = in_context(self.base_stops, s.text)
        if self.answer_problem:
            step_end = reasoning_step_stop(p.reasoning_step, s.text)
        else:
            step_end = step_stop(p.step, s.text)
        stops = [step_end, *problem_stops]
        self.expansions += 1
        self.ctx.count("astar_expansions")
        remaining = self.ctx.meter.remaining_tokens()
        k = p.k if remaining is None else max(1, min(p.k, remaining))  # never overrun the token budget
        rolls = self.ctx.lm.rollouts([self.prompt + s.tokens] * k, params, stops)
        self.ctx.count("steps_sampled", len(rolls))
        children: list[_State] = []
        seen: set[tuple[bool, str]] = set()
        for r in rolls:
            complete, step_text = self.step_outcome(r, problem_stops, room)
            if (complete, step_text) in seen:
                self.ctx.count("duplicate_steps")
                continue
            seen.add((complete, step_text))
            text = s.text + step_text
            if complete and text in self.programs:
                self.ctx.count("duplicate_steps")
                continue
            if complete:
                self.programs.add(text)
            node = self.tree.add_child(
                s.node, list(r.token_ids), step_text, kind="step", complete=complete, finish=r.finish_reason
            )
            child = _State(
                node,
                s.tokens + list(r.token_ids),
                s.logprobs + list(r.logprobs),
                text,
                s.steps + [step_text],
                complete,
            )
            self.parents[node] = s
            children.append(child)
        self.ctx.emit("expand", node=s.node, children=len(children), f=round(self.f(s), 4))
        self.score_and_push(children, lookahead=False)

    def step_outcome(self, r: Rollout, problem_stops: list[StopCondition], room: int) -> tuple[bool, str]:
        """Whether a sampled step ended the solution, and the step's text."""
        full = self.ctx.lm.decode(r.token_ids)
        cut = first_stop(full, problem_stops)
        if cut is not None:
            return True, full[:cut]
        if r.finish_reason == "eos":
            return True, r.text
        if len(r.token_ids) >= room:  # the completion cap: nothing more may be added
            return True, full
        return False, full

    # ----- the loop ---------------------------------------------------------------------------
    def run(self) -> str:
        """Pop the lowest f; a goal ends the search, a lazily scored state is rescored exactly,
        any other state is expanded into K sampled next steps."""
        root_node = self.tree.add_root(text=self.problem.prompt, kind="root", complete=False)
        root = _State(root_node, [], [], "", [], False)
        self.ctx.meter.check()
        self.score_and_push([root], lookahead=True)
        while self.heap:
            self.ctx.meter.check()
            if self.answer_problem:  # a goal is an answer the votes settle on (goal_votes)
                self.answer = self.leading_chain(self.p.goal_votes)
                if self.answer is not None:
                    return "goal"
            s = self.pop()
            if s.complete:
                if not self.answer_problem and self.is_goal(s):
                    self.answer = s
                    return "goal"
                continue
            if not s.exact and self.may_value():
                self.score_and_push([s, *self.pop_lazy(self.value_batch() - 1)], lookahead=True)
                continue
            if self.expansions >= self.p.max_expansions:
                heapq.heappush(self.heap, (self.f(s), 1, next(self.counter), s))
                return "max_expansions"
            self.expand(s)
        return "queue_empty"

    def pop(self) -> _State:
        _, _, _, s = heapq.heappop(self.heap)
        self.pops += 1
        self.ctx.count("astar_pops")
        self.tree.update(s.node, popped=self.pops, popped_at=next(self.clock))
        return s

    def value_batch(self) -> int:
        """How many lazy states one valuation takes: on answer problems ``value_batch``, within what
        is left of ``max_value_rollouts``, once as many votes as a goal needs have been cast without
        settling (before that, the next state's rollouts may settle them, and a batch would pay for
        rollouts a goal makes moot: on 6 GSM8K train problems, 23% more tokens for 9% less time). A code
        lookahead is greedy and a passing one ends the search, so code states go one at a time."""
        scorer = self.scorer
        if not self.answer_problem or not isinstance(scorer, RolloutValueScorer):
            return 1
        if self.answers().votes.total < self.p.goal_votes:
            return 1
        left = (self.p.max_value_rollouts - scorer.drawn) // scorer.rollouts
        return max(1, min(self.p.value_batch, left))

    def pop_lazy(self, n: int) -> list[_State]:
        """Up to ``n`` more states from the top of the queue, while the top is a lazily scored
        partial state: the states lazy A* would value next, valued in the same model call."""
        taken: list[_State] = []
        while len(taken) < n and self.heap:
            top = self.heap[0][3]
            if top.complete or top.exact:
                break
            taken.append(self.pop())
        if taken:
            self.ctx.count("astar_batched_values", len(taken))
        return taken

    def is_goal(self, s: _State) -> bool:
        if not self.tests or self.p.accept_failing:
            return True
        return s.reward is not None and s.reward >= 1.0

    def outcome(self, reason: str) -> Outcome:
        answer = self.answer
        candidates = [self.candidate(s) for s in self.complete]
        best: Candidate | None
        if answer is not None:
            best = next(c for c in candidates if c.meta["node"] == answer.node)
            self.tree.mark_path(answer.node)
        elif candidates:
            leading = self.leading_chain(0) if self.answer_problem else None
            if leading is not None:
                best = next(c for c in candidates if c.meta["node"] == leading.node)
                reason = f"{reason}: no goal; returned the best complete chain of the leading answer"
            else:
                best = best_candidate(candidates)
                reason = f"{reason}: no goal popped; returned the best complete candidate"
            if best is not None:
                self.tree.mark_path(int(best.meta["node"]))
        else:
            best = self.complete_best_partial()
            if best is None:
                reason = f"{reason}: no state to answer with"
            elif best.meta["kind"] == "best_partial":
                reason = f"{reason}: no complete state; returned the best partial state as is (budget spent)"
            else:
                reason = f"{reason}: no complete state; returned the best partial state, greedily completed"
            if best is not None:
                candidates.append(best)
        self.ctx.count("astar_tree_nodes", len(self.tree))
        return Outcome(best, candidates, reason, self.tree.to_dict())

    def candidate(self, s: _State) -> Candidate:
        total = len(self.problem.public_tests) if self.tests else None
        passed = round(s.reward * total) if s.reward is not None and total else None
        return Candidate(
            s.text,
            s.tokens,
            sum(s.logprobs),
            s.reward,
            passed,
            total,
            meta={"node": s.node, "f": round(self.f(s), 4), "kind": self.tree[s.node].get("kind")},
        )

    def complete_best_partial(self) -> Candidate | None:
        """The lowest-f partial state (deepest among ties), completed greedily when budget is left.

        With the budget spent (the search stopped on it) the state is returned as it is: the
        search never overruns its Budget to finish an answer.
        """
        if not self.partials:
            return None
        s = min(self.partials, key=lambda st: (self.f(st), -len(st.tokens)))
        self.tree.mark_path(s.node)
        meta: dict[str, Any] = {"node": s.node, "kind": "best_partial"}
        if self.ctx.meter.exhausted():
            meta["finish"] = "budget"
            return Candidate(s.text, s.tokens, sum(s.logprobs), meta=meta)
        room = max(1, self.p.max_new_tokens - len(s.tokens))
        stops = in_context(self.base_stops, s.text)
        r = self.ctx.lm.rollouts([self.prompt + s.tokens], GenerationParams(max_new_tokens=room), stops)[0]
        meta.update(kind="greedy_completed_partial", finish=r.finish_reason)
        return Candidate(
            s.text + r.text, s.tokens + list(r.token_ids), sum(s.logprobs) + r.sum_logprob, meta=meta
        )


@register
class AStar(Planner[AStarParams]):
    name = "astar"
    description = (
        "A*-decoding: best-first search over steps (lines/statements), f = g + h with h = 1 - r "
        "from a process scorer; the first complete passing program popped is the answer."
    )
    needs_sandbox = True
    Params = AStarParams

    def __init__(self, params: AStarParams | None = None, scorer: ProcessScorer | None = None) -> None:
        super().__init__(params)
        self.scorer = scorer

    def make_scorer(self, search: _Search | None = None) -> ProcessScorer:
        """The scorer given to the constructor, else a fresh one from the params (one per search):
        on an answer problem the PRM when one is named, else the rollout value."""
        if self.scorer is not None:
            return self.scorer
        p = self.params
        answers = search is not None and search.answer_problem
        if p.prm and (p.scorer == "prm" or answers):
            tag = {"step_tag": p.prm_step_tag} if p.prm_step_tag is not None else {}
            return load_prm(p.prm, mode=p.prm_mode, **tag)
        if p.scorer == "prm":
            raise PlannerError("scorer=prm needs --set prm=PATH_OR_HUB_ID (a process reward model)")
        if search is not None and answers:
            return RolloutValueScorer(
                search.answers(), p.max_new_tokens, p.value_rollouts, p.temperature, p.top_p, p.seed
            )
        return CodeAwareScorer(w_lp=p.w_lp, w_pass=p.w_pass, lookahead_tokens=p.lookahead_tokens)

    def start(self, problem: Problem, ctx: SearchContext) -> Search[AStarParams]:
        search = _Search(self.params, problem, ctx)
        search.scorer = self.make_scorer(search)
        if search.answer_problem:
            search.signal = "rollout-value" if isinstance(search.scorer, RolloutValueScorer) else "prm"
            if self.params.independent_votes:
                search.answers().votes.one_vote_per_line = True
        return search
