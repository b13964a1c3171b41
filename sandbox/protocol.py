"""Host side of the harness protocol, shared by every backend: requests, verdicts, restarts.

A backend only has to start the harness (``sandbox/_harness.py``) somewhere and hand back a
``Channel`` (send the request, read reply lines with a deadline, kill). ``supervise`` does the rest:
it decides every verdict on the host, enforces the per-test and total wall clock, and when the
sandbox dies or hangs in test *i* it records *i* and starts a fresh sandbox for the tests after it.

>>> values_equal(0.1 + 0.2, 0.3), values_equal([1, 2], (1, 2))
(True, False)
>>> normalize_stdout("1 \\n2\\n\\n")
'1\\n2'
"""

from __future__ import annotations

import ast
import json
import marshal
import math
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sandbox.executor import ExecutionResult, Limits, TestLike, TestVerdict
from search.problem import FunctionTest

HARNESS_SOURCE = (Path(__file__).parent / "_harness.py").read_text()
HARNESS_VERSION = "1"
STARTUP_ALLOWANCE = 3.0  # seconds for the sandbox to start before the program's own clock runs


class ChannelClosed(Exception):
    """The sandbox closed its reply channel (it exited or was killed)."""


class ReplyLines:
    """Newline-framed replies as they arrive from a sandbox channel, with a cap on a frame's size."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pop(self, max_bytes: int) -> bytes | None:
        """The next complete line, ``b"<oversized frame>"`` past ``max_bytes``, or None for now."""
        nl = self._buf.find(b"\n")
        if nl >= 0:
            line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            return line
        if len(self._buf) > max_bytes:
            self._buf = b""
            return b"<oversized frame>"
        return None


class Channel(Protocol):
    """One started sandbox process running the harness."""

    def send_request(self, data: bytes) -> None: ...

    def read_line(self, deadline: float, max_bytes: int) -> bytes | None:
        """The next reply line; ``None`` at the deadline; raises ``ChannelClosed`` at EOF."""
        ...

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        """``(exit code, signal)`` of the harness once it has exited, else ``(None, None)``."""
        ...

    def kill(self) -> None: ...


def values_equal(a: Any, b: Any) -> bool:
    """``==`` with floats compared within 1e-6 (relative or absolute), containers element-wise."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
                return True
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
        return False
    if type(a) in (list, tuple) or type(b) in (list, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(values_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


class _Opaque:
    """A value the sandbox could not send as plain data; equal to nothing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.name}>"


def decode_value(x: Any) -> Any:
    """Inverse of the harness's ``_encode`` (tagged JSON)."""
    if not isinstance(x, list):
        return x
    if not x:
        raise ValueError("untagged list")
    tag, rest = x[0], x[1:]
    if tag == "L":
        return [decode_value(v) for v in rest]
    if tag == "T":
        return tuple(decode_value(v) for v in rest)
    if tag in ("S", "Z"):
        items = [decode_value(v) for v in rest]
        try:
            return set(items) if tag == "S" else frozenset(items)
        except TypeError:
            return _Opaque("set")
    if tag == "D":
        out = {}
        for k, v in rest:
            key = decode_value(k)
            try:
                out[key] = decode_value(v)
            except TypeError:
                return _Opaque("dict")
        return out
    if tag == "F":
        return float.fromhex(rest[0])
    if tag == "I":
        return int(rest[0])
    if tag == "B":
        return bytes.fromhex(rest[0])
    if tag == "C":
        return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
    if tag == "R":
        return range(rest[0], rest[1], rest[2])
    return _Opaque(str(rest[0]) if rest else "object")


def short_repr(x: Any, limit: int = 200) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def normalize_stdout(text: str) -> str:
    """Stdout up to trailing whitespace on each line (and trailing blank lines)."""
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def _needs_check_call(code: str) -> bool:
    """HumanEval-style test code defines ``check(candidate)`` without calling it."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    defines = any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body)
    calls = any(
        isinstance(n, ast.Expr)
        and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Name)
        and n.value.func.id == "check"
        for n in tree.body
    )
    return defines and not calls


class _Plan:
    """Host-side state for one execution: what each test is, and what it expects."""

    def __init__(self, tests: Sequence[TestLike]) -> None:
        self.tests = list(tests)
        self.nonces = [secrets.token_hex(8) for _ in self.tests]
        self.expected: dict[int, Any] = {}
        self.expected_error: dict[int, str] = {}
        self.pre_eval: dict[str, str] = {}
        self.wire: list[dict[str, Any]] = []
        for i, t in enumerate(self.tests):
            msg: dict[str, Any] = {"i": i, "n": self.nonces[i]}
            if isinstance(t, FunctionTest) and t.code is not None and t.code.strip():
                msg.update(kind="code", code=t.code, call_check=_needs_check_call(t.code))
            elif isinstance(t, FunctionTest):
                msg.update(kind="call", call=t.call)
                try:
                    self.expected[i] = ast.literal_eval(t.expected or "")
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    self.pre_eval[str(i)] = t.expected or ""
            else:
                msg.update(kind="io", stdin=t.stdin)
            self.wire.append(msg)

    def take_expected(self, frame: dict[str, Any]) -> None:
        for key, item in frame.get("values", {}).items():
            i = int(key)
            if "v" in item:
                self.expected[i] = decode_value(item["v"])
            else:
                et, em = (item.get("e") or ["Error", ""])[:2]
                self.expected_error[i] = f"the expected value {self.tests[i].describe()!r} raised {et}: {em}"

    def verdict(self, i: int, frame: dict[str, Any]) -> TestVerdict:
        status = frame.get("s")
        base: dict[str, Any] = {
            "index": i,
            "exc_type": frame.get("et"),
            "message": frame.get("em"),
            "duration": float(frame.get("d", 0.0)),
        }
        test = self.tests[i]
        if status == "ok" and isinstance(test, FunctionTest):
            if i in self.expected_error:
                return TestVerdict(
                    status="error", **{**base, "exc_type": "BadTest", "message": self.expected_error[i]}
                )
            got = decode_value(frame.get("v"))
            if values_equal(got, self.expected.get(i)):
                return TestVerdict(status="passed", **base)
            message = f"{test.call} returned {short_repr(got)}, expected {test.expected}"
            return TestVerdict(status="failed", **{**base, "exc_type": None, "message": message})
        if status == "ok":
            out = str(frame.get("o", ""))
            expected = getattr(test, "expected_stdout", "")
            same = not frame.get("ot") and normalize_stdout(out) == normalize_stdout(expected)
            msg = None if same else f"stdout {short_repr(out[:200])} != expected {short_repr(expected[:200])}"
            return TestVerdict(status="passed" if same else "failed", stdout=out, **{**base, "message": msg})
        if status in ("passed", "failed", "error", "timeout", "memory"):
            return TestVerdict(status=status, **base)
        return TestVerdict(
            status="error", **{**base, "exc_type": "ProtocolViolation", "message": "bad verdict"}
        )


def _death_verdict(i: int, code: int | None, sig: int | None, duration: float) -> TestVerdict:
    if sig == signal.SIGXCPU:
        return TestVerdict(index=i, status="timeout", message="CPU time limit", signal=sig, duration=duration)
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return TestVerdict(
            index=i, status="signal", signal=sig, message=f"killed by {name}", duration=duration
        )
    return TestVerdict(
        index=i,
        status="error",
        exc_type="ProgramExit",
        message=f"the program exited (code {code}) before the test finished",
        duration=duration,
    )


StartFn = Callable[[bytes], Channel]


def build_request(
    program: str, entry_point: str | None, wire: list[dict[str, Any]], limits: Limits, extra: dict[str, Any]
) -> bytes:
    req = {
        "program": program,
        "entry_point": entry_point,
        "tests": wire,
        "limits": limits.model_dump(),
        **extra,
    }
    return marshal.dumps(req)  # host -> sandbox only: the sandbox never sends marshal data back


def supervise(
    start: Callable[[list[dict[str, Any]], dict[str, str]], Channel],
    program: str,
    tests: Sequence[TestLike],
    limits: Limits,
) -> tuple[ExecutionResult, int]:
    """Run all tests, restarting the sandbox after a hard kill; returns the result and the start count.

    ``start(wire_tests, pre_eval)`` starts one sandbox for those tests and sends the request.
    """
    plan = _Plan(tests)
    t0 = time.monotonic()
    end = t0 + limits.wall_total
    max_line = 4 * limits.output_bytes + (1 << 20)
    verdicts: dict[int, TestVerdict] = {}
    pending = list(range(len(plan.tests)))
    result = ExecutionResult(verdicts=[])
    starts = 0
    first = True
    while pending or first:
        if time.monotonic() >= end:
            break
        starts += 1
        pre = plan.pre_eval if first else {}
        chan = start([plan.wire[i] for i in pending], pre)
        try:
            outcome = _one_session(chan, plan, pending, verdicts, result, limits, end, max_line, first, pre)
        finally:
            chan.kill()
        first = False
        if outcome != "restart":
            break
    for i in range(len(plan.tests)):
        if i not in verdicts:
            msg = "not run: the total wall-clock limit was reached" if time.monotonic() >= end else "not run"
            if result.program_status != "ok":
                status, et, why = _load_failure_verdict(result)
                verdicts[i] = TestVerdict(index=i, status=status, exc_type=et, message=why)
            else:
                verdicts[i] = TestVerdict(index=i, status="not_run", message=msg)
    result.verdicts = [verdicts[i] for i in range(len(plan.tests))]
    result.duration = time.monotonic() - t0
    return result, starts


def _load_failure_verdict(result: ExecutionResult) -> tuple[Any, str | None, str | None]:
    if result.program_status == "compile_error":
        return "error", result.exc_type, f"compile error: {result.message}"
    if result.program_status == "load_timeout":
        return "timeout", "Timeout", result.message
    return "error", result.exc_type, result.message


def _one_session(
    chan: Channel,
    plan: _Plan,
    pending: list[int],
    verdicts: dict[int, TestVerdict],
    result: ExecutionResult,
    limits: Limits,
    end: float,
    max_line: int,
    first: bool,
    pre: dict[str, str],
) -> str:
    """Drive one sandbox; returns "done", "restart" or "stop". Mutates pending/verdicts/result."""
    per_test = limits.wall_per_test + limits.grace
    deadline = min(end, time.monotonic() + STARTUP_ALLOWANCE + per_test)

    def read() -> dict[str, Any] | None | str:
        line = chan.read_line(deadline, max_line)
        if line is None:
            return None
        try:
            frame = json.loads(line)
        except ValueError:
            return "bad"
        return frame if isinstance(frame, dict) else "bad"

    try:
        if pre:
            frame = read()
            if not isinstance(frame, dict) or frame.get("t") != "expected":
                result.program_status = "sandbox_error"
                result.message = "the sandbox did not start the harness"
                return "stop"
            plan.take_expected(frame)
        frame = read()
        if frame is None:
            result.program_status = "load_timeout"
            result.exc_type = "Timeout"
            result.message = "the program did not finish loading in time"
            return "stop"
        if not isinstance(frame, dict) or frame.get("t") != "loaded":
            result.program_status = "load_error"
            result.exc_type = "ProtocolViolation"
            result.message = "the program wrote to the harness channel while loading"
            return "stop"
        if not frame.get("ok"):
            if frame.get("compile_error"):
                result.program_status = "compile_error"
            elif frame.get("s") == "timeout":
                result.program_status = "load_timeout"
            else:
                result.program_status = "load_error"
            result.exc_type, result.message = frame.get("et"), frame.get("em")
            return "stop"
    except ChannelClosed:
        code, sig = chan.exit_signal(1.0)
        result.program_status = "load_error"
        result.exc_type = "ProgramExit"
        why = f"killed by signal {sig}" if sig else f"exited with code {code}"
        result.message = f"the program {why} while loading, before any test ran"
        return "stop"

    while pending:
        i = pending[0]
        started = time.monotonic()
        deadline = min(end, started + per_test)
        try:
            frame = read()
        except ChannelClosed:
            code, sig = chan.exit_signal(1.0)
            verdicts[i] = _death_verdict(i, code, sig, time.monotonic() - started)
            pending.pop(0)
            return "restart"
        if frame is None:
            over = time.monotonic() >= end
            verdicts[i] = TestVerdict(
                index=i,
                status="timeout",
                message="the total wall-clock limit was reached" if over else f"killed after {per_test:.1f}s",
                duration=time.monotonic() - started,
            )
            if over:
                pending.pop(0)
                return "stop"
            pending.pop(0)
            return "restart"
        if (
            not isinstance(frame, dict)
            or frame.get("t") != "r"
            or frame.get("i") != i
            or frame.get("n") != plan.nonces[i]
        ):
            verdicts[i] = TestVerdict(
                index=i,
                status="error",
                exc_type="ProtocolViolation",
                message="the program wrote to the harness channel",
                duration=time.monotonic() - started,
            )
            pending.pop(0)
            return "restart"
        verdicts[i] = plan.verdict(i, frame)
        pending.pop(0)
    return "done"
