"""The transport between the host and the program server, shared by every backend.

A backend starts the program server (``sandbox/_server.py``) somewhere with ``build_request`` as
its first frame and hands back a ``Channel`` (send request frames with a deadline, read reply lines
with a deadline, kill). The judge (``sandbox/judge.py``) does the rest: it runs the tests, decides
every verdict on the host, enforces the per-test and total wall clock, and restarts the server when
it dies or hangs.

Host to sandbox: 4-byte big-endian length + ``marshal`` data (the host is trusted; the sandbox never
sends marshal data back). Sandbox to host: newline-framed JSON lines, untrusted, checked by
``sandbox/wire.py``.

>>> lines = ReplyLines()
>>> lines.feed(b'{"t": 1}\\n{"t"')
>>> lines.pop(100), lines.pop(100)
(b'{"t": 1}', None)
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sandbox.executor import Limits

HARNESS_SOURCE = (Path(__file__).parent / "_server.py").read_text()
HARNESS_VERSION = "2"  # part of the execution cache key: results of the in-sandbox harness are stale


class ChannelClosed(Exception):
    """The sandbox closed its reply channel (it exited or was killed)."""


class ReplyLines:
    """Newline-framed replies as they arrive from a sandbox channel, with a cap on a frame's size."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pop(self, max_bytes: int) -> bytes | None:
        """The next complete line, ``b"<oversized frame>"`` past ``max_bytes``, or None for now."""
        nl = self._buf.find(b"\n", 0, max_bytes + 1)
        if nl >= 0:
            line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            return line
        if len(self._buf) > max_bytes:
            self._buf = b""
            return b"<oversized frame>"
        return None


class Channel(Protocol):
    """One started program server."""

    def send(self, data: bytes, deadline: float) -> bool:
        """Write a request frame; False if it could not be written by the deadline; ChannelClosed at EOF."""
        ...

    def read_line(self, deadline: float, max_bytes: int) -> bytes | None:
        """The next reply line; ``None`` at the deadline; raises ``ChannelClosed`` at EOF."""
        ...

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        """``(exit code, signal)`` of the server once it has exited, else ``(None, None)``."""
        ...

    def kill(self) -> None: ...


StartFn = Callable[[bool], Channel]
"""Starts one program server; the argument says whether it must load the program (function tests)."""


def frame_request(obj: dict[str, Any]) -> bytes:
    """A host-to-sandbox frame: 4-byte length and marshal data."""
    data = marshal.dumps(obj)
    return struct.pack(">I", len(data)) + data


def build_request(
    program: str, entry_point: str | None, limits: Limits, load: bool, extra: dict[str, Any]
) -> bytes:
    """The server's first frame: the program and how to run it (never a test or an expected value)."""
    req = {
        "program": program,
        "entry_point": entry_point,
        "limits": limits.model_dump(),
        "load": load,
        "max_reply": 4 * limits.output_bytes + (1 << 20) - 64,
        **extra,
    }
    return frame_request(req)
