"""The host's scratch directories for sandboxes: where their output files (and, outside bwrap,
their work directories) live, and reading those files back capped."""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

from sandbox.uids import UidLease


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


def read_capped(path: Path, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return ""
    text = data[:cap].decode("utf-8", "replace")
    return text + ("\n[... truncated]" if len(data) > cap else "")


def private_workdir(tmp: Path, lease: UidLease | None) -> str:
    """``tmp/work``, reachable only by the lease's uid (and root)."""
    work = tmp / "work"
    work.mkdir(mode=0o700)
    if lease is not None:
        os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o711)
        os.chown(work, lease.uid, lease.uid)
    return str(work)
