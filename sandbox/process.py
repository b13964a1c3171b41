"""The local backend: the program server in a bubblewrap sandbox, else ``unshare`` namespaces, else rlimits.

Layers (the best the machine allows is used, and reported as ``ExecutionResult.layer``):

- ``bwrap``: new pid/net/ipc/uts namespaces, a read-only view of ``/usr`` and the interpreter's
  prefix only (its site-packages hidden), a fresh tmpfs ``/work`` and ``/tmp``,
  ``--die-with-parent``, capabilities dropped except the two the harness needs to drop to its uid;
- ``unshare``: pid/net/ipc/uts/mount namespaces, but the host file system stays visible;
- ``plain``: rlimits and a process group only, with a loud one-time warning.

Always: the program server drops to a uid of its own (when the host runs as root; ``RLIMIT_NPROC`` does
not apply to root) leased per execution, so concurrent executions never share a process count and
every process an execution leaves behind can be found and killed by uid; rlimits for CPU, address
space, file size, open files and processes; memory and processes bounded per execution (a cgroup
per execution, else one process: ``sandbox/resources.py``); a host-side wall clock; a scrubbed
environment; stdout and stderr written to files (an escaped child cannot hold a pipe open); the
real interpreter, not a pyenv shim.

The judge (``sandbox/judge.py``: the tests, the expected values, assert-style test code) runs in a
sandbox of the same layer started by ``JudgeLauncher``, with a uid, pid namespace and work directory
of its own; treedec's process only relays between the two (``sandbox/host.py``).

Start-up is most of an execution's cost, so both sandboxes start lean: ``python -I -S -B`` with
the code sent compiled when the sandbox runs treedec's own interpreter (``SERVER_BOOT``,
``JUDGE_BOOT``), and modules that import little (no ``re``, ``json``, ``typing`` or ``enum`` in
the judge; ``_signal`` in both). With bwrap each worker thread keeps one blank spare program server
booted ahead of its next execution (``ProcessExecutor``), as ``JudgeLauncher`` does for judges;
every execution still gets a program server that has never held another program.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path
from typing import Any

from sandbox.executor import ExecutionResult, Limits, SandboxUnavailable, TestLike
from sandbox.framing import ChannelClosed
from sandbox.host import JudgeHandle, background, run_execution
from sandbox.judge import STARTUP_ALLOWANCE
from sandbox.protocol import (
    HARNESS_SOURCE,
    JUDGE_BOOT,
    SERVER_BOOT,
    build_judge_boot,
    build_request,
    build_server_boot,
)
from sandbox.resources import ExecutionCgroup, cgroup_parent

log = logging.getLogger(__name__)

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
UID_BASE = 2_000_000
UID_RANGE = 65_536
LAYERS = ("bwrap", "unshare", "plain")
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _world_traversable(path: str) -> bool:
    p = Path(path)
    for d in [p, *p.parents]:
        try:
            if not d.stat().st_mode & 0o005:
                return False
        except OSError:
            return False
    return True


@lru_cache(maxsize=2)
def real_interpreter(visible_host: bool = False) -> tuple[str, tuple[str, ...]]:
    """The real python binary (never a pyenv shim) and the prefixes it needs at run time.

    ``visible_host``: the sandbox sees the host file system as an unprivileged uid (the unshare and
    plain layers), so the interpreter's prefix must be readable by everyone.
    """
    exe = os.path.realpath(sys.executable)
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    usable = not visible_host or os.geteuid() != 0 or all(_world_traversable(p) for p in prefixes)
    if _is_elf(exe) and usable:
        return exe, tuple(sorted(prefixes))
    fallback = os.path.realpath("/usr/bin/python3")
    if _is_elf(fallback):
        return fallback, ("/usr",)
    raise SandboxUnavailable("no real python3 binary found (tried sys.executable and /usr/bin/python3)")


def _bwrap_fs_args(python: str, prefixes: Sequence[str], limits: Limits) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    for f in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"):
        args += ["--ro-bind-try", f, f]
    made: set[str] = {"/", "/usr", "/etc"}
    for prefix in prefixes:
        if prefix == "/usr" or prefix.startswith("/usr/"):
            continue
        parts = Path(prefix).parts
        for k in range(2, len(parts)):
            d = str(Path(*parts[:k]))
            if d not in made:
                args += ["--perms", "0755", "--dir", d]
                made.add(d)
        args += ["--ro-bind", prefix, prefix]
        ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        for lib in ("lib", "lib64"):
            site = Path(prefix) / lib / ver / "site-packages"
            if site.is_dir():
                args += ["--tmpfs", str(site)]
    size = str(max(limits.file_bytes * 4, 64 * 1024 * 1024))
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/work", "--chdir", "/work"]
    return args


def bwrap_command(
    python: str, prefixes: Sequence[str], limits: Limits, source: str = HARNESS_SOURCE
) -> list[str]:
    root = os.geteuid() == 0
    cmd = [
        "bwrap",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    cmd += ["--die-with-parent", "--new-session", "--clearenv"]
    for k, v in SANDBOX_ENV.items():
        cmd += ["--setenv", k, v]
    cmd += ["--setenv", "HOME", "/work"]
    if root:
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-user"]
    cmd += _bwrap_fs_args(python, prefixes, limits)
    return cmd + ["--", python, "-I", "-S", "-B", "-c", source]


def unshare_command(python: str, source: str = HARNESS_SOURCE) -> list[str]:
    cmd = ["unshare", "--fork", "--pid", "--kill-child", "--mount-proc", "--net", "--ipc", "--uts"]
    if os.geteuid() != 0:
        cmd.insert(1, "--map-root-user")
    return cmd + ["--", python, "-I", "-S", "-B", "-c", source]


def sandbox_command(
    layer: str, python: str, prefixes: Sequence[str], limits: Limits, source: str
) -> list[str]:
    """The command that runs ``python -c source`` in ``layer``."""
    if layer == "bwrap":
        return bwrap_command(python, prefixes, limits, source)
    if layer == "unshare":
        return unshare_command(python, source)
    return [python, "-I", "-S", "-B", "-c", source]


def _probe(cmd: list[str]) -> bool:
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, env=SANDBOX_ENV)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


_layer_lock = threading.Lock()
_layer_cache: dict[str, bool] = {}
_warned_plain = False


def layer_available(layer: str) -> bool:
    """Whether this machine can run the given layer (probed once per process)."""
    with _layer_lock:
        if layer not in _layer_cache:
            python, prefixes = real_interpreter(visible_host=layer != "bwrap")
            if layer == "bwrap":
                ok = shutil.which("bwrap") is not None and _probe(
                    bwrap_command(python, prefixes, Limits())[:-2] + ["-c", "pass"]
                )
            elif layer == "unshare":
                ok = shutil.which("unshare") is not None and _probe(
                    unshare_command(python)[:-2] + ["-c", "pass"]
                )
            else:
                ok = True
            _layer_cache[layer] = ok
        return _layer_cache[layer]


def best_layer() -> str:
    for layer in LAYERS:
        if layer_available(layer):
            return layer
    return "plain"


def _warn_plain() -> None:
    global _warned_plain
    if not _warned_plain:
        _warned_plain = True
        msg = (
            "treedec sandbox: running programs with rlimits only and NO isolation (they can read "
            "your files and use the network). Install bubblewrap (bwrap)."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)


class UidLease:
    """A uid no other execution on this machine uses right now (a lock file per uid)."""

    _dir = Path(tempfile.gettempdir()) / "treedec-sandbox-uids"

    def __init__(self) -> None:
        self._dir.mkdir(mode=0o700, exist_ok=True)
        start = random.randrange(UID_RANGE)
        for k in range(UID_RANGE):
            uid = UID_BASE + (start + k) % UID_RANGE
            fd = os.open(self._dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise SandboxUnavailable("no free sandbox uid: too many executions at once")

    def release(self) -> None:
        kill_uid(self.uid)
        os.close(self._fd)


def _status_field(data: bytes, key: bytes) -> list[bytes]:
    """The words of one ``Key:`` line of a /proc/PID/status text (``data`` starts with a newline)."""
    i = data.find(b"\n" + key + b":")
    if i < 0:
        return []
    start = i + len(key) + 2
    end = data.find(b"\n", start)
    return data[start : end if end >= 0 else len(data)].split()


def _pids_of_uid(uid: int, among: Sequence[int] | None = None) -> list[int]:
    """Live (not zombie) processes whose real or effective uid is ``uid`` (of ``among``, else of all).

    Read from /proc/PID/status, not the owner of /proc/PID: a process that changed credentials
    and has not exec'd yet is non-dumpable, and its /proc entry is then owned by root. (One raw
    read per process, and only the State and Uid lines parsed of a process whose status mentions
    the uid at all: this runs after every execution.)
    """
    want = str(uid).encode()
    tabbed = b"\t" + want
    pids = []
    names = [str(p) for p in among] if among is not None else os.listdir("/proc")
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            data = b"\n" + os.read(fd, 8192)
        except OSError:
            continue
        finally:
            os.close(fd)
        if tabbed not in data:
            continue
        state = _status_field(data, b"State")[:1]
        uids = _status_field(data, b"Uid")[:2]
        if state and state[0] not in (b"Z", b"X") and want in uids:
            pids.append(int(name))
    return pids


def kill_uid(uid: int, timeout: float = 2.0) -> None:
    """SIGKILL every process running as ``uid`` and wait until none is left.

    Every round scans all of /proc, kills what runs as ``uid``, and waits until those processes
    are gone (watching only them) before the next full scan, which must find none: a process
    forked before the kill is found by that scan.
    """
    end = time.monotonic() + timeout
    while True:
        pids = _pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pause = 0.0005
        while pids:
            if time.monotonic() > end:
                log.warning("sandbox: processes of uid %d survive SIGKILL: %s", uid, pids)
                return
            time.sleep(pause)
            pause = min(2 * pause, 0.004)
            pids = _pids_of_uid(uid, pids)


class _Slots:
    """A worker thread's kept sandboxes (its warm judge, its spare judge or program server): an
    object of its own, so a helper thread doing that worker's housekeeping fills the right one."""

    def __init__(self) -> None:
        self.warm: Any = None
        self.spare: Any = None


