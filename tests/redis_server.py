"""A real ``redis-server`` on a free loopback port, for tests and benchmarks (never a mock).

>>> server = RedisServer.start()            # doctest: +SKIP
>>> server.client().ping()                  # doctest: +SKIP
True
>>> server.kill(); server.restart()         # doctest: +SKIP
>>> server.stop()                           # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process without persistence; ``kill`` and ``restart`` keep the port."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, binary: str | None = None) -> RedisServer:
        binary = binary or redis_server_binary()
        if binary is None:
            raise FileNotFoundError("redis-server not found on PATH")
        workdir = Path(tempfile.mkdtemp(prefix="treedec-redis-"))
        last: Exception | None = None
        for _ in range(3):  # the free port can be taken between probing and binding
            server = cls(binary, free_port(), workdir)
            try:
                server._spawn()
                return server
            except RuntimeError as exc:
                last = exc
        raise RuntimeError(f"could not start redis-server: {last}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: object) -> redis.Redis:
        """A plain redis-py client (raw bytes), separate from any cache under test."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]

    def _spawn(self) -> None:
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - owned by the process
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = self.client(socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            probe.close()
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S}s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        path = self.workdir / f"redis-{self.port}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL, as when a server is lost: no shutdown, clients see their sockets die."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing, like a hung or partitioned host."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same port (empty: there is no persistence)."""
        self.kill()
        self._spawn()

    def config_set(self, name: str, value: str | int) -> None:
        with self.client() as c:
            c.config_set(name, value)

    def reset(self) -> None:
        """Alive, empty, default memory settings and zeroed command statistics."""
        if not self.alive:
            self.restart()
        with self.client() as c:
            c.flushall()
            c.config_set("maxmemory", 0)
            c.config_set("maxmemory-policy", "noeviction")
            c.config_resetstat()

    def command_calls(self) -> dict[str, int]:
        """Calls per command since the last reset, from ``INFO commandstats`` (e.g. ``{"mget": 1}``)."""
        with self.client() as c:
            info = c.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}

    def stop(self) -> None:
        self.resume()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
