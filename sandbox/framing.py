"""Framing shared by the host, the judge process and the program server (standard library only).

This module is also loaded into the judge's sandbox (``sandbox/judge.py``), so it imports nothing
from treedec beyond the standard library.

- host or judge to program server: ``frame_request`` (4-byte big-endian length + ``marshal`` data);
- program server to judge: newline-framed JSON lines (``ReplyLines``), checked by ``sandbox/wire.py``;
- between the host and the judge process: ``pack``ed frames (one kind byte, 4-byte big-endian
  length, payload) read with ``FrameReader``, which caps each kind's payload.

>>> lines = ReplyLines()
>>> lines.feed(b'{"t": 1}\\n{"t"')
>>> lines.pop(100), lines.pop(100)
(b'{"t": 1}', None)
>>> r = FrameReader({b"J": 10})
>>> r.feed(pack(b"J", b"abc") + pack(b"J", b"x" * 11))
>>> r.pop()
(b'J', b'abc')
>>> try:
...     r.pop()
... except FrameError as e:
...     print(e)
a J frame of 11 bytes (at most 10)
"""

from __future__ import annotations

import marshal
import struct

TYPE_CHECKING = False  # the judge imports this module at every start: typing only for the checker
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol
else:
    Protocol = object

# frame kinds between the host and the judge
PROGRAM_LINE = b"L"  # host -> judge: 4-byte generation + one reply line of the program server
PROGRAM_REQUEST = b"P"  # judge -> host: 4-byte generation + one request frame for the program server
CONTROL = b"J"  # both ways: one JSON object (start, kill, test, verdict, done / closed)
JOB = b"N"  # host -> warm judge: the next job (marshal), for the same tests as its first one
# host and judge both time a sandbox's start with it (the judge: its program server's ``loaded``)
STARTUP_ALLOWANCE = 3.0  # seconds for the sandbox to start before the program's own clock runs
_HEADER = struct.Struct(">cI")
_GEN = struct.Struct(">I")


class ChannelClosed(Exception):
    """The sandbox closed its reply channel (it exited or was killed)."""


class FrameError(ValueError):
    """Bytes that are not a well-formed frame of an allowed kind and size."""


class ReplyLines:
    """Newline-framed replies as they arrive from a sandbox channel, with a cap on a frame's size."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> int:
        return len(self._buf)

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
    """One started program server, as the judge sees it."""

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


if TYPE_CHECKING:
    StartFn = Callable[[bool], Channel]
    """Starts one program server; the argument says whether it must load the program (function tests)."""
else:
    StartFn = "Callable[[bool], Channel]"


def frame_request(obj: dict[str, Any]) -> bytes:
    """A frame to the program server (or to the judge's bootstrap): 4-byte length and marshal data."""
    data = marshal.dumps(obj)
    return struct.pack(">I", len(data)) + data


def pack(kind: bytes, payload: bytes) -> bytes:
    """One host/judge frame."""
    return _HEADER.pack(kind, len(payload)) + payload


def with_generation(gen: int, data: bytes) -> bytes:
    return _GEN.pack(gen) + data


def split_generation(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < 4:
        raise FrameError("a frame without its generation")
    return _GEN.unpack_from(payload)[0], payload[4:]


class FrameReader:
    """``pack``ed frames as they arrive; ``FrameError`` for an unknown kind or an oversized payload."""

    def __init__(self, caps: Mapping[bytes, int]) -> None:
        self._caps = dict(caps)
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> int:
        return len(self._buf)

    def pop(self) -> tuple[bytes, bytes] | None:
        """The next complete frame as ``(kind, payload)``, or None for now."""
        if len(self._buf) < _HEADER.size:
            return None
        kind, size = _HEADER.unpack_from(self._buf)
        cap = self._caps.get(kind)
        if cap is None:
            raise FrameError(f"a frame of unknown kind {kind!r}")
        if size > cap:
            raise FrameError(f"a {kind.decode('latin-1')} frame of {size} bytes (at most {cap})")
        end = _HEADER.size + size
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[_HEADER.size : end])
        del self._buf[:end]
        return kind, payload
