"""Which isolation layer this machine allows, and the command that runs ``python -c`` in each.

Layers (the best the machine allows is used, and reported as ``ExecutionResult.layer``):

- ``bwrap``: new pid/net/ipc/uts namespaces, a read-only view of ``/usr`` and the interpreter's
  prefix only (its site-packages hidden), a fresh tmpfs ``/work`` and ``/tmp``,
  ``--die-with-parent``, capabilities dropped except the two the harness needs to drop to its uid;
- ``unshare``: pid/net/ipc/uts/mount namespaces, but the host file system stays visible;
- ``plain``: rlimits and a process group only, with a loud one-time warning.

Every layer runs the real interpreter (``real_interpreter``), not a pyenv shim, in a scrubbed
environment (``SANDBOX_ENV``). ``layer_available`` probes a layer once per process.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from sandbox.executor import Limits, SandboxUnavailable
from sandbox.protocol import HARNESS_SOURCE

log = logging.getLogger(__name__)

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


def warn_plain() -> None:
    global _warned_plain
    if not _warned_plain:
        _warned_plain = True
        msg = (
            "treedec sandbox: running programs with rlimits only and NO isolation (they can read "
            "your files and use the network). Install bubblewrap (bwrap)."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
