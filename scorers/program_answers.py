"""Program-aided answers: the value a completion's ``solution()`` returns, run in the sandbox.

In the ``program-aided`` prompt style the model writes a function ``solution()`` in a code fence;
its return value is the answer. The code runs in the process sandbox through the same executor
and judge as any program, as one stdin/stdout test: after the model's code, a few lines call
``solution()`` and write its value (``str``, JSON-quoted) on a line of its own after ``MARKER``.
Only that line is read back, from the stdout the judge returns; the program never sees a reference
answer, so whatever it prints is at most its own answer. An exception, a timeout, the memory limit,
code that does not compile, no ``solution()``, or a ``None`` return is no answer, with the reason.

>>> answer = program_answer("def solution():\\n    return 16 - 3 - 4\\n", open_executor())  # doctest: +SKIP
>>> answer.text, answer.rule  # doctest: +SKIP
('9', 'program')
"""

from __future__ import annotations

import json
import re

from sandbox.executor import ExecutionResult, Executor, Limits
from search.problems.extraction import Answer
from search.problems.problem import IOTest, answer_code

MARKER = "<<treedec-answer>>"
"""Starts the line that carries ``solution()``'s value."""
ANSWER_LIMITS = Limits(wall_per_test=5.0, wall_total=10.0)
"""What one program-aided answer may use: a grade-school solution runs in milliseconds."""

_DRIVER = f"""

def __treedec_report_answer():
    import json, sys
    value = solution()
    text = None if value is None else str(value)
    sys.stdout.write("\\n" + {MARKER!r} + json.dumps(text) + "\\n")
    sys.stdout.flush()


__treedec_report_answer()
"""
_DEFINES_SOLUTION = re.compile(r"^[ \t]*(?:async\s+)?def\s+solution\s*\(", re.M)


def answer_program(completion: str) -> str | None:
    """The program run for a program-aided completion (the text after the opened fence): its code,
    then the lines that report ``solution()``'s value; ``None`` when it defines no ``solution()``.

    >>> answer_program("def solution():\\n    return 2\\n```\\nIt returns 2.").startswith("def solution():")
    True
    >>> answer_program("The answer is 2.") is None
    True
    """
    code = answer_code(completion)
    if not _DEFINES_SOLUTION.search(code):
        return None
    return code.rstrip() + "\n" + _DRIVER


def program_answer(completion: str, executor: Executor, limits: Limits = ANSWER_LIMITS) -> Answer:
    """The answer a program-aided completion's ``solution()`` returns when the sandbox runs it, or
    no answer and why."""
    program = answer_program(completion)
    if program is None:
        return Answer.none("the code defines no solution()")
    result = executor.run(program, [IOTest(stdin="", expected_stdout="")], limits)
    return answer_of(result)


def answer_of(result: ExecutionResult) -> Answer:
    """The reported answer in an execution's result, or why there is none."""
    if result.program_status != "ok" or not result.verdicts:
        what = "does not compile" if result.compile_error else "did not run"
        return Answer.none(_why(f"the program {what}", result.exc_type, result.message))
    verdict = result.verdicts[0]
    if verdict.status not in ("passed", "failed"):  # failed: its stdout is not the empty expected one
        return Answer.none(_why(f"solution() ended in {verdict.status}", verdict.exc_type, verdict.message))
    reported = [line for line in (verdict.stdout or "").split("\n") if line.startswith(MARKER)]
    if not reported:
        return Answer.none("the program ended before reporting solution()'s value")
    try:
        text = json.loads(reported[-1][len(MARKER) :])
    except ValueError:
        return Answer.none("the program's answer line is not readable")
    if not isinstance(text, str) or not text.strip():
        return Answer.none("solution() returned None" if text is None else "solution() returned nothing")
    return Answer(text=text.strip(), rule="program")


def _why(what: str, exc_type: str | None, message: str | None) -> str:
    lines = (message or "").strip().splitlines()
    detail = ": ".join(x for x in (exc_type, lines[-1] if lines else None) if x)
    return f"{what} ({detail[:200]})" if detail else what
