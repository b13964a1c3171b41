"""The layers point one way: search < sandbox, scorers < planners < api (docs/architecture.md).

Every module of the five packages is parsed (``ast``, so nothing is imported or run) and each of
its imports, at the top or inside a function, is an edge from its package to the imported one.
Only the edges below may exist, and the packages may form no cycle. The same holds one floor down,
between the rooms (sub-packages and top-level modules) of ``search/`` and ``api/``.
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


def layered(*rooms: str) -> dict[str, set[str]]:
    """Rooms in order, lowest first: each may import the rooms before it.

    >>> rooms = layered("a", "b", "c")
    >>> rooms["a"], rooms["b"], sorted(rooms["c"])
    (set(), {'a'}, ['a', 'b'])
    """
    return {room: set(rooms[:i]) for i, room in enumerate(rooms)}


# package -> its rooms (sub-packages, or a module at the package's top) -> the rooms they may import
ROOMS: dict[str, dict[str, set[str]]] = {
    "search": layered("limits", "problems", "model", "cache", "state"),
    "api": {
        **layered("core", "jobs", "http", "cli"),
        "harness": {"core"},  # api/harness.py: the lm-eval plugin users import
        "lm_eval_tasks": set(),  # the offline lm-eval task: data and scoring only
    },
}
ROOMS["api"]["cli"].add("harness")  # `treedec eval --harness` runs the plugin

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


def room_of(package: str, module: str, name: str | None = None) -> str | None:
    """The room of ``module`` inside ``package`` (None for the package itself). For ``from
    package import name`` the room is ``name``.

    >>> room_of("api", "api.jobs.queue"), room_of("api", "api.harness"), room_of("api", "api", "cli")
    ('jobs', 'harness', 'cli')
    """
    parts = module.split(".")
    if len(parts) > 1:
        return parts[1]
    return name


def room_violations(package: str, module: str, source: str) -> list[str]:
    """Imports of ``module`` that point to a room of its own package it may not use."""
    rooms = ROOMS.get(package)
    room = room_of(package, module)
    if rooms is None or room is None or room == "__init__":
        return []
    if room not in rooms:
        return [f"{module} is in no room of {package}/ (add {room!r} to ROOMS)"]
    bad = []
    for target, name in imports(source):
        if target.split(".")[0] != package:
            continue
        other = room_of(package, target, name)
        if other is None or other == room:
            continue
        if other not in rooms[room]:
            bad.append(f"{module} imports {target} ({package}.{room} may not import {package}.{other})")
    return bad


def room_graph(package: str) -> dict[str, set[str]]:
    """The rooms of ``package`` that hold a module, each with the rooms its modules import."""
    graph: dict[str, set[str]] = {}
    for pkg, module, path in package_modules():
        room = room_of(pkg, module)
        if pkg != package or room is None or room == "__init__":
            continue
        graph.setdefault(room, set())
        for target, name in imports(path.read_text(encoding="utf-8")):
            other = room_of(package, target, name) if target.split(".")[0] == package else None
            if other is not None and other != room:
                graph[room].add(other)
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


def test_every_room_imports_only_the_rooms_below_it() -> None:
    modules = [m for m in package_modules() if m[0] in ROOMS]
    bad = [v for package, module, path in modules for v in room_violations(package, module, path.read_text())]
    assert bad == []


@pytest.mark.parametrize("package", sorted(ROOMS))
def test_the_rooms_of_a_package_form_no_cycle(package: str) -> None:
    graph = room_graph(package)
    assert set(graph) == set(ROOMS[package])  # every room holds modules and no module is roomless
    assert find_cycle(graph) is None


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("api.jobs.queue_store", "from api.http.errors import APIError\n"),
        ("api.jobs.queue", "def f():\n    from api.http.server import create_app\n"),
        ("api.core.engine", "from api.jobs.backend import JobView\n"),
        ("api.http.server", "from api import cli\n"),
        ("api.harness", "from api.jobs.local import JobManager\n"),
        ("search.limits.budget", "from search.state.context import SearchContext\n"),
        ("search.model.lm", "import search.cache.store\n"),
        ("search.cache.store", "from search.state.tree import Tree\n"),
    ],
)
def test_an_upward_import_between_rooms_is_caught(module: str, source: str) -> None:
    assert room_violations(module.split(".")[0], module, source) != []


def test_imports_down_and_inside_a_room_pass() -> None:
    assert room_violations("api", "api.http.server", "from api.jobs.queue import RedisJobManager\n") == []
    assert room_violations("api", "api.cli.app", "from api.harness import run_harness_cli\n") == []
    assert room_violations("api", "api.jobs.worker", "from api.jobs.queue import QUEUE_NAME\n") == []
    assert room_violations("search", "search.state.context", "from search.cache.store import Cache\n") == []
    assert room_violations("search", "search.cache.store", "import torch\nfrom planners import base\n") == []


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
