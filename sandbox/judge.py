"""The trusted judge: runs every test on the host and decides every verdict from plain values.

The program runs in a fresh interpreter in the sandbox (``sandbox/_server.py``) that never sees a
test's code or an expected value. The judge talks to it over a ``Channel``:

- ``call``/``expected`` tests: the sandbox evaluates the call and sends back the value; the judge
  decodes it (``sandbox/wire.py``) and compares it with the expected value it holds;
- ``IOTest``: the sandbox runs the whole program on the stdin and sends back its stdout;
- assert-style ``code`` tests (HumanEval's ``check(candidate)``) run *here*, in a namespace where
  ``candidate``, the entry point and the other names the test takes from the program are
  ``ProgramFunction`` proxies: each call goes to the sandbox and returns decoded built-in values,
  so every ``==`` in a test is between values the program never touched.

Whatever the sandbox sends is untrusted: a malformed, mistyped, oversized or out-of-order reply is a
protocol violation (the test errors, the sandbox is killed and restarted for the tests after it), a
non-plain value fails the call, and nothing the sandbox sends can raise out of ``Judge.run``.
Program exceptions re-enter the test as built-in exceptions of the same name (or ``ProgramError``),
so tests that expect a ``ValueError`` still work; an ``AssertionError`` *raised by the program* is
an error, not a failed assertion.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import math
import signal
import sys
import time
import types
from collections.abc import Sequence
from typing import Any

from sandbox.executor import ExecutionResult, Limits, Status, TestLike, TestVerdict
from sandbox.protocol import Channel, ChannelClosed, StartFn, frame_request
from sandbox.wire import (
    Shape,
    WireError,
    any_value,
    check_plain,
    decode_value,
    expect,
    is_bool,
    is_dict,
    is_int,
    is_str,
    name_field,
    one_of,
    parse_frame,
    str_list,
    text_field,
)
from search.problem import FunctionTest

STARTUP_ALLOWANCE = 3.0  # seconds for the sandbox to start before the program's own clock runs
_BUILTIN_NAMES = frozenset(dir(builtins))


def values_equal(a: Any, b: Any) -> bool:
    """``==`` with floats compared within 1e-6 (relative or absolute), containers element-wise.

    >>> values_equal(0.1 + 0.2, 0.3), values_equal([1, 2], (1, 2))
    (True, False)
    """
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
                return True
            try:
                return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
            except OverflowError:
                return False
        return False
    if type(a) in (list, tuple) or type(b) in (list, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(values_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


def short_repr(x: Any, limit: int = 200) -> str:
    try:
        r = repr(x)
    except ValueError:  # an int too long for repr
        r = f"<{type(x).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def normalize_stdout(text: str) -> str:
    """Stdout up to trailing whitespace on each line (and trailing blank lines).

    >>> normalize_stdout("1 \\n2\\n\\n")
    '1\\n2'
    """
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def needs_check_call(code: str) -> bool:
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


def program_names(tree: ast.AST) -> set[str]:
    """Names a test reads but neither binds nor gets from the builtins: it takes them from the program."""
    loads: set[str] = set()
    bound: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)
    return loads - bound - _BUILTIN_NAMES


# --- what a test sees ------------------------------------------------------------------------


class ProgramError(Exception):
    """The program raised an exception that is not a built-in one (its type name is ``exc_type``)."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type


class _Abort(BaseException):
    """Ends a test whose verdict is already decided (timeout, memory, a dead or lying sandbox)."""


def _program_exception(exc_type: str, message: str) -> Exception:
    cls = getattr(builtins, exc_type, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, Warning):
        try:
            return cls(message)
        except Exception:
            pass
    return ProgramError(exc_type, message)


class ProgramFunction:
    """A function of the program, called in the sandbox; returns decoded plain values only."""

    def __init__(self, session: Session, name: str) -> None:
        self._session = session
        self._name = name
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<program function {self._name}>"


