"""The local backend: the program server in a bubblewrap sandbox, else ``unshare`` namespaces, else rlimits.

Layers (``sandbox/isolation.py``; the best the machine allows is used, and reported as
``ExecutionResult.layer``): ``bwrap``, else ``unshare`` namespaces, else ``plain`` rlimits.

Always: the program server drops to a uid of its own (when the host runs as root; ``RLIMIT_NPROC`` does
not apply to root) leased per execution, so concurrent executions never share a process count and
every process an execution leaves behind can be found and killed by uid; rlimits for CPU, address
space, file size, open files and processes; memory and processes bounded per execution (a cgroup
per execution, else one process: ``sandbox/resources.py``); a host-side wall clock; a scrubbed
environment; stdout and stderr written to files (an escaped child cannot hold a pipe open); the
real interpreter, not a pyenv shim.

The judge (``sandbox/judge.py``: the tests, the expected values, assert-style test code) runs in a
sandbox of the same layer started by ``JudgeLauncher`` (``sandbox/judge_launcher.py``), with a uid,
pid namespace and work directory of its own; treedec's process only relays between the two
(``sandbox/host.py``).

Start-up is most of an execution's cost, so both sandboxes start lean: ``python -I -S -B`` with
the code sent compiled when the sandbox runs treedec's own interpreter (``SERVER_BOOT``,
``JUDGE_BOOT``), and modules that import little (no ``re``, ``json``, ``typing`` or ``enum`` in
the judge; ``_signal`` in both). With bwrap each worker thread keeps one blank spare program server
booted ahead of its next execution (``ProcessExecutor``), as ``JudgeLauncher`` does for judges;
every execution still gets a program server that has never held another program.

The parts, one module each: ``sandbox/isolation.py`` (layers and their commands),
``sandbox/uids.py`` (uid leases, kills by uid), ``sandbox/channel.py`` (a started sandbox's pipes),
``sandbox/scratch.py`` (host directories for output files), ``sandbox/slots.py`` (what a worker
thread keeps), ``sandbox/judge_launcher.py`` (judges); this module is the executor itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from sandbox.channel import ProcessChannel
from sandbox.executor import ExecutionResult, Limits, SandboxUnavailable, TestLike
from sandbox.framing import STARTUP_ALLOWANCE, ChannelClosed
from sandbox.host import JudgeHandle, background, run_execution
from sandbox.isolation import (
    LAYERS,
    SANDBOX_ENV,
    best_layer,
    layer_available,
    real_interpreter,
    sandbox_command,
    warn_plain,
)
from sandbox.judge_launcher import JudgeLauncher
from sandbox.protocol import HARNESS_SOURCE, SERVER_BOOT, build_request, build_server_boot
from sandbox.resources import ExecutionCgroup, cgroup_parent
from sandbox.scratch import private_workdir, read_capped, scratch_dir
from sandbox.slots import ThreadSlots, thread_slots
from sandbox.uids import UidLease

log = logging.getLogger(__name__)


class _Box:
    """One execution's host side: its scratch directory with the stdout/stderr files, its cgroup,
    and (a spare) a blank program server started into them before its program was known."""

    def __init__(self, layer: str, limits: Limits) -> None:
        self.limits = limits
        self.chan: ProcessChannel | None = None
        self.since = time.monotonic()
        parent = cgroup_parent()
        self.cgroup = ExecutionCgroup(parent, limits) if parent is not None else None
        self.out = self.err = -1
        try:
            self.tmp = scratch_dir("treedec-sbx-", layer)
            self.out_path, self.err_path = self.tmp / "stdout", self.tmp / "stderr"
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self.out = os.open(self.out_path, flags, 0o600)
            self.err = os.open(self.err_path, flags, 0o600)
        except BaseException:
            self.close()
            raise

    def close_files(self) -> None:
        for fd in (self.out, self.err):
            if fd >= 0:
                os.close(fd)
        self.out = self.err = -1

    def close(self, lease: UidLease | None = None) -> None:
        """Kill its unused spare server (if any), release ``lease`` (every process of its uid killed),
        then remove everything of it."""
        try:
            if self.chan is not None:
                self.chan.kill()
                self.chan = None
            self.close_files()
            if self.cgroup is not None:
                self.cgroup.close()
                self.cgroup = None
        finally:
            if lease is not None:
                lease.release()
            if getattr(self, "tmp", None) is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)


class ProcessExecutor:
    """Runs programs on this machine in the best available layer (or the one named).

    Spare program servers (``prestart``, the bwrap layer): once an execution's first program server
    started, its thread starts one blank program server for its next execution, in a sandbox, scratch
    directory and cgroup of its own: it boots, loads the server's code and waits for its first frame,
    holding nothing (no program, no uid lease, no test). The next execution with the same limits
    sends it its program instead of starting a server; a spare serves one execution and is killed
    with it like any program server, and one that sat idle ``SPARE_IDLE`` seconds is killed
    instead of used. Every other program server (restarts in an execution) is started fresh.

    >>> ex = ProcessExecutor()  # doctest: +SKIP
    >>> tests = [FunctionTest(call="f(1)", expected="2")]  # doctest: +SKIP
    >>> ex.run("def f(x):\\n    return x + 1\\n", tests, entry_point="f").passed  # doctest: +SKIP
    1
    """

    name = "process"
    SPARE_IDLE = 20.0

    def __init__(
        self, layer: str = "auto", default_limits: Limits | None = None, prestart: bool = True
    ) -> None:
        if layer == "auto":
            layer = best_layer()
        elif layer not in LAYERS:
            raise SandboxUnavailable(f"unknown sandbox layer {layer!r}: use auto, bwrap, unshare or plain")
        elif not layer_available(layer):
            raise SandboxUnavailable(f"sandbox layer {layer!r} does not work on this machine: use 'auto'")
        self._layer = layer
        self.default_limits = default_limits or Limits()
        self.python, self.prefixes = real_interpreter(visible_host=layer != "bwrap")
        # the program server runs treedec's own interpreter: it is sent compiled (``SERVER_BOOT``)
        self.compiled = os.path.realpath(self.python) == os.path.realpath(sys.executable)
        self._commands: dict[Limits, list[str]] = {}
        # spares need a work directory that does not depend on the execution's uid: bwrap's tmpfs
        self.prestart = prestart and layer == "bwrap"
        self.program_servers = 0  # program servers started, spares included
        self._local = threading.local()
        self._lock = threading.Lock()
        self._spares: set[_Box] = set()
        self._closed = False
        self._finalizer = weakref.finalize(self, ProcessExecutor._close_spares, self._lock, self._spares)
        self.judges = JudgeLauncher(layer)
        if layer == "plain":
            warn_plain()

    @property
    def layer(self) -> str:
        return self._layer

    @staticmethod
    def _close_spares(lock: threading.Lock, spares: set[_Box]) -> None:
        with lock:
            boxes = list(spares)
            spares.clear()
        for box in boxes:
            box.close()

    def close(self) -> None:
        """Kill the idle judges and spare program servers; later runs still work, each with its own."""
        with self._lock:
            self._closed = True
        self._close_spares(self._lock, self._spares)
        self.judges.close()

    def _slots(self) -> ThreadSlots:
        """The calling thread's spare program server slot."""
        return thread_slots(self._local)

    def _take_spare(self, limits: Limits) -> _Box | None:
        """The thread's spare program server for ``limits``, no longer anyone else's; None if none."""
        slots = self._slots()
        with self._lock:
            box = slots.spare
            slots.spare = None
            if box is None or box not in self._spares:
                return None
            self._spares.discard(box)
        chan = box.chan
        fresh = time.monotonic() - box.since < self.SPARE_IDLE
        if box.limits == limits and fresh and chan is not None and chan.alive():
            return box
        box.close()
        return None

    def _prestart(self, limits: Limits, slots: ThreadSlots) -> None:
        """Start the spare program server of the worker thread of ``slots``, unless it has one (and
        kill spares left idle too long by threads that are gone; a spare also exits by itself,
        ``FIRST_FRAME_WAIT``)."""
        if slots.spare is not None or self._closed:
            return
        now = time.monotonic()
        with self._lock:
            stale = [b for b in self._spares if now - b.since > 2 * self.SPARE_IDLE]
            self._spares.difference_update(stale)
        for old in stale:
            old.close()
        box = _Box(self._layer, limits)
        try:
            box.chan = self._spawn(limits, box, "/work")
            if self.compiled:
                box.chan.send(build_server_boot(), time.monotonic() + STARTUP_ALLOWANCE)
        except BaseException:
            box.close()
            raise
        with self._lock:
            if not self._closed and slots.spare is None:
                slots.spare = box
                self._spares.add(box)
                return
        box.close()

    def run(
        self,
        program: str,
        tests: Sequence[TestLike],
        limits: Limits | None = None,
        *,
        entry_point: str | None = None,
    ) -> ExecutionResult:
        limits = limits or self.default_limits
        root = os.geteuid() == 0
        lease = UidLease() if root else None
        box: _Box | None = None
        helpers: list[Future[None]] = []
        try:
            box = self._take_spare(limits) if self.prestart else None
            if box is None:
                box = _Box(self._layer, limits)
            workdir = self._workdir(box.tmp, lease)
            this = box
            first = [True]
            slots = self._slots()

            def start(load: bool) -> ProcessChannel:
                spare, this.chan = this.chan, None  # a spare serves this execution's first server only
                chan = self._start(program, entry_point, load, limits, lease, workdir, this, spare)
                if first and self.prestart:
                    first.clear()
                    # the next execution's server starts in a helper thread while this one runs
                    helpers.append(background(lambda: self._prestart(limits, slots)))
                return chan

            def start_judge(key: str) -> JudgeHandle:
                return self.judges.acquire(limits, key)

            try:
                result, starts = run_execution(start_judge, start, tests, limits, entry_point)
            finally:
                box.close_files()
            result.stdout = read_capped(box.out_path, limits.output_bytes)
            result.stderr = read_capped(box.err_path, limits.output_bytes)
            result.layer = self._layer
            result.starts = starts
            result.resource_scope = "cgroup" if box.cgroup is not None else "process"
            return result
        finally:
            for helper in helpers:
                helper.result()
            if box is not None:
                box.close(lease)
            elif lease is not None:
                lease.release()

    def _workdir(self, tmp: Path, lease: UidLease | None) -> str:
        return "/work" if self._layer == "bwrap" else private_workdir(tmp, lease)

    def _spawn(self, limits: Limits, box: _Box, workdir: str) -> ProcessChannel:
        """A program server started into ``box``, waiting for its first frame."""
        cmd = self._commands.get(limits)
        if cmd is None:
            source = SERVER_BOOT if self.compiled else HARNESS_SOURCE
            cmd = sandbox_command(self._layer, self.python, self.prefixes, limits, source)
            if len(self._commands) < 64:
                self._commands[limits] = cmd
        if box.cgroup is not None:
            cmd = box.cgroup.wrap(cmd)
        env = {**SANDBOX_ENV, "HOME": workdir}
        chan = ProcessChannel(cmd, env, box.out, box.err, cwd=None if self._layer == "bwrap" else workdir)
        chan.wrapped = self._layer != "plain"
        self.program_servers += 1
        return chan

    def _start(
        self,
        program: str,
        entry_point: str | None,
        load: bool,
        limits: Limits,
        lease: UidLease | None,
        workdir: str,
        box: _Box,
        chan: ProcessChannel | None = None,
    ) -> ProcessChannel:
        """A program server with its request written: ``chan`` (a spare, sent its boot frame already)
        or a new one."""
        boot = b""
        if chan is None:
            chan = self._spawn(limits, box, workdir)
            boot = build_server_boot() if self.compiled else b""
        env = {**SANDBOX_ENV, "HOME": workdir}
        extra: dict[str, Any] = {
            "reply_fd": chan.reply_fd,
            "workdir": workdir,
            "env": env,
            "uid": lease.uid if lease else None,
            "gid": lease.uid if lease else None,
            "single_process": box.cgroup is None,
        }
        request = boot + build_request(program, entry_point, limits, load, extra)
        try:
            if not chan.send(request, time.monotonic() + STARTUP_ALLOWANCE):
                log.warning("sandbox: the program server did not read its request in time")
        except ChannelClosed:
            pass  # it died at once: the judge reads the end of its reply channel
        return chan
