"""Step segmentation for step-level search (A*-decoding): where one *step* of a partial solution ends.

A step is what one expansion adds to a state. Each granularity is a small stop condition with the
``search/limits/stops.py`` protocol (``find(text) -> cut index | None`` and ``key()``), so a step end is
just one more stop handed to ``ctx.lm.rollouts``:

- ``LineStep``: one logical line (ends after the newline of a line with non-blank content);
- ``StatementStep``: one complete Python statement: lines are added until the accumulated step,
  dedented, parses with ``ast`` (a simple statement, a bracketed multi-line expression once its
  brackets close, or a compound header together with its first body line: ``for x in y:\\n
  total += x\\n``). Dangling clauses (``else:``, ``elif``, ``except``, ``finally``) are checked
  behind a dummy ``if``/``try`` so they end too. Deeper body lines become the next steps;
- ``ChunkStep``: a blank-line-separated chunk (for reasoning text: a paragraph).

Reasoning text (an answer problem's chain of thought) is split as A*-decoding and search-and-learn
split it: a step ends at a blank line (``blank-line``, the default: a paragraph) or at every
newline (``newline``): ``reasoning_step_stop`` gives the stop, ``split_steps`` a whole text's steps.

A rollout from a state sees only its *new* text, but where a step ends depends on what came
before (a line may have started in the previous step; ``TopLevelStop`` needs the newline that
ended the previous step). ``ContextStop`` prepends the tail of the state's text (from its last
newline on) before asking the wrapped condition. All step stops take that tail as ``context``.

>>> LineStep().find("    x = 1\\n    y")
10
>>> StatementStep(context="    ").find("if x:\\n        y = 1\\n    z")
20
>>> ChunkStep().find("First idea.\\nMore.\\n\\nSecond")
19
>>> ContextStop(_TopLevel(), "    return 1\\n").find("def g():")
0
>>> split_steps("16 - 3 = 13 eggs.\\n\\n13 * 2 = 26.\\nSo \\\\boxed{26}.")
['16 - 3 = 13 eggs.\\n\\n', '13 * 2 = 26.\\nSo \\\\boxed{26}.']
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from typing import Literal

from search.limits.stops import StopCondition, TopLevelStop

StepKind = Literal["line", "statement", "chunk"]
ReasoningStep = Literal["blank-line", "newline"]
"""Where a reasoning step ends: at a blank line (a paragraph) or at every newline."""
DEFAULT_REASONING_STEP: ReasoningStep = "blank-line"
_TopLevel = TopLevelStop  # doctest alias


def context_tail(text: str) -> str:
    """The part of ``text`` a step end can depend on: from its last newline on (or all of it)."""
    i = text.rfind("\n")
    return text if i < 0 else text[i:]


class ContextStop:
    """A stop condition evaluated as if ``context`` preceded the generated text.

    The cut is returned relative to the generated text; a match that lies entirely in the context
    counts as a cut at 0 (the state was already finished).
    """

    def __init__(self, inner: StopCondition, context: str) -> None:
        self.inner = inner
        self.context = context_tail(context)

    def find(self, text: str) -> int | None:
        cut = self.inner.find(self.context + text)
        return None if cut is None else max(0, cut - len(self.context))

    def key(self) -> str:
        return f"ctx({self.context!r}):{self.inner.key()}"


class LineStep:
    """Ends after the first newline that closes a line with non-blank content."""

    def __init__(self, context: str = "") -> None:
        self.context = context_tail(context).lstrip("\n")

    def find(self, text: str) -> int | None:
        line = self.context
        for i, ch in enumerate(text):
            if ch == "\n":
                if line.strip():
                    return i + 1
                line = ""
            else:
                line += ch
        return None

    def key(self) -> str:
        return f"step:line:{self.context!r}"


_CLAUSE_GUARDS = {
    "else": "if 1:\n    pass\n",
    "elif": "if 1:\n    pass\n",
    "except": "try:\n    pass\n",
    "finally": "try:\n    pass\n",
}


def parses_as_statement(source: str) -> bool:
    """Whether ``source`` (one step, possibly indented) is a complete statement on its own."""
    body = textwrap.dedent(source)
    if not body.strip():
        return False
    first = body.lstrip().split(None, 1)[0].rstrip(":")
    guard = _CLAUSE_GUARDS.get(first, "")
    try:
        ast.parse(guard + body)
    except (SyntaxError, ValueError):
        return False
    # A lone comment or decorator parses (or nearly) but says nothing yet: require code.
    return not all(ln.strip().startswith(("#", "@")) or not ln.strip() for ln in body.splitlines())


class StatementStep:
    """Ends after the first line at which the accumulated step parses as a complete statement."""

    def __init__(self, context: str = "") -> None:
        self.context = context_tail(context).lstrip("\n")

    def find(self, text: str) -> int | None:
        start = 0
        while (i := text.find("\n", start)) >= 0:
            if parses_as_statement(self.context + text[: i + 1]):
                return i + 1
            start = i + 1
        return None

    def key(self) -> str:
        return f"step:statement:{self.context!r}"


class ChunkStep:
    """Ends after the first blank line that follows some non-blank content (a paragraph). A state
    whose text ends with a newline ends its step with the next one: that newline makes the blank
    line."""

    _blank = re.compile(r"\n[ \t]*\n")

    def __init__(self, context: str = "") -> None:
        self.started = bool(self._blank.split(context)[-1].strip())  # content since the last blank line
        self.context = context_tail(context) if self.started else ""

    def find(self, text: str) -> int | None:
        whole = self.context + text
        for m in self._blank.finditer(whole):
            if m.end() > len(self.context) and (self.started or whole[: m.start()].strip()):
                return m.end() - len(self.context)
        return None

    def key(self) -> str:
        return f"step:chunk:{self.context!r}"


def step_stop(kind: StepKind, context: str = "") -> StopCondition:
    """The step-end condition of a granularity, for a state whose text so far is ``context``."""
    if kind == "line":
        return LineStep(context)
    if kind == "statement":
        return StatementStep(context)
    if kind == "chunk":
        return ChunkStep(context)
    raise ValueError(f"unknown step kind {kind!r}: use line, statement or chunk")


def in_context(stops: Sequence[StopCondition], context: str) -> list[StopCondition]:
    """The problem's stops, evaluated as if ``context`` (the completion so far) came first."""
    return [ContextStop(s, context) for s in stops]


def reasoning_step_stop(kind: ReasoningStep, context: str = "") -> StopCondition:
    """The end of a reasoning step (``blank-line``: a paragraph; ``newline``: a line), for a state
    whose text so far is ``context``."""
    if kind == "blank-line":
        return ChunkStep(context)
    if kind == "newline":
        return LineStep(context)
    raise ValueError(f"unknown reasoning step {kind!r}: use blank-line or newline")


def split_steps(text: str, kind: ReasoningStep = DEFAULT_REASONING_STEP) -> list[str]:
    """``text`` cut into reasoning steps, each with the blank line or newline that ended it; the last
    step is what follows the last end (the steps join back into ``text``).

    >>> split_steps("a\\nb\\n\\nc", "newline"), split_steps("")
    (['a\\n', 'b\\n', '\\nc'], [])
    """
    steps: list[str] = []
    start = 0
    while start < len(text):
        cut = reasoning_step_stop(kind, text[:start]).find(text[start:])
        if not cut:
            break
        steps.append(text[start : start + cut])
        start += cut
    if start < len(text):
        steps.append(text[start:])
    return steps
