"""Plain Python values written as Python expressions that evaluate back to equal values.

``repr`` nearly does it, but not for infinities and NaN (``inf`` is not a name), complex numbers
with them, or ints too long for ``repr`` (Python refuses more than 4300 decimal digits). The
judge reads an expected value back with ``ast.literal_eval``, else ``eval`` with the builtins
(``sandbox/judge.py``); the program server evaluates a call's arguments in the program.

>>> python_literal([1.5, float("inf"), (1,), {2}, set(), {"a": -0.0}])
"[1.5, float('inf'), (1,), {2}, set(), {'a': -0.0}]"
>>> eval(python_literal(complex(1, float("nan")))).imag != 0
True
"""

from __future__ import annotations

import math
from typing import Any

_MAX_DECIMAL_BITS = 13_000  # about 3900 decimal digits: below Python's 4300-digit limit


class NotPlain(TypeError):
    """A value that is not built from plain built-in types."""


def python_literal(value: Any, depth: int = 0) -> str:
    """``value`` (built from None, bool, int, float, complex, str, bytes, list, tuple, set,
    frozenset, dict, range) as a Python expression; ``NotPlain`` for anything else."""
    if depth > 100:
        raise NotPlain("a value nested more than 100 deep")
    t = type(value)
    if value is None or t in (bool, str, bytes):
        return repr(value)
    if t is int:
        return hex(value) if value.bit_length() > _MAX_DECIMAL_BITS else repr(value)
    if t is float:
        return _float(value)
    if t is complex:
        return f"complex({_float(value.real)}, {_float(value.imag)})"
    if t is list:
        return "[" + ", ".join(python_literal(v, depth + 1) for v in value) + "]"
    if t is tuple:
        inner = ", ".join(python_literal(v, depth + 1) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if t is set:
        return "{" + ", ".join(python_literal(v, depth + 1) for v in value) + "}" if value else "set()"
    if t is frozenset:
        return "frozenset(" + (python_literal(set(value), depth + 1) if value else "") + ")"
    if t is dict:
        items = (f"{python_literal(k, depth + 1)}: {python_literal(v, depth + 1)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if t is range:
        return repr(value)
    raise NotPlain(f"a {t.__name__} is not a plain value")


def _float(x: float) -> str:
    if math.isfinite(x):
        return repr(x)
    return f"float('{x}')"