class _TestRun:
    """The state of one test: its clocks, and the verdict once something decided it."""

    def __init__(self, index: int, limits: Limits, end: float) -> None:
        self.index = index
        self.started = time.monotonic()
        self.soft = min(end, self.started + limits.wall_per_test)
        self.hard = min(end, self.started + limits.wall_per_test + limits.grace)
        self.end = end
        self.per_test = limits.wall_per_test
        self.grace = limits.grace
        self.decided: TestVerdict | None = None
        self.program_errors: list[tuple[BaseException, str, str]] = []

    def decide(self, status: Status, exc_type: str | None = None, message: str | None = None) -> _Abort:
        """Fix the verdict (the first decision wins) and return the exception that ends the test."""
        return self.decide_verdict(
            TestVerdict(index=self.index, status=status, exc_type=exc_type, message=message)
        )

    def decide_verdict(self, verdict: TestVerdict) -> _Abort:
        if self.decided is None:
            self.decided = verdict
        return _Abort()

    def timeout_message(self, hard: bool) -> str:
        if time.monotonic() >= self.end - 1e-3 and self.soft >= self.end:
            return "the total wall-clock limit was reached"
        return (
            f"killed after {self.per_test:.1f}s" if hard else f"the test ran longer than {self.per_test:.1f}s"
        )


# --- one sandbox -----------------------------------------------------------------------------

_LOADED: Shape = (
    {"t": one_of("loaded"), "ok": is_bool},
    {"compile_error": is_bool, "s": one_of("error", "timeout", "memory"), "et": is_str, "em": is_str},
)
_VALUE: Shape = ({"t": one_of("v"), "q": is_int, "v": any_value}, {})
_RAISED: Shape = (
    {
        "t": one_of("x"),
        "q": is_int,
        "s": one_of("error", "timeout", "memory", "unencodable"),
        "et": is_str,
        "em": is_str,
    },
    {},
)
_NAMES: Shape = (
    {
        "t": one_of("n"),
        "q": is_int,
        "f": str_list,
        "v": is_dict,
        "m": str_list,
    },
    {},
)
_OUTPUT: Shape = (
    {
        "t": one_of("o"),
        "q": is_int,
        "s": one_of("ok", "error", "timeout", "memory"),
        "o": is_str,
        "ot": is_bool,
    },
    {"et": is_str, "em": is_str},
)


