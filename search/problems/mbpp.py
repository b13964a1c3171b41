"""MBPP+ (EvalPlus's MbppPlus v0.2.0: 378 problems, Apache-2.0, ``data/mbppplus/LICENSE``) as
treedec problems, judged as EvalPlus judges them.

A problem is EvalPlus's: the prompt is the task and one assert in a docstring, the model writes the
function named ``entry_point``. Its public test is that assert; its hidden tests are every base input
(suite ``base``) and every plus input (suite ``plus``), each a call whose expected value the canonical
solution returned. EvalPlus's evaluator (``evalplus/evaluate.py`` and ``evalplus/eval/``, 0.3.1)
decides the rest, and so does this module:

- inputs are deserialised as ``evalplus/data/mbpp.py`` does (tuples, sets, complex numbers where the
  JSON holds lists and strings: ``deserialize_inputs``);
- a value passes if ``out == expected``; else, with a tolerance (the task's ``atol``, or 1e-6 from
  the first float expected value on, as EvalPlus's loop sets it), if it has the expected value's type
  and length and numpy's ``allclose`` holds;
- eight tasks compare as sets, three check only that the value is not None, and four have their
  own oracles (``Comparison`` in ``search/problems/problem.py``, decided by the judge).

Expected values are computed once, by running the canonical solution in treedec's sandbox (a
``ReferenceRunner``: the sandbox is a layer above this one, so the composition root hands one in
with ``use_reference_runner``), and kept under ``$TREEDEC_HOME/mbppplus/`` in a file named by the
data file's hash: a later load runs nothing.

>>> task_numbers("3,10-12")
[3, 11, 12]
>>> deserialize_inputs(106, [[[1], [2, 3]]])
[[[1], (2, 3)]]
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from search.problems.errors import ProblemError
from search.problems.literals import python_literal
from search.problems.problem import Comparison, FunctionTest, HiddenTime, Problem

DATA_FILE = Path(__file__).parent / "data" / "mbppplus" / "MbppPlus-v0.2.0.jsonl.gz"
SUITES = ("base", "plus")
FLOAT_ATOL = 1e-6  # EvalPlus's tolerance for float expected values when the task's atol is 0
EVALPLUS_TIME_FACTOR = 4.0  # EvalPlus: an input may take 4x the reference solution's time ...
EVALPLUS_MIN_SECONDS = 1.0  # ... and at least 1 s (evalplus/config.py)
CACHE_VERSION = 1

# EvalPlus's stop strings for a base model continuing the prompt (provider/utility.py: EOS and
# extra_eos_for_direct_completion("mbpp")), and for an answer in a chat turn (EOS and the fence)
GENERIC_STOPS = ("<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(", "\nprint(")
COMPLETION_STOPS = (*GENERIC_STOPS, '\n"""', "\nassert")
CHAT_STOPS = (*GENERIC_STOPS, "\n```\n")

# evalplus/eval/_special_oracle.py: tasks compared as sets, and tasks checked only for not-None
SET_TASKS = frozenset(
    {
        "similar_elements",
        "find_char_long",
        "common_in_nested_lists",
        "extract_singly",
        "larg_nnum",
        "intersection_array",
        "find_dissimilar",
        "Diff",
    }
)
NOT_NONE_TASKS = frozenset({"check_str", "text_match_three", "text_starta_endb"})
# a bool as it is, anything else whether it is not None (evalplus/eval/__init__.py); the reference
# run records only ``is not None`` (evalplus/gen/util/__init__.py: trusted_exec)
_NOT_NONE_CHECK = "(lambda r: r if r is True or r is False else r is not None)"
_NOT_NONE_REFERENCE = "(lambda r: r is not None)"
# A value too large to send back (Mbpp/255's largest is 1.7 million tuples) is judged by a sha256
# over its type name and the repr of each item, computed where the value is, in the sandbox: the
# program can match it only by returning the canonical solution's value (equal reprs).
DIGEST_WRAP = (
    "(lambda r, d=__import__('hashlib').sha256(): (d.update(type(r).__name__.encode()), "
    "any(d.update(repr(x).encode() + b'\\0') for x in (r if type(r) in (list, tuple) else [r])), "
    "d.hexdigest())[-1])"
)


