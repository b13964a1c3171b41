"""A*-decoding on the tiny random model: pop order, goal test, budget, step segmentation.

The process scorer here is a hand-made ``ProcessScorer`` (only ``score_steps``; the protocol's
default ``evaluate`` wraps it) so the test controls r; the language model is the real tiny model
(random weights, real tokenizer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

import planners
from planners.astar import AStar, AStarParams
from scorers.prm import PartialState, ProcessScorer
from search.limits.budget import Budget, Meter
from search.limits.steps import (
    ChunkStep,
    ContextStop,
    LineStep,
    StatementStep,
    parses_as_statement,
    step_stop,
)
from search.limits.stops import TopLevelStop
from search.problems.problem import Problem
from search.state.context import SearchContext
from search.state.tree import Tree

# A text-generation problem whose stop string the random model hits often: states complete.
PROBLEM = Problem(id="toy", prompt="Write a word:", prompt_is_code=False, stop=["e"])


class HashScorer(ProcessScorer):
    """r from a hash of the completion text: arbitrary but fixed, so the pop order is not trivial."""

    def __init__(self) -> None:
        self.calls = 0
        self.batches: list[int] = []

    def score_steps(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext
    ) -> list[float]:
        self.calls += len(states)
        self.batches.append(len(states))
        return [self.r(s) for s in states]

    @staticmethod
    def r(s: PartialState) -> float:
        u = int(hashlib.sha256(s.completion.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return (
            0.2 + 0.4 * u if s.complete else 0.5 + 0.5 * u
        )  # complete states look worse: the search goes deeper


class GoalHashScorer(HashScorer):
    """As ``HashScorer``, but complete states look better than any partial one: a goal is popped
    soon, whatever the sampled steps are."""

    @staticmethod
    def r(s: PartialState) -> float:
        u = int(hashlib.sha256(s.completion.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return 0.8 + 0.2 * u if s.complete else 0.3 + 0.5 * u


def run(tiny_lm, scorer: ProcessScorer, budget: Budget | None = None, **params):  # type: ignore[no-untyped-def]
    p = AStarParams(**{"k": 3, "step_tokens": 1, "max_new_tokens": 30, "max_expansions": 30, **params})
    ctx = SearchContext.create(tiny_lm, meter=Meter(budget=budget or Budget()))
    result = AStar(p, scorer=scorer).solve(PROBLEM, ctx)
    return result, Tree.from_dict(result.tree)


def test_astar_is_registered_with_validated_params() -> None:
    assert "astar" in planners.names()
    with pytest.raises(ValueError, match="k"):
        planners.create("astar", {"k": 0})
    with pytest.raises(ValueError, match="step"):
        planners.create("astar", {"step": "word"})


@pytest.fixture(scope="module")
def searched(tiny_lm):  # type: ignore[no-untyped-def]
    """One search with the hash scorer, shared by the tests that only read its tree."""
    return run(tiny_lm, HashScorer())


def test_astar_pops_the_lowest_f_state_each_time(searched) -> None:  # type: ignore[no-untyped-def]
    result, tree = searched
    pops = sorted((tree[n]["popped_at"], n) for n in tree.nodes() if tree[n].get("popped_at") is not None)
    assert len(pops) >= 3
    for t, n in pops:
        queued = [
            m
            for m in tree.nodes()
            if tree[m].get("pushed_at") is not None
            and tree[m]["pushed_at"] < t
            and (tree[m].get("popped_at") is None or tree[m]["popped_at"] >= t)
        ]
        assert n in queued
        assert tree[n]["f"] <= min(tree[m]["f"] for m in queued) + 1e-9


def test_astar_stops_at_the_first_complete_state_popped(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    tiny_lm.kv.clear()
    result, tree = run(tiny_lm, GoalHashScorer())
    assert result.stop_reason == "goal"
    popped = sorted((tree[n]["popped_at"], n) for n in tree.nodes() if tree[n].get("popped_at") is not None)
    complete_popped = [n for _, n in popped if tree[n]["complete"]]
    assert complete_popped == [popped[-1][1]]  # exactly one complete state popped: the last pop
    answer = popped[-1][1]
    assert result.best is not None and result.best.meta["node"] == answer
    assert "e" not in result.best.completion  # cut before the stop string
    assert tree[answer].get("chosen") and tree[tree.root].get("chosen")


def test_astar_g_accumulates_one_minus_r_along_the_path(searched) -> None:  # type: ignore[no-untyped-def]
    _, tree = searched
    for n in tree.nodes():
        parent = tree.parent(n)
        if parent is None or tree[n].get("g") is None:
            continue
        assert tree[n]["g"] == pytest.approx(tree[parent]["g"] + 1 - tree[n]["r"], abs=1e-5)
        assert tree[n]["f"] == pytest.approx(0.5 * tree[n]["g"] + tree[n]["h"], abs=1e-5)


def test_astar_g_as_token_nll_uses_the_step_logprobs(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    result, tree = run(tiny_lm, HashScorer(), g="nll", g_weight=0.1, max_expansions=4)
    g_values = [tree[n]["g"] for n in tree.nodes() if n != tree.root and tree[n].get("g") is not None]
    assert g_values and all(g > 0 for g in g_values)  # NLL of random-model tokens is large
    for n in tree.nodes():
        if tree[n].get("g") is not None:
            assert tree[n]["f"] == pytest.approx(0.1 * tree[n]["g"] + tree[n]["h"], abs=1e-5)


def test_astar_samples_k_steps_in_one_batched_call_and_scores_them_together(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    scorer = HashScorer()
    result, _ = run(tiny_lm, scorer, k=4, max_expansions=4)
    extra = result.spend.extra
    assert extra["steps_sampled"] == 4 * extra["astar_expansions"]
    assert result.spend.rollouts == extra["steps_sampled"]  # no other generation happened
    children_batches = scorer.batches[1:]  # the first batch is the root
    assert len(children_batches) == extra["astar_expansions"]
    assert all(1 <= b <= 4 for b in children_batches)
    assert sum(children_batches) + extra.get("duplicate_steps", 0) == extra["steps_sampled"]


def test_astar_stops_on_the_token_budget_and_says_so(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    scorer = HashScorer()
    result, _ = run(tiny_lm, scorer, budget=Budget(max_tokens=7), k=2, step_tokens=3)
    assert result.stop_reason.startswith("max_tokens")
    assert result.spend.generated_tokens <= 7
    assert result.best is not None


@pytest.mark.parametrize("passes", [3, 10])
def test_astar_never_overruns_the_forward_pass_budget(tiny_lm, passes: int) -> None:  # type: ignore[no-untyped-def]
    never = Problem(id="never", prompt="Say:", prompt_is_code=False, stop=["\x07"])  # never completes
    ctx = SearchContext.create(tiny_lm, meter=Meter(budget=Budget(max_forward_passes=passes)))
    p = AStarParams(k=3, step_tokens=8, max_new_tokens=60, max_expansions=50)
    result = AStar(p, scorer=HashScorer()).solve(never, ctx)
    assert result.stop_reason.startswith("max_forward_passes")
    assert result.spend.forward_passes <= passes


def test_astar_without_goal_returns_best_partial_greedily_completed(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    never = Problem(
        id="never", prompt="Say:", prompt_is_code=False, stop=["\x07"]
    )  # a stop that never occurs
    ctx = SearchContext.create(tiny_lm)
    p = AStarParams(k=2, step_tokens=2, max_new_tokens=20, max_expansions=2)
    result = AStar(p, scorer=HashScorer()).solve(never, ctx)
    assert result.stop_reason.startswith("max_expansions")
    assert "greedily completed" in result.stop_reason
    assert result.best is not None and result.best.meta["kind"] == "greedy_completed_partial"
    assert result.best.completion  # the completion added text


def test_astar_rejects_prm_scorer_without_a_model() -> None:
    planner = planners.create("astar", {"scorer": "prm"})
    with pytest.raises(ValueError, match="prm"):
        planner.make_scorer()  # type: ignore[attr-defined]


# ----- step segmentation ------------------------------------------------------------------------


def test_line_step_ends_after_a_non_blank_line() -> None:
    assert LineStep().find("    x = 1\n    y") == 10
    assert LineStep().find("\n\n    x") is None
    assert LineStep(context="    x = ").find("1\n") == 2  # the line began in the previous step


def test_statement_step_waits_for_brackets_and_block_bodies() -> None:
    s = StatementStep(context="    ")
    assert s.find("x = [1,\n        2]\n    y") == 19
    assert s.find("for i in x:\n") is None
    assert s.find("for i in x:\n        t += i\n") == 27
    assert StatementStep(context="    ").find("else:\n        y = 2\n") == 20
    assert not parses_as_statement("    # just a comment\n")
    assert not parses_as_statement("   \n")


def test_chunk_step_ends_at_a_blank_line() -> None:
    assert ChunkStep().find("First.\nMore.\n\nNext") == 14
    assert ChunkStep().find("\n\nLeading blank") is None


def test_context_stop_sees_the_newline_of_the_previous_step() -> None:
    assert TopLevelStop().find("def g():") is None
    assert ContextStop(TopLevelStop(), "    return 1\n").find("def g():") == 0
    assert ContextStop(TopLevelStop(), "    return 1\n").find("    more\n") is None


def test_step_stop_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown step kind"):
        step_stop("word")  # type: ignore[arg-type]
