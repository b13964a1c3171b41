"""The answer signal: final answers read and voted (agreement), and the rollout value of partial
solutions, on the tiny model and the real sandbox."""

from __future__ import annotations

import pytest

from sandbox import open_executor
from sandbox.pool import SandboxPool
from scorers.answers import AnswerScorer, Votes
from scorers.prm import PartialState
from scorers.rollout_value import RolloutValueScorer
from search.problems.answers import FinalAnswer
from search.problems.extraction import Answer
from search.problems.problem import Problem
from search.problems.prompting import render
from search.state.context import SearchContext

QUESTION = Problem(id="q", prompt="How many dollars?", final_answer=FinalAnswer())


def _answers(*texts: str | None) -> list[Answer]:
    return [Answer(text=t, rule="boxed") if t else Answer.none("no answer in the text") for t in texts]


def test_equivalent_answers_are_one_vote_group() -> None:
    votes = Votes("number")
    for a in _answers("18", "18.0", "$18", "17", "$1,800", "1800", None):
        votes.add(a)
    assert [(g.key, w) for g, w in votes.ranked()] == [("18", 3.0), ("$1,800", 2.0), ("17", 1.0)]
    assert votes.leader() == "18" and votes.total == 7
    assert votes.share("18.00") == pytest.approx(3 / 7) and votes.share(None) == 0.0
    assert votes.agrees_with_leader("$18") and not votes.agrees_with_leader("17")


def test_a_tie_goes_to_the_answer_drawn_first_and_weights_decide_a_weighted_vote() -> None:
    votes = Votes("number")
    for a in _answers("7", "18", "18", "7"):
        votes.add(a)
    assert votes.leader() == "7"
    weighted = Votes("number")
    for a, w in zip(_answers("7", "18", "18"), [0.9, 0.3, 0.4], strict=True):
        weighted.add(a, w)
    assert weighted.leader() == "7" and weighted.share("18") == pytest.approx(0.7 / 1.6)


def test_one_vote_per_line_counts_the_lines_that_reach_an_answer() -> None:
    cast = [("18", "a"), ("18.0", "a"), ("$18", None), ("7", "a"), ("7", "b"), ("7", "b"), (None, "c")]
    for per_line, expected in ((False, {"18": 3.0, "7": 3.0}), (True, {"18": 2.0, "7": 2.0})):
        votes = Votes("number", one_vote_per_line=per_line)
        for text, line in cast:
            votes.add(_answers(text)[0], line=line)
        assert {g.key: w for g, w in votes.ranked()} == expected
        assert votes.leader() == "18"  # the tie goes to the answer drawn first
        assert votes.total == sum(expected.values()) + 1  # the line that found no answer still voted
    assert len(votes.lines) == len(votes.texts) == 6


def test_choice_answers_vote_by_label() -> None:
    votes = Votes("choice", ["red", "blue"])
    for a in _answers("B", "(b)", "blue", "A"):
        votes.add(a)
    assert votes.leader() == "B" and votes.votes_for("blue") == 3.0


