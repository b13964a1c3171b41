"""Answer problems from records: treedec's own format, GSM8K rows and MATH-style rows.

- treedec's own: ``{"question": ..., "answer": ..., "answer_type": ...}`` (``AnswerRecord``; ``id``
  and ``choices`` optional, ``answer`` optional: without it there is no verdict, only an answer);
- GSM8K: ``question``, and ``answer``, a worked solution ending in ``#### N``;
- MATH-style (a record with ``problem``, ``solution``, ``unique_id``, ``level`` or ``subject``):
  ``problem`` (or ``question``), and ``answer`` or a ``solution`` whose last ``\\boxed{}`` holds it;
  the answer type defaults to ``math``.

>>> p = answer_problem({"question": "What is 2 + 3?", "answer": 5}, "demo.json")
>>> p.id, p.prompt, p.final_answer.reference, p.final_answer.type
('demo-0', 'What is 2 + 3?', '5', 'number')
>>> row = {"problem": "Half of 1?", "solution": r"It is $\\boxed{\\frac12}$."}
>>> answer_problem(row, "m.jsonl").final_answer.reference
'\\\\frac12'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search.problems.answers import FinalAnswer
from search.problems.errors import ProblemError
from search.problems.extraction import Boxed
from search.problems.problem import Problem
from search.problems.verification import AnswerType, reference_error

_MARKERS = ("question", "problem", "answer", "answer_type", "solution")
_MATH_KEYS = ("problem", "solution", "unique_id", "level", "subject")
"""Keys that make a record MATH-style (MATH, MATH-500), whose other keys are left aside."""


class AnswerRecord(BaseModel):
    """A question with a checked final answer, as a client writes it (treedec's own format)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, min_length=1)
    question: str = Field(description="the question, as the model will read it")
    answer: str | None = Field(None, description="the reference answer (it only judges)")
    answer_type: AnswerType = Field("number", description="number, math, choice or string")
    choices: list[str] | None = Field(None, description="a choice question's options (labelled A, B, C...)")

    @field_validator("question")
    @classmethod
    def _asked(cls, question: str) -> str:
        if not question.strip():
            raise ValueError("the question is empty: write what the model should answer")
        return question

    @field_validator("answer", mode="before")
    @classmethod
    def _as_text(cls, answer: object) -> object:
        return str(answer) if isinstance(answer, (int, float)) and not isinstance(answer, bool) else answer

    @model_validator(mode="after")
    def _checkable(self) -> AnswerRecord:
        if self.answer is not None and (why := reference_error(self.answer, self.answer_type, self.choices)):
            raise ValueError(f"answer: {why}")
        return self

    def to_problem(self, default_id: str) -> Problem:
        final = FinalAnswer(type=self.answer_type, choices=self.choices, reference=self.answer)
        return Problem(id=self.id or default_id, prompt=self.question, final_answer=final)


def is_answer_record(data: dict[str, Any]) -> bool:
    """Whether a record is a question with a final answer (not a code problem or an APPS record)."""
    return "input_output" not in data and "prompt" not in data and any(k in data for k in _MARKERS)


def answer_problem(data: dict[str, Any], source: str, index: int = 0) -> Problem:
    """The answer problem a record holds (any of the three formats); ``source`` names the file in
    errors and default ids (``demo-0``)."""
    default_id = f"{Path(source).stem}-{index}"
    try:
        return _record(data, source).to_problem(default_id)
    except ValidationError as e:
        first = e.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        if ": " in msg and msg.split(": ", 1)[0] in AnswerRecord.model_fields:  # raised for a named field
            where, msg = msg.split(": ", 1)
        else:
            where = ".".join(str(x) for x in first["loc"]) or "problem"
        raise ProblemError(f"{source}: invalid problem (field '{where}': {msg})") from e


def _record(data: dict[str, Any], source: str) -> AnswerRecord:
    if any(k in data for k in _MATH_KEYS):
        return _math_record(data, source)
    answer = data.get("answer")
    if "question" in data and isinstance(answer, str) and "####" in answer:
        return gsm8k_record(data)
    return AnswerRecord.model_validate(data)


def gsm8k_record(row: dict[str, Any], pid: str | None = None) -> AnswerRecord:
    """A GSM8K row: the question, and the number after ``####`` in its worked answer."""
    reference = str(row.get("answer", "")).rsplit("####", 1)[-1].strip()
    return AnswerRecord.model_validate({"id": pid, "question": row.get("question"), "answer": reference})


def _math_record(row: dict[str, Any], source: str) -> AnswerRecord:
    question = row.get("problem", row.get("question"))
    reference = row.get("answer")
    if reference is None and isinstance(row.get("solution"), str):
        reference = Boxed()(row["solution"], True)
        if reference is None:
            raise ProblemError(f"{source}: invalid problem (field 'solution': it has no \\boxed{{}} answer)")
    pid = row.get("unique_id", row.get("id"))
    return AnswerRecord.model_validate(
        {
            "id": str(pid) if pid is not None else None,
            "question": question,
            "answer": reference,
            "answer_type": row.get("answer_type", "math"),
            "choices": row.get("choices"),
        }
    )
