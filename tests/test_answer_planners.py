"""Search planners on answer problems (a question with a checked final answer), on the tiny model:
votes, rewards from agreement, A* over reasoning steps, refusals, and the confidence every result
carries."""

from __future__ import annotations

from typing import Any

import pytest

import planners
from api.core.engine import Engine
from planners.astar import AStar, AStarParams
from planners.base import PlannerError
from planners.baselines import BestOfNParams, SampleRounds
from planners.pgtd import PGTDParams, TokenNode, _Program
from planners.pgtd import _Search as PGTDSearch
from scorers.rollout_value import RolloutValueScorer, line_of
from search.cache.store import MemoryCache
from search.limits.budget import Budget, Meter
from search.model.lm import DecodeMode
from search.problems.answers import FinalAnswer
from search.problems.problem import Problem
from search.problems.prompt_styles import REASONING_MAX_NEW_TOKENS
from search.problems.prompting import render
from search.state.context import Candidate, SearchContext
from search.state.tree import Tree

QUESTION = Problem(id="q/eggs", prompt="Janet sells 9 eggs at $2. How much?", final_answer=FinalAnswer())
# the random model hits this stop string often, so its completions end on their own
ENDING = QUESTION.model_copy(update={"id": "q/ending", "stop": ["e"]})
CODE = Problem(id="c", prompt="def double(x):\n    pass\n", entry_point="double")


@pytest.fixture(scope="module")
def cot(tiny_lm) -> Problem:  # type: ignore[no-untyped-def]
    return render(QUESTION, "chain-of-thought", tiny_lm)


# ----- refusals and room ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["styles", "cascade"])
def test_code_only_planners_refuse_an_answer_problem_in_one_line(tiny_lm, cot: Problem, name: str) -> None:  # type: ignore[no-untyped-def]
    planner = planners.create(name)
    with pytest.raises(PlannerError, match=f"planner '{name}' searches code problems only") as e:
        planner.solve(cot, SearchContext.create(tiny_lm))
    assert "\n" not in str(e.value) and "greedy" in str(e.value) and "astar" in str(e.value)
    flags = {d["name"]: d["accepts_answer_problems"] for d in planners.describe()}
    assert flags[name] is False and flags["astar"] is True and flags["greedy"] is True


def test_an_answer_problem_gets_its_styles_room_unless_the_request_sets_one(tiny_lm, cot: Problem) -> None:  # type: ignore[no-untyped-def]
    pal = render(QUESTION, "program-aided", tiny_lm)
    greedy = planners.create("greedy")
    assert greedy.for_problem(cot).max_new_tokens == REASONING_MAX_NEW_TOKENS["chain-of-thought"]
    assert greedy.for_problem(pal).max_new_tokens == REASONING_MAX_NEW_TOKENS["program-aided"]
    assert greedy.for_problem(CODE).max_new_tokens == 384
    assert planners.create("greedy", {"max_new_tokens": 7}).for_problem(cot).max_new_tokens == 7


# ----- votes: self-consistency ------------------------------------------------------------------


def _cand(text: str, tokens: int, logprob: float, finish: str = "eos") -> Candidate:
    return Candidate(text, [0] * tokens, logprob, meta={"finish": finish})


def _voted(tiny_lm, cot: Problem, **params: Any) -> tuple[SampleRounds, Any]:  # type: ignore[no-untyped-def]
    p = BestOfNParams(n=5, max_new_tokens=64, **params)
    search = SampleRounds(p, cot, SearchContext.create(tiny_lm), score=True)
    new = [
        _cand(r"so \boxed{18}.", 10, -5.0),
        _cand("9 * 2 = $18", 10, -2.0),
        _cand("she makes 18.0 dollars", 10, -1.0),
        _cand(r"so \boxed{17}.", 10, -0.1),
        _cand("9 * 2 = 18", 64, -0.2, finish="length"),  # cut off: no answer
    ]
    search._vote(new)
    search.candidates = new
    return search, search.outcome("done")


