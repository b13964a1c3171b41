"""Answer problems: numbers, extraction, verification, the FinalAnswer on Problem, records and GSM8K."""

from __future__ import annotations

import json
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from search.problems.answer_problems import AnswerRecord, answer_problem
from search.problems.answers import FinalAnswer
from search.problems.errors import ProblemError
from search.problems.extraction import CUT_OFF, NO_ANSWER, extract_answer
from search.problems.gsm8k import gsm8k_rows, load_gsm8k
from search.problems.loaders import load_problem, load_problems
from search.problems.numbers import parse_number
from search.problems.problem import Problem
from search.problems.verification import AnswerType, reference_error, verify

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ----- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("72", Fraction(72)),
        ("1,080", Fraction(1080)),
        ("$1,200.50", Fraction(240100, 200)),
        ("-$5", Fraction(-5)),
        ("18 eggs", Fraction(18)),
        ("3.5 hours.", Fraction(7, 2)),
        ("25%", Fraction(25)),
        (r"50\%", Fraction(50)),
        ("3/4", Fraction(3, 4)),
        ("1 1/2", Fraction(3, 2)),
        (r"\frac{3}{4}", Fraction(3, 4)),
        (r"\dfrac{-1}{2}", Fraction(-1, 2)),
        ("x = 18", Fraction(18)),
        ("18.000", Fraction(18)),
        ("5 cm^2", Fraction(5)),
        (r"\text{18 dollars}", Fraction(18)),
        ("\u22127", Fraction(-7)),
    ],
)
def test_parse_number_reads_one_number_with_its_signs_and_units(text: str, value: Fraction) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "eighteen", "18 and 20", "18 + 2", "1,2", "12:30", "3/0", "x"])
def test_parse_number_refuses_what_is_not_one_number(text: str) -> None:
    assert parse_number(text) is None


# ----- extraction ------------------------------------------------------------------------------

EXTRACTIONS = [
    # text, answer type, answer as written, rule
    (r"Thus $x = \boxed{18}$.", "number", "18", "boxed"),
    (r"First \boxed{3}, corrected: \boxed{4}.", "number", "4", "boxed"),
    (r"The value is $\boxed{\frac{1}{2}}$", "math", r"\frac{1}{2}", "boxed"),
    (r"So $\boxed{\left(3, \frac{\pi}{2}\right)}$", "math", r"\left(3, \frac{\pi}{2}\right)", "boxed"),
    (r"\boxed{x^{2}+\sqrt{y}}", "math", r"x^{2}+\sqrt{y}", "boxed"),
    ("She has 9 * 2 = 18 dollars.\n#### 18", "number", "18", "hashes"),
    ("#### 1,080\n", "number", "1,080", "hashes"),
    ("The answer is 18.", "number", "18", "answer-is"),
    ("So the final answer is: **$1,200**.", "number", "$1,200", "answer-is"),
    ("The answer is 18 eggs because 3 * 6 = 18.", "number", "18", "answer-is"),
    ("Answer: 2.5", "number", "2.5", "answer-is"),
    ("The answer is Paris.", "string", "Paris", "answer-is"),
    ("The answer is (B).", "choice", "(B)", "answer-is"),
    ("16 - 3 - 4 = 9 eggs, sold at $2 each: 9 * 2 = $18.", "number", "$18", "last-number"),
    ("The answer is that she has 7 left over.", "number", "7", "answer-is"),
    ("The answer is that she wins. She ran 3 laps.", "number", "3", "last-number"),
    (r"\boxed{eighteen} but 18 in digits", "number", "18", "last-number"),
]


@pytest.mark.parametrize(("text", "answer_type", "answer", "rule"), EXTRACTIONS)
def test_extraction_finds_the_answer_and_names_its_rule(
    text: str, answer_type: AnswerType, answer: str, rule: str
) -> None:
    found = extract_answer(text, answer_type)
    assert (found.text, found.rule, found.reason) == (answer, rule, None)
    assert found.found


@pytest.mark.parametrize(
    ("text", "answer_type"),
    [("", "number"), ("No numbers here at all.", "number"), ("She wins.", "string"), ("I pick B.", "choice")],
)
def test_a_text_without_an_answer_has_none(text: str, answer_type: AnswerType) -> None:
    found = extract_answer(text, answer_type)
    assert not found.found and (found.text, found.rule, found.reason) == (None, None, NO_ANSWER)


@pytest.mark.parametrize(
    "text",
    [
        "16 - 3 - 4 = 9 eggs, sold at $2 each: 9 * 2 =",  # its last number is a step, not the answer
        r"So the total is \boxed{18",  # the box never closed
        "So the answer is 1",  # the sentence was cut: it might have gone on as 18
        "She has 9 * 2 = 18 dollars.\n#### 1",
    ],
)
def test_a_text_cut_off_before_its_answer_has_no_answer(text: str) -> None:
    found = extract_answer(text, complete=False)
    assert (found.text, found.reason) == (None, CUT_OFF)


