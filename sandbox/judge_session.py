"""The judge's side of one program server (runs in the judge's sandbox): what a test sees of the
program, and the checked request/reply exchange behind it.

A ``Session`` sends one request at a time and checks every reply line (``sandbox/wire.py``) before
anything of it reaches a test; a ``ProgramFunction`` is the proxy a test calls; a ``TestRun`` holds
one test's clocks and the verdict once something decided it. Standard library only: the host
ships this module into the judge's sandbox (``sandbox/protocol.py``: ``JUDGE_MODULES``).
"""

from __future__ import annotations

import builtins
import sys
import time

try:
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without the C module
    import signal

from sandbox.framing import Channel, ChannelClosed, frame_request
from sandbox.wire import (
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from sandbox.wire import Shape


class Verdict:
    """The outcome of one test, as the judge sends it to the host (``frame``)."""

    __slots__ = ("index", "status", "exc_type", "message", "duration", "stdout", "signal", "value", "digest")

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
        self.value: Any = None  # a probed call's value, tagged JSON (sandbox/wire.py)
        self.digest: str | None = None  # its sha256 instead, when it is too large to send

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": "verdict", "i": self.index, "s": self.status}
        for key, value in (
            ("et", self.exc_type),
            ("em", self.message),
            ("so", self.stdout),
            ("sig", self.signal),
            ("vh", self.digest),
        ):
            if value is not None:
                out[key] = value
        if self.status == "passed" and self.digest is None and self.value is not None:
            out["v"] = self.value
        return out


# --- what a test sees ------------------------------------------------------------------------


class ProgramError(Exception):
    """The program raised an exception that is not a built-in one (its type name is ``exc_type``)."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type


class Abort(BaseException):
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


class TestRun:
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

    def decide(self, status: str, exc_type: str | None = None, message: str | None = None) -> Abort:
        """Fix the verdict (the first decision wins) and return the exception that ends the test."""
        return self.decide_verdict(
            Verdict(index=self.index, status=status, exc_type=exc_type, message=message)
        )

    def decide_verdict(self, verdict: Verdict) -> Abort:
        if self.decided is None:
            self.decided = verdict
        return Abort()

    def timeout_message(self, hard: bool) -> str:
        if time.monotonic() >= self.end - 1e-3 and self.soft >= self.end:
            return "the total wall-clock limit was reached"
        return (
            f"killed after {self.per_test:.1f}s" if hard else f"the test ran longer than {self.per_test:.1f}s"
        )


# --- one sandbox -----------------------------------------------------------------------------

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
        self.run: TestRun | None = None
        self._q = 0

    def _dead(self, run: TestRun) -> None:
        self.alive = False
        self.channel.kill()

    def _violation(self, e: WireError) -> Abort:
        """The sandbox lied about the protocol: kill it and error the test."""
        run = self.run
        assert run is not None
        self._dead(run)
        return run.decide("error", "ProtocolViolation", f"the program broke the reply protocol: {e}")

    def exchange(self, request: dict[str, Any], shapes: Sequence[Shape]) -> dict[str, Any]:
        """Send one request of the current test and return its checked reply frame, or raise ``Abort``."""
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
