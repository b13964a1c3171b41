"""Baseline planners on the tiny model with the real sandbox, and HumanEval's parsed public tests."""

from __future__ import annotations

import pytest

import planners
from planners.base import PlannerError
from sandbox import open_executor
from scorers.tests import TestScorer
from search.limits.budget import Budget, Meter
from search.problems.loaders import humaneval
from search.problems.problem import FunctionTest, Problem
from search.state.context import SearchContext


@pytest.fixture(scope="module")
def scorer() -> TestScorer:
    return TestScorer(open_executor("auto"))


def test_parsed_public_tests_pass_the_canonical_solutions(scorer: TestScorer) -> None:
    problems = [p for p in humaneval() if p.public_tests]
    rewards = [scorer.score(p, p.canonical_solution or "") for p in problems]
    failing = [p.id for p, r in zip(problems, rewards, strict=True) if r.pass_rate < 1.0]
    # Docstring examples are the problem author's; a handful are wrong in HumanEval itself.
    assert len(failing) <= 3, failing


PROBLEM = Problem(
    id="t/ident",
    prompt='def ident(x):\n    """Return x."""\n',
    entry_point="ident",
    public_tests=[FunctionTest(call="ident(3)", expected="3")],
    hidden_tests=[FunctionTest(code="assert ident('a') == 'a'")],
)


def test_greedy_reports_its_spend(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(tiny_lm)
    result = planners.create("greedy", {"max_new_tokens": 8}).solve(PROBLEM, ctx)
    assert result.best is not None
    assert result.spend.generated_tokens == len(result.best.token_ids)
    assert result.spend.forward_passes >= 1
    assert result.spend.rollouts == 1
    assert result.spend.seconds > 0


def test_best_of_n_scores_every_sample_on_public_tests_and_respects_the_token_budget(
    tiny_lm,
    scorer: TestScorer,  # type: ignore[no-untyped-def]
) -> None:
    ctx = SearchContext.create(tiny_lm, meter=Meter(budget=Budget(max_tokens=40)), scorer=scorer)
    result = planners.create("best_of_n", {"n": 8, "batch_size": 4, "max_new_tokens": 8}).solve(PROBLEM, ctx)
    assert result.candidates and all(c.reward is not None for c in result.candidates)
    assert result.spend.generated_tokens <= 40 + 8
    assert result.spend.scorer_calls == len(result.candidates)
    assert result.spend.executions <= len(result.candidates)


def test_a_planner_that_needs_a_sandbox_says_so(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(tiny_lm)
    with pytest.raises(RuntimeError, match="needs a sandbox"):
        planners.create("best_of_n", {"n": 2, "max_new_tokens": 4}).solve(PROBLEM, ctx)


def test_unknown_planner_and_bad_params_are_planner_errors() -> None:
    with pytest.raises(PlannerError, match="unknown planner"):
        planners.get("nope")
    with pytest.raises(ValueError, match="num_beams"):
        planners.create("beam", {"num_beams": 1})


class _EveryProgramPasses:
    """A reward double: every completion passes its one public test."""

    def score_many(self, problem: Problem, completions: list[str]) -> list[object]:
        from types import SimpleNamespace

        return [SimpleNamespace(pass_rate=1.0, passed=1, total=1, cached=False) for _ in completions]


@pytest.mark.parametrize(("early_stop", "expected"), [(True, 1), (False, 5)])
def test_best_of_n_stops_at_the_first_public_pass_only_when_asked(
    tiny_lm, early_stop: bool, expected: int
) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(tiny_lm, scorer=_EveryProgramPasses())  # type: ignore[arg-type]
    params = {"n": 5, "batch_size": 2, "max_new_tokens": 4, "early_stop": early_stop}
    result = planners.create("best_of_n", params).solve(PROBLEM, ctx)
    assert len(result.candidates) == expected
    assert result.stop_reason == ("solved_public" if early_stop else "done")


def test_every_planner_caps_a_completion_with_the_one_max_new_tokens_and_keeps_its_default() -> None:
    from planners.base import PlannerParams

    longer = {"styles", "cascade"}  # greedy in several styles: room for a whole chat answer
    for name in planners.names():
        params = planners.get(name).Params
        assert issubclass(params, PlannerParams)
        assert params().max_new_tokens == (512 if name in longer else 384), name
        assert planners.create(name, {"max_new_tokens": 7}).params.max_new_tokens == 7
        with pytest.raises(ValueError, match="max_new_tokens"):
            planners.create(name, {"max_new_tokens": 0})
    pgtd = {p["name"]: p for p in planners.describe()}["pgtd"]["params"]["max_new_tokens"]
    assert pgtd == {
        "default": 384,
        "description": "horizon: tokens of a complete program (tree path + lookahead rollout)",
        "type": "integer",
    }
    assert PlannerParams.model_fields["max_new_tokens"].default == 384  # a subclass never changes the base


def test_cascade_refuses_search_params_its_search_planner_does_not_take() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="search_params for vstar: field '__main__'"):
        planners.create("cascade", {"search": "vstar", "search_params": {"__main__": 1}})
    with pytest.raises(ValidationError, match="search_params for pgtd: field 'rollouts'"):
        planners.create("cascade", {"search_params": {"rollouts": -1}})
    accepted = planners.create("cascade", {"search_params": {"rollouts": 4}})
    assert accepted.params.search_params == {"rollouts": 4}
