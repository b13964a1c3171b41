"""Selection by behaviour in the tree searches (PG-TD, A*, V-STAR): the answer chosen among the
complete programs once the search ends, with the real sandbox and the tiny model."""

from __future__ import annotations

from typing import Any

import pytest

import planners
from planners.base import Outcome, PlannerError, reselect
from planners.selection import BehaviourSelector, SelectorParams
from sandbox import open_executor
from scorers.tests import TestScorer
from search.limits.budget import Budget, Meter
from search.problems.loaders import load_problem
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext
from tests.test_behaviour import OUTLIER, PROBLEM, RIGHT

SMALL = {"max_new_tokens": 6, "written_inputs": 0, "mutated_inputs": 4}


def ctx_for(lm: Any, budget: Budget | None = None) -> SearchContext:
    meter = Meter(budget=budget or Budget())
    return SearchContext.create(lm, scorer=TestScorer(open_executor("auto")), meter=meter)


def candidate(code: str, reward: float, logprob: float, node: int) -> Candidate:
    return Candidate(code, [1] * 10, logprob, reward, meta={"node": node})


def test_reselect_breaks_a_tie_in_public_pass_rate_by_the_larger_behaviour_group(tiny_lm: Any) -> None:
    # the outlier is the likeliest, as a tree search that trusts likelihood would answer
    cands = [
        candidate(OUTLIER, 1.0, -1.0, 0),
        candidate(RIGHT[0], 1.0, -5.0, 1),
        candidate(RIGHT[1], 1.0, -6.0, 2),
    ]
    out = Outcome(cands[0], list(cands), "rollouts")
    ctx = ctx_for(tiny_lm)
    chosen = reselect(
        out, BehaviourSelector(SelectorParams(selector="behaviour", written_inputs=0), PROBLEM, ctx)
    )
    assert chosen.best is cands[1] and chosen.best.meta["selected_by"] == "behaviour"
    assert [c.meta["behaviour_group_size"] for c in cands] == [1, 2, 2]
    assert ctx.meter.spend.executions >= 3  # the build of the inputs and one run per program


def test_reselect_never_lets_a_group_outvote_a_better_public_pass_rate(tiny_lm: Any) -> None:
    failing = "    return list(xs)\n"
    cands = [
        candidate(RIGHT[0], 1.0, -3.0, 0),
        candidate(failing, 0.0, -1.0, 1),
        candidate(failing, 0.0, -1.0, 2),
    ]
    selector = BehaviourSelector(SelectorParams(selector="behaviour"), PROBLEM, ctx_for(tiny_lm))
    out = reselect(Outcome(cands[0], list(cands), "x"), selector)
    assert out.best is cands[0] and "selected_by" not in cands[0].meta


def test_a_search_that_spent_its_budget_selects_without_writing_inputs(tiny_lm: Any) -> None:
    cands = [
        candidate(OUTLIER, 1.0, -1.0, 0),
        candidate(RIGHT[0], 1.0, -5.0, 1),
        candidate(RIGHT[1], 1.0, -6.0, 2),
    ]
    ctx = ctx_for(tiny_lm, Budget(max_tokens=1))
    ctx.meter.charge(generated_tokens=1)
    params = SelectorParams(selector="behaviour", written_inputs=4)  # writing inputs needs tokens
    out = reselect(Outcome(cands[0], list(cands), "max_tokens"), BehaviourSelector(params, PROBLEM, ctx))
    assert out.best is cands[1] and "without written inputs (budget spent)" in out.stop_reason
    assert ctx.meter.spend.generated_tokens == 1 and ctx.meter.spend.extra["input_writing_tokens"] == 0


@pytest.mark.parametrize("name", ["pgtd", "astar", "vstar"])
def test_each_tree_search_takes_the_selector_and_shows_the_groups(tiny_lm: Any, name: str) -> None:
    extra = {"pgtd": {"rollouts": 4}, "astar": {"max_expansions": 3}, "vstar": {"rollouts": 3}}[name]
    params = {**SMALL, **extra, "selector": "behaviour"}
    result = planners.create(name, params).solve(PROBLEM, ctx_for(tiny_lm))
    programs = [c for c in result.candidates if c.meta.get("kind") != "best_partial"]
    if len(programs) >= 2:
        assert all("behaviour_group" in c.meta for c in programs)
        assert result.best is not None and result.best.meta["behaviour_group"] == 0
        assert result.spend.extra["behaviour_inputs"] >= 1
    public = planners.create(name, {**SMALL, **extra}).solve(PROBLEM, ctx_for(tiny_lm))
    assert all("behaviour_group" not in c.meta for c in public.candidates)  # public: nothing probed


def test_without_public_tests_pgtd_searches_on_and_the_programs_agreement_is_its_signal(tiny_lm: Any) -> None:
    untested = Problem(id="u", prompt=PROBLEM.prompt, entry_point="double_all")
    public = planners.create("pgtd", {**SMALL, "rollouts": 4}).solve(untested, ctx_for(tiny_lm))
    assert public.stop_reason == "no_public_tests"
    assert planners.create("pgtd").no_signal(untested, ctx_for(tiny_lm)) is not None
    planner = planners.create("pgtd", {**SMALL, "rollouts": 4, "selector": "behaviour"})
    ctx = ctx_for(tiny_lm)
    result = planner.solve(untested, ctx)
    assert result.stop_reason != "no_public_tests" and result.spend.rollouts >= 2
    assert result.no_signal is None


def test_selection_by_behaviour_is_refused_on_a_question_with_a_final_answer(tiny_lm: Any) -> None:
    question = load_problem("gsm8k:3")
    for name in ("pgtd", "vstar"):
        with pytest.raises(PlannerError, match="selector=behaviour runs programs on inputs"):
            planners.create(name, {"selector": "behaviour"}).solve(question, SearchContext.create(tiny_lm))
    with pytest.raises(ValueError, match="selector"):
        planners.create("astar", {"selector": "majority"})


@pytest.mark.parametrize("name", ["pgtd", "vstar"])
def test_with_behaviour_the_search_stops_when_one_behaviour_dominates(tiny_lm: Any, name: str) -> None:
    budget = {"pgtd": {"rollouts": 8, "parallel_rollouts": 2}, "vstar": {"rollouts": 6}}[name]
    settle = {"dominance_size": 1, "dominance_share": 0.01, "dominance_after": 1}
    params = {**SMALL, **budget, "selector": "behaviour", **settle}
    result = planners.create(name, params).solve(PROBLEM, ctx_for(tiny_lm))
    assert result.stop_reason.startswith("dominant_behaviour")
    never = {**SMALL, **budget, "selector": "behaviour", "dominance_size": 256}
    result = planners.create(name, never).solve(PROBLEM, ctx_for(tiny_lm))
    assert not result.stop_reason.startswith(("dominant_behaviour", "solved_public"))


def test_the_stop_rule_params_are_shared_and_validated() -> None:
    for name in ("best_of_n", "pgtd", "astar", "vstar"):
        fields = planners.get(name).Params.model_fields
        assert {"selector", "dominance_size", "dominance_share", "dominance_after"} <= set(fields)
    with pytest.raises(ValueError, match="dominance_share"):
        planners.create("pgtd", {"dominance_share": 0})