def test_self_consistency_counts_equivalent_answers_as_one_vote(tiny_lm, cot: Problem) -> None:  # type: ignore[no-untyped-def]
    search, out = _voted(tiny_lm, cot)
    assert [c.meta["answer"] for c in out.candidates] == ["18", "$18", "18.0", "17", None]
    assert out.best.completion == "she makes 18.0 dollars"  # the most likely of the winning answer
    choice = search.choose_answer(out)
    assert (choice.answer, choice.votes, choice.samples, choice.confidence) == ("18.0", 3.0, 5.0, 0.6)
    assert choice.answers == 2


def test_a_weighted_vote_sums_each_answers_weights(tiny_lm, cot: Problem) -> None:  # type: ignore[no-untyped-def]
    search, out = _voted(tiny_lm, cot, vote="weighted", weight="likelihood")
    weights = [c.meta["weight"] for c in out.candidates]  # exp(mean log-prob per token)
    assert weights == pytest.approx([0.606531, 0.818731, 0.904837, 0.990050, 0.996880], abs=2e-6)
    # "18": 0.61 + 0.82 + 0.90 against "17": 0.99; the cut-off sample's weight votes for none
    choice = search.choose_answer(out)
    assert choice.answer == "18.0" and choice.votes == pytest.approx(sum(weights[:3]), abs=1e-5)
    assert choice.confidence == pytest.approx(sum(weights[:3]) / sum(weights), abs=1e-5)


