"""treedec's part of an execution: start the judge and the program servers, relay bytes, keep time.

The host runs no test code and decides no verdict. For each execution it starts

- the judge (``sandbox/judge.py``) in a sandbox of its own: it holds the tests and the expected
  values, runs assert-style test code, and sends back one verdict per test;
- program servers (``sandbox/_server.py``) in other sandboxes, when the judge asks for one (the
  first one in parallel with the judge, so the two start-ups overlap).

It relays the judge's request frames to the current program server and the server's reply lines
(cut at the frame-size cap, never parsed) to the judge, and reads the judge's control frames with
the same strict checks as any untrusted reply (``sandbox/wire.py``): nothing the judge sends raises
here. It enforces the deadlines: a test whose judge does not answer in ``wall_per_test + grace +
JUDGE_SLACK`` is a timeout (the judge is killed, and a new one runs the remaining tests), and at the
total wall-clock limit both sandboxes are killed.
"""

from __future__ import annotations

import json
import logging
import marshal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sandbox.channel import ready
from sandbox.executor import CallProbe, ExecutionResult, Limits, TestLike, TestVerdict
from sandbox.framing import (
    CONTROL,
    JOB,
    PROGRAM_LINE,
    PROGRAM_REQUEST,
    STARTUP_ALLOWANCE,
    ChannelClosed,
    FrameError,
    FrameReader,
    ReplyLines,
    frame_request,
    pack,
    split_generation,
    with_generation,
)
from sandbox.protocol import build_judge_boot
from sandbox.wire import (
    WireError,
    any_value,
    decode_value,
    expect,
    is_bool,
    is_int,
    is_str,
    name_field,
    one_of,
    parse_frame,
    text_field,
)
from search.problems.problem import FunctionTest

if TYPE_CHECKING:
    from sandbox.wire import Shape

log = logging.getLogger(__name__)

JUDGE_SLACK = 1.0  # seconds the host gives the judge beyond the judge's own deadlines
MAX_PROGRAM_REQUEST = 64 << 20  # a judge-to-program frame (an IO test's stdin, a call's arguments)
STATUSES = ("passed", "failed", "error", "timeout", "memory", "signal", "not_run")
PROGRAM_STATUSES = ("ok", "compile_error", "load_error", "load_timeout")


class HostChannel(Protocol):
    """A started sandbox as the host relays it (a program server or the judge)."""

    def fileno(self) -> int:
        """Readable when the sandbox sent something."""
        ...

    def write_fileno(self) -> int: ...

    def read_some(self) -> bytes | None:
        """What arrived (one read, when ``fileno`` is readable), maybe ``b""``; None at EOF."""
        ...

    def write_nowait(self, data: bytes) -> int:
        """Bytes written without blocking; ``ChannelClosed`` if the sandbox is gone."""
        ...

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]: ...

    def kill(self) -> None: ...


StartProgram = Callable[[bool], HostChannel]
"""Starts a program server (the argument: load the program) with its first request written."""


@dataclass
class JudgeHandle:
    """A started judge: its channel, the job fields of its launch (reply fd, uid, workdir, env), and
    for a warm judge (one that finished a job for the same tests) the next program generation."""

    chan: HostChannel
    extra: dict[str, Any]
    release: Callable[[JudgeHandle, bool], None]
    """Called once when the execution ends: ``True`` if the judge may serve the next job."""
    warm: bool = False
    compiled: bool = False
    """The judge runs treedec's own interpreter: its modules can be sent compiled."""
    next_gen: int = 1
    uses: int = 0
    boot: bytes | None = None
    """What of the judge's boot frame is still to be sent (None: all of it; a pre-started judge was sent
    it, or most of it, when it started, and is loading its modules already)."""
    after_start: Callable[[], None] | None = None
    """Work for after the execution's first program server started (pre-starting a spare judge,
    killing a judge that may not serve this execution): off the path of the execution's start-up."""


StartJudge = Callable[[str], JudgeHandle]
"""Starts (or reuses, for the same key: tests, entry point, limits) a judge."""


