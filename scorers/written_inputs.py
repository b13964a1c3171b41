"""Inputs the model writes from the prompt: a short greedy generation of calls of the entry point.

The model is asked (in its chat template when it has one) for ``n`` calls that test the function,
with the answer prefilled up to the first call's name, so it writes calls rather than prose. What it
writes is untrusted code: it is only *parsed* here (``scorers/inputs.py``: ``entry_calls``), and the
calls are built into values in the sandbox (``scorers/behaviour.py``). The generated tokens are
charged to whatever meters ``lm`` (a search's ``MeteredLM``) and returned in ``tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scorers.inputs import entry_calls, entry_expectations
from search.limits.stops import StopStrings
from search.model.lm import GenerationParams, LanguageModel
from search.problems.problem import Problem

FENCE = "```"


@dataclass(frozen=True)
class WrittenInputs:
    """The calls parsed out of the model's text, the values it stated for some of them
    (``(call, expected)`` sources), the text itself and the tokens it cost."""

    calls: list[str]
    text: str
    tokens: int
    stated: list[tuple[str, str]] = field(default_factory=list)


def input_request(problem: Problem, n: int) -> str:
    """The user turn asking for ``n`` test calls of the problem's entry point.

    >>> p = Problem(id="t", prompt="def f(x):\\n    '''Double x.'''\\n", entry_point="f")
    >>> print(input_request(p, 3).splitlines()[-1])
    Write 3 different calls of `f` that test it, edge cases included, one per line, nothing else.
    """
    return (
        "Here is a Python function to test:\n"
        f"{FENCE}python\n{problem.prompt.rstrip()}\n{FENCE}\n"
        f"Write {n} different calls of `{problem.entry_point}` that test it, edge cases included, "
        "one per line, nothing else."
    )


def writing_prefix(lm: LanguageModel, problem: Problem, n: int) -> str:
    """The text the model continues: the request in its chat template with a code block opened at
    the first call, else the prompt followed by a comment and the first call."""
    entry = problem.entry_point or ""
    chat = lm.chat_text([{"role": "user", "content": input_request(problem, n)}])
    if chat is not None:
        return f"{chat}{FENCE}python\n{entry}("
    return f"{problem.prompt.rstrip()}\n        pass\n\n\n# {n} calls that test {entry}:\n{entry}("


def write_inputs(lm: LanguageModel, problem: Problem, n: int, max_new_tokens: int = 160) -> WrittenInputs:
    """Ask ``lm`` for ``n`` calls of the entry point (greedy, up to ``max_new_tokens`` tokens) and
    parse them; a problem without an entry point gets none and costs nothing."""
    if not problem.entry_point or n < 1:
        return WrittenInputs([], "", 0)
    prefix = writing_prefix(lm, problem, n)
    params = GenerationParams(max_new_tokens=max_new_tokens)
    rollout = lm.rollouts([lm.encode(prefix)], params, [StopStrings([FENCE])])[0]
    text = f"{problem.entry_point}(" + rollout.text
    entry = problem.entry_point
    calls, stated = entry_calls(text, entry, limit=n), entry_expectations(text, entry, limit=n)
    return WrittenInputs(calls, text, len(rollout.token_ids), stated)