def test_best_of_n_votes_on_the_tiny_model_and_says_its_signal(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    report = Engine(lm=tiny_lm, cache=MemoryCache()).solve(
        ENDING, "best_of_n", {"n": 4, "batch_size": 2, "max_new_tokens": 12}, include_tree=False
    )
    choice = report.choice
    assert choice is not None and choice.signal == "agreement" and choice.samples == 4.0
    assert report.stop_reason == "done" and len(report.candidates) == 4  # no early stop: all n drawn
    answers = [c.meta["answer"] for c in report.candidates if c.meta]
    assert len(answers) == 4 and report.spend.executions == 0  # chain of thought runs nothing
    found = report.final_answer
    assert found is not None and found.answer.text == choice.answer
    assert choice.votes == sum(a == choice.answer for a in answers) if choice.answer else choice.votes == 0
    assert report.to_json()["choice"]["signal"] == "agreement"


def test_greedy_says_it_had_no_signal_and_a_code_problem_has_no_choice(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(lm=tiny_lm, cache=MemoryCache())
    report = engine.solve(ENDING, "greedy", {"max_new_tokens": 12}, include_tree=False)
    choice = report.choice
    assert choice is not None and choice.signal == "none" and choice.samples == 1.0
    assert choice.confidence == (1.0 if choice.answer is not None else 0.0)
    code = engine.solve(CODE, "greedy", {"max_new_tokens": 3}, include_tree=False)
    assert code.choice is None and "choice" not in code.to_json()


def test_behaviour_selection_is_refused_on_an_answer_problem(tiny_lm, cot: Problem) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlannerError, match="selector=behaviour runs programs on inputs"):
        planners.create("best_of_n", {"selector": "behaviour"}).solve(cot, SearchContext.create(tiny_lm))


# ----- PG-TD and V-STAR: rewards from agreement -----------------------------------------------


def test_pgtd_rewards_a_completion_by_the_agreement_of_its_answer(tiny_lm, cot: Problem) -> None:  # type: ignore[no-untyped-def]
    search = PGTDSearch(PGTDParams(max_new_tokens=64), cot, SearchContext.create(tiny_lm))

    def leaf(token: int) -> TokenNode:
        node = TokenNode(search.tree.add_child(search.root.id, [token], "x"), [token], 0.0, 1.0, 0.0, False)
        search.nodes.append(node)
        return node

    leaves = [leaf(i) for i in range(4)]
    texts = [r"\boxed{18}", "so 18.0", r"\boxed{7}", r"\boxed{18}"]
    programs = {n: _Program([n.id] * 3, -1.0 * n.id, "model") for n in leaves}
    rewards = search._agreement(leaves, programs, dict(zip(leaves, texts, strict=True)))
    assert rewards == [0.75, 0.75, 0.25, 0.75]
    more = [leaf(9)]
    assert search._agreement(more, {more[0]: _Program([1], -9.0, "model")}, {more[0]: r"\boxed{7}"}) == [0.4]
    out = search.outcome("rollouts")
    assert out.best is not None and out.best.completion == r"\boxed{18}"  # most likely "18"
    assert sorted(c.reward for c in out.candidates) == [0.4, 0.6, 0.6]  # final shares (3 distinct texts)


def test_pgtd_searches_an_answer_problem_to_its_budget_of_rollouts(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    report = Engine(lm=tiny_lm, cache=MemoryCache()).solve(
        ENDING, "pgtd", {"rollouts": 4, "parallel_rollouts": 2, "max_new_tokens": 10}, include_tree=False
    )
    assert report.stop_reason == "rollouts"  # no tests to stop on, no "no_public_tests" shortcut
    choice = report.choice
    assert choice is not None and choice.signal == "agreement" and choice.samples == 4.0
    assert all(0.0 <= c.reward <= 1.0 for c in report.candidates)


def test_vstar_values_paths_by_their_rollouts_agreement(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    report = Engine(lm=tiny_lm, cache=MemoryCache()).solve(
        ENDING, "vstar", {"rollouts": 3, "max_new_tokens": 10, "entropy_threshold": 0.0}, include_tree=False
    )
    choice = report.choice
    assert choice is not None and choice.signal == "rollout-value"
    assert report.stop_reason in ("rollouts", "tree_exhausted") and choice.samples >= 2
    rewards = [c.reward for c in report.candidates]
    assert rewards == sorted(rewards, reverse=True)


# ----- A* over reasoning steps ------------------------------------------------------------------


class TextScorer:
    """r from the state's text length: fixed, so the pop order is checkable."""

    def score_steps(self, problem: Problem, states: Any, ctx: Any) -> list[float]:
        return [0.3 if s.complete else 1.0 / (1 + len(s.completion) % 7) for s in states]

    def evaluate(self, problem: Problem, states: Any, ctx: Any, lookahead: bool = True) -> list[Any]:
        from scorers.prm import StepScore

        return [StepScore(r) for r in self.score_steps(problem, states, ctx)]


def test_astar_on_an_answer_problem_pops_the_lowest_f_and_steps_at_blank_lines(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(ENDING, "chain-of-thought", tiny_lm)
    p = AStarParams(k=3, step_tokens=4, max_new_tokens=24, max_expansions=6)
    result = AStar(p, scorer=TextScorer()).solve(problem, SearchContext.create(tiny_lm))  # type: ignore[arg-type]
    tree = Tree.from_dict(result.tree)
    pops = sorted((tree[n]["popped_at"], n) for n in tree.nodes() if tree[n].get("popped_at") is not None)
    assert len(pops) >= 2
    for t, n in pops:
        queued = [
            m
            for m in tree.nodes()
            if tree[m].get("pushed_at") is not None
            and tree[m]["pushed_at"] < t
            and (tree[m].get("popped_at") is None or tree[m]["popped_at"] >= t)
        ]
        assert tree[n]["f"] <= min(tree[m]["f"] for m in queued) + 1e-9
    for n in tree.nodes():  # a step that did not complete ended at a blank line or its token cap
        node = tree[n]
        if n != tree.root and not node["complete"] and "\n\n" in node.get("text", ""):
            assert node["text"].rstrip(" \t").endswith("\n")
    assert result.choice is not None and result.choice.signal == "prm"  # a scorer was given


def test_astar_values_reasoning_by_rollouts_without_a_prm(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(ENDING, "chain-of-thought", tiny_lm)
    planner = planners.create("astar", {"k": 2, "step_tokens": 3, "max_new_tokens": 12, "max_expansions": 2})
    ctx = SearchContext.create(tiny_lm, meter=Meter(budget=Budget(max_tokens=400)))
    search = planner.start(problem, ctx)
    assert isinstance(search.scorer, RolloutValueScorer) and search.scorer.rollouts == 2  # type: ignore[attr-defined]
    result = planner.solve(problem, SearchContext.create(tiny_lm, meter=Meter(budget=Budget(max_tokens=400))))
    extra = result.spend.extra
    assert extra["value_rollouts"] >= 2 and extra["value_rollouts"] % 2 == 0
    choice = result.choice
    assert choice is not None and choice.signal == "rollout-value"
    assert choice.samples >= extra["value_rollouts"]  # every rollout voted, and the complete states too
    assert all(c.meta.get("kind") != "lookahead" for c in result.candidates)


class ScriptedRollouts:
    """Values a state by one rollout whose text comes from a script, voted through the search's own
    answers, as ``RolloutValueScorer`` does; lazy states get 0.5."""

    def __init__(self, answers: Any, script: list[str]) -> None:
        self.answers, self.script, self.rolled = answers, list(script), 0

    def score_steps(self, problem: Problem, states: Any, ctx: Any) -> list[float]:
        return [s.r for s in self.evaluate(problem, states, ctx)]

    def evaluate(self, problem: Problem, states: Any, ctx: Any, lookahead: bool = True) -> list[Any]:
        from scorers.prm import Lookahead, StepScore

        out = []
        for s in states:
            if s.complete:
                answer = self.answers.vote([s.completion], [True], ctx, lines=[line_of(s)])[0]
                out.append(StepScore(float(self.answers.reaches(answer))))
            elif not lookahead:
                out.append(StepScore(0.5, False))
            else:
                text = self.script[min(self.rolled, len(self.script) - 1)]
                self.rolled += 1
                answer = self.answers.vote([s.completion + text], [True], ctx, lines=[line_of(s)])[0]
                hit = float(self.answers.reaches(answer))
                rollout = Lookahead([7, 7], [-0.1, -0.1], text, "stop", hit)
                out.append(StepScore(hit, True, rollout, {}, [rollout]))
        return out


def test_astar_keeps_its_value_rollouts_as_chains_and_stops_when_the_votes_settle(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    params = {"k": 2, "step_tokens": 3, "max_new_tokens": 40, "max_expansions": 12, "goal_votes": 3}
    planner = planners.create("astar", params)
    ctx = SearchContext.create(tiny_lm)
    search = planner.start(problem, ctx)
    script = [" so \\boxed{7}", " so \\boxed{18}", " thus \\boxed{18}", " hence \\boxed{18}", " \\boxed{18}!"]
    search.scorer = scorer = ScriptedRollouts(search.answers(), script)  # type: ignore[attr-defined]
    reason = search.run()
    out = search.outcome(reason)
    assert reason == "goal" and out.best is not None and out.best.completion.endswith("18}")
    votes = search.answers().votes
    assert votes.votes_for("18") == 3 and votes.leader() == "18"
    kept = [c for c in out.candidates if c.meta.get("kind") == "rollout"]
    assert len(kept) == scorer.rolled  # every rollout kept as a complete chain ...
    complete_steps = [c for c in out.candidates if c.meta.get("kind") == "step"]
    assert votes.total == scorer.rolled + len(complete_steps)  # ... and voted once, as it was drawn
    assert out.best.meta["kind"] == "rollout" and out.best.reward is None


def test_astar_with_independent_votes_needs_as_many_lines_as_goal_votes(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    # every rollout agrees; the root's one rollout and its two children's are the only lines of
    # reasoning (the states below a child share its first step), so 4 lines never agree
    params = {"k": 2, "step_tokens": 3, "max_new_tokens": 40, "max_expansions": 6, "goal_votes": 4}
    outcomes = {}
    for independent in (False, True):
        planner = planners.create("astar", {**params, "independent_votes": independent})
        search = planner.start(problem, SearchContext.create(tiny_lm))
        search.scorer = scorer = ScriptedRollouts(search.answers(), [" so \\boxed{18}"] * 50)  # type: ignore[attr-defined]
        reason = search.run()
        votes = search.answers().votes
        lines = {line for text, line in zip(votes.texts, votes.lines, strict=True) if votes.same(text, "18")}
        outcomes[independent] = (reason, scorer.rolled, votes.votes_for("18"), len(lines))
    assert outcomes[False] == ("goal", 4, 4, 3)  # four votes, from three lines
    reason, rolled, votes_for, lines = outcomes[True]
    assert (reason, votes_for, lines) == ("max_expansions", 3, 3) and rolled > 4


def test_astar_without_a_goal_answers_with_the_leading_answers_chain(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    params = {"k": 2, "step_tokens": 3, "max_new_tokens": 40, "max_expansions": 2, "goal_votes": 50}
    planner = planners.create("astar", params)
    search = planner.start(problem, SearchContext.create(tiny_lm))
    search.scorer = ScriptedRollouts(search.answers(), [" \\boxed{18}", " \\boxed{7}", " so \\boxed{18}"])  # type: ignore[attr-defined]
    reason = search.run()
    out = search.outcome(reason)
    assert reason == "max_expansions" and "best complete chain of the leading answer" in out.stop_reason
    assert out.best is not None and out.best.completion.endswith("18}")


# ----- the others: beam over steps, sampling, AdaDec ---------------------------------------------


def test_beam_searches_over_reasoning_steps_on_an_answer_problem(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(ENDING, "chain-of-thought", tiny_lm)
    params = {"num_beams": 2, "expand": 2, "step_tokens": 3, "max_new_tokens": 12, "max_steps": 6}
    result = planners.create("beam", params).solve(problem, SearchContext.create(tiny_lm))
    assert result.spend.extra["beam_rounds"] >= 1 and result.candidates
    scores = [c.meta["score"] for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and result.best is result.candidates[0]
    assert result.choice is not None and result.choice.signal == "none"  # likelihood only: no signal
    assert result.choice.samples == len(result.candidates)


@pytest.mark.parametrize(("name", "params"), [("sampling", {"n": 3}), ("adadec", {"entropy_threshold": 1.0})])
def test_planners_without_a_signal_say_so(tiny_lm, name: str, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    problem = render(ENDING, "chain-of-thought", tiny_lm)
    planner = planners.create(name, {**params, "max_new_tokens": 8})
    result = planner.solve(problem, SearchContext.create(tiny_lm))
    assert result.choice is not None and result.choice.signal == "none"
    assert result.choice.samples == len(result.candidates) and 0.0 <= result.choice.confidence <= 1.0


def test_astar_draws_no_more_value_rollouts_than_its_cap_and_goes_on_by_steps(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    params = {
        "k": 2,
        "step_tokens": 3,
        "max_new_tokens": 30,
        "max_expansions": 5,
        "goal_votes": 200,  # never settles: the search runs to max_expansions
        "value_rollouts": 2,
        "max_value_rollouts": 4,
    }
    result = planners.create("astar", params).solve(problem, SearchContext.create(tiny_lm))
    extra = result.spend.extra
    assert extra["value_rollouts"] <= 4 and extra["astar_expansions"] >= 3


def _value_calls(tiny_lm, monkeypatch, params: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The row counts of the value-rollout calls of one A* search (a step call has a step stop)."""
    calls: list[int] = []
    real = tiny_lm.rollouts

    def spy(
        prefixes: Any, gen: Any, stops: Any = (), stats: Any = None, row_stops: Any = None, **kw: Any
    ) -> Any:
        if not stops and gen.mode == DecodeMode.sample:
            calls.append(len(prefixes))
        return real(prefixes, gen, stops, stats=stats, row_stops=row_stops, **kw)

    monkeypatch.setattr(tiny_lm, "rollouts", spy)
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    result = planners.create("astar", params).solve(problem, SearchContext.create(tiny_lm))
    monkeypatch.undo()
    return calls, result.spend.extra


def test_astar_values_the_lazy_states_at_the_top_of_the_queue_in_one_call(tiny_lm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the random model's texts hold no answer: the votes never settle
    base = {"k": 3, "step_tokens": 3, "max_new_tokens": 30, "max_expansions": 4, "goal_votes": 3}
    capped = {**base, "value_rollouts": 2, "max_value_rollouts": 10}
    batched, extra = _value_calls(tiny_lm, monkeypatch, {**capped, "value_batch": 3})
    assert batched[:2] == [2, 2]  # the root, then one state: 2 votes cast, the next 2 could settle them
    assert max(batched) > 2 and all(n % 2 == 0 and n <= 6 for n in batched)  # then up to 3 at once
    assert sum(batched) == extra["value_rollouts"] <= 10  # the cap holds across a batch
    assert extra["astar_batched_values"] == sum(batched) // 2 - len(batched)
    one_by_one, extra = _value_calls(tiny_lm, monkeypatch, {**capped, "value_batch": 1})
    assert set(one_by_one) == {2} and "astar_batched_values" not in extra
