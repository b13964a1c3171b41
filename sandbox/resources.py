"""Bounds on one execution as a whole, not per process: a cgroup v2 per execution, else one process.

- ``cgroup``: where a cgroup v2 hierarchy with the memory and pids controllers can be delegated to
  treedec (``$TREEDEC_SANDBOX_CGROUP``, or a ``treedec-sandbox`` child of the cgroup treedec runs
  in), every execution gets its own cgroup with ``memory.max`` = ``Limits.memory_bytes`` (no swap)
  and ``pids.max`` = ``Limits.processes`` plus the sandbox's own few processes; leftovers are
  killed with ``cgroup.kill``.
- ``process`` (the fallback): the program server may not fork or start threads (``RLIMIT_NPROC``
  of its own uid is 1), so its address-space limit bounds the whole execution.

``scope()`` says which applies on this machine; ``health()`` is the same for ``/healthz``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from sandbox.executor import Limits

log = logging.getLogger(__name__)

CGROUP_ENV = "TREEDEC_SANDBOX_CGROUP"
CONTROLLERS = ("memory", "pids")
SANDBOX_OVERHEAD_PIDS = 3  # bwrap, bwrap's pid-namespace init, the program server


@dataclass(frozen=True)
class Scope:
    """What bounds one execution's memory and processes."""

    kind: Literal["cgroup", "process", "container"]
    detail: str


def _cgroup2_mounts(mounts: str) -> list[Path]:
    return [
        Path(f.split()[1]) for f in mounts.splitlines() if len(f.split()) > 2 and f.split()[2] == "cgroup2"
    ]


def _own_cgroup(proc_cgroup: str) -> str | None:
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


def _enable_controllers(cgroup: Path) -> None:
    enabled = set((cgroup / "cgroup.subtree_control").read_text().split())
    missing = [c for c in CONTROLLERS if c not in enabled]
    if missing:
        (cgroup / "cgroup.subtree_control").write_text(" ".join("+" + c for c in missing))


def _usable_parent(base: Path) -> Path | None:
    """``base/treedec-sandbox`` with memory and pids enabled for its children, or None."""
    try:
        if not set(CONTROLLERS) <= set((base / "cgroup.controllers").read_text().split()):
            return None
        parent = base / "treedec-sandbox"
        _enable_controllers(base)
        parent.mkdir(exist_ok=True)
        _enable_controllers(parent)
        probe = parent / f"probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        try:
            ok = (probe / "memory.max").exists() and (probe / "pids.max").exists()
        finally:
            probe.rmdir()
        return parent if ok else None
    except OSError:
        return None


def find_cgroup_parent(mounts: str, proc_cgroup: str, configured: str | None) -> Path | None:
    """Where per-execution cgroups can be made: the configured cgroup, else one under ours."""
    if configured:
        return _usable_parent(Path(configured))
    own = _own_cgroup(proc_cgroup)
    if own is None:
        return None
    for mount in _cgroup2_mounts(mounts):
        parent = _usable_parent(mount / own.lstrip("/"))
        if parent is not None:
            return parent
    return None


@lru_cache(maxsize=1)
def cgroup_parent() -> Path | None:
    """This machine's parent cgroup for executions (probed once), or None."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    return find_cgroup_parent(mounts, proc_cgroup, os.environ.get(CGROUP_ENV))


def scope() -> Scope:
    """What bounds an execution of the process backend on this machine."""
    parent = cgroup_parent()
    if parent is not None:
        return Scope("cgroup", f"cgroup v2 per execution under {parent}: memory and pids limits")
    return Scope("process", "one process per execution: its address-space limit bounds the execution")


def health() -> dict[str, str]:
    """The sandbox's resource scope, for a health endpoint."""
    s = scope()
    return {"resource_scope": s.kind, "resource_detail": s.detail}


class ExecutionCgroup:
    """One execution's cgroup: limits written at creation, everything in it killed at ``close``."""

    def __init__(self, parent: Path, limits: Limits) -> None:
        self.path = parent / f"exec-{uuid.uuid4().hex}"
        self.path.mkdir()
        try:
            (self.path / "memory.max").write_text(str(limits.memory_bytes))
            (self.path / "pids.max").write_text(str(limits.processes + SANDBOX_OVERHEAD_PIDS))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        except OSError:
            self.path.rmdir()
            raise

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside this cgroup (the shell moves itself in, then execs ``cmd``)."""
        return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(self.procs), *cmd]

    def oom_killed(self) -> bool:
        try:
            for line in (self.path / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def _pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs.read_text().split()]
        except (OSError, ValueError):
            return []

    def close(self, timeout: float = 2.0) -> None:
        """Kill every process left in the cgroup and remove it."""

        def kill(pids: list[int]) -> None:
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:
                sigkill(pids)

        left = kill_until_gone(self._pids, kill, timeout)
        if left:
            log.warning("sandbox: processes survive in %s: %s", self.path, left)
            return
        try:
            self.path.rmdir()
        except OSError as e:
            log.warning("sandbox: cannot remove %s: %s", self.path, e)


def sigkill(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` (one that is already gone is no error)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def kill_until_gone(
    pids: Callable[[], list[int]], kill: Callable[[list[int]], None], timeout: float
) -> list[int]:
    """``kill`` what ``pids()`` lists until it lists nothing, for at most ``timeout`` seconds; the
    processes still there then (empty: all gone)."""
    end = time.monotonic() + timeout
    while True:
        left = pids()
        if not left:
            return []
        kill(left)
        if time.monotonic() > end:
            return left
        time.sleep(0.002)