class Session:
    """One started program server and the judge's side of its conversation."""

    def __init__(self, channel: Channel, max_line: int) -> None:
        self.channel = channel
        self.max_line = max_line
        self.alive = True
        self.run: _TestRun | None = None
        self._q = 0

    def _dead(self, run: _TestRun) -> None:
        self.alive = False
        self.channel.kill()

    def _violation(self, e: WireError) -> _Abort:
        """The sandbox lied about the protocol: kill it and error the test."""
        run = self.run
        assert run is not None
        self._dead(run)
        return run.decide("error", "ProtocolViolation", f"the program broke the reply protocol: {e}")

    def exchange(self, request: dict[str, Any], shapes: Sequence[Shape]) -> dict[str, Any]:
        """Send one request of the current test and return its checked reply frame, or raise ``_Abort``."""
        run = self.run
        assert run is not None
        if not self.alive:
            raise run.decide("error", "ProgramExit", "the program's sandbox is gone")
        if time.monotonic() >= run.soft:
            raise run.decide("timeout", "Timeout", run.timeout_message(hard=False))
        self._q += 1
        q = self._q
        request = {**request, "q": q, "budget": max(run.soft - time.monotonic(), 0.001)}
        try:
            if not self.channel.send(frame_request(request), run.hard):
                self._dead(run)
                raise run.decide("timeout", "Timeout", run.timeout_message(hard=True))
            line = self.channel.read_line(run.hard, self.max_line)
        except ChannelClosed:
            code, sig = self.channel.exit_signal(1.0)
            self._dead(run)
            raise run.decide_verdict(death_verdict(run.index, code, sig, 0.0)) from None
        if line is None:
            self._dead(run)
            raise run.decide("timeout", "Timeout", run.timeout_message(hard=True))
        try:
            frame = parse_frame(line)
            for required, optional in shapes:
                if required["t"](frame.get("t")):
                    expect(frame, required, optional)
                    break
            else:
                raise WireError("a reply of the wrong kind")
            if frame["q"] != q:
                raise WireError("a reply to another request")
        except WireError as e:
            raise self._violation(e) from None
        return frame

    def _raised(self, frame: dict[str, Any]) -> Any:
        """Turn an ``x`` reply into the exception the test sees (or end the test)."""
        run = self.run
        assert run is not None
        status = frame["s"]
        try:
            et, em = name_field(frame["et"]), text_field(frame["em"])
        except WireError as e:
            raise self._violation(e) from None
        if status == "timeout":
            raise run.decide("timeout", "Timeout", run.timeout_message(hard=False))
        if status == "memory":
            raise run.decide("memory", "MemoryError", "memory limit")
        if status == "unencodable":
            raise run.decide("failed", "NotPlainValue", em)
        exc = _program_exception(et, em)
        run.program_errors.append((exc, et, em))
        raise exc

    def value(self, request: dict[str, Any]) -> Any:
        frame = self.exchange(request, (_VALUE, _RAISED))
        if frame["t"] == "x":
            return self._raised(frame)
        try:
            return decode_value(frame["v"])
        except WireError as e:
            raise self._violation(e) from None

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            check_plain(list(args))
            check_plain(kwargs)
        except TypeError as e:
            raise TypeError(f"{name}(): {e}") from None
        return self.value({"op": "call", "name": name, "args": tuple(args), "kwargs": dict(kwargs)})

    def evaluate(self, expr: str) -> Any:
        return self.value({"op": "eval", "expr": expr})

    def bindings(self, names: Sequence[str]) -> dict[str, Any]:
        """What each name is in the program: a ``ProgramFunction``, a plain value, or absent.

        A name the program binds to a standard-library module of that same name (``import math``)
        is bound to the judge's own copy of the module, never to anything from the sandbox.
        """
        frame = self.exchange({"op": "names", "names": list(names)}, (_NAMES,))
        out: dict[str, Any] = {}
        try:
            for name in frame["f"]:
                if name in names:
                    out[name] = ProgramFunction(self, name)
            for name in frame["m"]:
                if name in names and name in sys.stdlib_module_names and name not in out:
                    out[name] = importlib.import_module(name)
            for name, raw in frame["v"].items():
                if name in names and name not in out:
                    out[name] = decode_value(raw)
        except WireError as e:
            raise self._violation(e) from None
        return out

    def run_io(self, stdin: str) -> dict[str, Any]:
        frame = self.exchange({"op": "io", "stdin": stdin}, (_OUTPUT,))
        run = self.run
        assert run is not None
        try:
            for key in ("et", "em"):
                if key in frame:
                    frame[key] = name_field(frame[key]) if key == "et" else text_field(frame[key])
        except WireError as e:
            raise self._violation(e) from None
        return frame


def death_verdict(i: int, code: int | None, sig: int | None, duration: float) -> TestVerdict:
    """The verdict of a test during which the sandbox died."""
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


# --- the judge -------------------------------------------------------------------------------

_Outcome = tuple[str, str | None, str | None]  # program status, exception type, message