class CallOutcome(Protocol):
    """One call of a reference run: the plain value it returned, or why it returned none."""

    @property
    def value(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def seconds(self) -> float: ...
    @property
    def too_large(self) -> bool: ...


class ReferenceRunner(Protocol):
    """Runs trusted reference programs in a sandbox: for each (program, calls) job, each call's
    outcome, in order (``sandbox/reference.py`` is treedec's)."""

    def __call__(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> Sequence[Sequence[CallOutcome]]: ...


_runner: ReferenceRunner | None = None


def use_reference_runner(runner: ReferenceRunner | None) -> None:
    """The runner a load uses when its expected values are not cached yet (set by ``api``)."""
    global _runner
    _runner = runner


# ----- the data ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _rows() -> dict[int, dict[str, Any]]:
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {task_number(r["task_id"]): r for r in rows}


@lru_cache(maxsize=1)
def data_digest() -> str:
    """The sha256 of the shipped data file (the expected values' cache is keyed by it)."""
    return hashlib.sha256(DATA_FILE.read_bytes()).hexdigest()


def task_number(task_id: str) -> int:
    return int(task_id.rsplit("/", 1)[-1])


def _range_text() -> str:
    numbers = sorted(_rows())
    return f"MBPP+ task numbers run {numbers[0]}..{numbers[-1]} ({len(numbers)} problems, not every number)"


def task_numbers(ref: str) -> list[int]:
    """The task numbers a spec's reference names: ``""`` all, ``"2"``, ``"2-100"`` (every problem
    whose number is in the range), ``"3,10-19"`` (in that order)."""
    rows = _rows()
    if not ref.strip():
        return sorted(rows)
    numbers: list[int] = []
    for part in ref.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = (int(x) for x in part.split("-"))
            inside = [n for n in sorted(rows) if lo <= n <= hi]
            if not inside:
                raise ProblemError(f"no MBPP+ problem in mbpp:{part}; {_range_text()}")
            numbers.extend(inside)
        elif part.isdigit() and int(part) in rows:
            numbers.append(int(part))
        else:
            raise ProblemError(f"no MBPP+ problem {part!r} (mbpp:{part}); {_range_text()}")
    return numbers


_TUPLE_ARGS = frozenset(
    {
        2,
        116,
        132,
        143,
        222,
        261,
        273,
        394,
        399,
        421,
        424,
        429,
        470,
        560,
        579,
        596,
        616,
        630,
        726,
        740,
        744,
        809,
    }
)


def deserialize_inputs(number: int, inputs: list[Any]) -> list[Any]:
    """A task's inputs as EvalPlus passes them (``evalplus/data/mbpp.py``: ``mbpp_deserialize_inputs``,
    Apache-2.0): where the JSON could only hold lists and strings, the tuples, sets and complex
    numbers the functions take."""
    if number in _TUPLE_ARGS:
        return [[tuple(lst) for lst in inp] for inp in inputs]
    if number in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[tuple(lst) for lst in lst_lst] for lst_lst in inp] for inp in inputs]
    if number in (75, 413, 444, 753):
        return [[[tuple(lst) for lst in inp[0]], inp[1]] for inp in inputs]
    if number in (106, 750):
        return [[inp[0], tuple(inp[1])] for inp in inputs]
    if number == 115:  # an empty list becomes {} (a dict), as there
        return [
            [[set(item) if isinstance(item, list) and len(item) else {} for item in inp[0]]] for inp in inputs
        ]
    if number == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if number in (250, 405, 446, 617, 720, 763, 808):
        return [[tuple(inp[0]), inp[1]] for inp in inputs]
    if number in (259, 401, 445):
        nested = [[[tuple(lst) for lst in lst_lst] for lst_lst in inp] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in nested]
    if number == 278:
        firsts = [[[tuple(item) if isinstance(item, list) else item for item in inp[0]]] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in firsts]
    if number == 307:
        return [[tuple(inp[0]), inp[1], inp[2]] for inp in inputs]
    if number == 722:
        return [[{key: tuple(value) for key, value in inp[0].items()}, *inp[1:]] for inp in inputs]
    if number == 252:
        return [[complex(inp[0])] for inp in inputs]
    if number in (580, 615, 791):
        return [_all_tuples(inp) for inp in inputs]
    return inputs


def _all_tuples(x: Any) -> Any:
    return tuple(_all_tuples(v) for v in x) if isinstance(x, list) else x