def judge_payload(test: TestLike) -> dict[str, Any]:
    """A test as the judge receives it (plain values only)."""
    if isinstance(test, FunctionTest):
        payload: dict[str, Any] = {
            "kind": "function",
            "code": test.code,
            "call": test.call,
            "expected": test.expected,
        }
        if test.compare is not None:  # only then: a test without it reaches the judge as it always did
            payload["compare"] = test.compare.model_dump()
        return payload
    if isinstance(test, CallProbe):
        return {"kind": "probe", "call": test.call}
    return {"kind": "io", "stdin": test.stdin, "expected_stdout": test.expected_stdout}


class JudgeViolation(Exception):
    """The judge sent something that is not a well-formed control frame in its place."""


_TEST: Shape = ({"t": one_of("test"), "i": is_int}, {})
_START: Shape = ({"t": one_of("start"), "g": is_int, "load": is_bool}, {})
_KILL: Shape = ({"t": one_of("kill"), "g": is_int}, {})
_DONE: Shape = (
    {"t": one_of("done"), "ps": one_of(*PROGRAM_STATUSES)},
    {"et": is_str, "em": is_str, "cpu_ms": is_int},
)
_VERDICT: Shape = (
    {"t": one_of("verdict"), "i": is_int, "s": one_of(*STATUSES)},
    {"et": is_str, "em": is_str, "so": is_str, "sig": is_int, "v": any_value, "vh": is_str},
)


def _checked_value(x: Any) -> Any:
    """A probed value as the judge sent it (tagged JSON), after checking that it decodes."""
    decode_value(x)
    return x


def _digest_field(x: str) -> str:
    if len(x) != 64 or x.strip("0123456789abcdef"):
        raise WireError("a value digest is 64 hex digits")
    return x


class Verdicts:
    """The verdicts of one execution as the judge's control frames announce them, strictly checked."""

    def __init__(self, n: int, limits: Limits) -> None:
        self.n = n
        self.limits = limits
        self.verdicts: dict[int, TestVerdict] = {}
        self.current: tuple[int, float] | None = None
        self.status: tuple[str, str | None, str | None] | None = None

    def pending(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.verdicts]

    def take(self, frame: dict[str, Any]) -> None:
        """A ``test``, ``verdict`` or ``done`` frame; ``WireError`` if it is malformed or out of place."""
        kind = frame.get("t")
        if kind == "test":
            expect(frame, *_TEST)
            i = frame["i"]
            if self.current is not None or not 0 <= i < self.n or i in self.verdicts:
                raise WireError("a test started out of turn")
            self.current = (i, time.monotonic())
        elif kind == "verdict":
            expect(frame, *_VERDICT)
            i = frame["i"]
            if not 0 <= i < self.n or i in self.verdicts:
                raise WireError("a verdict out of turn")
            started = None
            if self.current is not None:
                if self.current[0] != i:
                    raise WireError("a verdict for another test")
                started = self.current[1]
            sig = frame.get("sig")
            if sig is not None and not 0 < sig < 128:
                raise WireError("a signal number out of range")
            self.verdicts[i] = TestVerdict(
                index=i,
                status=frame["s"],
                exc_type=name_field(frame["et"]) if "et" in frame else None,
                message=text_field(frame["em"], 4000) if "em" in frame else None,
                stdout=text_field(frame["so"], self.limits.output_bytes + 64) if "so" in frame else None,
                signal=sig,
                duration=time.monotonic() - started if started is not None else 0.0,
                value=_checked_value(frame["v"]) if "v" in frame else None,
                value_digest=_digest_field(frame["vh"]) if "vh" in frame else None,
            )
            self.current = None
        elif kind == "done":
            expect(frame, *_DONE)
            if self.current is not None:
                raise WireError("done in the middle of a test")
            et = name_field(frame["et"]) if "et" in frame else None
            em = text_field(frame["em"], 4000) if "em" in frame else None
            if self.status is None or self.status[0] == "ok":
                self.status = (frame["ps"], et, em)
        else:
            raise WireError("an unknown control frame")

    def end_current(self, status: str, exc_type: str, message: str) -> bool:
        """Decide the test in progress (its judge is gone); False if none was."""
        if self.current is None:
            return False
        i, started = self.current
        self.verdicts[i] = TestVerdict(
            index=i, status=status, exc_type=exc_type, message=message, duration=time.monotonic() - started
        )  # type: ignore[arg-type]
        self.current = None
        return True

    def result(self, over: bool, judge_error: str | None) -> ExecutionResult:
        result = ExecutionResult(verdicts=[])
        if self.status is not None:
            ps, result.exc_type, result.message = self.status
            result.program_status = ps  # type: ignore[assignment]
        elif judge_error is not None and not self.verdicts:
            result.program_status = "sandbox_error"
            result.exc_type, result.message = "JudgeError", judge_error
        for i in self.pending():
            if over:
                msg = "not run: the total wall-clock limit was reached"
                self.verdicts[i] = TestVerdict(index=i, status="not_run", message=msg)
            elif judge_error is not None:
                self.verdicts[i] = TestVerdict(
                    index=i, status="error", exc_type="JudgeError", message=judge_error
                )
            else:
                self.verdicts[i] = TestVerdict(index=i, status="not_run", message="not run")
        result.verdicts = [self.verdicts[i] for i in range(self.n)]
        return result


