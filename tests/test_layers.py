"""The layers point one way: search < sandbox, scorers < planners < api (docs/architecture.md).

Every module of the five packages is parsed (``ast``, so nothing is imported or run) and each of
its imports, at the top or inside a function, is an edge from its package to the imported one.
Only the edges below may exist, and the packages may form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("search", "sandbox", "scorers", "planners", "api")

# package -> the packages its modules may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "search": set(),
    "sandbox": {"search"},
    "scorers": {"search", "sandbox"},
    "planners": {"search", "sandbox", "scorers"},
    "api": {"search", "sandbox", "scorers", "planners"},
}

# sandbox runs programs against tests: of search/ it may see the test types only
SANDBOX_MAY_USE = {"search.problems.problem": {"FunctionTest", "IOTest", "TestCase"}}


def imports(source: str) -> list[tuple[str, str | None]]:
    """(module, name) for every import in ``source``: ``import a.b`` gives ("a.b", None),
    ``from a.b import c`` gives ("a.b", "c"). Relative imports are not used in treedec.

    >>> imports("import planners\\nfrom search.model.lm import TokenDist")
    [('planners', None), ('search.model.lm', 'TokenDist')]
    """
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.extend((node.module, alias.name) for alias in node.names)
    return out


def violations(package: str, module: str, source: str) -> list[str]:
    """Imports of ``module`` (in ``package``) that point to a layer it may not use."""
    bad = []
    for target, name in imports(source):
        top = target.split(".")[0]
        if top not in PACKAGES or top == package:
            continue
        if top not in ALLOWED[package]:
            bad.append(f"{module} imports {target} ({package} may not import {top})")
        elif package == "sandbox" and name not in SANDBOX_MAY_USE.get(target, set()):
            bad.append(f"{module} imports {target}.{name} (sandbox may use only the test types)")
    return bad


def package_modules() -> list[tuple[str, str, Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out.append((package, module, path))
    return out


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for package, _, path in package_modules():
        for target, _ in imports(path.read_text(encoding="utf-8")):
            top = target.split(".")[0]
            if top in PACKAGES and top != package:
                graph[package].add(top)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None.

    >>> find_cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
    >>> find_cycle({"a": {"b"}, "b": set()}) is None
    True
    """
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [node, nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, stack + [node])) is not None:
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])) is not None:
            return cycle
    return None


def test_every_package_imports_only_the_layers_below_it() -> None:
    modules = package_modules()
    assert len(modules) > 40  # the walk found the packages
    bad = [v for package, module, path in modules for v in violations(package, module, path.read_text())]
    assert bad == []


def test_the_packages_form_no_cycle() -> None:
    assert find_cycle(package_graph()) is None


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("search", "import planners\n"),
        ("search", "def f():\n    from api.core.engine import Engine\n"),
        ("scorers", "from planners.astar import AStar\n"),
        ("sandbox", "from search.state.context import SearchContext\n"),
        ("sandbox", "from search.problems.problem import Problem\n"),
        ("planners", "import api\n"),
    ],
)
def test_an_upward_import_is_caught(package: str, source: str) -> None:
    assert violations(package, f"{package}.example", source) != []


def test_allowed_imports_pass() -> None:
    assert (
        violations("sandbox", "sandbox.x", "from search.problems.problem import FunctionTest, IOTest\n") == []
    )
    assert violations("planners", "planners.x", "from scorers.prm import CodeAwareScorer\n") == []
    assert violations("search", "search.x", "import torch\nfrom search.model.lm import Rollout\n") == []
