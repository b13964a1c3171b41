"""Extra inputs for selection by behaviour: calls found in text, and mutations of known inputs.

Nothing here evaluates code. ``entry_calls`` only parses text (the public examples, or what the
model wrote) to find the calls of the entry point; the calls are built into values in the sandbox
(``scorers/behaviour.py``). ``mutate_inputs`` works on inputs already built, plain built-in values,
and changes them by type, deterministically under a seed:

- ints: +1, -1, 0, the negative; bools: the other one; floats: +0.5, 0.0, the negative, halved;
- strings: empty, reversed, case swapped, doubled;
- lists and tuples: empty, shuffled, longer (repeated), with a duplicate, one element mutated
  (nested values mutate the same way); dicts: empty, one value mutated; sets: empty, one more.

>>> example = CallInput(args=(3, "ab"))
>>> [m.args for m in mutate_inputs([example], limit=4, seed=0)]
[(3, ''), (2, 'ab'), (3, 'ba'), (0, 'ab')]
>>> call_source("f", CallInput(args=([1.5, float("inf")],), kwargs={"k": None}))
"f([1.5, float('inf')], k=None)"
"""

from __future__ import annotations

import ast
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

MAX_CALL_CHARS = 2000  # longer lines are not parsed: a written input is a short call


@dataclass(frozen=True)
class CallInput:
    """The arguments of one call of the entry point, as plain built-in values."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def entry_calls(text: str, entry_point: str, limit: int | None = None) -> list[str]:
    """The source of every call of ``entry_point`` in ``text``, outermost first, duplicates once;
    ``text`` is parsed line by line (as Python, never run). A line that is not Python as a whole
    still gives the calls it starts with: models write a call followed by its expected result in
    prose (``f(3) -> 9``, ``f(3) ➞ 9``, ``f(3): 9``, ``f(3) => true``).

    >>> entry_calls("assert f(1) == 2\\nprint(f([1, 2]))\\nf(f(3))\\nnot python (\\nf(1)", "f")
    ['f(1)', 'f([1, 2])', 'f(f(3))']
    >>> entry_calls("f( [], 'a)' ) ➞ []\\nf(2): 18\\n1. f(3) => true\\nf(4 -> x\\ng.f(5) is x", "f")
    ["f( [], 'a)' )", 'f(2)', 'f(3)']
    """
    found: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or len(line) > MAX_CALL_CHARS or entry_point not in line:
            continue
        for source in _line_calls(line, entry_point):
            if source not in found:
                found.append(source)
        if limit is not None and len(found) >= limit:
            return found[:limit]
    return found


def entry_expectations(text: str, entry_point: str, limit: int | None = None) -> list[tuple[str, str]]:
    """The calls of ``entry_point`` in ``text`` that state the value they should return, as
    ``(call, expected)`` sources, one per call (the first stated); parsed line by line, never run.
    A model writes its tests as ``assert f(3) == 9``, ``f(3) == 9``, ``f(3)  # 9``, ``f(3) -> 9``,
    ``f(3) ➞ 9``, ``f(3) => true`` or ``f(3): 9``; a bare ``true``, ``false`` or ``null`` reads as
    Python's. An expected value that is not a Python expression, or that calls the entry point, is
    not kept. ``limit`` counts the distinct calls read, stated or not (as ``entry_calls`` does). A last line
    without its newline was cut off by the token limit, and its value may be cut too: it is skipped.

    >>> entry_expectations("assert f(1) == 2\\nf([1]) ➞ [1]\\nf(3)  # Expected output: 'a'\\nf(4)", "f")
    [('f(1)', '2'), ('f([1])', '[1]'), ('f(3)', "'a'")]
    >>> entry_expectations("f(2): 18\\nf(3) => true\\nf(2) -> 5\\nf(6) == f(5)\\nf(7) == 12", "f")
    [('f(2)', '18'), ('f(3)', 'True')]
    """
    found: dict[str, str | None] = {}
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # cut off by the token limit: its value may be cut too (``f(3) == 12`` of 123)
    for line in lines:
        line = line.strip()
        if not line or len(line) > MAX_CALL_CHARS or entry_point not in line:
            continue
        call, expected = _stated_call(line, entry_point)
        if call is not None and found.get(call) is None:
            if limit is not None and call not in found and len(found) >= limit:
                break
            found[call] = expected
    return [(call, expected) for call, expected in found.items() if expected is not None]


_STATED = re.compile(
    r"^(?:==>|=>|->|➞|→|==|:|#)\s*(?:(?:expected(?: output| result)?|output|returns?|result)\s*[:=]?\s*)?",
    re.IGNORECASE,
)
_JS_WORDS = {"true": "True", "false": "False", "null": "None", "none": "None"}


def _stated_call(line: str, name: str) -> tuple[str | None, str | None]:
    """The call a line starts with (after an optional ``assert``) and the value it states, if any."""
    body = line.removeprefix("assert ").strip()
    calls = _leading_call(body, name) if body.startswith(f"{name}(") else []
    if not calls:
        return None, None
    call = calls[0]
    rest = body[len(call) :].strip()
    stated = _STATED.match(rest)
    if stated is None:
        return call, None
    expected = rest[stated.end() :].strip().rstrip(".;,")
    expected = _JS_WORDS.get(expected.lower(), expected)
    if not expected or name in expected:
        return call, None
    try:
        ast.parse(expected, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return call, None
    return call, expected


def _line_calls(line: str, name: str) -> list[str]:
    """The outermost calls of ``name`` in a line of Python, else the call the line starts with."""
    try:
        tree = ast.parse(line)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _leading_call(line, name)
    return [s for node in _outer_calls(tree, name) if (s := ast.get_source_segment(line, node))]


def _leading_call(line: str, name: str) -> list[str]:
    """The first call of ``name`` in a line that is not Python as a whole: from each place the
    name opens a call, up to the first closing parenthesis at which the text parses as that call
    (strings and nesting are the parser's business, not counted here)."""
    opener = f"{name}("
    start = line.find(opener)
    while start != -1:
        if start == 0 or not (line[start - 1].isalnum() or line[start - 1] in "_."):
            end = line.find(")", start)
            while end != -1:
                segment = line[start : end + 1]
                try:
                    node = ast.parse(segment, mode="eval").body
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    end = line.find(")", end + 1)
                    continue
                if _calls(node, name):
                    return [segment]
                break
        start = line.find(opener, start + 1)
    return []


def _calls(node: ast.AST, name: str) -> TypeGuard[ast.Call]:
    """Whether ``node`` is a call of the plain name ``name``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _outer_calls(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    """Calls of ``name`` not nested inside another call of ``name``."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop(0)
        if _calls(node, name):
            yield node
            continue
        todo.extend(ast.iter_child_nodes(node))


def literal(x: Any) -> str:
    """Python source that evaluates to the plain value ``x`` (``repr``, with non-finite floats).

    >>> literal({"a": (1, float("nan"))}), literal(set()), literal(-0.0)
    ("{'a': (1, float('nan'))}", 'set()', '-0.0')
    """
    t = type(x)
    if t is float and not math.isfinite(x):
        return f"float('{x}')"
    if t is list:
        return "[" + ", ".join(map(literal, x)) + "]"
    if t is tuple:
        return "(" + ", ".join(map(literal, x)) + ("," if len(x) == 1 else "") + ")"
    if t is dict:
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in x.items()) + "}"
    if t in (set, frozenset):
        inner = "{" + ", ".join(map(literal, x)) + "}" if x else ""
        return (f"frozenset({inner})" if t is frozenset else inner) or "set()"
    if t is complex and not (math.isfinite(x.real) and math.isfinite(x.imag)):
        return f"complex({literal(x.real)}, {literal(x.imag)})"
    return repr(x)


