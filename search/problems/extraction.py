"""The final answer in a model's text, and the rule that found it.

Each rule is one small object that returns the answer as written, or ``None``; ``extract_answer``
tries them in order and says which one answered (``Answer.rule``):

- ``boxed``: the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included;
- ``hashes``: the last ``#### ...`` line (GSM8K's reference format);
- ``answer-is``: the last "The (final) answer is ..." or "Answer: ...";
- ``last-number``: the last number in the text (number and math answers only).

For a number answer an explicit rule must hold a number (its first number is taken when it holds
more words, as in "The answer is 18 eggs because..."); otherwise the next rule is tried. A text cut
off before its end (``complete=False``) has only what an explicit rule finished before the cut: its
last number is a step of unfinished reasoning, not an answer, so it has none ("no answer",
``Answer.found`` is false, with the reason).

>>> extract_answer(r"So $3 \\cdot 6 = 18$, and the answer is $\\boxed{18}$.")
Answer(text='18', rule='boxed', reason=None)
>>> extract_answer("She earns 2 * 9 = $18 every day.\\n#### 18").rule
'hashes'
>>> extract_answer("16 - 3 - 4 = 9 eggs, sold at $2 each: 9 * 2 = 18").text
'18'
>>> extract_answer("16 - 3 - 4 = 9 eggs, sold at $2 each: 9 * 2 =", complete=False)
Answer(text=None, rule=None, reason='cut off before an answer')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from search.problems.numbers import numbers_in, parse_number
from search.problems.verification import AnswerType

Rule = Literal["boxed", "hashes", "answer-is", "last-number", "program"]
"""Which rule found an answer: one of the text rules, or ``program`` (the value a program-aided
answer's ``solution()`` returned)."""

NO_ANSWER = "no answer in the text"
CUT_OFF = "cut off before an answer"


class Answer(BaseModel):
    """A final answer as found (``text``, as written, and the ``rule`` that found it), or none
    (``text`` is ``None`` and ``reason`` says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str | None = Field(None, description="the answer as written; null: no answer")
    rule: Rule | None = Field(None, description="the rule that found it")
    reason: str | None = Field(None, description="why there is no answer")

    @property
    def found(self) -> bool:
        return self.text is not None

    @classmethod
    def none(cls, reason: str) -> Answer:
        return cls(reason=reason)


class ExtractionRule(Protocol):
    """One way of finding the answer in a text: the answer as written, or ``None``."""

    name: Rule

    def __call__(self, text: str, complete: bool) -> str | None: ...


class Boxed:
    """The content of the last closed ``\\boxed{...}`` or ``\\fbox{...}``.

    >>> Boxed()(r"\\boxed{\\frac{1}{2}} then \\boxed{x^{2}}", True)
    'x^{2}'
    """

    name: Rule = "boxed"
    _OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")

    def __call__(self, text: str, complete: bool) -> str | None:
        found = None
        for m in self._OPEN.finditer(text):
            content = _braced(text, m.end())
            if content is not None:
                found = content
        return found.strip() if found is not None and found.strip() else None


class Hashes:
    """The rest of the last ``#### ...`` line (a cut-off text's last line may be unfinished)."""

    name: Rule = "hashes"
    _LINE = re.compile(r"^[ \t]*####[ \t]*(\S[^\n]*?)[ \t]*(\n|$)", re.M)

    def __call__(self, text: str, complete: bool) -> str | None:
        found = [m for m in self._LINE.finditer(text) if complete or m.group(2)]
        return found[-1].group(1) if found else None


class AnswerIs:
    """What follows the last "The (final) answer is" or "Answer:", up to the end of its sentence.

    >>> AnswerIs()("Hence the final answer is: **$1,200**. Done.", True)
    '$1,200'
    """

    name: Rule = "answer-is"
    _PHRASE = re.compile(
        r"(?:\bthe\s+(?:final\s+)?answer\s+is\b|^\W*(?:final\s+)?answer\s*:)\s*:?", re.I | re.M
    )
    _END = re.compile(r"\.(?=\s)|\n|(?<![\d.])\.$|$")

    def __call__(self, text: str, complete: bool) -> str | None:
        found = None
        for m in self._PHRASE.finditer(text):
            rest = text[m.end() :]
            end = self._END.search(rest)
            assert end is not None  # ``$`` always matches
            if not complete and end.start() == len(rest):
                continue  # the sentence was cut off
            answer = rest[: end.start()].strip().strip("*").strip()
            if answer:
                found = answer
        return found.rstrip(".").strip() if found else None


class LastNumber:
    """The last number in the text (only when the text ended on its own)."""

    name: Rule = "last-number"

    def __call__(self, text: str, complete: bool) -> str | None:
        if not complete:
            return None
        found = numbers_in(text)
        return found[-1] if found else None


TEXT_RULES: tuple[ExtractionRule, ...] = (Boxed(), Hashes(), AnswerIs())
NUMBER_RULES: tuple[ExtractionRule, ...] = (*TEXT_RULES, LastNumber())


def rules_for(answer_type: AnswerType) -> Sequence[ExtractionRule]:
    """The rules tried for an answer type, in order: numbers and expressions fall back to the last
    number; choices and strings need an explicit answer."""
    return NUMBER_RULES if answer_type in ("number", "math") else TEXT_RULES


def extract_answer(text: str, answer_type: AnswerType = "number", complete: bool = True) -> Answer:
    """The final answer in ``text`` by the first rule that finds one usable for ``answer_type``;
    ``complete=False`` for a text cut off (by the token limit) before its end."""
    for rule in rules_for(answer_type):
        found = rule(text, complete)
        if found is not None and answer_type == "number":
            found = _number_in(found)
        if found is not None:
            return Answer(text=found, rule=rule.name)
    return Answer.none(NO_ANSWER if complete else CUT_OFF)


def _number_in(found: str) -> str | None:
    """A number answer as written: the whole text when it is one number, else its first number."""
    if parse_number(found) is not None:
        return found
    inside = numbers_in(found)
    return inside[0] if inside else None


def _braced(text: str, start: int) -> str | None:
    """The text from ``start`` up to the brace that closes the one just before it, or ``None``."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None