def test_the_scorer_reads_cut_off_texts_by_explicit_rules_only_and_votes_them(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    scorer = AnswerScorer(render(QUESTION, "chain-of-thought", tiny_lm))
    texts = [r"so \boxed{18}.", "9 * 2 = 18", "9 * 2 = 18", "so 17 dollars"]
    answers = scorer.vote(texts, [True, True, False, True])
    assert [a.text for a in answers] == ["18", "18", None, "17"]
    assert answers[2].reason == "cut off before an answer"
    choice = scorer.choice(answers[0], "agreement")
    assert (choice.answer, choice.votes, choice.samples, choice.answers) == ("18", 2.0, 4.0, 2)
    assert choice.confidence == 0.5 and choice.signal == "agreement"
    assert scorer.agreement(answers[3]) == 0.25 and scorer.agreement(answers[2]) == 0.0


def test_program_aided_answers_run_in_the_sandbox_and_count_as_executions(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "program-aided", tiny_lm)
    with pytest.raises(ValueError, match="run in the sandbox and none is configured"):
        AnswerScorer(problem)
    ctx = SearchContext.create(tiny_lm)
    scorer = AnswerScorer(problem, SandboxPool(open_executor()))
    codes = ["def solution():\n    return 9 * 2\n```", "def solution():\n    return 1 / 0\n", "no code"]
    answers = scorer.vote([*codes, codes[0]], [True] * 4, ctx)
    assert [a.text for a in answers] == ["18", None, None, "18"]
    assert ctx.meter.spend.executions == 2  # the repeat is read from the cache, the prose never runs
    assert scorer.choice(answers[0], "agreement").confidence == 0.5
    assert scorer.reaches(answers[0]) and not scorer.reaches(answers[1])  # ran and returned an answer


def test_rollout_value_is_the_share_of_rollouts_reaching_the_majority(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    answers = AnswerScorer(problem)
    answers.vote([r"\boxed{18}", r"\boxed{18}", r"\boxed{7}"], [True] * 3)
    ctx = SearchContext.create(tiny_lm)
    right, wrong = r"So the total is \boxed{18}.", r"So the total is \boxed{7}."
    states = [PartialState(t, tiny_lm.encode(t)) for t in (right, wrong)]
    longest = max(len(s.token_ids) for s in states)
    scorer = RolloutValueScorer(answers, max_new_tokens=longest + 3, rollouts=2)
    scores = scorer.evaluate(problem, states, ctx)
    # each rollout keeps its state's boxed answer (3 new tokens rarely close another box)
    assert [s.r for s in scores] == [1.0, 0.0] and all(s.exact for s in scores)
    assert answers.votes.total == 3 + 4 and ctx.meter.spend.extra["value_rollouts"] == 4
    la = scores[0].lookahead
    assert la is not None and la.pass_rate == 1.0 and 1 <= len(la.token_ids) <= 3
    fresh = PartialState("So", tiny_lm.encode("So"), prior_pass=0.5)
    lazy = scorer.evaluate(problem, [fresh], ctx, lookahead=False)
    assert (lazy[0].r, lazy[0].exact) == (0.5, False) and ctx.meter.spend.extra["value_rollouts"] == 4


def test_rollouts_from_one_first_step_are_one_line_of_reasoning(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    text = r"First.\n\nSo the total is \boxed{18}."
    state = PartialState(text, tiny_lm.encode(text), steps=["First.\n\n", r"So the total is \boxed{18}."])
    root = PartialState("", [])
    counted = {}
    for per_line in (False, True):
        answers = AnswerScorer(problem)
        answers.votes.one_vote_per_line = per_line
        scorer = RolloutValueScorer(answers, max_new_tokens=len(state.token_ids) + 3, rollouts=3)
        scorer.evaluate(problem, [state], SearchContext.create(tiny_lm))
        counted[per_line] = answers.votes.votes_for("18")
        assert set(answers.votes.lines) == {"First.\n\n"}
        scorer.evaluate(problem, [root], SearchContext.create(tiny_lm))  # root rollouts: a line each
        assert len(set(answers.votes.lines)) == 1 + len(answers.votes.texts) - 3
    assert counted == {False: 3.0, True: 1.0}


def test_a_complete_state_is_valued_by_its_own_answer(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = render(QUESTION, "chain-of-thought", tiny_lm)
    answers = AnswerScorer(problem)
    answers.vote([r"\boxed{18}", r"\boxed{18}"], [True, True])
    scorer = RolloutValueScorer(answers, max_new_tokens=64)
    done = [PartialState(t, [1, 2], complete=True) for t in (r"\boxed{18.0}", r"\boxed{7}")]
    assert [s.r for s in scorer.evaluate(problem, done, SearchContext.create(tiny_lm))] == [1.0, 0.0]
