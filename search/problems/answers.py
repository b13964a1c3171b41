"""What an answer problem asks for: ``FinalAnswer`` (the answer's type, its options, the reference).

A ``Problem`` whose ``final_answer`` is set is an answer problem: its prompt is a question, and its
answer is the final answer found in the model's text (``search/problems/extraction.py``) or
returned by its program (``scorers/program_answers.py``), checked against the reference
(``search/problems/verification.py``). The reference is to an answer problem what hidden tests are
to a code problem: it only judges. It is never rendered, and ``Problem.for_search`` drops it
before a planner gets the problem.

>>> FinalAnswer(type="number", reference="1,080").reference
'1,080'
>>> FinalAnswer(type="choice", reference="B", choices=["red", "blue"]).check("blue")
True
>>> FinalAnswer(reference="18").judge(Answer(text="$18", rule="boxed")).correct
True
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from search.problems.extraction import Answer
from search.problems.verification import AnswerType, reference_error, verify


class FinalAnswer(BaseModel):
    """The final answer a problem asks for: its type and, when known, the reference it is checked
    against (hidden from the search)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: AnswerType = Field("number", description="number, math (LaTeX or an expression), choice or string")
    choices: list[str] | None = Field(
        None, description="the options of a choice question, labelled A, B, C... in this order"
    )
    reference: str | None = Field(
        None, description="the reference answer; it only judges, the search never sees it"
    )

    @field_validator("choices")
    @classmethod
    def _some_choices(cls, choices: list[str] | None) -> list[str] | None:
        if choices is not None and (len(choices) < 2 or len(choices) > 26):
            raise ValueError("a choice question needs 2 to 26 options")
        return choices

    @field_validator("reference")
    @classmethod
    def _checkable(cls, reference: str | None, info: ValidationInfo) -> str | None:
        if reference is None or "type" not in info.data:
            return reference
        why = reference_error(reference, info.data["type"], info.data.get("choices"))
        if why is not None:
            raise ValueError(why)
        return reference.strip()

    def check(self, extracted: str | None) -> bool | None:
        """Whether ``extracted`` is the reference answer; ``None`` when there is no reference."""
        if self.reference is None:
            return None
        return verify(extracted, self.reference, self.type, self.choices)

    def judge(self, answer: Answer) -> AnswerVerdict:
        """An answer found, with its verdict against the reference (``None``: no reference)."""
        return AnswerVerdict(answer=answer, correct=self.check(answer.text))


class AnswerVerdict(BaseModel):
    """A search's final answer as its result shows it: what was found and by which rule (or why
    there is none), and whether it is the reference answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    answer: Answer
    correct: bool | None = Field(description="whether it is the reference answer; null: no reference given")