def _thread_slots(local: threading.local) -> _Slots:
    slots = getattr(local, "slots", None)
    if slots is None:
        slots = local.slots = _Slots()
    return slots  # type: ignore[no-any-return]


class _ProcessChannel:
    """A started sandbox: frames in on its stdin pipe, replies out on a pipe it gets as ``reply_fd``.

    ``cleanup`` runs once it is killed (the judge's uid lease and work directory).
    """

    wrapped = False

    def __init__(
        self, cmd: list[str], env: dict[str, str], out: int, err: int, cwd: str | None, pipe_size: int = 0
    ) -> None:
        r, w = os.pipe()
        req_r, req_w = os.pipe()
        if pipe_size:
            try:
                fcntl.fcntl(req_w, F_SETPIPE_SZ, pipe_size)
            except OSError:
                pass  # the pipe keeps its size: the rest of a frame is written later
        self._r = r
        self._w = req_w
        self.reply_fd = w
        self.cleanup: list[Callable[[], None]] = []
        self.extra: dict[str, Any] = {}
        self.boot_left: bytes | None = None
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=req_r,
                stdout=out,
                stderr=err,
                pass_fds=(w,),
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(r)
            os.close(req_w)
            raise
        finally:
            os.close(w)
            os.close(req_r)
        os.set_blocking(req_w, False)

    def fileno(self) -> int:
        return self._r

    def alive(self) -> bool:
        return self._r >= 0 and self.proc.poll() is None

    def write_fileno(self) -> int:
        return self._w

    def read_some(self) -> bytes | None:
        """One read (call it when ``fileno`` is readable: it does not block then); None at EOF."""
        return os.read(self._r, 1 << 16) or None

    def send(self, data: bytes, deadline: float) -> bool:
        """Write a whole frame by ``deadline`` (a sandbox's first frame); ``ChannelClosed`` at EOF."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._w, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([], [self._w], [], left)
            except OSError:
                raise ChannelClosed() from None
        return True

    def write_nowait(self, data: bytes) -> int:
        try:
            return os.write(self._w, data)
        except BlockingIOError:
            return 0
        except OSError:
            raise ChannelClosed() from None

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        try:
            rc = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None, None
        if rc < 0:
            return None, -rc
        if rc > 128 and self.wrapped:
            return None, rc - 128
        return rc, None

    def _wait_reply_eof(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until no process holds the reply channel open any more.

        The sandbox's processes die asynchronously after it is killed (the pid namespace is torn
        down after bwrap exits); once the last of them is gone the reply pipe reads EOF, and the
        uid scan of the cleanup (``kill_uid``, which decides) then usually finds none of them
        still exiting. A process that closed the channel does not delay this; the scan finds it.
        """
        if self._r < 0:
            return
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                ready, _, _ = select.select([self._r], [], [], left)
                if ready and not os.read(self._r, 1 << 16):
                    return
            except OSError:
                return

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.kill()
        self.proc.wait()
        self._wait_reply_eof(0.05)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._r = self._w = -1
        while self.cleanup:
            try:
                self.cleanup.pop()()
            except Exception:
                log.exception("sandbox: cleanup failed")


