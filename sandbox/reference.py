"""Return values of a trusted reference program, run in the sandbox like any program.

A dataset whose expected values are what a canonical solution returns (MBPP+) needs those values
once. ``ReferenceRunner`` runs the program with a driver appended as one whole-program test
(``IOTest``): the driver evaluates each call, in order, in the program's namespace (so state the
program keeps between calls carries on, as in EvalPlus's ``trusted_exec``), and prints one JSON line
per call: the value in ``sandbox/wire.py``'s tagged form, or the exception, with its nanoseconds.
The host reads the lines back with ``wire``'s strict decoder: the sandbox's output is data, never
code, even from a trusted program.

>>> outcome = CallOutcome(value=[1, 2], error=None, seconds=0.01)
>>> outcome.value
[1, 2]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.executor import Executor, Limits, MiB
from sandbox.pool import Job, SandboxPool
from sandbox.wire import WireError, decode_value, parse_frame
from search.problems.problem import IOTest

# Generous: a reference run is once per problem and its values are cached; EvalPlus's own ground
# truth has no limit at all. Output: every value of every call, tagged.
REFERENCE_LIMITS = Limits(
    wall_per_test=600,
    wall_total=900,
    cpu_seconds=900,
    memory_bytes=4096 * MiB,
    output_bytes=256 * MiB,
    file_bytes=256 * MiB,
)

# Runs at the end of the program, in its namespace. Standard library only; no name it binds at the
# top level but the one function, which deletes itself before the first call.
DRIVER = r"""

def __treedec_reference_driver():
    import io, json, sys, time
    job = json.loads(sys.stdin.read())
    calls, max_chars = job["calls"], job["max_chars"]
    out = sys.stdout
    names = globals()
    del names["__treedec_reference_driver"]

    def tag(x, depth=0):
        t = type(x)
        if depth > 60:
            raise TypeError("a value nested more than 60 deep")
        if x is None or t is bool or t is str:
            return x
        if t is int:
            return x if -(1 << 62) < x < (1 << 62) else ["I", hex(x)]
        if t is float:
            return ["F", x.hex()]
        if t is list or t is tuple:
            return ["L" if t is list else "T"] + [tag(v, depth + 1) for v in x]
        if t is set or t is frozenset:
            return ["S" if t is set else "Z"] + [tag(v, depth + 1) for v in x]
        if t is dict:
            return ["D"] + [[tag(k, depth + 1), tag(v, depth + 1)] for k, v in x.items()]
        if t is bytes or t is bytearray:
            return ["B", bytes(x).hex()]
        if t is complex:
            return ["C", x.real.hex(), x.imag.hex()]
        if t is range:
            return ["R", x.start, x.stop, x.step]
        for base in (bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset):
            if isinstance(x, base):
                return tag(base(x), depth)
        raise TypeError("the call returned a %s, not a plain value" % t.__name__)

    def chars(x):  # len(repr(x)), without building the repr of a long list at once
        if type(x) in (list, tuple, set, frozenset) and len(x) > 1000:
            return sum(len(repr(v)) + 2 for v in x)
        return len(repr(x))

    for call in calls:
        sys.stdout = io.StringIO()
        start = time.perf_counter_ns()
        try:
            value = eval(call, names)
            size = chars(value)
            line = {"v": tag(value)} if size <= max_chars else {"big": size}
        except BaseException as e:
            line = {"e": "%s: %s" % (type(e).__name__, str(e)[:500])}
        line["ns"] = time.perf_counter_ns() - start
        sys.stdout = out
        out.write(json.dumps(line) + "\n")
    out.flush()


__treedec_reference_driver()
"""


@dataclass(frozen=True)
class CallOutcome:
    """One call of a reference run: the plain value it returned, or the error it raised."""

    value: Any
    error: str | None
    seconds: float
    too_large: bool = False


class ReferenceRunner:
    """Runs (program, calls) jobs in the sandbox, at most as many at once as the pool allows. A
    value whose ``repr`` is longer than ``max_chars`` is not sent back: its outcome is an error
    marked ``too_large`` (the caller may ask for a digest of it instead)."""

    def __init__(
        self,
        executor: Executor,
        limits: Limits = REFERENCE_LIMITS,
        pool: SandboxPool | None = None,
        max_chars: int = 256 * 1024,
    ) -> None:
        self.limits = limits
        self.pool = pool or SandboxPool(executor)
        self.max_chars = max_chars

    def __call__(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> list[list[CallOutcome]]:
        runs = [
            Job(
                program + DRIVER,
                [
                    IOTest(
                        stdin=json.dumps({"calls": list(calls), "max_chars": self.max_chars}),
                        expected_stdout="",
                    )
                ],
                self.limits,
            )
            for program, calls in jobs
        ]
        results = self.pool.run_many(runs)
        return [_outcomes(r, len(calls)) for r, (_, calls) in zip(results, jobs, strict=True)]


def _outcomes(result: Any, n: int) -> list[CallOutcome]:
    """The outcome of each of ``n`` calls from an execution's stdout; a call with no line (the run
    ended early) is an error saying why."""
    verdict = result.verdicts[0] if result.verdicts else None
    lines = (verdict.stdout or "").splitlines() if verdict is not None else []
    outcomes: list[CallOutcome] = []
    for line in lines[:n]:
        try:
            frame = parse_frame(line.encode())
            seconds = int(frame["ns"]) / 1e9
            if "e" in frame:
                outcomes.append(CallOutcome(None, str(frame["e"]), seconds))
            elif "big" in frame:
                error = f"the value is too large to send back ({int(frame['big'])} characters)"
                outcomes.append(CallOutcome(None, error, seconds, too_large=True))
            else:
                outcomes.append(CallOutcome(decode_value(frame["v"]), None, seconds))
        except (WireError, KeyError, TypeError, ValueError) as e:
            outcomes.append(CallOutcome(None, f"unreadable reference output: {e}", 0.0))
    why = "the reference run ended before this call"
    if verdict is not None and verdict.status != "failed":  # failed: the run finished, stdout differs
        why += f" ({verdict.status}: {verdict.exc_type or ''} {verdict.message or ''})".rstrip()
    elif result.program_status != "ok":
        why += f" ({result.program_status}: {result.message or ''})"
    outcomes.extend(CallOutcome(None, why, 0.0) for _ in range(n - len(outcomes)))
    return outcomes
