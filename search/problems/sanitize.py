"""EvalPlus's sanitizer (``evalplus/sanitize.py``, 0.3.1, Apache-2.0) on Python's ``ast``: the
program EvalPlus runs for a chat model's answer.

EvalPlus takes the longest run of lines that parses, then keeps its imports, then the first
definition of each name (classes; functions that contain a ``return``; plain assignments; not
decorated ones) that the entry point reaches through the names it uses; tests, prints and
``__main__`` blocks go. When nothing is kept it falls back to the longest run of lines that parses.

>>> answer = "import re\\ndef f(x):\\n    return g(x)\\ndef g(x):\\n    return x\\nprint(f(1))\\n"
>>> print(sanitize(answer, "f"))
import re
def f(x):
    return g(x)
def g(x):
    return x
"""

from __future__ import annotations

import ast
from functools import lru_cache


def longest_parsing_lines(text: str) -> str:
    """The run of lines that parses with the most non-blank lines (EvalPlus's ``code_extract``)."""
    lines = text.split("\n")
    if _parses(text):
        return text
    best, best_count = (0, 0), 0
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            block = lines[i : j + 1]
            count = sum(1 for line in block if line.strip())
            if count > best_count and _parses("\n".join(block)):
                best, best_count = (i, j), count
    return "\n".join(lines[best[0] : best[1] + 1])


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _names_in(node: ast.AST) -> set[str]:
    """Every identifier under ``node`` (tree-sitter's ``identifier`` nodes: names, attributes,
    parameters, keywords)."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.keyword) and n.arg:
            names.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
    return names


def _returns(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Return) for n in ast.walk(node))


def _assigned_name(node: ast.Assign | ast.AnnAssign) -> str | None:
    target = node.targets[0] if isinstance(node, ast.Assign) else node.target
    return target.id if isinstance(target, ast.Name) else None


def _reachable(entry_point: str, deps: dict[str, set[str]]) -> set[str]:
    seen, todo = {entry_point}, [entry_point]
    while todo:
        for name in deps.get(todo.pop(0), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


@lru_cache(maxsize=4096)
def sanitize(text: str, entry_point: str | None = None) -> str:
    """The program EvalPlus would run for ``text`` (a model's answer) with this entry point."""
    code = longest_parsing_lines(text)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    lines = code.split("\n")

    def source(node: ast.stmt) -> str:  # the statement's own span (ast's columns count UTF-8 bytes)
        segment = lines[node.lineno - 1 : node.end_lineno]
        if node.end_col_offset is not None and segment:
            segment[-1] = segment[-1].encode()[: node.end_col_offset].decode(errors="ignore")
        return "\n".join(segment)

    imports: list[ast.stmt] = []
    definitions: list[tuple[str, ast.stmt]] = []
    seen: set[str] = set()
    for node in tree.body:
        name: str | None = None
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
            continue  # tree-sitter calls it a decorated_definition, which EvalPlus does not keep
        if isinstance(node, ast.ClassDef) or (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _returns(node)
        ):
            name = node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            name = _assigned_name(node)
        if name is not None and name not in seen:
            definitions.append((name, node))
            seen.add(name)
    keep = {name for name, _ in definitions}
    if entry_point:
        keep = _reachable(entry_point, {name: _names_in(node) for name, node in definitions})
    parts = [source(n) for n in imports] + [source(n) for name, n in definitions if name in keep]
    sanitized = "\n".join(parts).strip()
    return sanitized or code