def call_text(entry_point: str, args: Sequence[Any], wrap: str | None = None) -> str:
    """The call of ``entry_point`` on ``args``, as the expression a test evaluates.

    >>> call_text("f", [(1, 2), float("inf")])
    "f((1, 2), float('inf'))"
    """
    call = f"{entry_point}({', '.join(python_literal(a) for a in args)})"
    return f"{wrap}({call})" if wrap else call


# ----- EvalPlus's own oracles (evalplus/eval/_special_oracle.py, Apache-2.0) ---------------------


def _surface_area(base_edge: float, height: float) -> int:
    """Mbpp/581: the height as the perpendicular distance from the base to the apex."""
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance(num1: int, num2: int) -> int:
    """Mbpp/558: the two numbers padded with zeros to the same length."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width), strict=True))


def _alternatives(entry_point: str, args: Sequence[Any]) -> list[str]:
    """Values that also pass besides the expected one (EvalPlus's special oracles)."""
    if entry_point == "sum_div":  # Mbpp/295 (not in v0.2.0; kept as EvalPlus keeps it)
        return ["0"]
    if entry_point == "surface_Area":  # Mbpp/581
        return [repr(_surface_area(*args))]
    if entry_point == "digit_distance_nums":  # Mbpp/558
        return [repr(_digit_distance(*args))]
    return []


def _match(entry_point: str) -> str:
    if entry_point == "are_equivalent":  # Mbpp/164: any value passes
        return "any"
    if entry_point in SET_TASKS:
        return "set"
    return "not_none" if entry_point in NOT_NONE_TASKS else "exact"


def is_floats(value: Any) -> bool:
    """EvalPlus's ``is_floats``: a float, or a non-empty list or tuple of floats only."""
    if isinstance(value, float):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, float) for v in value)


# ----- expected values: computed once in the sandbox, cached on disk ------------------------------


def cache_file() -> Path:
    """Where the expected values of this data file are kept (``$TREEDEC_HOME``, as every cache)."""
    home = Path(os.environ.get("TREEDEC_HOME", Path.home() / ".cache" / "treedec"))
    return home / "mbppplus" / f"expected-v{CACHE_VERSION}-{data_digest()[:16]}.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("data_sha256") != data_digest():
        return {}
    tasks = data.get("tasks")
    return tasks if isinstance(tasks, dict) else {}


def _write_cache(path: Path, tasks: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"data_sha256": data_digest(), "tasks": tasks})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".expected-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(payload)
    os.replace(tmp, path)


def _reference_calls(row: dict[str, Any]) -> list[str]:
    number, entry = task_number(row["task_id"]), row["entry_point"]
    wrap = _NOT_NONE_REFERENCE if entry in NOT_NONE_TASKS else None
    return [
        call_text(entry, args, wrap)
        for suite in SUITES
        for args in deserialize_inputs(number, row[f"{suite}_input"])
    ]


def _recorded(outcome: CallOutcome) -> dict[str, Any]:
    if outcome.error is not None:
        return {"error": outcome.error, "seconds": outcome.seconds, "too_large": outcome.too_large}
    return {
        "value": python_literal(outcome.value),
        "floats": is_floats(outcome.value),
        "seconds": outcome.seconds,
    }


def expected_outputs(rows: Sequence[dict[str, Any]], runner: ReferenceRunner | None = None) -> dict[str, Any]:
    """Each row's recorded outcomes (every base input, then every plus input), from the cache, the
    rows not there run once through ``runner`` (else the one ``use_reference_runner`` set)."""
    path = cache_file()
    tasks = _read_cache(path)
    missing = [r for r in rows if r["task_id"] not in tasks]
    if missing:
        runner = runner or _runner
        if runner is None:
            raise ProblemError(
                "MBPP+ expected values are not computed yet and no sandbox is set to compute them: "
                "load through treedec's CLI or API (import api), or pass a runner"
            )
        for start in range(0, len(missing), 64):  # kept as it goes: an interrupted first load resumes
            chunk = missing[start : start + 64]
            tasks.update(_reference_run(chunk, runner))
            _write_cache(path, tasks)
    return {r["task_id"]: tasks[r["task_id"]] for r in rows}


