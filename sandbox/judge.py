"""The judge: runs every test and decides every verdict from plain values, in a process of its own.

The judge runs in a sandbox of its own (``sandbox/host.py`` starts it with the same layers as
program servers: bwrap or unshare namespaces, an unprivileged uid of its own, rlimits), never in
treedec's process, and never in the program's process. It holds the tests and the expected values;
the program runs in another sandbox (``sandbox/_server.py``) that never sees a test's code or an
expected value, and the host relays bytes between the two (``RelayChannel``):

- ``call``/``expected`` tests: the program server evaluates the call and sends back the value; the
  judge decodes it (``sandbox/wire.py``) and compares it with the expected value it holds;
- ``IOTest``: the program server runs the whole program on the stdin and sends back its stdout;
- assert-style ``code`` tests (HumanEval's ``check(candidate)``) run *here*, in a namespace where
  ``candidate``, the entry point and the other names the test takes from the program are
  ``ProgramFunction`` proxies: each call goes to the program server and returns decoded built-in
  values, so every ``==`` in a test is between values the program never touched.

Whatever the program server sends is untrusted: a malformed, mistyped, oversized or out-of-order
reply is a protocol violation (the test errors, the server is killed and restarted for the tests
after it), a non-plain value fails the call, and nothing it sends can raise out of ``Judge.run``.
Program exceptions re-enter the test as built-in exceptions of the same name (or ``ProgramError``),
so tests that expect a ``ValueError`` still work; an ``AssertionError`` *raised by the program* is
an error, not a failed assertion.

Standard library only: the host ships this module, ``sandbox/wire.py`` and ``sandbox/framing.py``
into the judge's sandbox as source (``sandbox/protocol.py``: ``JUDGE_BOOT``).
"""

from __future__ import annotations

# Imports are kept to what the judge needs at every start (it is a fresh interpreter per problem):
# _ast, not ast (ast imports enum, contextlib, collections), _signal, not signal, no json, re or
# typing (sandbox/wire.py parses JSON with json's C scanner); ast and importlib load on first use.
import _ast
import builtins
import math
import os
import resource
import select
import sys
import time

try:
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without the C module
    import signal

