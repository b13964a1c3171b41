"""Is an extracted answer the reference answer? One rule per answer type.

- ``number``: both read as numbers (``search/problems/numbers.py``), equal within a relative
  tolerance (``REL_TOL``);
- ``math``: a LaTeX or plain expression, equal as ``math-verify`` decides (numbers are compared as
  numbers first, without sympy);
- ``choice``: the same option label (``B``, ``(B)``, ``b)`` or the option's own text);
- ``string``: equal once normalised (case, spacing, quotes, a trailing period, ``\\text{}``).

>>> verify("$1,080", "1080"), verify("18.0000001", "18"), verify("17", "18")
(True, True, False)
>>> verify(r"\\frac{\\sqrt{2}}{2}", r"\\sqrt{2}/2", "math"), verify("(x+1)^2", "x^2+2x+1", "math")
(True, True)
>>> verify("(b)", "B", "choice"), verify("  Paris. ", "paris", "string"), verify(None, "18")
(True, True, False)
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal, get_args

from search.problems.numbers import parse_number

AnswerType = Literal["number", "math", "choice", "string"]
"""What kind of final answer a problem asks for."""
ANSWER_TYPES: tuple[AnswerType, ...] = get_args(AnswerType)

REL_TOL = 1e-6
"""Numbers this close (relative, or absolute near zero) are the same answer."""
MATH_TIMEOUT = 5
"""Seconds math-verify may spend on one parse or comparison (main thread only: see ``_timeout``)."""


def verify(
    extracted: str | None,
    reference: str,
    answer_type: AnswerType = "number",
    choices: Sequence[str] | None = None,
    rel_tol: float = REL_TOL,
) -> bool:
    """Whether ``extracted`` (an answer found in the model's text, ``None`` for none) is the
    ``reference`` answer for a problem asking for ``answer_type``."""
    if extracted is None or not extracted.strip():
        return False
    if answer_type == "number":
        return same_number(parse_number(extracted), parse_number(reference), rel_tol)
    if answer_type == "math":
        a, b = parse_number(extracted), parse_number(reference)
        if a is not None and b is not None:
            return same_number(a, b, rel_tol)
        return _math_equal(extracted, reference)
    if answer_type == "choice":
        label = choice_label(extracted, choices)
        return label is not None and label == choice_label(reference, choices)
    return normalize_text(extracted) == normalize_text(reference)


def same_number(a: Fraction | None, b: Fraction | None, rel_tol: float = REL_TOL) -> bool:
    """Two numbers equal within ``rel_tol`` (relative, or absolute near zero); ``None`` is no number.

    >>> same_number(Fraction(1, 3), Fraction("0.3333333")), same_number(Fraction(1, 3), Fraction("0.33"))
    (True, False)
    """
    if a is None or b is None:
        return False
    return a == b or math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=rel_tol * 1e-3)


def reference_error(
    reference: str, answer_type: AnswerType, choices: Sequence[str] | None = None
) -> str | None:
    """Why ``reference`` cannot be checked against as an ``answer_type`` answer (``None``: it can).

    >>> reference_error("eighteen", "number")
    "'eighteen' is not a number (answer_type 'number'); write it in digits, e.g. 18"
    """
    if not reference.strip():
        return "the reference answer is empty"
    if answer_type == "number" and parse_number(reference) is None:
        return f"{reference[:60]!r} is not a number (answer_type 'number'); write it in digits, e.g. 18"
    if answer_type == "math" and parse_number(reference) is None and not _parses_as_math(reference):
        return f"{reference[:60]!r} does not parse as LaTeX or an expression (answer_type 'math')"
    if answer_type == "choice" and choice_label(reference, choices) is None:
        options = f"one of {', '.join(labels(len(choices)))}" if choices else "a letter such as B"
        return f"{reference[:60]!r} is not an option (answer_type 'choice'); give {options}"
    return None


def labels(count: int) -> list[str]:
    """The option labels of ``count`` choices: A, B, C..."""
    return [chr(ord("A") + i) for i in range(count)]


_LABEL = re.compile(r"^\(?\s*(?:option\s+)?([A-Za-z])\s*[).:]?$", re.I)


def choice_label(text: str, choices: Sequence[str] | None = None) -> str | None:
    """The option label ``text`` names: a letter (``b``, ``(B)``, ``B)``, ``option B``) or the text
    of one of ``choices``; ``None`` when it names none.

    >>> choice_label("(c)"), choice_label("blue", ["red", "blue"]), choice_label("Z", ["red", "blue"])
    ('C', 'B', None)
    """
    plain = _strip_latex_text(text).strip().rstrip(".").strip()
    m = _LABEL.match(plain)
    if m is not None:
        label = m.group(1).upper()
        return label if choices is None or label in labels(len(choices)) else None
    if choices:
        wanted = normalize_text(plain)
        for label, choice in zip(labels(len(choices)), choices, strict=True):
            if normalize_text(choice) == wanted:
                return label
    return None


def normalize_text(text: str) -> str:
    """A string answer for comparison: ``\\text{}`` unwrapped, quotes, bold and a trailing period
    removed, spaces collapsed, case folded.

    >>> normalize_text(' "New  York." ')
    'new york'
    """
    t = _strip_latex_text(text).strip().strip("*").strip()
    t = t.rstrip(".").strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
        t = t[1:-1]
    return " ".join(t.split()).rstrip(".").casefold()


def _strip_latex_text(text: str) -> str:
    return re.sub(r"\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}", r"\1", text)


def _timeout() -> int | None:
    """math-verify's timeout uses ``signal.alarm``, which only the main thread may set; a search in a
    worker thread parses without it (the expressions are short: one extracted answer)."""
    return MATH_TIMEOUT if threading.current_thread() is threading.main_thread() else None


def _math_parse(text: str) -> list[Any]:
    from math_verify import parse  # sympy loads on first use, not at import

    try:
        return list(parse(f"${text}$", parsing_timeout=_timeout()))  # type: ignore[arg-type]
    except Exception:  # math-verify raises on what it cannot read; that is "no expression"
        return []


def _parses_as_math(text: str) -> bool:
    """Whether math-verify reads ``text`` as an expression (it falls back to the bare string when
    it cannot).

    >>> _parses_as_math(r"\\frac{1}{2}"), _parses_as_math(r"\\frac{")
    (True, False)
    """
    return any(not isinstance(x, str) for x in _math_parse(text))


def _math_equal(extracted: str, reference: str) -> bool:
    from math_verify import verify as math_verify

    gold, target = _math_parse(reference), _math_parse(extracted)
    if not gold or not target:
        return False
    try:
        return bool(math_verify(gold, target, timeout_seconds=_timeout()))  # type: ignore[arg-type]
    except Exception:
        return False
