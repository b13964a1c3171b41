"""Uids of their own for sandboxes: a lease per execution (a lock file per uid), and the kill of
every process still running as a uid when its lease ends.

When the host runs as root, each program server and each judge drops to a uid leased for it
(``RLIMIT_NPROC`` does not apply to root), so concurrent executions never share a process count
and every process an execution leaves behind can be found and killed by uid.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sandbox.executor import SandboxUnavailable

log = logging.getLogger(__name__)

UID_BASE = 2_000_000
UID_RANGE = 65_536


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