def _quietly(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        log.exception("sandbox: housekeeping failed")


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def background(work: Callable[[], None]) -> Future[None]:
    """Run sandbox housekeeping (start a spare sandbox, kill a judge) off an execution's path.

    The threads are long-lived on purpose: bwrap's ``--die-with-parent`` ties a sandbox to the
    thread that started it (``PR_SET_PDEATHSIG``), so a sandbox started by a thread that then
    ends would be killed with it.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="treedec-sandbox-housekeeping")
        pool = _pool
    return pool.submit(_quietly, work)


def _read_into(chan: HostChannel, sink: Callable[[bytes], None]) -> bool:
    """One read from ``chan`` into ``sink``; False at EOF."""
    try:
        data = chan.read_some()
    except OSError:
        return False
    if data is None:
        return False
    sink(data)
    return True


class _Relay:
    """One judge process and the program servers it asks for."""

    def __init__(self, execution: Execution, indices: list[int]) -> None:
        self.x = execution
        limits = execution.limits
        self.max_line = 4 * limits.output_bytes + (1 << 20)
        self.handle = execution.start_judge(execution.key)
        self.judge, extra = self.handle.chan, self.handle.extra
        first_gen = self.handle.next_gen
        self.gen = first_gen - 1
        self.reader = FrameReader(
            {CONTROL: 8 * limits.output_bytes + (1 << 20), PROGRAM_REQUEST: MAX_PROGRAM_REQUEST}
        )
        job = {
            **extra,
            "tests": execution.payloads,
            "indices": indices,
            "limits": limits.model_dump(),
            "entry_point": execution.entry_point,
            "end_in": max(execution.end - time.monotonic(), 0.001),
            "first_generation": first_gen,
        }
        if self.handle.warm:
            self.to_judge = bytearray(pack(JOB, marshal.dumps(job)))
        else:
            boot = self.handle.boot
            if boot is None:
                boot = build_judge_boot(self.handle.compiled)
            self.handle.boot = b""
            self.to_judge = bytearray(boot + frame_request(job))
        # the first program server starts while the judge boots
        self.program: HostChannel | None = None
        self.program_open = False
        self.to_program = bytearray()
        self.spare: HostChannel | None = None
        try:
            self.spare = execution.start_program(execution.load)
        except Exception:
            self.spare = None
        # the judge's housekeeping (kill the judge of other tests, start a spare judge) runs in a
        # helper thread while this execution runs; ``close`` waits for it
        self.housekeeping: Future[None] | None = None
        after, self.handle.after_start = self.handle.after_start, None
        if after is not None:
            self.housekeeping = background(after)
        self.spare_gen = first_gen
        self.last_msg = time.monotonic()
        self.failed: str | None = None
        self.program_lines = ReplyLines()
        self.cpu_ms = 0

    def _kill_program(self) -> None:
        if self.program is not None:
            self.program.kill()
            self.program = None
        self.program_open = False
        self.to_program.clear()

    def close(self) -> None:
        """Kill the program servers; keep the judge for the next job if it ended cleanly."""
        try:
            self._close()
        finally:
            if self.housekeeping is not None:
                self.housekeeping.result()
                self.housekeeping = None

    def _close(self) -> None:
        after, self.handle.after_start = self.handle.after_start, None
        if after is not None:
            after()
        self._kill_program()
        if self.spare is not None:
            self.spare.kill()
            self.spare = None
        handle = self.handle
        keep = (
            self.failed is None
            and not self.to_judge
            and self.x.verdicts.status is not None
            and self.cpu_ms < 500 * self.x.limits.cpu_seconds
        )
        handle.warm, handle.next_gen, handle.uses = True, self.gen + 1, handle.uses + 1
        if not keep:
            self.judge.kill()
        handle.release(handle, keep)

    def _control(self, frame: dict[str, Any]) -> bool:
        """Act on one judge control frame; True when the judge is done."""
        kind = frame.get("t")
        if kind == "start":
            expect(frame, *_START)
            if frame["g"] <= self.gen:
                raise WireError("a program generation that is not new")
            self._kill_program()
            self.gen = frame["g"]
            spare, self.spare = self.spare, None
            if spare is not None and self.spare_gen == self.gen and frame["load"] == self.x.load:
                self.program = spare
            else:
                if spare is not None:
                    spare.kill()
                self.program = self.x.start_program(frame["load"])
            self.program_open = True
            self.x.starts += 1
            return False
        if kind == "kill":
            expect(frame, *_KILL)
            if frame["g"] == self.gen:
                self._kill_program()
            return False
        self.x.verdicts.take(frame)
        if kind == "done":
            self.cpu_ms = int(frame.get("cpu_ms", 0))
            return True
        return False

    def _from_judge(self) -> bool:
        """Handle the judge's complete frames; True when it is done."""
        while (item := self.reader.pop()) is not None:
            kind, payload = item
            self.last_msg = time.monotonic()
            if kind == PROGRAM_REQUEST:
                gen, data = split_generation(payload)
                if gen == self.gen and self.program_open:
                    self.to_program += data
            elif self._control(parse_frame(payload)):
                return True
        return False

    def run(self) -> None:
        """Relay until the judge is done, fails or runs out of time (``self.failed`` says which)."""
        x = self.x
        limits = x.limits
        idle = STARTUP_ALLOWANCE + limits.wall_per_test + limits.grace + JUDGE_SLACK
        per_test = limits.wall_per_test + limits.grace + JUDGE_SLACK
        judge_cap = 2 * self.max_line + (1 << 16)
        self.program_lines = ReplyLines()
        program_of_lines = self.program
        while True:
            now = time.monotonic()
            cur = x.verdicts.current
            deadline = (cur[1] + per_test) if cur is not None else (self.last_msg + idle)
            if now >= x.hard_end:
                x.verdicts.end_current("timeout", "Timeout", "the total wall-clock limit was reached")
                self.failed = "over"
                return
            if now >= deadline:
                if not x.verdicts.end_current(
                    "timeout",
                    "Timeout",
                    f"the test did not finish in {limits.wall_per_test:.1f}s (judge killed)",
                ):
                    self.failed = "the judge did not answer in time"
                else:
                    self.failed = "restart"
                return
            if self.program is not program_of_lines:
                self.program_lines = ReplyLines()
                program_of_lines = self.program
            rlist: list[int] = []
            wlist: list[int] = []
            if self.reader.pending() < MAX_PROGRAM_REQUEST and len(self.to_program) < MAX_PROGRAM_REQUEST:
                rlist.append(self.judge.fileno())
            if self.to_judge:
                wlist.append(self.judge.write_fileno())
            prog = self.program if self.program_open else None
            if prog is not None and len(self.to_judge) < judge_cap:
                rlist.append(prog.fileno())
            if prog is not None and self.to_program:
                wlist.append(prog.write_fileno())
            timeout = max(min(deadline, x.hard_end) - now, 0.0)
            try:
                readable, writable = ready(rlist, wlist, timeout)
            except OSError:
                readable, writable = set(), set()
            if self.judge.write_fileno() in writable and self.to_judge:
                try:
                    del self.to_judge[: self.judge.write_nowait(bytes(self.to_judge[: 1 << 20]))]
                except ChannelClosed:
                    self.to_judge.clear()
            if prog is not None and prog.write_fileno() in writable and self.to_program:
                try:
                    del self.to_program[: prog.write_nowait(bytes(self.to_program[: 1 << 20]))]
                except ChannelClosed:
                    self.to_program.clear()
            if prog is not None and prog.fileno() in readable:
                if not _read_into(prog, self.program_lines.feed):
                    self._program_closed(prog)
                self._lines_to_judge()
            if self.judge.fileno() in readable:
                if not _read_into(self.judge, self.reader.feed):
                    code, sig = self.judge.exit_signal(1.0)
                    self._judge_died(code, sig)
                    return
                try:
                    if self._from_judge():
                        return
                except (WireError, FrameError) as e:
                    x.verdicts.end_current("error", "JudgeError", f"the judge broke its protocol: {e}")
                    self.failed = f"the judge broke its protocol: {e}"
                    return

    def _lines_to_judge(self) -> None:
        while (line := self.program_lines.pop(self.max_line)) is not None:
            self.to_judge += pack(PROGRAM_LINE, with_generation(self.gen, line))

    def _program_closed(self, prog: HostChannel) -> None:
        self._lines_to_judge()
        code, sig = prog.exit_signal(1.0)
        self.program_open = False
        self.to_program.clear()
        msg = {"t": "closed", "g": self.gen, "code": code, "sig": sig}
        self.to_judge += pack(CONTROL, json.dumps(msg).encode())

    def _judge_died(self, code: int | None, sig: int | None) -> None:
        if sig == 24:  # SIGXCPU
            why = ("timeout", "Timeout", "the test used up the judge's CPU time limit")
        elif sig is not None:
            why = ("error", "JudgeError", f"the test's judge was killed by signal {sig}")
        else:
            why = ("error", "JudgeError", f"the test's judge exited (code {code})")
        self.failed = "restart" if self.x.verdicts.end_current(*why) else why[2]


class Execution:
    """One program against its tests: judges and program servers, relayed until every test has a verdict."""

    def __init__(
        self,
        start_judge: StartJudge,
        start_program: StartProgram,
        tests: Sequence[TestLike],
        limits: Limits,
        entry_point: str | None,
    ) -> None:
        self.start_judge = start_judge
        self.start_program = start_program
        self.payloads = [judge_payload(t) for t in tests]
        self.limits = limits
        self.entry_point = entry_point
        self.load = any(p["kind"] in ("function", "probe") for p in self.payloads)
        self.key = json.dumps([self.payloads, entry_point, limits.model_dump()], sort_keys=True)
        self.verdicts = Verdicts(len(self.payloads), limits)
        self.starts = 0
        self.end = 0.0
        self.hard_end = 0.0

    def run(self) -> tuple[ExecutionResult, int]:
        t0 = time.monotonic()
        self.end = t0 + self.limits.wall_total
        self.hard_end = self.end + self.limits.grace + JUDGE_SLACK
        judge_error: str | None = None
        over = False
        first = True
        while first or (self.verdicts.pending() and self.verdicts.status is None):
            if time.monotonic() >= self.end:
                over = True
                break
            first = False
            relay = _Relay(self, self.verdicts.pending())
            try:
                relay.run()
            finally:
                relay.close()
            if relay.failed is None:
                break
            if relay.failed == "over":
                over = True
                break
            if relay.failed != "restart":
                judge_error = relay.failed
                log.warning("sandbox: %s", judge_error)
                break
        result = self.verdicts.result(over, judge_error)
        result.duration = time.monotonic() - t0
        return result, self.starts


def run_execution(
    start_judge: StartJudge,
    start_program: StartProgram,
    tests: Sequence[TestLike],
    limits: Limits,
    entry_point: str | None,
) -> tuple[ExecutionResult, int]:
    """All verdicts of one program, and the number of program servers started."""
    return Execution(start_judge, start_program, tests, limits, entry_point).run()
