"""Running untrusted programs against tests: ``open_executor(name)`` picks a backend.

>>> ex = open_executor("auto")  # doctest: +SKIP
>>> ex.layer  # doctest: +SKIP
'bwrap'
"""

from __future__ import annotations

from sandbox.executor import ExecutionResult, Executor, Limits, SandboxUnavailable, TestVerdict
from sandbox.pool import Job, SandboxPool

__all__ = [
    "ExecutionResult",
    "Executor",
    "Job",
    "Limits",
    "SandboxPool",
    "SandboxUnavailable",
    "TestVerdict",
    "open_executor",
]


def open_executor(name: str = "auto") -> Executor:
    """``auto`` (best local layer), ``process`` (same), ``bwrap``/``unshare``/``plain`` (that layer),
    or ``docker`` (raises ``SandboxUnavailable`` without an engine)."""
    if name in ("auto", "process"):
        from sandbox.process import ProcessExecutor

        return ProcessExecutor("auto")
    if name in ("bwrap", "unshare", "plain"):
        from sandbox.process import ProcessExecutor

        return ProcessExecutor(name)
    if name == "docker":
        from sandbox.docker import DockerExecutor

        return DockerExecutor()
    raise SandboxUnavailable(f"unknown sandbox {name!r}: use auto, process, docker, bwrap, unshare or plain")