def test_a_cut_off_text_keeps_an_answer_it_finished_before_the_cut() -> None:
    found = extract_answer(r"The total is $\boxed{18}$. To check: 9 * 2 = 1", complete=False)
    assert (found.text, found.rule) == ("18", "boxed")


# ----- verification ----------------------------------------------------------------------------

VERDICTS = [
    # extracted, reference, type, same
    ("18", "18", "number", True),
    ("$1,080", "1080", "number", True),
    ("18.0", "18", "number", True),
    ("18.0000001", "18", "number", True),  # within the relative tolerance
    ("18.01", "18", "number", False),
    ("0.3333333", "1/3", "number", True),
    ("0.33", "1/3", "number", False),
    ("25%", "25", "number", True),
    ("-3", "3", "number", False),
    ("eighteen", "18", "number", False),
    (r"\frac{1}{2}", "0.5", "math", True),
    (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", "math", True),
    ("(x+1)^2", "x^2+2x+1", "math", True),
    ("x^2+1", "x^2+2x+1", "math", False),
    (r"\left(3, \frac{\pi}{2}\right)", r"(3, \frac{\pi}{2})", "math", True),
    (r"\pi", "3.14", "math", False),
    ("B", "B", "choice", True),
    ("(b)", "B", "choice", True),
    ("option B.", "B", "choice", True),
    ("C", "B", "choice", False),
    ("New  York.", "new york", "string", True),
    (r"\text{Paris}", '"Paris"', "string", True),
    ("Paris", "London", "string", False),
]


@pytest.mark.parametrize(("extracted", "reference", "answer_type", "same"), VERDICTS)
def test_verify_by_answer_type(extracted: str, reference: str, answer_type: AnswerType, same: bool) -> None:
    assert verify(extracted, reference, answer_type) is same


def test_verify_tolerance_is_a_parameter() -> None:
    assert not verify("18.01", "18")
    assert verify("18.01", "18", rel_tol=1e-3)


def test_a_choice_may_be_named_by_its_text() -> None:
    assert verify("the sky", "B", "choice", choices=["the sun", "the sky"])
    assert not verify("the sun", "B", "choice", choices=["the sun", "the sky"])


def test_no_answer_is_never_right() -> None:
    assert not verify(None, "18") and not verify("  ", "18") and not verify(None, "x", "string")


def test_math_verification_works_off_the_main_thread() -> None:
    # math-verify's own timeout uses signal.alarm, which a worker thread may not set
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(verify("(x+1)^2", "x^2+2x+1", "math")))
    thread.start()
    thread.join()
    assert results == [True]


# ----- the problem kind ------------------------------------------------------------------------


def test_an_answer_problem_is_a_question_whose_reference_the_search_never_gets() -> None:
    p = Problem(id="q", prompt="How many eggs?", final_answer=FinalAnswer(reference="18"))
    assert not p.prompt_is_code and p.final_answer is not None
    searched = p.for_search()
    assert searched.final_answer == FinalAnswer(type="number", reference=None)
    assert p.final_answer.reference == "18"  # the original keeps it, to judge
    assert p.final_answer.check("$18.00") is True and p.final_answer.check("17") is False
    assert searched.final_answer.check("18") is None  # nothing to judge with


def test_a_code_problem_is_what_it_was() -> None:
    code = Problem(id="c", prompt="def f():\n", entry_point="f")
    assert code.final_answer is None and code.prompt_is_code and code.for_search() is code


@pytest.mark.parametrize(
    ("final_answer", "field", "message"),
    [
        ({"type": "integer"}, "final_answer.type", "Input should be 'number', 'math', 'choice' or 'string'"),
        ({"reference": "lots"}, "final_answer.reference", "'lots' is not a number"),
        ({"type": "math", "reference": r"\frac{"}, "final_answer.reference", "does not parse as LaTeX"),
        (
            {"type": "choice", "reference": "E", "choices": ["a", "b"]},
            "final_answer.reference",
            "give one of A, B",
        ),
        ({"type": "choice", "choices": ["only"]}, "final_answer.choices", "2 to 26 options"),
        ({"reference": " "}, "final_answer.reference", "the reference answer is empty"),
    ],
)
def test_a_bad_final_answer_fails_naming_its_field(
    final_answer: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as e:
        Problem(id="q", prompt="How many?", final_answer=final_answer)
    first = e.value.errors()[0]
    assert ".".join(str(x) for x in first["loc"]) == field
    assert message in first["msg"]


def test_an_answer_problem_prompt_is_not_code() -> None:
    with pytest.raises(ValidationError, match="prompt_is_code must be false"):
        Problem(id="q", prompt="How many?", prompt_is_code=True, final_answer=FinalAnswer())


# ----- records and files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"answer": "5"}, "field 'question': Field required"),
        ({"question": "  ", "answer": "5"}, "field 'question': the question is empty"),
        (
            {"question": "How many?", "answer_type": "integer"},
            "field 'answer_type': Input should be 'number'",
        ),
        ({"question": "How many?", "answer": "many"}, "field 'answer': 'many' is not a number"),
        (
            {"question": "Which?", "answer": "Z", "answer_type": "choice", "choices": ["a", "b"]},
            "field 'answer'",
        ),
        (
            {"question": "How many?", "answer": "5", "hint": "count"},
            "field 'hint': Extra inputs are not permitted",
        ),
        (
            {"problem": "Half of 1?", "solution": "It is one half."},
            "field 'solution': it has no \\boxed{} answer",
        ),
    ],
)
def test_a_bad_record_fails_in_one_line_naming_its_field(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ProblemError) as e:
        answer_problem(record, "q.json")
    text = str(e.value)
    assert text.startswith("q.json: invalid problem (") and message in text and "\n" not in text


