"""The Docker backend: the same program server in a throw-away container, the judge in a local sandbox.

Each sandbox start creates a container from ``image`` (any image with ``python3`` on PATH; the
harness needs only the standard library) with the network disabled, a read-only root, a tmpfs
``/work``, memory/CPU/pids limits, all capabilities dropped, ``no-new-privileges``, an
unprivileged user; requests go in on stdin and replies come back on the container's stdout (the
program's own stdout and stderr are sent to the container's stderr). The container's memory and
pids limits bound the whole execution. The container is removed afterwards, also when it hangs.

The judge (``sandbox/judge.py``: tests, expected values, assert-style test code) does not run in the
program's container nor in treedec's process: it runs in the best local process sandbox (bwrap,
else unshare, else rlimits: ``sandbox.judge_launcher.JudgeLauncher``) under a uid of its own, and
the host relays between the two (``sandbox/host.py``). A second container per execution would cost a
container start per judge for no isolation the program could exploit: the judge holds nothing
the program may not learn, only what the client who reads the verdicts sent.

Without an engine, ``DockerExecutor()`` raises ``SandboxUnavailable`` with one line saying so.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from sandbox.executor import ExecutionResult, Limits, SandboxUnavailable, TestLike
from sandbox.framing import STARTUP_ALLOWANCE, ChannelClosed
from sandbox.host import JudgeHandle, run_execution
from sandbox.protocol import HARNESS_SOURCE, build_request

DEFAULT_IMAGE = "python:3.11-slim"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/work"}


def container_options(
    image: str, limits: Limits, cpus: float = 1.0, user: str = "65534:65534"
) -> dict[str, Any]:
    """Everything the container is created with (low-level API arguments), without the engine."""
    tmpfs_size = max(limits.file_bytes * 4, 64 * 1024 * 1024)
    host_config = {
        "network_mode": "none",
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(cpus * 1e9),
        "pids_limit": limits.processes + 4,
        "read_only": True,
        "tmpfs": {
            "/work": f"rw,nosuid,nodev,size={tmpfs_size},mode=1777",
            "/tmp": f"rw,nosuid,nodev,size={tmpfs_size},mode=1777",
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ulimits": [
            {"Name": "cpu", "Soft": limits.cpu_seconds, "Hard": limits.cpu_seconds + 1},
            {"Name": "nofile", "Soft": limits.open_files, "Hard": limits.open_files},
            {"Name": "fsize", "Soft": limits.file_bytes, "Hard": limits.file_bytes},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "auto_remove": False,
    }
    return {
        "image": image,
        "command": ["python3", "-I", "-S", "-B", "-c", HARNESS_SOURCE],
        "stdin_open": True,
        "detach": False,
        "tty": False,
        "network_disabled": True,
        "user": user,
        "working_dir": "/work",
        "environment": dict(SANDBOX_ENV),
        "labels": {"treedec.sandbox": "1"},
        "host_config": host_config,
    }


def _engine_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class _DockerChannel:
    """One container; demultiplexes the attach stream (8-byte frame headers) into replies/output."""

    def __init__(self, client: Any, options: dict[str, Any], output_cap: int) -> None:
        api = client.api
        opts = dict(options)
        host_config = api.create_host_config(**opts.pop("host_config"))
        self._api = api
        self.container = api.create_container(host_config=host_config, **opts)["Id"]
        try:
            self._sock_io = api.attach_socket(
                self.container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self._sock: socket.socket = getattr(self._sock_io, "_sock", self._sock_io)
            api.start(self.container)
        except Exception:
            self.kill()
            raise
        self._raw = b""
        self.output = b""
        self._cap = output_cap
        self._eof = False

    def send(self, data: bytes, deadline: float) -> bool:
        """Write a whole frame by ``deadline`` (the server's first frame)."""
        view = memoryview(data)
        while view:
            n = self.write_nowait(bytes(view[: 1 << 20]))
            view = view[n:]
            if view and n == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([], [self._sock], [], left)
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def write_fileno(self) -> int:
        return self._sock.fileno()

    def write_nowait(self, data: bytes) -> int:
        self._sock.setblocking(False)
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            raise ChannelClosed() from None
        finally:
            self._sock.setblocking(True)

    def read_some(self) -> bytes | None:
        """The server's reply bytes in one read of the attach stream (program output is kept apart)."""
        if self._eof:
            return None
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            self._eof = True
            return None
        self._raw += chunk
        replies = b""
        while len(self._raw) >= 8:
            stream, size = struct.unpack(">BxxxL", self._raw[:8])
            if len(self._raw) < 8 + size:
                break
            payload, self._raw = self._raw[8 : 8 + size], self._raw[8 + size :]
            if stream == 1:
                replies += payload
            elif len(self.output) < self._cap:
                self.output += payload[: self._cap - len(self.output)]
        return replies

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        try:
            code = int(self._api.wait(self.container, timeout=max(wait, 1))["StatusCode"])
        except Exception:
            return None, None
        return (None, code - 128) if code > 128 else (code, None)

    def kill(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            self._api.remove_container(self.container, force=True)
        except Exception:
            pass


class DockerExecutor:
    """Runs the harness in Docker containers (``image`` needs only ``python3``)."""

    name = "docker"

    def __init__(self, image: str = DEFAULT_IMAGE, cpus: float = 1.0, base_url: str | None = None) -> None:
        import docker

        from sandbox.isolation import best_layer
        from sandbox.judge_launcher import JudgeLauncher

        self.image, self.cpus = image, cpus
        url = base_url or _engine_url()
        try:
            self.client = docker.DockerClient(base_url=url, timeout=10)
            self.client.ping()
        except Exception as e:
            raise SandboxUnavailable(
                f"Docker engine not reachable at {url}: start Docker or use --sandbox process"
            ) from e
        try:
            self.client.images.get(image)
        except Exception as e:
            raise SandboxUnavailable(
                f"Docker image {image!r} is not available: run `docker pull {image}`"
            ) from e
        # the judge never shares the program's container: it runs in the best local process sandbox
        self.judges = JudgeLauncher(best_layer())

    @property
    def layer(self) -> str:
        return "docker"

    def run(
        self,
        program: str,
        tests: Sequence[TestLike],
        limits: Limits | None = None,
        *,
        entry_point: str | None = None,
    ) -> ExecutionResult:
        limits = limits or Limits()
        options = container_options(self.image, limits, self.cpus)
        channels: list[_DockerChannel] = []

        def start(load: bool) -> _DockerChannel:
            chan = _DockerChannel(self.client, options, limits.output_bytes)
            channels.append(chan)
            extra = {"reply_fd": None, "workdir": "/work", "env": SANDBOX_ENV, "single_process": False}
            try:
                chan.send(
                    build_request(program, entry_point, limits, load, extra),
                    time.monotonic() + STARTUP_ALLOWANCE,
                )
            except ChannelClosed:
                pass  # the judge reads the end of the stream
            return chan

        def start_judge(key: str) -> JudgeHandle:
            return self.judges.acquire(limits, key)

        result, starts = run_execution(start_judge, start, tests, limits, entry_point)
        result.stdout = b"".join(c.output for c in channels)[: limits.output_bytes].decode("utf-8", "replace")
        result.layer, result.starts, result.resource_scope = "docker", starts, "container"
        return result
