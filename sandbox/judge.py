"""The judge: runs every test and decides every verdict from plain values, in a process of its own.

The judge runs in a sandbox of its own (``sandbox/host.py`` starts it with the same layers as
program servers: bwrap or unshare namespaces, an unprivileged uid of its own, rlimits), never in
treedec's process, and never in the program's process. It holds the tests and the expected values;
the program runs in another sandbox (``sandbox/_server.py``) that never sees a test's code or an
expected value, and the host relays bytes between the two (``RelayChannel``, ``sandbox/judge_link.py``):

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

Standard library only: the host ships this module, the judge's other modules and
``sandbox/wire.py`` and ``sandbox/framing.py`` into the judge's sandbox as source
(``sandbox/protocol.py``: ``JUDGE_MODULES``, ``JUDGE_BOOT``). The judge's modules, each run there:

- ``sandbox/judge_checks.py``: comparing values and stdout, reading a test's code;
- ``sandbox/judge_session.py``: one program server as tests see it (``Session``, ``Verdict``);
- ``sandbox/judge.py`` (this module): the tests of one program, run and decided (``Judge``);
- ``sandbox/judge_link.py``: the judge process, its link to the host and its entry point (``main``).

Nothing on the host imports them (the host's side is ``sandbox/host.py``); the tests do.
"""

from __future__ import annotations

# Imports are kept to what the judge needs at every start (it is a fresh interpreter per problem):
# _ast, not ast (ast imports enum, contextlib, collections: sandbox/judge_checks.py), _signal, not
# signal, no json, re or typing (sandbox/wire.py parses JSON with json's C scanner); ast and
# importlib load on first use.
import builtins
import time

try:
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without the C module
    import signal

from sandbox.framing import STARTUP_ALLOWANCE, Channel, ChannelClosed, StartFn, frame_request
from sandbox.judge_checks import (
    evalplus_match,
    normalize_stdout,
    parse_code,
    program_names,
    short_repr,
    tree_needs_check_call,
)
from sandbox.judge_session import Abort, ProgramFunction, Session, TestRun, Verdict
from sandbox.wire import (
    WireError,
    dumps_plain,
    encode_value,
    expect,
    is_bool,
    is_str,
    name_field,
    one_of,
    parse_frame,
    text_field,
    values_equal,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from sandbox.wire import Shape

if TYPE_CHECKING:
    from types import FunctionType as _FunctionType
else:
    _FunctionType = type(lambda: None)  # types.FunctionType, without importing types

# the program server's first reply: the program compiled and (if asked) loaded, or why not
_LOADED: Shape = (
    {"t": one_of("loaded"), "ok": is_bool},
    {"compile_error": is_bool, "s": one_of("error", "timeout", "memory"), "et": is_str, "em": is_str},
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
        self.load = any(t.get("kind") in ("function", "probe") for t in self.tests)
        self._armed: TestRun | None = None
        self.alternatives: dict[int, list[Any]] = {}
        for i, t in enumerate(self.tests):
            if t.get("kind") == "function" and not (t.get("code") or "").strip():
                self._prepare_expected(i, t.get("expected") or "")
                for text in (t.get("compare") or {}).get("alternatives") or ():
                    self.alternatives.setdefault(i, []).append(self._expected_value(i, text))

    def _prepare_expected(self, i: int, text: str) -> None:
        self.expected[i] = self._expected_value(i, text)

    def _expected_value(self, i: int, text: str) -> Any:
        """An expected value of a call test, from the test text: a literal, else an expression
        (one that raises leaves the test an error, ``expected_error``)."""
        import ast  # only call tests with an expected value need it

        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        try:
            return eval(text, {"__builtins__": dict(builtins.__dict__)})
        except Exception as e:
            self.expected_error[i] = f"the expected value {text[:200]!r} raised {type(e).__name__}: {e}"
            return None

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

    def _arm(self, run: TestRun) -> None:
        if self.alarm:
            self._armed = run
            signal.setitimer(signal.ITIMER_REAL, max(run.hard - time.monotonic(), 0.0) + 0.05)

    def _disarm(self) -> None:
        if self.alarm:
            self._armed = None
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _run_test(self, session: Session, i: int, end: float) -> Verdict:
        run = TestRun(i, self.limits, end)
        session.run = run
        test = self.tests[i]
        verdict: Verdict | None = None
        try:
            self._arm(run)
            try:
                if test.get("kind") == "probe":
                    verdict = self._probe(session, run, test.get("call") or "")
                elif test.get("kind") == "function" and (test.get("code") or "").strip():
                    verdict = self._code_test(session, run, test["code"])
                elif test.get("kind") == "function":
                    verdict = self._call_test(session, run, test)
                else:
                    verdict = self._io_test(
                        session, run, test.get("stdin") or "", test.get("expected_stdout") or ""
                    )
            finally:
                self._disarm()
        except Abort:
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
    def _from_exception(run: TestRun, e: BaseException) -> Verdict:
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

    def _code_test(self, session: Session, run: TestRun, code: str) -> Verdict:
        try:
            tree = parse_code(code, "<test>")
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
        if tree_needs_check_call(tree):
            check = ns.get("check")
            if not (isinstance(check, _FunctionType) and check.__code__.co_filename == "<test>"):
                raise NameError("the test does not define check(candidate)")
            check(ns.get(self.entry or "candidate", ns.get("candidate")))
        return Verdict(index=run.index, status="passed")

    def _call_test(self, session: Session, run: TestRun, test: dict[str, Any]) -> Verdict:
        i = run.index
        if i in self.expected_error:
            return Verdict(index=i, status="error", exc_type="BadTest", message=self.expected_error[i])
        call = test.get("call") or ""
        got = session.evaluate(call)
        compare = test.get("compare")
        if compare is None:
            same = values_equal(got, self.expected.get(i))
        else:
            same = evalplus_match(
                got,
                self.expected.get(i),
                str(compare.get("match") or "exact"),
                float(compare.get("atol") or 0.0),
                self.alternatives.get(i, ()),
            )
        if same:
            return Verdict(index=i, status="passed")
        message = f"{call} returned {short_repr(got)}, expected {test.get('expected')}"
        return Verdict(index=i, status="failed", message=message)

    def _probe(self, session: Session, run: TestRun, call: str) -> Verdict:
        """A probed call: its value goes back to the host (a digest of it, when it is larger than
        ``output_bytes`` as JSON); a raise or a timeout ends it as it ends a test."""
        verdict = Verdict(index=run.index, status="passed")
        verdict.value = encode_value(session.evaluate(call))
        text = dumps_plain(verdict.value)
        if len(text) > int(self.limits["output_bytes"]):
            import hashlib  # only a large value needs it

            verdict.digest = hashlib.sha256(text.encode()).hexdigest()
        return verdict

    def _io_test(self, session: Session, run: TestRun, stdin: str, expected: str) -> Verdict:
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


__all__ = ["Channel", "Judge", "Verdict", "frame_request"]
