"""Starting judges on this machine: each in a sandbox of the executor's layer, with a uid and a work
directory of its own, kept warm for the same tests or pre-started blank for the next ones.

The judge (``sandbox/judge.py``: the tests, the expected values, assert-style test code) runs in a
sandbox of the same layer as the program servers, with a uid, pid namespace and work directory
of its own; treedec's process only relays between the two (``sandbox/host.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sandbox.channel import ProcessChannel
from sandbox.executor import Limits
from sandbox.framing import ChannelClosed
from sandbox.host import JudgeHandle
from sandbox.isolation import SANDBOX_ENV, real_interpreter, sandbox_command
from sandbox.protocol import JUDGE_BOOT, build_judge_boot
from sandbox.scratch import private_workdir, read_capped, scratch_dir
from sandbox.slots import ThreadSlots, thread_slots
from sandbox.uids import UidLease

log = logging.getLogger(__name__)


class JudgeLauncher:
    """Starts judges (``sandbox/judge.py``) in a layer's sandbox, each with a uid and a work directory of
    its own: never the program's uid, pid namespace or writable directory.

    Warm judges: each thread (an executor-pool worker) keeps the judge of its last execution, and
    reuses it for its next execution with the same key (the same tests, entry point and limits: the
    same request) for at most ``MAX_USES`` executions and ``REUSE_IDLE`` seconds apart. A judge
    never runs program code, so reusing it hands the next program nothing of the last one; a judge
    that was given a job is never given another key's job.

    Spare judges (``prestart``): after an execution took a judge that was not warm, its thread starts
    one blank judge in the background (it boots, loads its modules and waits for its first job; it
    holds nothing), and its next execution with other tests takes it instead of starting one. A spare
    that sat idle ``SPARE_IDLE`` seconds is killed instead of used (the judge itself exits after
    ``judge_link.IDLE_EXIT`` seconds without a job). ``close`` (and the end of treedec's process) kills
    every idle judge.
    """

    MAX_USES = 200
    REUSE_IDLE = 20.0  # the judge itself exits after judge_link.IDLE_EXIT seconds without a job
    SPARE_IDLE = 20.0
    PIPE_SIZE = 1 << 18  # the judge's request pipe holds its whole boot frame

    def __init__(self, layer: str, reuse: bool = True, prestart: bool = True) -> None:
        self.layer = layer
        self.reuse = reuse
        self.prestart = prestart
        self.python, self.prefixes = real_interpreter(visible_host=layer != "bwrap")
        self.compiled = os.path.realpath(self.python) == os.path.realpath(sys.executable)
        self.started = 0  # judges started, spares included
        self._local = threading.local()
        self._lock = threading.Lock()
        # warm and spare judges not in an execution, with when each became idle
        self._idle: dict[ProcessChannel, float] = {}
        self._closed = False
        self._commands: dict[Limits, list[str]] = {}
        # idle judges die with the launcher, or at the latest when treedec's process exits
        self._finalizer = weakref.finalize(self, JudgeLauncher._kill_idle, self._lock, self._idle)

    @staticmethod
    def _kill_idle(lock: threading.Lock, idle: dict[ProcessChannel, float]) -> None:
        with lock:
            chans = list(idle)
            idle.clear()
        for chan in chans:
            chan.kill()

    def close(self) -> None:
        """Kill every idle (warm or spare) judge; from now on none is kept."""
        with self._lock:
            self._closed = True
        self._kill_idle(self._lock, self._idle)

    def _slots(self) -> ThreadSlots:
        """The calling thread's warm and spare judge slots."""
        return thread_slots(self._local)

    def _take(self, name: str) -> Any:
        """The thread's warm or spare entry, no longer idle; None if there is none (or it was closed)."""
        slots = self._slots()
        with self._lock:
            entry = getattr(slots, name)
            setattr(slots, name, None)
            if entry is None or entry[0] not in self._idle:
                return None
            del self._idle[entry[0]]
            return entry

    def _keep(self, name: str, entry: tuple[Any, ...], slots: ThreadSlots | None = None) -> bool:
        """Keep ``entry`` (its first item a channel) as the thread's (or ``slots``') warm or spare
        judge, if allowed."""
        slots = slots or self._slots()
        with self._lock:
            if self._closed or getattr(slots, name) is not None:
                return False
            setattr(slots, name, entry)
            self._idle[entry[0]] = time.monotonic()
            return True

    def _reap(self) -> None:
        """Kill the idle judges that no execution may take any more (idle longer than a warm or a
        spare judge may be): a thread that ended (a pool closed, a worker replaced) leaves its
        judges behind, and each holds pipes and a uid lease until it is killed."""
        stale_after = max(self.REUSE_IDLE, self.SPARE_IDLE)
        now = time.monotonic()
        with self._lock:
            stale = [chan for chan, since in self._idle.items() if now - since > stale_after]
            for chan in stale:
                del self._idle[chan]
        for chan in stale:
            chan.kill()

    def _command(self, limits: Limits) -> list[str]:
        cmd = self._commands.get(limits)
        if cmd is None:
            cmd = sandbox_command(self.layer, self.python, self.prefixes, limits, JUDGE_BOOT)
            if len(self._commands) < 64:
                self._commands[limits] = cmd
        return cmd

    def acquire(self, limits: Limits, key: str) -> JudgeHandle:
        """The thread's warm judge for ``key``, else its spare (blank) judge, else a new one."""
        self._reap()
        later: list[Callable[[], None]] = []
        warm = self._take("warm")
        if warm is not None:
            chan, handle, warm_key, since = warm
            fresh = time.monotonic() - since < self.REUSE_IDLE
            if warm_key == key and fresh and isinstance(chan, ProcessChannel) and chan.alive():
                return handle
            later.append(chan.kill)
        cmd = self._command(limits)
        chan = None
        spare = self._take("spare")
        if spare is not None:
            spare_chan, spare_cmd, since = spare
            if spare_cmd == cmd and time.monotonic() - since < self.SPARE_IDLE and spare_chan.alive():
                chan = spare_chan
            else:
                later.append(spare_chan.kill)
        if chan is None:
            try:
                chan = self._start(limits, cmd)
            except BaseException:
                for work in later:
                    work()
                raise
        if self.prestart and self.reuse:
            slots = self._slots()  # the housekeeping may run in a helper thread
            later.append(lambda: self._prestart(limits, cmd, slots))

        def release(handle: JudgeHandle, keep: bool) -> None:
            if not (
                keep
                and self.reuse
                and handle.uses < self.MAX_USES
                and self._keep("warm", (handle.chan, handle, key, time.monotonic()))
            ):
                handle.chan.kill()

        def after_start() -> None:
            for work in later:
                try:
                    work()
                except Exception:
                    log.exception("sandbox: judge housekeeping failed")

        handle = JudgeHandle(chan, chan.extra, release, compiled=self.compiled, boot=chan.boot_left)
        handle.after_start = after_start
        return handle

    def _prestart(self, limits: Limits, cmd: list[str], slots: ThreadSlots) -> None:
        """Start the spare judge of the worker thread of ``slots``, unless it has one."""
        if slots.spare is not None or self._closed:
            return
        chan = self._start(limits, cmd)
        if not self._keep("spare", (chan, cmd, time.monotonic()), slots):
            chan.kill()

    def start(self, limits: Limits) -> tuple[ProcessChannel, dict[str, Any]]:
        """A new judge, its boot frame sent (or being sent), and the job fields of its launch."""
        chan = self._start(limits, self._command(limits))
        return chan, chan.extra

    def _start(self, limits: Limits, cmd: list[str]) -> ProcessChannel:
        lease = UidLease() if os.geteuid() == 0 else None
        tmp = scratch_dir("treedec-judge-", self.layer)
        try:
            workdir = "/work" if self.layer == "bwrap" else private_workdir(tmp, lease)
            log_path = tmp / "judge.log"
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            env = {**SANDBOX_ENV, "HOME": workdir}
            try:
                chan = ProcessChannel(
                    cmd,
                    env,
                    log_fd,
                    log_fd,
                    cwd=None if self.layer == "bwrap" else workdir,
                    pipe_size=self.PIPE_SIZE,
                )
            finally:
                os.close(log_fd)
        except BaseException:
            if lease is not None:
                lease.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.started += 1
        chan.wrapped = self.layer != "plain"

        def cleanup() -> None:
            if lease is not None:
                lease.release()
            text = read_capped(log_path, 4000)
            if text.strip():
                log.debug("sandbox: judge output: %s", text)
            shutil.rmtree(tmp, ignore_errors=True)

        chan.cleanup.append(cleanup)
        chan.extra = {
            "reply_fd": chan.reply_fd,
            "workdir": workdir,
            "env": env,
            "uid": lease.uid if lease else None,
            "gid": lease.uid if lease else None,
        }
        # the judge loads its modules now, and then waits for its job
        boot = build_judge_boot(self.compiled)
        try:
            chan.boot_left = boot[chan.write_nowait(boot) :]
        except ChannelClosed:
            chan.boot_left = b""  # it died at once: the host reads the end of its channel
        return chan
