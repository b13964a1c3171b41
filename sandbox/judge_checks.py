"""What the judge compares and what it reads in a test's code (runs in the judge's sandbox).

Values by EvalPlus's rules (``evalplus_match``; plain values are compared by ``sandbox/wire.py``'s
``values_equal``, which the host shares), stdout up to trailing whitespace, HumanEval's uncalled
``check(candidate)``, and the names a test takes from the program. Standard library only: the host
ships this module into the judge's sandbox (``sandbox/protocol.py``: ``JUDGE_MODULES``).
"""

from __future__ import annotations

# _ast, not ast: ast imports enum, contextlib and collections at every judge start
import _ast
import builtins
import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Sequence
    from typing import Any

_BUILTIN_NAMES = frozenset(dir(builtins))


def parse_code(code: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse`` without importing ast."""
    return compile(code, filename, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)  # type: ignore[return-value]


def _walk(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` (``ast.walk``'s nodes, as a list)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, _ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, _ast.AST))
    return out


def evalplus_match(
    out: Any, expected: Any, match: str, atol: float, alternatives: Sequence[Any] = ()
) -> bool:
    """EvalPlus's verdict on one returned value (``evalplus/eval/__init__.py``, ``unsafe_execute``),
    for a ``Comparison`` (``search/problems/problem.py``): ``atol`` is the tolerance EvalPlus uses
    at this test (1e-6 once a float expected value was seen with the task's atol 0), computed
    by the loader. Anything that raises is a failed test, as there.

    >>> evalplus_match((5, 4), (4, 5), "set", 0.0), evalplus_match(3.0000001, 3, "exact", 0.0)
    (True, False)
    >>> evalplus_match([1.0, 2.0000001], [1.0, 2.0], "exact", 1e-6)
    True
    """
    try:
        if match == "set":
            same = set(out) == set(expected)
        elif match == "any":
            same = True
        else:  # exact, and not_none: the call already turned the value into a bool
            same = bool(out == expected) or any(_same_or_near(out, alt, atol) for alt in alternatives)
        if same:
            return True
        if atol == 0 or type(out) is not type(expected):
            return False
        if type(expected) in (list, tuple) and len(out) != len(expected):
            return False
        return allclose(out, expected, 1e-7, atol)
    except Exception:
        return False


def _same_or_near(out: Any, alternative: Any, atol: float) -> bool:
    numbers = (int, float, complex)
    if isinstance(out, numbers) and isinstance(alternative, numbers):
        return bool(abs(out - alternative) <= atol)
    return bool(out == alternative)


_INT64 = 1 << 63


def _array(x: Any, depth: int = 0) -> tuple[tuple[int, ...], list[Any]] | None:
    """(shape, flat values) of a number or a rectangular nest of lists/tuples of numbers, as numpy
    would build the array; None where numpy would not build a numeric one (strings, None, dicts,
    ragged lists, ints beyond int64 with no float beside them)."""
    if type(x) in (bool, int, float, complex):
        return (), [x]
    if type(x) not in (list, tuple) or depth > 32:
        return None
    parts = [_array(v, depth + 1) for v in x]
    if any(p is None for p in parts):
        return None
    shapes = {p[0] for p in parts if p is not None}
    if len(shapes) > 1:
        return None
    inner = shapes.pop() if shapes else ()
    return (len(x), *inner), [v for p in parts if p is not None for v in p[1]]


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):  # noqa: B905  (the judge may run on Python 3.8)
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _flat_index(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    """The position in a flat array of ``shape`` (broadcast to ``index``'s rank) of ``index``."""
    index = index[len(index) - len(shape) :] if shape else ()
    flat = 0
    for i, size in zip(index, shape):  # noqa: B905
        flat = flat * size + (0 if size == 1 else i)
    return flat


def _isclose(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return False
    if any(isinstance(v, float) and math.isinf(v) for v in (a, b)):
        return bool(a == b)
    return bool(abs(a - b) <= atol + rtol * abs(b))


def allclose(a: Any, b: Any, rtol: float, atol: float) -> bool:
    """``numpy.allclose(a, b, rtol, atol)`` on plain values, without numpy (not in the judge's
    sandbox): broadcasting, infinities equal to themselves, NaN never close; False where numpy
    would raise.

    >>> allclose([1.0, 2.0], [1.0, 2.0 + 1e-9], 1e-7, 0.0), allclose([[1.0, 1.0]], [[1.0]], 0, 0)
    (True, True)
    >>> allclose(["a"], ["a"], 1e-7, 1e-6)
    False
    """
    x, y = _array(a), _array(b)
    if x is None or y is None:
        return False
    if any(type(v) is int and not -_INT64 <= v < _INT64 for v in x[1] + y[1]):
        if not any(type(v) in (float, complex) for v in x[1] + y[1]):
            return False  # numpy makes an object array, and isclose refuses it
    shape = _broadcast(x[0], y[0])
    if shape is None:
        return False
    size = 1
    for n in shape:
        size *= n
    for flat in range(size):
        index, rest = [], flat
        for n in reversed(shape):
            index.append(rest % n)
            rest //= n
        where = tuple(reversed(index))
        if not _isclose(x[1][_flat_index(where, x[0])], y[1][_flat_index(where, y[0])], rtol, atol):
            return False
    return True


def short_repr(x: Any, limit: int = 200) -> str:
    try:
        r = repr(x)
    except ValueError:  # an int too long for repr
        r = f"<{type(x).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def normalize_stdout(text: str) -> str:
    """Stdout up to trailing whitespace on each line (and trailing blank lines).

    >>> normalize_stdout("1 \\n2\\n\\n")
    '1\\n2'
    """
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def needs_check_call(code: str) -> bool:
    """HumanEval-style test code defines ``check(candidate)`` without calling it."""
    try:
        tree = parse_code(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return tree_needs_check_call(tree)


def tree_needs_check_call(tree: ast.Module) -> bool:
    defines = any(isinstance(n, _ast.FunctionDef) and n.name == "check" for n in tree.body)
    calls = any(
        isinstance(n, _ast.Expr)
        and isinstance(n.value, _ast.Call)
        and isinstance(n.value.func, _ast.Name)
        and n.value.func.id == "check"
        for n in tree.body
    )
    return defines and not calls


def program_names(tree: ast.AST) -> set[str]:
    """Names a test reads but neither binds nor gets from the builtins: it takes them from the program."""
    loads: set[str] = set()
    bound: set[str] = set()
    for n in _walk(tree):
        if isinstance(n, _ast.Name):
            (loads if isinstance(n.ctx, _ast.Load) else bound).add(n.id)
        elif isinstance(n, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, _ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (_ast.Import, _ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)
    return loads - bound - _BUILTIN_NAMES