from sandbox.framing import (
    CONTROL,
    JOB,
    PROGRAM_LINE,
    PROGRAM_REQUEST,
    Channel,
    ChannelClosed,
    FrameError,
    FrameReader,
    StartFn,
    frame_request,
    pack,
    split_generation,
    with_generation,
)
from sandbox.wire import (
    WireError,
    any_value,
    check_plain,
    decode_value,
    dumps_plain,
    expect,
    is_bool,
    is_dict,
    is_int,
    is_str,
    loads_plain,
    name_field,
    one_of,
    parse_frame,
    str_list,
    text_field,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Callable, Sequence
    from typing import Any

    from sandbox.wire import Shape

STARTUP_ALLOWANCE = 3.0  # seconds for the sandbox to start before the program's own clock runs
_BUILTIN_NAMES = frozenset(dir(builtins))
if TYPE_CHECKING:
    from types import FunctionType as _FunctionType
else:
    _FunctionType = type(lambda: None)  # types.FunctionType, without importing types


def _parse(code: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse`` without importing ast."""
    return compile(code, filename, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)  # type: ignore[return-value]


def _walk(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` (``ast.walk``'s nodes, as a list)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, _ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, _ast.AST))
    return out


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
        tree = _parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return _needs_check_call(tree)


def _needs_check_call(tree: ast.Module) -> bool:
    defines = any(isinstance(n, _ast.FunctionDef) and n.name == "check" for n in tree.body)
    calls = any(
        isinstance(n, _ast.Expr)
        and isinstance(n.value, _ast.Call)
        and isinstance(n.value.func, _ast.Name)
        and n.value.func.id == "check"
        for n in tree.body
    )
    return defines and not calls


def program_names(tree: ast.AST) -> set[str]:
    """Names a test reads but neither binds nor gets from the builtins: it takes them from the program."""
    loads: set[str] = set()
    bound: set[str] = set()
    for n in _walk(tree):
        if isinstance(n, _ast.Name):
            (loads if isinstance(n.ctx, _ast.Load) else bound).add(n.id)
        elif isinstance(n, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, _ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (_ast.Import, _ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)
    return loads - bound - _BUILTIN_NAMES


class Verdict:
    """The outcome of one test, as the judge sends it to the host (``frame``)."""

    __slots__ = ("index", "status", "exc_type", "message", "duration", "stdout", "signal")

    def __init__(
        self,
        index: int,
        status: str,
        exc_type: str | None = None,
        message: str | None = None,
        duration: float = 0.0,
        stdout: str | None = None,
        signal: int | None = None,
    ) -> None:
        self.index, self.status, self.exc_type, self.message = index, status, exc_type, message
        self.duration, self.stdout, self.signal = duration, stdout, signal

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": "verdict", "i": self.index, "s": self.status}
        for key, value in (
            ("et", self.exc_type),
            ("em", self.message),
            ("so", self.stdout),
            ("sig", self.signal),
        ):
            if value is not None:
                out[key] = value
        return out


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

    def __init__(self, index: int, limits: dict[str, Any], end: float) -> None:
        self.index = index
        self.started = time.monotonic()
        self.per_test = float(limits["wall_per_test"])
        self.grace = float(limits["grace"])
        self.soft = min(end, self.started + self.per_test)
        self.hard = min(end, self.started + self.per_test + self.grace)
        self.end = end
        self.alarmed = False
        self.decided: Verdict | None = None
        self.program_errors: list[tuple[BaseException, str, str]] = []

    def decide(self, status: str, exc_type: str | None = None, message: str | None = None) -> _Abort:
        """Fix the verdict (the first decision wins) and return the exception that ends the test."""
        return self.decide_verdict(
            Verdict(index=self.index, status=status, exc_type=exc_type, message=message)
        )

    def decide_verdict(self, verdict: Verdict) -> _Abort:
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
                    import importlib

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


def death_verdict(i: int, code: int | None, sig: int | None, duration: float) -> Verdict:
    """The verdict of a test during which the sandbox died."""
    if sig == signal.SIGXCPU:
        return Verdict(index=i, status="timeout", message="CPU time limit", signal=sig, duration=duration)
    if sig is not None:
        import signal as signals  # the enum of names (the judge runs on _signal)

        name = signals.Signals(sig).name if sig in signals.Signals._value2member_map_ else str(sig)
        return Verdict(index=i, status="signal", signal=sig, message=f"killed by {name}", duration=duration)
    return Verdict(
        index=i,
        status="error",
        exc_type="ProgramExit",
        message=f"the program exited (code {code}) before the test finished",
        duration=duration,
    )


# --- the judge ---

_Outcome = tuple[str, str | None, str | None]  # program status, exception type, message
if TYPE_CHECKING:
    Emit = Callable[[dict[str, Any]], None]


class Judge:
    """Runs one program's tests through program servers started by ``start`` and decides verdicts.

    ``tests`` are plain dicts: ``{"kind": "function", "code", "call", "expected"}`` or
    ``{"kind": "io", "stdin", "expected_stdout"}``; ``limits`` is ``Limits.model_dump()``.
    """

    def __init__(
        self,
        tests: Sequence[dict[str, Any]],
        limits: dict[str, Any],
        entry_point: str | None,
        alarm: bool = False,
    ) -> None:
        self.tests = list(tests)
        self.limits = limits
        self.entry = entry_point
        self.alarm = alarm
        self.expected: dict[int, Any] = {}
        self.expected_error: dict[int, str] = {}
        self.load = any(t.get("kind") == "function" for t in self.tests)
        self._armed: _TestRun | None = None
        for i, t in enumerate(self.tests):
            if t.get("kind") == "function" and not (t.get("code") or "").strip():
                self._prepare_expected(i, t.get("expected") or "")

    def _prepare_expected(self, i: int, text: str) -> None:
        """The expected value of a call test, from the test text: a literal, else an expression."""
        import ast  # only call tests with an expected value need it

        try:
            self.expected[i] = ast.literal_eval(text)
            return
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        try:
            self.expected[i] = eval(text, {"__builtins__": dict(builtins.__dict__)})
        except Exception as e:
            self.expected_error[i] = f"the expected value {text[:200]!r} raised {type(e).__name__}: {e}"

    def run(self, start: StartFn, indices: Sequence[int], end: float, emit: Emit) -> int:
        """Emit a ``test`` frame before and a ``verdict`` frame after each test of ``indices``, a
        verdict for each test not run, then one ``done`` frame; return the program servers started."""
        max_line = 4 * int(self.limits["output_bytes"]) + (1 << 20)
        pending = list(indices)
        status: _Outcome = ("ok", None, None)
        starts = 0
        while (pending or starts == 0) and time.monotonic() < end:
            starts += 1
            session = Session(start(self.load), max_line)
            try:
                status = self._open(session, end)
                if status[0] != "ok":
                    break
                while pending and session.alive and time.monotonic() < end:
                    i = pending.pop(0)
                    emit({"t": "test", "i": i})
                    emit(self._run_test(session, i, end).frame())
            finally:
                session.channel.kill()
        over = time.monotonic() >= end
        for i in pending:
            emit(self._not_run(i, status, over).frame())
        done: dict[str, Any] = {"t": "done", "ps": status[0]}
        if status[1] is not None:
            done["et"] = status[1]
        if status[2] is not None:
            done["em"] = status[2]
        emit(done)
        return starts

    @staticmethod
    def _not_run(i: int, status: _Outcome, over: bool) -> Verdict:
        program_status, et, em = status
        if program_status == "compile_error":
            return Verdict(index=i, status="error", exc_type=et, message=f"compile error: {em}")
        if program_status == "load_timeout":
            return Verdict(index=i, status="timeout", exc_type="Timeout", message=em)
        if program_status != "ok":
            return Verdict(index=i, status="error", exc_type=et, message=em)
        msg = "not run: the total wall-clock limit was reached" if over else "not run"
        return Verdict(index=i, status="not_run", message=msg)

    def _open(self, session: Session, end: float) -> _Outcome:
        """Wait for the server's ``loaded`` frame: ("ok", None, None) or why the program did not load."""
        per_test, grace = float(self.limits["wall_per_test"]), float(self.limits["grace"])
        deadline = min(end, time.monotonic() + STARTUP_ALLOWANCE + per_test + grace)
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
            return "load_timeout", "Timeout", f"the program did not finish loading in {per_test:.1f}s"
        return "load_error", et, em

    # the test's own code is bounded too: an alarm at the test's hard deadline ends it (in the
    # judge's process only; the host kills the judge if the test code swallows the alarm)
    def _on_alarm(self, signum: int, frame: Any) -> None:
        run = self._armed
        if run is None:
            return
        self._armed = None
        run.alarmed = True
        raise run.decide("timeout", "Timeout", run.timeout_message(hard=True))

    def _arm(self, run: _TestRun) -> None:
        if self.alarm:
            self._armed = run
            signal.setitimer(signal.ITIMER_REAL, max(run.hard - time.monotonic(), 0.0) + 0.05)

    def _disarm(self) -> None:
        if self.alarm:
            self._armed = None
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _run_test(self, session: Session, i: int, end: float) -> Verdict:
        run = _TestRun(i, self.limits, end)
        session.run = run
        test = self.tests[i]
        verdict: Verdict | None = None
        try:
            self._arm(run)
            try:
                if test.get("kind") == "function" and (test.get("code") or "").strip():
                    verdict = self._code_test(session, run, test["code"])
                elif test.get("kind") == "function":
                    verdict = self._call_test(session, run, test)
                else:
                    verdict = self._io_test(
                        session, run, test.get("stdin") or "", test.get("expected_stdout") or ""
                    )
            finally:
                self._disarm()
        except _Abort:
            pass
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # the test's own code failed; the judge never raises
            verdict = self._from_exception(run, e)
        if run.alarmed and session.alive:  # the alarm may have cut a request in half
            session.alive = False
            session.channel.kill()
        if run.decided is not None:
            verdict = run.decided
        if verdict is None:
            verdict = Verdict(index=i, status="error", exc_type="JudgeError", message="no verdict")
        verdict.duration = time.monotonic() - run.started
        return verdict

    @staticmethod
    def _from_exception(run: _TestRun, e: BaseException) -> Verdict:
        """The verdict of a test whose code ended with ``e``."""
        for exc, et, em in run.program_errors:
            if exc is e:
                return Verdict(index=run.index, status="error", exc_type=et, message=em)
        if isinstance(e, AssertionError):
            return Verdict(
                index=run.index, status="failed", exc_type="AssertionError", message=str(e) or None
            )
        return Verdict(
            index=run.index, status="error", exc_type=type(e).__name__, message=short_repr(str(e), 2000)
        )

    def _code_test(self, session: Session, run: _TestRun, code: str) -> Verdict:
        try:
            tree = _parse(code, "<test>")
            compiled = compile(tree, "<test>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return Verdict(
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
        if _needs_check_call(tree):
            check = ns.get("check")
            if not (isinstance(check, _FunctionType) and check.__code__.co_filename == "<test>"):
                raise NameError("the test does not define check(candidate)")
            check(ns.get(self.entry or "candidate", ns.get("candidate")))
        return Verdict(index=run.index, status="passed")

    def _call_test(self, session: Session, run: _TestRun, test: dict[str, Any]) -> Verdict:
        i = run.index
        if i in self.expected_error:
            return Verdict(index=i, status="error", exc_type="BadTest", message=self.expected_error[i])
        call = test.get("call") or ""
        got = session.evaluate(call)
        if values_equal(got, self.expected.get(i)):
            return Verdict(index=i, status="passed")
        message = f"{call} returned {short_repr(got)}, expected {test.get('expected')}"
        return Verdict(index=i, status="failed", message=message)

    def _io_test(self, session: Session, run: _TestRun, stdin: str, expected: str) -> Verdict:
        frame = session.run_io(stdin)
        out, status = frame["o"], frame["s"]
        if status == "timeout":
            return Verdict(
                index=run.index,
                status="timeout",
                exc_type="Timeout",
                message=run.timeout_message(hard=False),
                stdout=out,
            )
        if status == "memory":
            return Verdict(
                index=run.index, status="memory", exc_type="MemoryError", message="memory limit", stdout=out
            )
        if status == "error":
            return Verdict(
                index=run.index, status="error", exc_type=frame.get("et"), message=frame.get("em"), stdout=out
            )
        same = not frame["ot"] and normalize_stdout(out) == normalize_stdout(expected)
        msg = None if same else f"stdout {short_repr(out[:200])} != expected {short_repr(expected[:200])}"
        return Verdict(index=run.index, status="passed" if same else "failed", message=msg, stdout=out)


# --- the judge's side of the host relay --------------------------------------------------------


class HostLink:
    """The judge process's link to the host: control frames and program requests out, program
    reply lines and ``closed`` notices in (each tagged with the program server's generation)."""

    def __init__(self, in_fd: int, out_fd: int, max_line: int) -> None:
        self.in_fd, self.out_fd = in_fd, out_fd
        self.reader = FrameReader({PROGRAM_LINE: max_line + 8, CONTROL: 1 << 16, JOB: 1 << 30})
        self.jobs: list[dict[str, Any]] = []
        self.lines: dict[int, list[bytes]] = {}
        self.closed: dict[int, tuple[int | None, int | None]] = {}

    def write(self, kind: bytes, payload: bytes) -> None:
        data = pack(kind, payload)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # never half a frame
        try:
            while data:
                data = data[os.write(self.out_fd, data) :]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def control(self, frame: dict[str, Any]) -> None:
        self.write(CONTROL, dumps_plain(frame).encode())

    def _pump(self, deadline: float | None) -> bool:
        """Read what the host sent until ``deadline``; False if nothing arrived in time."""
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            ready, _, _ = select.select([self.in_fd], [], [], left)
            if not ready:
                return False
            chunk = os.read(self.in_fd, 1 << 16)
            if not chunk:
                os._exit(0)  # the host is gone
            self.reader.feed(chunk)
            try:
                while (frame := self.reader.pop()) is not None:
                    self._take(*frame)
            except (FrameError, ValueError, KeyError, TypeError, EOFError):
                os._exit(75)  # the host is trusted: this cannot happen
            return True

    def _take(self, kind: bytes, payload: bytes) -> None:
        if kind == JOB:
            import marshal

            self.jobs.append(marshal.loads(payload))
        elif kind == PROGRAM_LINE:
            gen, line = split_generation(payload)
            self.lines.setdefault(gen, []).append(line)
        else:
            msg = loads_plain(payload)
            if msg["t"] == "closed":
                self.closed[int(msg["g"])] = (msg.get("code"), msg.get("sig"))

    def next_line(self, gen: int, deadline: float) -> bytes | None:
        while True:
            queue = self.lines.get(gen)
            if queue:
                return queue.pop(0)
            if gen in self.closed:
                raise ChannelClosed()
            if not self._pump(deadline):
                return None

    def forget(self, gen: int) -> None:
        self.lines.pop(gen, None)
        self.closed = {g: v for g, v in self.closed.items() if g >= gen}

    def next_job(self, idle: float) -> dict[str, Any] | None:
        """The next job of a warm judge, or None after ``idle`` seconds without one."""
        end = time.monotonic() + idle
        while not self.jobs:
            if not self._pump(end):
                return None
        self.lines.clear()
        return self.jobs.pop(0)


class RelayChannel:
    """One program server, reached through the host (a ``Channel`` for ``Session``)."""

    def __init__(self, link: HostLink, gen: int) -> None:
        self.link, self.gen = link, gen
        self.killed = False

    def send(self, data: bytes, deadline: float) -> bool:
        if self.killed or self.gen in self.link.closed:
            raise ChannelClosed()
        self.link.write(PROGRAM_REQUEST, with_generation(self.gen, data))
        return True

    def read_line(self, deadline: float, max_bytes: int) -> bytes | None:
        line = self.link.next_line(self.gen, deadline)
        return line if line is None or len(line) <= max_bytes else b"<oversized frame>"

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        end = time.monotonic() + wait
        while self.gen not in self.link.closed and self.link._pump(end):
            pass
        return self.link.closed.get(self.gen, (None, None))

    def kill(self) -> None:
        if not self.killed:
            self.killed = True
            self.link.control({"t": "kill", "g": self.gen})
            self.link.forget(self.gen)


def _set_limits(limits: dict[str, Any]) -> None:
    R = resource

    def cap(which: int, value: int) -> None:
        try:
            _, hard = R.getrlimit(which)
            if hard != R.RLIM_INFINITY:
                value = min(value, hard)
            R.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    cap(R.RLIMIT_CORE, 0)
    cap(R.RLIMIT_FSIZE, int(limits["file_bytes"]))
    cap(R.RLIMIT_NOFILE, int(limits["open_files"]))
    cap(R.RLIMIT_AS, int(limits["memory_bytes"]))
    cap(R.RLIMIT_NPROC, 1)  # the judge never starts a process or a thread
    try:
        cpu = int(limits["cpu_seconds"])
        R.setrlimit(R.RLIMIT_CPU, (cpu, cpu + 1))
    except (ValueError, OSError):
        pass


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n > 0:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError()
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def main() -> None:
    """The judge process: read the job, drop to its uid and limits, run the tests through the host."""
    import marshal
    import struct

    ready, _, _ = select.select([0], [], [], IDLE_EXIT)  # a pre-started judge waits for its first job
    if not ready:
        os._exit(0)
    (n,) = struct.unpack(">I", _read_exact(0, 4))
    job = marshal.loads(_read_exact(0, n))
    in_fd = os.dup(0)
    out_fd = job["reply_fd"] if job.get("reply_fd") is not None else os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)  # a test that reads stdin reads nothing, never the host's frames
    if job.get("reply_fd") is None:
        os.dup2(2, 1)
    os.close(null)
    for fd in (in_fd, out_fd):
        os.set_inheritable(fd, False)
    uid = job.get("uid")
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(job.get("gid", uid))
        os.setuid(uid)
    if job.get("workdir"):
        os.chdir(job["workdir"])
    os.environ.clear()
    os.environ.update(job.get("env") or {})
    limits = job["limits"]
    _set_limits(limits)
    link = HostLink(in_fd, out_fd, 4 * int(limits["output_bytes"]) + (1 << 20))
    current: dict[str, Any] | None = job
    while current is not None:
        _serve(link, current)
        current = link.next_job(IDLE_EXIT)  # a warm judge: the same tests, another program
    sys.stdout.flush()
    os._exit(0)


IDLE_EXIT = 60.0  # seconds a judge waits for its next job (or a pre-started one for its first)


def _serve(link: HostLink, job: dict[str, Any]) -> None:
    judge = Judge(job["tests"], job["limits"], job.get("entry_point"), alarm=True)
    signal.signal(signal.SIGALRM, judge._on_alarm)
    gens = [int(job.get("first_generation", 1)) - 1]

    def start(load: bool) -> RelayChannel:
        gens[0] += 1
        link.control({"t": "start", "g": gens[0], "load": load})
        return RelayChannel(link, gens[0])

    def emit(frame: dict[str, Any]) -> None:
        if frame.get("t") == "done":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            frame["cpu_ms"] = int(1000 * (usage.ru_utime + usage.ru_stime))
        link.control(frame)

    judge.run(start, job["indices"], time.monotonic() + float(job["end_in"]), emit)


__all__ = ["Channel", "Judge", "Verdict", "frame_request", "main"]