@lru_cache(maxsize=1)
def _memory_tmp() -> str | None:
    """/dev/shm when it is a writable memory file system (creating and removing a directory there
    costs microseconds; on a disk file system, milliseconds of waiting per execution)."""
    try:
        st = os.statvfs("/dev/shm")
        ok = os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) and st.f_bavail > 0
        with open("/proc/self/mounts") as f:
            tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in f)
    except OSError:
        return None
    return "/dev/shm" if ok and tmpfs else None


def scratch_dir(prefix: str, layer: str) -> Path:
    """A new private (0700) host directory for one sandbox's output files.

    bwrap: on a memory file system when there is one, since the sandbox writes only its capped
    stdout/stderr (or log) there; its own files go to a tmpfs inside the sandbox. Other layers
    use the host directory as the sandbox's work directory, so it stays on the temp directory's
    file system.
    """
    base = _memory_tmp() if layer == "bwrap" else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _read_capped(path: Path, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return ""
    text = data[:cap].decode("utf-8", "replace")
    return text + ("\n[... truncated]" if len(data) > cap else "")


def _private_workdir(tmp: Path, lease: UidLease | None) -> str:
    """``tmp/work``, reachable only by the lease's uid (and root)."""
    work = tmp / "work"
    work.mkdir(mode=0o700)
    if lease is not None:
        os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o711)
        os.chown(work, lease.uid, lease.uid)
    return str(work)


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
    ``judge.IDLE_EXIT`` seconds without a job). ``close`` (and the end of treedec's process) kills
    every idle judge.
    """

    MAX_USES = 200
    REUSE_IDLE = 20.0  # the judge itself exits after judge.IDLE_EXIT seconds without a job
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
        self._idle: set[_ProcessChannel] = set()  # warm and spare judges, not in an execution
        self._closed = False
        self._commands: dict[Limits, list[str]] = {}
        # idle judges die with the launcher, or at the latest when treedec's process exits
        self._finalizer = weakref.finalize(self, JudgeLauncher._kill_idle, self._lock, self._idle)

    @staticmethod
    def _kill_idle(lock: threading.Lock, idle: set[_ProcessChannel]) -> None:
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

    def _slots(self) -> _Slots:
        """The calling thread's warm and spare judge slots."""
        return _thread_slots(self._local)

    def _take(self, name: str) -> Any:
        """The thread's warm or spare entry, no longer idle; None if there is none (or it was closed)."""
        slots = self._slots()
        with self._lock:
            entry = getattr(slots, name)
            setattr(slots, name, None)
            if entry is None or entry[0] not in self._idle:
                return None
            self._idle.discard(entry[0])
            return entry

    def _keep(self, name: str, entry: tuple[Any, ...], slots: _Slots | None = None) -> bool:
        """Keep ``entry`` (its first item a channel) as the thread's (or ``slots``') warm or spare
        judge, if allowed."""
        slots = slots or self._slots()
        with self._lock:
            if self._closed or getattr(slots, name) is not None:
                return False
            setattr(slots, name, entry)
            self._idle.add(entry[0])
            return True

    def _command(self, limits: Limits) -> list[str]:
        cmd = self._commands.get(limits)
        if cmd is None:
            cmd = sandbox_command(self.layer, self.python, self.prefixes, limits, JUDGE_BOOT)
            if len(self._commands) < 64:
                self._commands[limits] = cmd
        return cmd

    def acquire(self, limits: Limits, key: str) -> JudgeHandle:
        """The thread's warm judge for ``key``, else its spare (blank) judge, else a new one."""
        later: list[Callable[[], None]] = []
        warm = self._take("warm")
        if warm is not None:
            chan, handle, warm_key, since = warm
            fresh = time.monotonic() - since < self.REUSE_IDLE
            if warm_key == key and fresh and isinstance(chan, _ProcessChannel) and chan.alive():
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

    def _prestart(self, limits: Limits, cmd: list[str], slots: _Slots) -> None:
        """Start the spare judge of the worker thread of ``slots``, unless it has one."""
        if slots.spare is not None or self._closed:
            return
        chan = self._start(limits, cmd)
        if not self._keep("spare", (chan, cmd, time.monotonic()), slots):
            chan.kill()

    def start(self, limits: Limits) -> tuple[_ProcessChannel, dict[str, Any]]:
        """A new judge, its boot frame sent (or being sent), and the job fields of its launch."""
        chan = self._start(limits, self._command(limits))
        return chan, chan.extra

    def _start(self, limits: Limits, cmd: list[str]) -> _ProcessChannel:
        lease = UidLease() if os.geteuid() == 0 else None
        tmp = scratch_dir("treedec-judge-", self.layer)
        try:
            workdir = "/work" if self.layer == "bwrap" else _private_workdir(tmp, lease)
            log_path = tmp / "judge.log"
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            env = {**SANDBOX_ENV, "HOME": workdir}
            try:
                chan = _ProcessChannel(
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
            text = _read_capped(log_path, 4000)
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


class _Box:
    """One execution's host side: its scratch directory with the stdout/stderr files, its cgroup,
    and (a spare) a blank program server started into them before its program was known."""

    def __init__(self, layer: str, limits: Limits) -> None:
        self.limits = limits
        self.chan: _ProcessChannel | None = None
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
            _warn_plain()

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

    def _slots(self) -> _Slots:
        """The calling thread's spare program server slot."""
        return _thread_slots(self._local)

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

    def _prestart(self, limits: Limits, slots: _Slots) -> None:
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

            def start(load: bool) -> _ProcessChannel:
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
            result.stdout = _read_capped(box.out_path, limits.output_bytes)
            result.stderr = _read_capped(box.err_path, limits.output_bytes)
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
        return "/work" if self._layer == "bwrap" else _private_workdir(tmp, lease)

    def _spawn(self, limits: Limits, box: _Box, workdir: str) -> _ProcessChannel:
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
        chan = _ProcessChannel(cmd, env, box.out, box.err, cwd=None if self._layer == "bwrap" else workdir)
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
        chan: _ProcessChannel | None = None,
    ) -> _ProcessChannel:
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
