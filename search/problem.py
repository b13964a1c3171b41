"""Problem and test-case types: the one shape every loader produces and every planner consumes.

A problem carries **public tests** (the search may run them) and **hidden tests** (only for
evaluation; a planner never sees them). Two test formats exist:

- ``FunctionTest``: either assert-style Python (``code``, statements that raise on failure), or a
  call and its expected value as Python expressions (``call`` / ``expected``), compared with ``==``
  (floats within 1e-6).
- ``IOTest``: a whole program fed ``stdin``; its stdout must equal ``expected_stdout`` up to
  trailing whitespace on each line.

The program that is run is ``problem.program(completion)``: for completion-style problems
(HumanEval) the prompt is code and the completion continues it; for generation-style problems
(APPS) the completion alone is the program.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FunctionTest(BaseModel):
    """A test of a function: assert-style ``code``, or ``call`` with its ``expected`` value.

    >>> FunctionTest(call="add(1, 2)", expected="3").describe()
    'add(1, 2) == 3'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["function"] = "function"
    code: str | None = None
    call: str | None = None
    expected: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FunctionTest:
        has_code = bool(self.code and self.code.strip())
        has_call = self.call is not None and self.expected is not None
        if has_code == has_call:
            raise ValueError("a function test needs either 'code' or both 'call' and 'expected'")
        return self

    def describe(self) -> str:
        if self.code is not None:
            return self.code.strip().splitlines()[0][:120]
        return f"{self.call} == {self.expected}"


class IOTest(BaseModel):
    """A stdin/stdout test of a whole program."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["io"] = "io"
    stdin: str = ""
    expected_stdout: str

    def describe(self) -> str:
        first = self.stdin.strip().splitlines()[0] if self.stdin.strip() else ""
        return f"stdin {first[:60]!r} -> {self.expected_stdout.strip()[:60]!r}"


TestCase = Annotated[FunctionTest | IOTest, Field(discriminator="kind")]


def tests_hash(tests: list[FunctionTest | IOTest]) -> str:
    """A stable hash of a list of tests (for cache keys)."""
    payload = json.dumps([t.model_dump() for t in tests], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Problem(BaseModel):
    """One task: a prompt, where the answer goes, and the tests that judge it."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    prompt: str
    entry_point: str | None = None
    language: Literal["python"] = "python"
    prompt_is_code: bool = True
    public_tests: list[TestCase] = Field(default_factory=list)
    hidden_tests: list[TestCase] = Field(default_factory=list)
    canonical_solution: str | None = None
    stop: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Problem:
        if not self.prompt.strip():
            raise ValueError("prompt is empty: give the code or the task text the model should continue")
        uses_functions = any(t.kind == "function" for t in self.public_tests + self.hidden_tests)
        if uses_functions and not self.entry_point:
            raise ValueError("function tests need an 'entry_point' (the function's name)")
        return self

    def program(self, completion: str) -> str:
        """The program that is executed for a completion."""
        return self.prompt + completion if self.prompt_is_code else completion

    def solution_text(self) -> str | None:
        """The full canonical program, if the problem has one."""
        if self.canonical_solution is None:
            return None
        return self.program(self.canonical_solution)
