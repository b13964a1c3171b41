"""A started sandbox process as the host sees it: its request pipe in, its reply pipe out, its kill."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from sandbox.framing import ChannelClosed

log = logging.getLogger(__name__)

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_READ_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR
_WRITE_EVENTS = select.POLLOUT | select.POLLHUP | select.POLLERR


def ready(read: Sequence[int], write: Sequence[int], timeout: float) -> tuple[set[int], set[int]]:
    """The descriptors of ``read`` with data or an end to read and those of ``write`` that take a
    write (or would fail one), waiting at most ``timeout`` seconds. ``poll``, not ``select``: a
    long-running process may hold descriptors numbered past ``select``'s 1024."""
    poller = select.poll()
    masks: dict[int, int] = {}
    for fd in read:
        masks[fd] = masks.get(fd, 0) | select.POLLIN
    for fd in write:
        masks[fd] = masks.get(fd, 0) | select.POLLOUT
    for fd, mask in masks.items():
        poller.register(fd, mask)
    events = poller.poll(max(0.0, timeout) * 1000)
    readable = {fd for fd, ev in events if fd in read and ev & _READ_EVENTS}
    writable = {fd for fd, ev in events if fd in write and ev & _WRITE_EVENTS}
    return readable, writable


class ProcessChannel:
    """A started sandbox: frames in on its stdin pipe, replies out on a pipe it gets as ``reply_fd``.

    ``cleanup`` runs once it is killed (the judge's uid lease and work directory).
    """

    wrapped = False

    def __init__(
        self, cmd: list[str], env: dict[str, str], out: int, err: int, cwd: str | None, pipe_size: int = 0
    ) -> None:
        r, w = os.pipe()
        req_r, req_w = os.pipe()
        if pipe_size:
            try:
                fcntl.fcntl(req_w, F_SETPIPE_SZ, pipe_size)
            except OSError:
                pass  # the pipe keeps its size: the rest of a frame is written later
        self._r = r
        self._w = req_w
        self.reply_fd = w
        self.cleanup: list[Callable[[], None]] = []
        self.extra: dict[str, Any] = {}
        self.boot_left: bytes | None = None
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=req_r,
                stdout=out,
                stderr=err,
                pass_fds=(w,),
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(r)
            os.close(req_w)
            raise
        finally:
            os.close(w)
            os.close(req_r)
        os.set_blocking(req_w, False)

    def fileno(self) -> int:
        return self._r

    def alive(self) -> bool:
        return self._r >= 0 and self.proc.poll() is None

    def write_fileno(self) -> int:
        return self._w

    def read_some(self) -> bytes | None:
        """One read (call it when ``fileno`` is readable: it does not block then); None at EOF."""
        return os.read(self._r, 1 << 16) or None

    def send(self, data: bytes, deadline: float) -> bool:
        """Write a whole frame by ``deadline`` (a sandbox's first frame); ``ChannelClosed`` at EOF."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._w, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                ready((), (self._w,), left)
            except OSError:
                raise ChannelClosed() from None
        return True

    def write_nowait(self, data: bytes) -> int:
        try:
            return os.write(self._w, data)
        except BlockingIOError:
            return 0
        except OSError:
            raise ChannelClosed() from None

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        try:
            rc = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None, None
        if rc < 0:
            return None, -rc
        if rc > 128 and self.wrapped:
            return None, rc - 128
        return rc, None

    def _wait_reply_eof(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until no process holds the reply channel open any more.

        The sandbox's processes die asynchronously after it is killed (the pid namespace is torn
        down after bwrap exits); once the last of them is gone the reply pipe reads EOF, and the
        uid scan of the cleanup (``kill_uid``, which decides) then usually finds none of them
        still exiting. A process that closed the channel does not delay this; the scan finds it.
        """
        if self._r < 0:
            return
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                readable, _ = ready((self._r,), (), left)
                if readable and not os.read(self._r, 1 << 16):
                    return
            except OSError:
                return

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.kill()
        self.proc.wait()
        self._wait_reply_eof(0.05)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._r = self._w = -1
        while self.cleanup:
            try:
                self.cleanup.pop()()
            except Exception:
                log.exception("sandbox: cleanup failed")