def test_own_gsm8k_and_math_records_load_from_one_jsonl(tmp_path: Path) -> None:
    rows = [
        {"id": "own", "question": "What is 2 + 3?", "answer": 5, "answer_type": "number"},
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"problem": "Simplify $2/4$.", "solution": r"It is $\boxed{\frac{1}{2}}$.", "level": "Level 1"},
        {"question": "Solve $x+1=3$.", "answer": "2", "unique_id": "test/algebra/1.json"},
        {"question": "Capital of France?", "answer": "Paris", "answer_type": "string"},
        {"question": "Which is blue?", "answer": "B", "answer_type": "choice", "choices": ["sun", "sky"]},
        {"question": "How many, roughly?", "answer_type": "number"},  # a question with no reference
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    problems = load_problems(str(path))
    got = [
        (p.id, p.prompt[:12], p.final_answer.type, p.final_answer.reference)
        for p in problems
        if p.final_answer
    ]
    assert len(got) == len(problems)
    assert got == [
        ("own", "What is 2 + ", "number", "5"),
        ("mixed-1", "Tom has 3 ap", "number", "7"),
        ("mixed-2", "Simplify $2/", "math", r"\frac{1}{2}"),
        ("test/algebra/1.json", "Solve $x+1=3", "math", "2"),
        ("mixed-4", "Capital of F", "string", "Paris"),
        ("mixed-5", "Which is blu", "choice", "B"),
        ("mixed-6", "How many, ro", "number", None),
    ]


def test_code_and_apps_records_still_load_as_before(tmp_path: Path) -> None:
    apps = {"question": "Print the sum.", "input_output": {"inputs": ["1 2\n"], "outputs": ["3\n"]}}
    path = tmp_path / "apps.json"
    path.write_text(json.dumps(apps))
    problem = load_problem(str(path))
    assert problem.final_answer is None and problem.public_tests[0].kind == "io"
    assert load_problem(str(EXAMPLES / "two_sum_function.json")).final_answer is None


def test_the_example_word_problems_load_with_their_answers() -> None:
    problems = load_problems(str(EXAMPLES / "word_problems.json"))
    assert [(p.id, p.final_answer.reference) for p in problems] == [  # type: ignore[union-attr]
        ("example/bakery", "33"),
        ("example/bike", "7"),
        ("example/garden", "64"),
    ]


# ----- GSM8K -----------------------------------------------------------------------------------


def test_gsm8k_specs_name_test_and_train_problems() -> None:
    assert [p.id for p in load_problems("gsm8k:3,10-12")] == ["gsm8k/3", "gsm8k/10", "gsm8k/11", "gsm8k/12"]
    three = load_problem("gsm8k:3")
    assert three.final_answer == FinalAnswer(type="number", reference="540")
    assert three.prompt.startswith("James decides to run 3 sprints 3 times a week.")
    assert load_problem("gsm8k-train:0").final_answer.reference == "72"  # type: ignore[union-attr]
    assert len(load_problems("gsm8k:0-99")) == 100
    assert len(load_problems("gsm8k")) == 1319 and len(load_problems("gsm8k-train")) == 7473


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gsm8k:1319", "no gsm8k problem 1319: use gsm8k:0 .. gsm8k:1318"),
        ("gsm8k-train:7473", "no gsm8k-train problem 7473: use gsm8k-train:0 .. gsm8k-train:7472"),
        ("gsm8k:9-3", "gsm8k:9-3 is an empty range"),
        ("gsm8k:three", "gsm8k:three names no problems"),
        ("gsm8k:1,,2", "names no problems"),
    ],
)
def test_a_bad_gsm8k_spec_fails_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ProblemError, match=message):
        load_problems(spec)


def test_gsm8k_ships_with_its_licence() -> None:
    licence = Path(load_gsm8k.__code__.co_filename).parent / "data" / "gsm8k" / "LICENSE"
    assert licence.read_text().startswith("MIT License")


def test_every_gsm8k_reference_is_found_in_its_worked_answer_and_verifies_against_itself() -> None:
    for split in ("train", "test"):
        for row in gsm8k_rows(split):
            reference = row["answer"].rsplit("####", 1)[-1].strip()
            found = extract_answer(row["answer"])
            assert found.rule == "hashes" and verify(found.text, reference) and verify(reference, reference)
            assert reference_error(reference, "number") is None


def test_answer_record_is_the_boundary_model() -> None:
    record = AnswerRecord.model_validate({"question": "What is 6 * 7?", "answer": 42})
    assert record.to_problem("x").final_answer == FinalAnswer(reference="42")