class Judge:
    """Runs one program's tests through program servers started by ``start`` and decides verdicts."""

    def __init__(self, tests: Sequence[TestLike], limits: Limits, entry_point: str | None) -> None:
        self.tests = list(tests)
        self.limits = limits
        self.entry = entry_point
        self.expected: dict[int, Any] = {}
        self.expected_error: dict[int, str] = {}
        self.load = any(isinstance(t, FunctionTest) for t in self.tests)
        for i, t in enumerate(self.tests):
            if isinstance(t, FunctionTest) and not (t.code and t.code.strip()):
                self._prepare_expected(i, t.expected or "")

    def _prepare_expected(self, i: int, text: str) -> None:
        """The expected value of a call test, from trusted test text: a literal, else an expression."""
        try:
            self.expected[i] = ast.literal_eval(text)
            return
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        try:
            self.expected[i] = eval(text, {"__builtins__": dict(builtins.__dict__)})
        except Exception as e:
            self.expected_error[i] = f"the expected value {text[:200]!r} raised {type(e).__name__}: {e}"

    def run(self, start: StartFn) -> tuple[ExecutionResult, int]:
        """All verdicts (restarting the sandbox after it dies or hangs) and the number of starts."""
        t0 = time.monotonic()
        end = t0 + self.limits.wall_total
        max_line = 4 * self.limits.output_bytes + (1 << 20)
        verdicts: dict[int, TestVerdict] = {}
        pending = list(range(len(self.tests)))
        result = ExecutionResult(verdicts=[])
        starts = 0
        while (pending or starts == 0) and time.monotonic() < end:
            starts += 1
            session = Session(start(self.load), max_line)
            try:
                status, et, em = self._open(session, end)
                if status != "ok":
                    result.program_status, result.exc_type, result.message = status, et, em  # type: ignore[assignment]
                    break
                while pending and session.alive and time.monotonic() < end:
                    i = pending.pop(0)
                    verdicts[i] = self._run_test(session, i, end)
            finally:
                session.channel.kill()
        for i in range(len(self.tests)):
            if i not in verdicts:
                verdicts[i] = self._not_run(i, result, time.monotonic() >= end)
        result.verdicts = [verdicts[i] for i in range(len(self.tests))]
        result.duration = time.monotonic() - t0
        return result, starts

    @staticmethod
    def _not_run(i: int, result: ExecutionResult, over: bool) -> TestVerdict:
        if result.program_status == "compile_error":
            return TestVerdict(
                index=i, status="error", exc_type=result.exc_type, message=f"compile error: {result.message}"
            )
        if result.program_status == "load_timeout":
            return TestVerdict(index=i, status="timeout", exc_type="Timeout", message=result.message)
        if result.program_status != "ok":
            return TestVerdict(index=i, status="error", exc_type=result.exc_type, message=result.message)
        msg = "not run: the total wall-clock limit was reached" if over else "not run"
        return TestVerdict(index=i, status="not_run", message=msg)

    def _open(self, session: Session, end: float) -> _Outcome:
        """Wait for the server's ``loaded`` frame: ("ok", None, None) or why the program did not load."""
        limits = self.limits
        deadline = min(end, time.monotonic() + STARTUP_ALLOWANCE + limits.wall_per_test + limits.grace)
        try:
            line = session.channel.read_line(deadline, session.max_line)
        except ChannelClosed:
            code, sig = session.channel.exit_signal(1.0)
            why = f"killed by signal {sig}" if sig else f"exited with code {code}"
            return "load_error", "ProgramExit", f"the program {why} while loading, before any test ran"
        if line is None:
            return "load_timeout", "Timeout", "the program did not finish loading in time"
        try:
            frame = parse_frame(line)
            expect(frame, *_LOADED)
            et = name_field(frame["et"]) if "et" in frame else None
            em = text_field(frame["em"]) if "em" in frame else None
        except WireError:
            return "load_error", "ProtocolViolation", "the program wrote to the harness channel while loading"
        if frame["ok"]:
            return "ok", None, None
        if frame.get("compile_error"):
            return "compile_error", et, em
        if frame.get("s") == "timeout":
            return (
                "load_timeout",
                "Timeout",
                f"the program did not finish loading in {limits.wall_per_test:.1f}s",
            )
        return "load_error", et, em

    def _run_test(self, session: Session, i: int, end: float) -> TestVerdict:
        run = _TestRun(i, self.limits, end)
        session.run = run
        test = self.tests[i]
        try:
            if isinstance(test, FunctionTest) and test.code and test.code.strip():
                verdict = self._code_test(session, run, test.code)
            elif isinstance(test, FunctionTest):
                verdict = self._call_test(session, run, test)
            else:
                verdict = self._io_test(session, run, test.stdin, test.expected_stdout)
        except _Abort:
            verdict = None
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # the test's own code failed; the judge never raises
            verdict = self._from_exception(run, e)
        if run.decided is not None:
            verdict = run.decided
        assert verdict is not None
        verdict.duration = time.monotonic() - run.started
        return verdict

    @staticmethod
    def _from_exception(run: _TestRun, e: BaseException) -> TestVerdict:
        """The verdict of a test whose code ended with ``e``."""
        for exc, et, em in run.program_errors:
            if exc is e:
                return TestVerdict(index=run.index, status="error", exc_type=et, message=em)
        if isinstance(e, AssertionError):
            return TestVerdict(
                index=run.index, status="failed", exc_type="AssertionError", message=str(e) or None
            )
        return TestVerdict(
            index=run.index, status="error", exc_type=type(e).__name__, message=short_repr(str(e), 2000)
        )

    def _code_test(self, session: Session, run: _TestRun, code: str) -> TestVerdict:
        try:
            tree = ast.parse(code, "<test>")
            compiled = compile(tree, "<test>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return TestVerdict(
                index=run.index, status="error", exc_type="BadTest", message=f"the test does not compile: {e}"
            )
        ns: dict[str, Any] = {"__builtins__": dict(builtins.__dict__), "__name__": "__test__"}
        wanted = program_names(tree)
        if self.entry:
            entry = ProgramFunction(session, self.entry)
            ns[self.entry] = ns["candidate"] = entry
            wanted -= {self.entry, "candidate"}
        if wanted:
            ns.update(session.bindings(sorted(wanted)))
        exec(compiled, ns)
        if needs_check_call(code):
            check = ns.get("check")
            if not (isinstance(check, types.FunctionType) and check.__code__.co_filename == "<test>"):
                raise NameError("the test does not define check(candidate)")
            check(ns.get(self.entry or "candidate", ns.get("candidate")))
        return TestVerdict(index=run.index, status="passed")

    def _call_test(self, session: Session, run: _TestRun, test: FunctionTest) -> TestVerdict:
        i = run.index
        if i in self.expected_error:
            return TestVerdict(index=i, status="error", exc_type="BadTest", message=self.expected_error[i])
        got = session.evaluate(test.call or "")
        if values_equal(got, self.expected.get(i)):
            return TestVerdict(index=i, status="passed")
        message = f"{test.call} returned {short_repr(got)}, expected {test.expected}"
        return TestVerdict(index=i, status="failed", message=message)

    def _io_test(self, session: Session, run: _TestRun, stdin: str, expected: str) -> TestVerdict:
        frame = session.run_io(stdin)
        out, status = frame["o"], frame["s"]
        if status == "timeout":
            return TestVerdict(
                index=run.index,
                status="timeout",
                exc_type="Timeout",
                message=run.timeout_message(hard=False),
                stdout=out,
            )
        if status == "memory":
            return TestVerdict(
                index=run.index, status="memory", exc_type="MemoryError", message="memory limit", stdout=out
            )
        if status == "error":
            return TestVerdict(
                index=run.index, status="error", exc_type=frame.get("et"), message=frame.get("em"), stdout=out
            )
        same = not frame["ot"] and normalize_stdout(out) == normalize_stdout(expected)
        msg = None if same else f"stdout {short_repr(out[:200])} != expected {short_repr(expected[:200])}"
        return TestVerdict(index=run.index, status="passed" if same else "failed", message=msg, stdout=out)


def supervise(
    start: StartFn, tests: Sequence[TestLike], limits: Limits, entry_point: str | None
) -> tuple[ExecutionResult, int]:
    """Run all tests with a fresh ``Judge``; ``start(load)`` starts one program server."""
    return Judge(tests, limits, entry_point).run(start)