def call_source(entry_point: str, call: CallInput) -> str:
    """The call of ``entry_point`` on ``call``'s arguments, as source."""
    parts = [literal(a) for a in call.args] + [f"{k}={literal(v)}" for k, v in call.kwargs.items()]
    return f"{entry_point}({', '.join(parts)})"


def mutate_inputs(examples: Sequence[CallInput], limit: int, seed: int = 0) -> list[CallInput]:
    """Up to ``limit`` inputs that change one argument of one example by its type; none equals an
    example or another mutation. The same examples and seed give the same mutations."""
    rng = random.Random(seed)
    seen = {literal((e.args, e.kwargs)) for e in examples}
    per_example: list[list[CallInput]] = []
    for example in examples:
        variants = list(_variants_of_call(example, rng))
        rng.shuffle(variants)
        per_example.append(variants)
    out: list[CallInput] = []
    # round robin over the examples, so each contributes before any contributes twice
    for round_ in range(max((len(v) for v in per_example), default=0)):
        for variants in per_example:
            if round_ < len(variants) and len(out) < limit:
                key = literal((variants[round_].args, variants[round_].kwargs))
                if key not in seen:
                    seen.add(key)
                    out.append(variants[round_])
    return out


def _variants_of_call(call: CallInput, rng: random.Random) -> Iterator[CallInput]:
    for i, arg in enumerate(call.args):
        for new in mutate_value(arg, rng):
            yield CallInput(call.args[:i] + (new,) + call.args[i + 1 :], dict(call.kwargs))
    for k, arg in call.kwargs.items():
        for new in mutate_value(arg, rng):
            yield CallInput(call.args, {**call.kwargs, k: new})


def mutate_value(x: Any, rng: random.Random, depth: int = 0) -> list[Any]:
    """Values of ``x``'s type near it (see the module's docstring); none for other types.

    >>> mutate_value(5, random.Random(0)), mutate_value("Ab", random.Random(0))
    ([6, 4, 0, -5], ['', 'bA', 'aB', 'AbAb'])
    """
    t = type(x)
    if t is bool:
        return [not x]
    if t is int:
        return [v for v in dict.fromkeys([x + 1, x - 1, 0, -x]) if v != x]
    if t is float:
        return [v for v in dict.fromkeys([x + 0.5, 0.0, -x, x / 2]) if v != x]
    if t is str:
        return [v for v in dict.fromkeys(["", x[::-1], x.swapcase(), x + x]) if v != x]
    if t in (list, tuple):
        return [t(v) for v in _sequence_variants(list(x), rng, depth)]
    if t is dict:
        out: list[Any] = [{}] if x else []
        if x and depth < 3:
            key = rng.choice(list(x))
            out += [{**x, key: v} for v in mutate_value(x[key], rng, depth + 1)[:2]]
        return out
    if t in (set, frozenset):
        out = [t()] if x else []
        ints = [v for v in x if type(v) is int]
        if ints:
            out.append(t(x | {max(ints) + 1}))
        return out
    return []


def _sequence_variants(x: list[Any], rng: random.Random, depth: int) -> list[list[Any]]:
    if not x:
        return []
    shuffled = x[:]
    rng.shuffle(shuffled)
    out = [[], shuffled, x + x, x + x[:1]]
    if depth < 3:
        i = rng.randrange(len(x))
        out += [x[:i] + [v] + x[i + 1 :] for v in mutate_value(x[i], rng, depth + 1)[:2]]
    return [v for v in out if v != x]
