"""What the judge compares and what it reads in a test's code (runs in the judge's sandbox).

Stdout up to trailing whitespace (values are compared by ``sandbox/wire.py``'s ``values_equal``,
which the host shares), HumanEval's uncalled
``check(candidate)``, and the names a test takes from the program. Standard library only: the host
ships this module into the judge's sandbox (``sandbox/protocol.py``: ``JUDGE_MODULES``).
"""

from __future__ import annotations

# _ast, not ast: ast imports enum, contextlib and collections at every judge start
import _ast
import builtins

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
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
