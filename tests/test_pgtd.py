"""PG-TD mechanics: P-UCB on hand-made trees, max-Q backup, the tree and sequence caches counted
in forward passes on the tiny model, budget and early stops, and that only public tests steer it."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

import planners
from api.core.engine import Engine
from planners.pgtd import TokenNode, backup, pucb, select_child
from sandbox import open_executor
from scorers.tests import TestReward, TestScorer
from search.cache.store import MemoryCache
from search.limits.budget import Budget, Meter
from search.model.lm import GenerationParams
from search.problems.problem import FunctionTest, Problem
from search.state.context import SearchContext, SearchResult, stops_for
from search.state.tree import Tree

# A completion is one comment line (cut at the first newline), so every program compiles and the
# public test alone decides the reward, whatever the random tiny model writes.
PROMPT = "def f():\n    return 1\n# "


def comment_problem(public: str, hidden: str = "1", with_public: bool = True) -> Problem:
    return Problem(
        id="comment",
        prompt=PROMPT,
        entry_point="f",
        stop=["\n"],
        public_tests=[FunctionTest(call="f()", expected=public)] if with_public else [],
        hidden_tests=[FunctionTest(call="f()", expected=hidden)],
    )


class RecordingScorer(TestScorer):
    """A real TestScorer that also records which test set each call asked for."""

    def __init__(self) -> None:
        super().__init__(open_executor("auto"), cache=MemoryCache())
        self.calls: list[bool] = []

    def score_many(
        self, problem: Problem, completions: Sequence[str], hidden: bool = False
    ) -> list[TestReward]:
        self.calls.append(hidden)
        return super().score_many(problem, completions, hidden=hidden)


@pytest.fixture
def lm(tiny_lm):  # type: ignore[no-untyped-def]
    tiny_lm.kv.clear()
    return tiny_lm


@pytest.fixture
def scorer() -> RecordingScorer:
    return RecordingScorer()


def run(lm: Any, scorer: Any, problem: Problem, budget: Budget | None = None, **params: Any) -> SearchResult:
    params.setdefault("max_new_tokens", 12)
    params.setdefault("parallel_rollouts", 1)  # sequential unless a test batches on purpose
    ctx = SearchContext.create(lm, meter=Meter(budget=budget or Budget()), cache=MemoryCache(), scorer=scorer)
    return planners.create("pgtd", params).solve(problem, ctx)


def nodes(res: SearchResult) -> list[dict[str, Any]]:
    assert res.tree is not None
    return list(res.tree["nodes"])


# ----- P-UCB and backup on hand-made trees ---------------------------------------------------------


def hand_tree(
    root_visits: int, kids: list[tuple[int, float | None, float]]
) -> tuple[TokenNode, list[TokenNode]]:
    root = TokenNode(0, [], 0.0, prior=1.0, token_logprob=0.0, terminal=False, visits=root_visits, q=0.5)
    for i, (visits, q, prior) in enumerate(kids):
        child = TokenNode(i + 1, [i], 0.0, prior, 0.0, False, parent=root, visits=visits, q=q)
        root.children.append(child)
    return root, root.children


def test_pucb_matches_the_formula_worked_by_hand() -> None:
    # beta(4) = ln(15/10) + 4 = 4.405465; sqrt(ln 4) = 1.177410; 0.5 + 4.405465*0.2*1.177410/2
    assert pucb(0.5, 0.2, 4, 1, 4.0, 10.0) == pytest.approx(1.018704, abs=1e-5)
    assert pucb(0.5, 0.2, 4, 1, 0.0, 1e6) == pytest.approx(0.5, abs=1e-5)  # beta -> 0


def test_pucb_prefers_unvisited_high_prior_child_then_the_high_max_q_one() -> None:
    # scores at N(s)=4: A 0.3+5.18706*0.5/3 = 1.1645, B 5.18706*0.3 = 1.5561, C 0.9+5.18706*0.2/2 = 1.4187
    root, (a, b, c) = hand_tree(4, [(2, 0.3, 0.5), (0, None, 0.3), (1, 0.9, 0.2)])
    assert select_child(root, 4.0, 10.0) is b
    backup(b, 0.0)
    # at N(s)=5: A 1.2451, B 0.8506, C 1.4671
    assert select_child(root, 4.0, 10.0) is c


def test_parent_visited_once_has_no_exploration_and_picks_the_higher_prior() -> None:
    root, (a, b, c) = hand_tree(1, [(0, None, 0.2), (0, None, 0.5), (0, None, 0.3)])
    assert pucb(0.0, 0.5, 1, 0, 4.0, 10.0) == 0.0
    assert select_child(root, 4.0, 10.0) is b
    root0, kids0 = hand_tree(0, [(0, None, 0.2), (0, None, 0.7)])
    assert select_child(root0, 4.0, 10.0) is kids0[1]  # N(s)=0 is clamped, not a math error


def test_virtual_loss_sends_the_next_selection_to_another_child() -> None:
    root, (a, b, c) = hand_tree(4, [(2, 0.3, 0.5), (0, None, 0.3), (1, 0.9, 0.2)])
    root.pending, b.pending = 1, 1
    assert select_child(root, 4.0, 10.0, virtual_loss=1.0) is c


def test_select_child_of_a_leaf_is_an_error() -> None:
    root, (a,) = hand_tree(1, [(0, None, 1.0)])
    with pytest.raises(ValueError, match="no children"):
        select_child(a, 4.0, 10.0)


def test_backup_keeps_the_maximum_return_not_the_mean() -> None:
    root, (a, b) = hand_tree(0, [(0, None, 0.6), (0, None, 0.4)])
    root.q = None
    a1 = TokenNode(3, [0, 7], 0.0, 1.0, 0.0, False, parent=a)
    a.children.append(a1)
    backup(a1, 0.5)
    backup(a, 0.2)
    backup(b, 0.1)
    assert (a.q, a.visits) == (0.5, 2)
    assert (a1.q, a1.visits) == (0.5, 1)
    assert (b.q, root.q, root.visits) == (0.1, 0.5, 3)


def test_tree_attrs_are_the_statistics_the_tree_json_shows() -> None:
    root, (a,) = hand_tree(1, [(1, 0.5, 1.0)])
    assert list(a.tree_attrs()) == ["visits", "prior", "logprob", "q", "reward", "terminal"]
    a.reward, a.rollout_tokens, a.source = 0.5, 4, "model"
    assert a.tree_attrs() == {
        "visits": 1,
        "prior": 1.0,
        "logprob": 0.0,
        "q": 0.5,
        "reward": 0.5,
        "terminal": False,
        "rollout_tokens": 4,
        "source": "model",
    }


# ----- caches, counted in forward passes -----------------------------------------------------------


def plain_rollout_passes(lm: Any, problem: Problem, max_new_tokens: int) -> int:
    lm.kv.clear()
    ctx = SearchContext.create(lm, cache=MemoryCache())
    ctx.lm.rollouts(
        [lm.encode(problem.prompt)],
        GenerationParams(max_new_tokens=max_new_tokens, record_top_k=3),
        stops_for(problem),
    )
    lm.kv.clear()
    return ctx.meter.spend.forward_passes


def test_expansion_along_the_rollout_path_needs_no_forward_pass(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    problem = comment_problem(public="3")
    passes = plain_rollout_passes(lm, problem, 12)
    res = run(lm, scorer, problem, rollouts=1)
    assert res.spend.forward_passes == passes  # the root's expansion cost nothing
    assert res.spend.extra["tree_cache_hits"] == res.spend.extra["expansions"] == 1
    assert len(nodes(res)) == 4  # root + its top-3


def test_beam_lookahead_records_no_path_so_expansion_costs_a_forward_pass(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="3"), rollouts=1, lookahead="beam", max_new_tokens=6)
    assert res.spend.extra["tree_cache_hits"] == 0
    assert res.spend.extra["expansions"] == 1
    assert res.spend.cache_misses >= 1


def test_a_node_on_an_earlier_greedy_path_reuses_it_without_a_model_call(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    problem = comment_problem(public="3")
    passes = plain_rollout_passes(lm, problem, 12)
    res = run(lm, scorer, problem, rollouts=2)
    # Iteration 2 selects the root's top-prior child: the greedy token, so it lies on the first path.
    assert res.spend.path_hits == 1
    assert res.spend.rollouts == 1
    assert res.spend.forward_passes == passes
    assert res.spend.extra["tree_cache_hits"] == 2
    assert len(res.candidates) == 1  # the same program, deduplicated
    sources = sorted(n.get("source", "") for n in nodes(res) if n.get("reward") is not None)
    assert sources == ["model", "sequence_cache"]


def test_a_repeated_search_is_served_by_the_rollout_cache(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    problem = comment_problem(public="3")
    cache = MemoryCache()
    spends = []
    for _ in range(2):
        ctx = SearchContext.create(lm, cache=cache, scorer=scorer)
        spends.append(planners.create("pgtd", {"rollouts": 3, "max_new_tokens": 8}).solve(problem, ctx).spend)
    assert spends[0].rollouts >= 1
    assert spends[1].rollouts == 0 and spends[1].forward_passes == 0
    assert spends[1].extra["rollout_cache_hits"] == spends[0].rollouts


# ----- terminal nodes, stops and budgets ---------------------------------------------------------


def test_nodes_at_the_horizon_are_terminal_and_evaluated_without_a_rollout(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="3"), rollouts=4, max_new_tokens=1)
    children = [n for n in nodes(res) if n["parent"] == 0]
    assert len(children) == 3 and all(n["terminal"] for n in children)
    assert all(n["visits"] == 1 and n["source"] == "terminal" for n in children)
    assert res.spend.rollouts == 1
    assert res.spend.extra["terminal_evals"] == 3
    assert res.stop_reason == "rollouts"


def test_rollouts_param_caps_the_iterations(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="3"), rollouts=3, max_new_tokens=6)
    assert res.stop_reason == "rollouts"
    assert res.spend.extra["iterations"] == 3
    assert nodes(res)[0]["visits"] == 3


@pytest.mark.parametrize("parallel", [1, 4])
def test_budget_on_model_rollouts_stops_the_search(lm, scorer, parallel) -> None:  # type: ignore[no-untyped-def]
    res = run(
        lm,
        scorer,
        comment_problem(public="3"),
        budget=Budget(max_rollouts=2),
        rollouts=50,
        max_new_tokens=6,
        parallel_rollouts=parallel,
    )
    assert res.stop_reason == "max_rollouts"
    assert res.spend.rollouts == 2
    assert res.spend.extra["iterations"] < 50


def test_token_budget_stops_the_search_without_overshooting(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(
        lm, scorer, comment_problem(public="3"), budget=Budget(max_tokens=20), rollouts=50, max_new_tokens=12
    )
    assert res.stop_reason == "max_tokens"
    assert res.spend.generated_tokens == 20
    assert res.best is not None


def test_early_stop_when_a_program_passes_all_public_tests(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="1"), rollouts=16)
    assert res.stop_reason == "solved_public"
    assert res.spend.extra["iterations"] == 1
    assert res.best is not None and res.best.reward == 1.0
    assert (res.best.public_passed, res.best.public_total) == (1, 1)


def test_early_stop_can_be_switched_off(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="1"), rollouts=3, early_stop=False, max_new_tokens=6)
    assert res.stop_reason == "rollouts" and res.spend.extra["iterations"] == 3


def test_without_public_tests_the_first_program_is_the_answer(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="1", with_public=False), rollouts=8, max_new_tokens=6)
    assert res.stop_reason == "no_public_tests"
    assert res.spend.extra["iterations"] == 1


# ----- hidden tests never steer the search ---------------------------------------------------------


def test_search_stops_on_public_success_even_when_hidden_tests_fail(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(lm=lm, cache=MemoryCache(), _scorer=scorer)
    report = engine.solve(
        comment_problem(public="1", hidden="2"), "pgtd", {"rollouts": 8, "max_new_tokens": 8}
    )
    assert report.stop_reason == "solved_public"
    assert report.public.all_passed is True
    assert report.hidden.all_passed is False
    n_search_calls = len(scorer.calls) - 2  # the engine's own public + hidden verdicts come last
    assert scorer.calls[:n_search_calls] == [False] * n_search_calls and n_search_calls >= 1
    assert scorer.calls[-1] is True


def test_hidden_success_does_not_stop_a_search_whose_public_tests_fail(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="3", hidden="1"), rollouts=3, max_new_tokens=6)
    assert res.stop_reason == "rollouts"
    assert res.best is not None and res.best.reward == 0.0
    assert True not in scorer.calls


def test_a_context_without_a_sandbox_is_refused_with_a_message(lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(lm, cache=MemoryCache())
    with pytest.raises(RuntimeError, match="sandbox"):
        planners.create("pgtd", {"max_new_tokens": 4}).solve(comment_problem(public="1"), ctx)


# ----- batching, result and tree ---------------------------------------------------------------------


def test_parallel_rollouts_spread_a_batch_over_distinct_leaves(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="3"), rollouts=4, parallel_rollouts=3, max_new_tokens=8)
    children = [n for n in nodes(res) if n["parent"] == 0]
    assert [n["visits"] for n in children] == [1, 1, 1]  # one batch of three different leaves
    assert res.spend.extra["iterations"] == 4
    # batch 1: the root; batch 2: the greedy child from the path, the other two in one model call
    assert res.spend.extra["rollout_calls"] == 2
    assert res.spend.path_hits == 1 and res.spend.rollouts == 3


def test_result_lists_distinct_programs_and_the_tree_marks_the_chosen_path(lm, scorer) -> None:  # type: ignore[no-untyped-def]
    res = run(lm, scorer, comment_problem(public="3"), rollouts=5, max_new_tokens=6)
    completions = [c.completion for c in res.candidates]
    assert len(completions) == len(set(completions)) >= 2
    assert res.best is not None
    top = max(c.reward or 0.0 for c in res.candidates)
    best_lp = max(c.logprob / len(c.token_ids) for c in res.candidates if c.reward == top)
    assert res.best.logprob / len(res.best.token_ids) == pytest.approx(best_lp)
    tree = Tree.from_dict(json.loads(json.dumps(res.tree)))
    chosen = sorted(n for n in tree.nodes() if tree[n].get("chosen"))
    assert chosen == sorted(tree.path(int(res.best.meta["node"])))
    for n in tree.nodes():
        a = tree[n]
        assert {"text", "visits", "q", "prior", "reward"} <= set(a)
        assert a["visits"] == 0 or (a["q"] is not None and not math.isnan(a["q"]))


def test_invalid_params_fail_naming_the_field() -> None:
    for bad, field in (
        ({"width": 0}, "width"),
        ({"parallel_rollouts": 0}, "parallel_rollouts"),
        ({"c_base": 0}, "c_base"),
        ({"rollouts": 0}, "rollouts"),
        ({"lookahead": "dfs"}, "lookahead"),
        ({"widht": 3}, "widht"),
    ):
        with pytest.raises(ValidationError, match=field):
            planners.create("pgtd", bad)


def test_pgtd_is_registered_and_needs_a_sandbox() -> None:
    info = {d["name"]: d for d in planners.describe()}["pgtd"]
    assert info["needs_sandbox"] is True
    assert info["params"]["rollouts"]["default"] == 16
    assert info["params"]["width"]["default"] == 3
    assert info["params"]["parallel_rollouts"]["default"] == 4  # bench/pgtd_parallel.py: fastest per rollout


# ----- the real bundled model ---------------------------------------------------------------------


@pytest.mark.integration
def test_pgtd_solves_a_humaneval_problem_that_greedy_fails(real_lm) -> None:  # type: ignore[no-untyped-def]
    from search.problems.loaders import load_problem

    problem = load_problem("humaneval:9")  # rolling_max: greedy's program fails the docstring example
    assert problem.public_tests
    engine = Engine(lm=real_lm, cache=MemoryCache())
    greedy = engine.solve(
        problem, "greedy", {"max_new_tokens": 384}, include_tree=False, prompt_style="completion"
    )
    assert greedy.hidden.all_passed is False
    # verified with parallel_rollouts=1 (sequential MCTS, as in the paper) on this machine
    params = {"rollouts": 16, "parallel_rollouts": 1}
    report = engine.solve(problem, "pgtd", params, budget=Budget(max_tokens=2048), prompt_style="completion")
    assert report.stop_reason == "solved_public"
    assert report.public.all_passed is True
    assert report.hidden.all_passed is True
    assert report.spend.extra["iterations"] <= 16
    chosen = [n for n in report.tree["nodes"] if n.get("chosen")]
    assert chosen and chosen[0]["parent"] is None
