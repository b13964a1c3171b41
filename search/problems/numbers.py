"""Numbers as answers write them: ``$1,200``, ``18 eggs``, ``25%``, ``3/4``, ``1 1/2``, ``\\frac{3}{4}``.

``parse_number`` reads one number written alone (with its currency sign, unit or percent sign) as
an exact ``Fraction``; ``NUMBER`` finds numbers inside running text. A percent sign is dropped
(``25%`` is 25), as GSM8K writes percentages as plain numbers.

>>> parse_number("$1,200.50")
Fraction(2401, 2)
>>> parse_number("18 eggs"), parse_number("25%"), parse_number("1 1/2"), parse_number(r"\\frac{3}{4}")
(Fraction(18, 1), Fraction(25, 1), Fraction(3, 2), Fraction(3, 4))
>>> parse_number("18 and 20") is None, parse_number("1,2") is None
(True, True)
"""

from __future__ import annotations

import re
from fractions import Fraction

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+"
NUMBER = re.compile(rf"(?<![\w.])-?\$?\s?(?:\d+\s+\d+/\d+|\d+/\d+|{_DIGITS})(?![\w])")
"""A number inside running text: a sign, a dollar sign, digits with thousands commas, decimals,
an exponent, or a fraction ``a/b`` / mixed number ``1 1/2``."""

_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[,!;: ]|\\left|\\right|\{,\}|\\\$|\\%")
_ALONE = re.compile(
    r"""^(?:[A-Za-z]\w*\s*=\s*|=\s*)?              # a leading "x = "
    (?P<sign>[-+]?)\s*(?:\$|USD|US\$)?\s*(?P<sign2>[-+]?)\s*
    (?P<num>\d+\s+\d+/\d+|[-+]?\d+(?:\.\d+)?\s*/\s*[-+]?\d+(?:\.\d+)?|"""
    + _DIGITS
    + r""")
    \s*(?:%|percent\b)?                            # a percent sign, dropped
    (?P<unit>[^=]*)$                               # a unit or trailing words
    """,
    re.X,
)


def parse_number(text: str) -> Fraction | None:
    """The number ``text`` writes on its own (units, currency and percent sign allowed), exactly;
    ``None`` when it is not one number."""
    t = _clean(text)
    m = _ALONE.match(t)
    if m is None or not _plain_unit(m.group("unit")):
        return None
    negative = (m.group("sign") == "-") != (m.group("sign2") == "-")
    value = _value(m.group("num"))
    if value is None:
        return None
    return -value if negative else value


def _clean(text: str) -> str:
    t = text.strip().replace("\u2212", "-").replace("\u2013", "-")
    t = _TEXT.sub(lambda m: m.group(1), t)
    t = _FRAC.sub(lambda m: f"{m.group(1)}/{m.group(2)}", t)
    t = _LATEX_NOISE.sub(lambda m: {"\\$": "$", "\\%": "%"}.get(m.group(0), ""), t)
    t = t.strip().strip("$").strip() if t.count("$") >= 2 else t  # $...$ math delimiters
    return t.rstrip(".").strip()


def _plain_unit(unit: str) -> bool:
    """Words after the number (``eggs``, ``cm^2``, ``per hour``), not an operator or another value."""
    unit = re.sub(r"\^\{?\d\}?", "", unit.strip())  # cm^2
    return not unit or re.fullmatch(r"[A-Za-z\u00b0][A-Za-z\s./\u00b2\u00b3'-]*", unit) is not None


def _value(num: str) -> Fraction | None:
    num = num.replace(",", "").strip()
    try:
        if " " in num and "/" in num:  # a mixed number: 1 1/2
            whole, frac = num.split(None, 1)
            return Fraction(whole) + Fraction(frac.replace(" ", ""))
        if "/" in num:
            top, bottom = (Fraction(x.strip()) for x in num.split("/"))
            return top / bottom if bottom else None
        return Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_in(text: str) -> list[str]:
    """The numbers written in running text, in order, as written.

    >>> numbers_in("She paid $1,200 for 3 chairs, 1/2 off: 600.")
    ['$1,200', '3', '1/2', '600']
    """
    return [m.group(0).strip() for m in NUMBER.finditer(text)]
