"""Which problems of a dataset a spec names: ``3``, ``10-19``, ``3,10-19`` (in that order).

>>> index_list("3,10-12", 20, "gsm8k")
[3, 10, 11, 12]
>>> index_list("25", 20, "gsm8k")
Traceback (most recent call last):
...
search.problems.errors.ProblemError: no gsm8k problem 25: use gsm8k:0 .. gsm8k:19
"""

from __future__ import annotations

import re

from search.problems.errors import ProblemError

_ONE = re.compile(r"\d+")
_RANGE = re.compile(r"(\d+)-(\d+)")


def index_list(ref: str, count: int, name: str) -> list[int]:
    """The indices ``ref`` names among ``count`` problems of the dataset called ``name`` in specs;
    a part that is not a number or range, an index past the end or an empty range is refused."""
    indices: list[int] = []
    for part in (p.strip() for p in ref.split(",")):
        if _ONE.fullmatch(part):
            indices.append(_checked(int(part), count, name))
        elif m := _RANGE.fullmatch(part):
            lo, hi = _checked(int(m.group(1)), count, name), _checked(int(m.group(2)), count, name)
            if hi < lo:
                raise ProblemError(f"{name}:{part} is an empty range: write the lower index first")
            indices.extend(range(lo, hi + 1))
        else:
            raise ProblemError(
                f"{name}:{ref} names no problems: write an index (3), a range (10-19) or a list (3,10-19)"
            )
    return indices


def _checked(i: int, count: int, name: str) -> int:
    if not 0 <= i < count:
        raise ProblemError(f"no {name} problem {i}: use {name}:0 .. {name}:{count - 1}")
    return i
