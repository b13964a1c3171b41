"""Stop conditions: small objects that say where a continuation's text ends.

Each condition looks at the text generated so far (not the prompt) and returns the index at
which to cut it, or ``None`` to go on. ``key()`` names the condition in cache keys, so two
rollouts are only shared when they stop by the same rule.

>>> TopLevelStop().find("    return 1\\n\\ndef other():\\n")  # keeps "    return 1\\n"
13
>>> StopStrings(("\\nprint(",)).find("x = 1\\nprint(x)")
5
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class StopCondition(Protocol):
    def find(self, text: str) -> int | None: ...

    def key(self) -> str: ...


class StopStrings:
    """Cut before the first occurrence of any of the strings."""

    def __init__(self, strings: Sequence[str]) -> None:
        self.strings = tuple(s for s in strings if s)

    def find(self, text: str) -> int | None:
        hits = [i for s in self.strings if (i := text.find(s)) >= 0]
        return min(hits) if hits else None

    def key(self) -> str:
        return f"strings:{self.strings!r}"


class TopLevelStop:
    """Cut where a new top-level statement begins: a newline followed by a non-blank character.

    This ends a completion of a function body (HumanEval-style prompts) exactly where the body ends.
    """

    _pattern = re.compile(r"\n(?=[^\s])")

    def find(self, text: str) -> int | None:
        m = self._pattern.search(text)
        return m.start() if m else None

    def key(self) -> str:
        return "toplevel"


class FunctionBodyEnd:
    """Cut at the end of a function body for short lookaheads: a blank line, or a line that is no
    longer indented (AdaDec's lookahead rule)."""

    _pattern = re.compile(r"\n[ \t]*\n|\n(?=[^\s])")

    def find(self, text: str) -> int | None:
        m = self._pattern.search(text)
        return m.start() if m else None

    def key(self) -> str:
        return "bodyend"


def first_stop(text: str, stops: Sequence[StopCondition]) -> int | None:
    """The earliest cut any condition asks for."""
    cuts = [c for s in stops if (c := s.find(text)) is not None]
    return min(cuts) if cuts else None


def stops_key(stops: Sequence[StopCondition]) -> str:
    return "|".join(sorted(s.key() for s in stops))


@dataclass
class Guard:
    """When a search's model work must stop: a cancel event and/or a monotonic-clock deadline.

    A search has one (``Meter.guard()``): its planner loop checks it between steps (through the
    meter), and it is handed down to every model call as a ``GuardStop``.

    >>> Guard(deadline=time.monotonic() - 1).reason()
    'max_seconds'
    >>> Guard(threading.Event()).reason() is None
    True
    """

    cancel: threading.Event | None = None
    deadline: float | None = None

    def reason(self) -> str | None:
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_seconds"
        return None


class GuardStop:
    """A stop condition that ends a row when its search's guard trips; remembers why."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.fired: str | None = None

    def find(self, text: str) -> int | None:
        reason = self.guard.reason()
        if reason is None:
            return None
        self.fired = reason
        return len(text)

    def key(self) -> str:
        return "guard"