def _reference_run(
    rows: Sequence[dict[str, Any]], runner: ReferenceRunner
) -> dict[str, list[dict[str, Any]]]:
    """Each row's outcomes; the values too large to send back are run again as their digests."""
    programs = [r["prompt"] + r["canonical_solution"] for r in rows]
    calls = [_reference_calls(r) for r in rows]
    recorded = {
        row["task_id"]: [_recorded(o) for o in outcomes]
        for row, outcomes in zip(rows, runner(list(zip(programs, calls, strict=True))), strict=True)
    }
    large = [(row, [i for i, o in enumerate(recorded[row["task_id"]]) if o.get("too_large")]) for row in rows]
    large = [(row, where) for row, where in large if where]
    if large:
        jobs = [
            (programs[rows.index(row)], [f"{DIGEST_WRAP}({calls[rows.index(row)][i]})" for i in where])
            for row, where in large
        ]
        for (row, where), outcomes in zip(large, runner(jobs), strict=True):
            for i, outcome in zip(where, outcomes, strict=True):
                recorded[row["task_id"]][i] = {**_recorded(outcome), "digest": True}
    return recorded


# ----- problems ---------------------------------------------------------------------------------


def _public_test(prompt: str) -> FunctionTest:
    assert_line = next(line.strip() for line in prompt.splitlines() if line.strip().startswith("assert"))
    needs_math = re.search(r"\bmath\.", assert_line) is not None
    return FunctionTest(code=("import math\n" if needs_math else "") + assert_line)


def _hidden_tests(row: dict[str, Any], recorded: list[dict[str, Any]]) -> list[FunctionTest]:
    number, entry = task_number(row["task_id"]), row["entry_point"]
    match = _match(entry)
    wrap = _NOT_NONE_CHECK if match == "not_none" else None
    tests: list[FunctionTest] = []
    outcomes = iter(recorded)
    for suite in SUITES:
        atol = float(row["atol"] or 0.0)  # EvalPlus runs each suite in a loop of its own
        for args in deserialize_inputs(number, row[f"{suite}_input"]):
            outcome = next(outcomes)
            if "value" not in outcome:
                raise ProblemError(
                    f"{row['task_id']}: the canonical solution failed on a {suite} input ({outcome['error']})"
                )
            if atol == 0 and outcome["floats"]:
                atol = FLOAT_ATOL
            call = call_text(entry, args, wrap)
            if outcome.get("digest"):
                call, compare = f"{DIGEST_WRAP}({call})", Comparison()
            else:
                compare = Comparison(match=match, atol=atol, alternatives=_alternatives(entry, args))  # type: ignore[arg-type]
            tests.append(FunctionTest(call=call, expected=outcome["value"], compare=compare, suite=suite))
    return tests


def mbpp_problem(row: dict[str, Any], recorded: list[dict[str, Any]]) -> Problem:
    """One MBPP+ row as a problem, given its recorded reference outcomes."""
    return Problem(
        id=row["task_id"],
        prompt=row["prompt"],
        entry_point=row["entry_point"],
        public_tests=[_public_test(row["prompt"])],
        hidden_tests=_hidden_tests(row, recorded),
        canonical_solution=row["canonical_solution"],
        stop=list(COMPLETION_STOPS),
        hidden_time=evalplus_time(recorded),
    )


def evalplus_time(recorded: list[dict[str, Any]]) -> HiddenTime:
    """EvalPlus's time allowance from the reference's recorded seconds per input: each input
    ``max(1, 4 t)`` (the slowest one's here), the task their sum, at most 60 s, plus 2 s.

    >>> evalplus_time([{"seconds": 0.01}, {"seconds": 2.5}])
    HiddenTime(per_test=10.0, total=13.0)
    """
    allowed = [
        max(EVALPLUS_MIN_SECONDS, EVALPLUS_TIME_FACTOR * float(r.get("seconds") or 0.0)) for r in recorded
    ]
    return HiddenTime(
        per_test=max(allowed, default=EVALPLUS_MIN_SECONDS), total=min(60.0, sum(allowed)) + 2.0
    )


def mbpp_problems(ref: str = "", runner: ReferenceRunner | None = None) -> list[Problem]:
    """The problems ``mbpp:<ref>`` names (``ref`` as ``task_numbers`` reads it)."""
    rows = [_rows()[n] for n in task_numbers(ref)]
    recorded = expected_outputs(rows, runner)
    return [mbpp_problem(r, recorded[r["task_id"]]) for r in rows]
