"""``treedec run-tests PROGRAM.py --problem PROBLEM [--hidden] [--json]``: the command's logic.

``run_tests_main`` prints per-test verdicts (a rich table on a terminal, JSON with ``--json``, both
saying what bounds the execution's resources: ``resource_scope``) and returns the exit code: 0 when
every test passed, 1 when some did not, 2 for a user error (one line
on stderr, never a traceback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sandbox.display import rich_text
from sandbox.executor import ExecutionResult, Limits, SandboxUnavailable
from search.problems.problem import Problem


def _load_problem(spec: str) -> Problem:
    from search.problems.loaders import load_problem

    return load_problem(spec)


def _print_table(result: ExecutionResult, problem: Problem, hidden: bool) -> None:
    """A rich table; every text that comes from the program or the tests is shown literally."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    tests = problem.judged_tests(hidden)
    title = f"{problem.id}: {result.passed}/{result.total} passed ({result.layer} sandbox)"
    table = Table(title=rich_text(title, 200))
    for col in ("#", "test", "verdict", "detail", "s"):
        table.add_column(col)
    colours = {"passed": "green", "failed": "red"}
    for v in result.verdicts:
        detail = " ".join(x for x in (v.exc_type, v.message) if x)
        table.add_row(
            str(v.index),
            rich_text(tests[v.index].describe(), 120),
            Text(v.status, style=colours.get(v.status, "yellow")),
            rich_text(detail, 100),
            f"{v.duration:.3f}",
        )
    console = Console()
    if result.program_status != "ok":
        line = Text(result.program_status, style="red")
        line.append(": ")
        line.append(rich_text(f"{result.exc_type or ''} {result.message or ''}", 500))
        console.print(line)
    console.print(table)
    console.print(rich_text(f"resources bounded per execution: {result.resource_scope}", 100))


def run_tests_main(program_path: str, problem_spec: str, hidden: bool, as_json: bool, sandbox: str) -> int:
    """Run a program file against a problem's tests; see the module docstring for exit codes."""
    from sandbox import open_executor

    try:
        program = Path(program_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: cannot read program {program_path!r}: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 2
    try:
        problem = _load_problem(problem_spec)
    except Exception as e:  # any loader failure is the user's spec, reported in one line
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        print(f"error: cannot load problem {problem_spec!r}: {msg}", file=sys.stderr)
        return 2
    tests = problem.judged_tests(hidden)
    if not tests:
        which = "hidden" if hidden else "public"
        print(f"error: problem {problem.id!r} has no {which} tests", file=sys.stderr)
        return 2
    try:
        executor = open_executor(sandbox)
    except SandboxUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = executor.run(program, tests, Limits(), entry_point=problem.entry_point)
    if as_json:
        payload = {"problem": problem.id, "all_passed": result.all_passed, **result.model_dump()}
        print(json.dumps(payload, indent=2))
    else:
        _print_table(result, problem, hidden)
    return 0 if result.all_passed else 1
