"""Turning a bare prompt (OpenAI routes, evaluation harnesses) into a ``Problem``.

Harnesses send text and stop strings, not problems: the entry point is the last top-level
``def`` in the prompt unless given, the prompt counts as code to continue when it has one, and
public tests (given, or parsed from the docstring examples as for HumanEval) let test-driven
planners search.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from search.problems.loaders import parse_docstring_tests
from search.problems.problem import FunctionTest, Problem, with_kind

_DEF = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.M)


def last_function(text: str) -> str | None:
    names = _DEF.findall(text)
    return names[-1] if names else None


_FENCED = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:\n```|\Z)", re.S | re.I)


def code_in_message(text: str) -> str | None:
    """The Python function a chat message asks about: its last fenced block that defines a
    function, or the message itself when it is code.

    >>> code_in_message("Complete this:\\n```python\\ndef f(x):\\n    pass\\n```\\nThanks")
    'def f(x):\\n    pass\\n'
    >>> code_in_message("What is 2 + 2?") is None
    True
    """
    blocks = [b if b.endswith("\n") else b + "\n" for b in _FENCED.findall(text)]
    with_def = [b for b in blocks if last_function(b) is not None]
    if with_def:
        return with_def[-1]
    return text if looks_like_code(text) else None


def looks_like_code(text: str) -> bool:
    """A code prefix to continue: it defines a function and parses (with a body added)."""
    if "```" in text or last_function(text) is None:
        return False
    for candidate in (text, text.rstrip() + "\n    pass\n"):
        try:
            ast.parse(candidate)
            return True
        except SyntaxError:
            continue
    return False


def problem_from_prompt(
    prompt: str,
    entry_point: str | None = None,
    tests: Sequence[Any] | None = None,
    stop: Sequence[str] | None = None,
    is_code: bool | None = None,
    parse_examples: bool = True,
    problem_id: str | None = None,
) -> Problem:
    """A problem for a harness prompt. ``tests`` are ``TestCase`` objects/dicts or assert strings;
    without them, docstring examples of the entry point become public tests (``parse_examples``)."""
    code = looks_like_code(prompt) if is_code is None else is_code
    entry = entry_point or (last_function(prompt) if code else None)
    public: list[Any] = []
    for t in tests or []:
        public.append(FunctionTest(code=t) if isinstance(t, str) else with_kind(t))
    derived = not public and parse_examples and code and entry is not None
    if derived and entry:
        public = list(parse_docstring_tests(prompt, entry))
    pid = problem_id or "prompt-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return Problem.model_validate(
        {
            "id": pid,
            "prompt": prompt,
            "entry_point": entry,
            "prompt_is_code": code,
            "public_tests": public,
            "stop": [s for s in (stop or []) if s] or None,
            "public_tests_from": "docstring" if derived and public else "request",
        }
    )
