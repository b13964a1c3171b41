"""What the host starts in a sandbox, shared by every backend: the program server and the judge.

- The program server (``sandbox/_server.py``, ``HARNESS_SOURCE``) gets ``build_request`` as its
  first frame: the program and how to run it, never a test or an expected value.
- The judge (``sandbox/judge.py``) is started as ``python3 -I -S -B -c JUDGE_BOOT``; its first
  frame carries the source of the judge's modules (standard library only: ``JUDGE_MODULES``), which
  the boot loads before it calls ``main`` in ``sandbox/judge_link.py``; its second frame the job
  from ``build_judge_job``: the tests, the limits, the clock.

The host (``sandbox/host.py``) relays between the two and decides nothing but the deadlines.
Host or judge to program server: 4-byte big-endian length + ``marshal`` data. Program server to
judge: newline-framed JSON lines, untrusted, checked by ``sandbox/wire.py``. Host and judge:
``sandbox/framing.py``.
"""

from __future__ import annotations

import marshal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.framing import Channel, ChannelClosed, ReplyLines, StartFn, frame_request

if TYPE_CHECKING:
    from sandbox.executor import Limits

_HERE = Path(__file__).parent
HARNESS_SOURCE = (_HERE / "_server.py").read_text()
HARNESS_VERSION = "3"  # part of the execution cache key: results of older harnesses are stale
# The judge's modules, each after the ones it imports; the boot calls the last one's ``main``.
JUDGE_MODULE_NAMES = ("framing", "wire", "judge_checks", "judge_session", "judge", "judge_link")
JUDGE_MODULES = tuple((f"sandbox.{name}", (_HERE / f"{name}.py").read_text()) for name in JUDGE_MODULE_NAMES)

# Both bootstraps read one length-prefixed marshal message from stdin first.
_READ = """\
import marshal, os, sys
def _rx(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            os._exit(71)
        b += c
    return b
"""

JUDGE_BOOT = (
    _READ
    + """\
_req = marshal.loads(_rx(int.from_bytes(_rx(4), "big")))
_pkg = type(sys)("sandbox")
_pkg.__path__ = []
sys.modules["sandbox"] = _pkg
for _name, _src in _req["modules"]:
    _m = type(sys)(_name)
    _m.__file__ = "<" + _name + ">"
    sys.modules[_name] = _m
    setattr(_pkg, _name.rpartition(".")[2], _m)
    exec(compile(_src, _m.__file__, "exec") if isinstance(_src, str) else _src, _m.__dict__)
del _req, _pkg, _m, _src
sys.modules["sandbox.judge_link"].main()
"""
)

SERVER_BOOT = (
    _READ
    + """\
_code = marshal.loads(_rx(int.from_bytes(_rx(4), "big")))
del _rx
exec(_code)
"""
)
"""The program server's bootstrap when it runs treedec's own interpreter: its first frame is the
server's code object (``build_server_boot``), compiled once here instead of at every start."""

__all__ = [
    "HARNESS_SOURCE",
    "SERVER_BOOT",
    "HARNESS_VERSION",
    "JUDGE_BOOT",
    "Channel",
    "ChannelClosed",
    "ReplyLines",
    "StartFn",
    "build_judge_boot",
    "build_server_boot",
    "build_request",
    "frame_request",
]


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


_COMPILED = tuple((name, compile(src, f"<{name}>", "exec", dont_inherit=True)) for name, src in JUDGE_MODULES)


@lru_cache(maxsize=2)
def build_judge_boot(compiled: bool = False) -> bytes:
    """The judge's first frame: its modules as source, or as code objects when the judge runs this
    very interpreter (``compiled``: marshal's code format is specific to the Python version)."""
    return frame_request({"modules": list(_COMPILED if compiled else JUDGE_MODULES)})


@lru_cache(maxsize=1)
def build_server_boot() -> bytes:
    """``SERVER_BOOT``'s first frame: the program server's code, compiled (the same interpreter only)."""
    data = marshal.dumps(compile(HARNESS_SOURCE, "<server>", "exec", dont_inherit=True))
    return len(data).to_bytes(4, "big") + data
