"""Answer problems put to the model: the reasoning prompt styles, and program-aided answers run in
the real process sandbox."""

from __future__ import annotations

from typing import Any

import pytest

import planners
from api.core.engine import Engine
from sandbox import Limits, open_executor
from sandbox.executor import Executor
from scorers.program_answers import MARKER, answer_program, program_answer
from search.cache.store import MemoryCache
from search.problems.answers import FinalAnswer
from search.problems.problem import Problem
from search.problems.prompting import PromptStyleError, render, stops_for

REFERENCE = "4817"  # distinctive, so that its absence from a rendering means something
QUESTION = Problem(
    id="q/eggs",
    prompt="Janet's ducks lay 16 eggs a day. She eats 3 and bakes with 4. How many are left?",
    final_answer=FinalAnswer(reference=REFERENCE),
)
CODE = Problem(id="c", prompt="def double(x):\n    pass\n", entry_point="double")


def test_chain_of_thought_asks_under_qwens_math_system_prompt(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    p = render(QUESTION, "chain-of-thought", tiny_lm)
    assert p.prompt_style == "chain-of-thought"
    assert p.model_text == (
        "<|im_start|>system\n"
        "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        f"<|im_start|>user\n{QUESTION.prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert REFERENCE not in p.model_text
    assert stops_for(p) == [] and p.program(r"So \boxed{9}.") == ""


def test_program_aided_asks_for_solution_and_opens_the_fence(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    p = render(QUESTION, "program-aided", tiny_lm)
    assert p.prompt_style == "program-aided"
    assert "<|im_start|>user\nWrite a Python function `solution()`" in p.model_text
    assert QUESTION.prompt in p.model_text and REFERENCE not in p.model_text
    assert p.model_text.endswith("<|im_start|>assistant\n```python\n")
    assert [s.key() for s in stops_for(p)] == ["strings:('\\n```',)"]
    assert p.program("def solution():\n    return 9\n```\nIt is 9.") == "def solution():\n    return 9\n"


def test_auto_renders_an_answer_problem_as_chain_of_thought(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    assert render(QUESTION, "auto", tiny_lm, default="chat-prefill").prompt_style == "chain-of-thought"


def test_choices_are_listed_under_the_question(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    choice = Problem(
        id="c", prompt="Which is blue?", final_answer=FinalAnswer(type="choice", choices=["sun", "sky"])
    )
    assert (
        "Which is blue?\n\nA) sun\nB) sky<|im_end|>" in render(choice, "chain-of-thought", tiny_lm).model_text
    )


@pytest.mark.parametrize(
    ("problem", "style", "message"),
    [
        (QUESTION, "chat", "'chat' is not one for a question with a final answer"),
        (QUESTION, "socratic", "use one of auto, chain-of-thought, program-aided"),
        (CODE, "chain-of-thought", "is for questions with a final answer"),
        (CODE, "program-aided", "a code problem takes one of auto, completion, chat, chat-prefill"),
    ],
)
def test_a_style_of_the_other_kind_is_refused_in_one_line(tiny_lm, problem, style, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PromptStyleError, match=message):
        render(problem, style, tiny_lm)


class NoTemplate:
    def chat_text(self, messages: Any) -> str | None:
        return None


def test_reasoning_styles_need_a_chat_template() -> None:
    with pytest.raises(PromptStyleError, match="needs a chat template"):
        render(QUESTION, "chain-of-thought", NoTemplate())


def test_the_engine_hands_planners_the_question_without_its_reference(tiny_lm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[Problem] = []
    create = planners.create

    def spying_create(name: str, params: Any) -> Any:
        planner = create(name, params)
        solve = planner.solve

        def solve_and_record(problem: Problem, ctx: Any) -> Any:
            seen.append(problem)
            return solve(problem, ctx)

        planner.solve = solve_and_record  # type: ignore[method-assign]
        return planner

    monkeypatch.setattr(planners, "create", spying_create)
    report = Engine(lm=tiny_lm, cache=MemoryCache()).solve(
        QUESTION, "greedy", {"max_new_tokens": 4}, include_tree=False
    )
    assert report.prompt_style == "chain-of-thought" and report.spend.generated_tokens > 0
    assert len(seen) == 1 and seen[0].final_answer == FinalAnswer(type="number", reference=None)
    assert REFERENCE not in (seen[0].model_prompt or "")


def test_the_result_shows_the_answer_found_and_its_verdict(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(lm=tiny_lm, cache=MemoryCache())
    report = engine.solve(QUESTION, "greedy", {"max_new_tokens": 3}, include_tree=False)
    assert report.spend.generated_tokens == 3  # the random model never ends on its own in 3 tokens
    verdict = report.final_answer
    assert verdict is not None and verdict.correct is False
    assert (verdict.answer.text, verdict.answer.reason) == (None, "cut off before an answer")
    assert report.to_json()["final_answer"]["answer"]["reason"] == "cut off before an answer"
    # a problem rendered beforehand is kept as it is (the surfaces take no reasoning style yet)
    program_aided = engine.solve(
        render(QUESTION, "program-aided", tiny_lm), "greedy", {"max_new_tokens": 3}, include_tree=False
    )
    assert program_aided.final_answer is not None
    assert program_aided.final_answer.answer.reason == "the code defines no solution()"


def test_the_engine_reads_an_answer_by_the_problems_style(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(lm=tiny_lm, cache=MemoryCache())
    cot = render(QUESTION, "chain-of-thought", tiny_lm)
    pal = render(QUESTION, "program-aided", tiny_lm)
    assert engine.answer_of(cot, r"16 - 3 - 4 = 9, and 9 * 2 = \boxed{18}.").text == "18"
    assert engine.answer_of(pal, "def solution():\n    return (16 - 3 - 4) * 2\n```").text == "18"
    assert engine.answer_of(cot, "16 - 3 - 4 = 9, and 9 * 2 =", complete=False).text is None


def test_a_code_problems_result_has_no_final_answer(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    report = Engine(lm=tiny_lm, cache=MemoryCache()).solve(
        CODE, "greedy", {"max_new_tokens": 3}, include_tree=False
    )
    assert report.final_answer is None and "final_answer" not in report.to_json()


# ----- program-aided answers in the real sandbox -----------------------------------------------


@pytest.fixture(scope="module")
def executor() -> Executor:
    return open_executor()


QUICK = Limits(wall_per_test=1.0, wall_total=3.0)


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("def solution():\n    eggs = 16 - 3 - 4\n    return eggs * 2\n```\nShe makes $18.", "18"),
        ("def solution():\n    return 0.1 + 0.2\n", "0.30000000000000004"),
        ("from fractions import Fraction\n\ndef solution():\n    return Fraction(3, 4)\n", "3/4"),
        ("def solution():\n    return 'Paris'\n\nprint(solution())\n", "Paris"),
        ("import math\ndef solution():\n    print('working...')\n    return math.floor(7.9)\n", "7"),
    ],
)
def test_the_value_solution_returns_is_the_answer(executor: Executor, completion: str, text: str) -> None:
    answer = program_answer(completion, executor, QUICK)
    assert (answer.text, answer.rule, answer.reason) == (text, "program", None)


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (
            "def solution():\n    return 16 / 0\n",
            "solution() ended in error (ZeroDivisionError: division by zero)",
        ),
        ("def solution():\n    while True:\n        pass\n", "solution() ended in timeout"),
        ("def solution(:\n    return 1\n", "the program does not compile (SyntaxError"),
        ("def solution():\n    x = 18\n", "solution() returned None"),
        (
            "import sys\ndef solution():\n    sys.exit(0)\n",
            "the program ended before reporting solution()'s value",
        ),
        ("x = input()\ndef solution():\n    return 1\n", "EOFError"),
        ("She has 16 - 3 - 4 = 9 eggs, so 18 dollars.", "the code defines no solution()"),
    ],
)
def test_an_exception_or_timeout_is_no_answer(executor: Executor, completion: str, reason: str) -> None:
    answer = program_answer(completion, executor, QUICK)
    assert not answer.found and answer.rule is None
    assert answer.reason is not None and reason in answer.reason


def test_a_program_answer_is_checked_like_any_other(executor: Executor) -> None:
    eggs = Problem(id="q", prompt="How many?", final_answer=FinalAnswer(reference="18"))
    assert eggs.final_answer is not None
    right = program_answer("def solution():\n    return 18.0\n", executor, QUICK)
    wrong = program_answer("def solution():\n    return 17\n", executor, QUICK)
    assert eggs.final_answer.check(right.text) is True and eggs.final_answer.check(wrong.text) is False


def test_a_program_can_only_report_its_own_answer(executor: Executor) -> None:
    # it may print the marker itself, but the line after it (the real return value) wins
    forged = f"def solution():\n    print({MARKER!r} + '\"99\"')\n    return 18\n"
    assert program_answer(forged, executor, QUICK).text == "18"


def test_the_program_run_is_the_code_then_the_report() -> None:
    program = answer_program("def solution():\n    return 2\n```\nIt returns 2.")
    assert program is not None and program.startswith("def solution():\n    return 2\n\n")
    assert "It returns 2." not in program and "__treedec_report_answer()" in program
