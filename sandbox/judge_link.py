"""The judge process (runs in the judge's sandbox): its entry point ``main``, its limits, and its
link to the host, through which it reaches the program servers.

``JUDGE_BOOT`` (``sandbox/protocol.py``) loads the judge's modules and calls ``main``: it reads the
job, drops to its uid and limits, and runs the tests (``sandbox/judge.py``) over ``HostLink``, one
``RelayChannel`` per program server. Standard library only, like every module of the judge.
"""

from __future__ import annotations

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
    ChannelClosed,
    FrameError,
    FrameReader,
    pack,
    split_generation,
    with_generation,
)
from sandbox.judge import Judge
from sandbox.wire import dumps_plain, loads_plain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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


__all__ = ["HostLink", "IDLE_EXIT", "RelayChannel", "main"]
