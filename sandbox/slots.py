"""The sandboxes a worker thread keeps between its executions (a warm or spare judge, a spare
program server): one slot object per thread."""

from __future__ import annotations

import threading
from typing import Any


class ThreadSlots:
    """A worker thread's kept sandboxes (its warm judge, its spare judge or program server): an
    object of its own, so a helper thread doing that worker's housekeeping fills the right one."""

    def __init__(self) -> None:
        self.warm: Any = None
        self.spare: Any = None


def thread_slots(local: threading.local) -> ThreadSlots:
    slots = getattr(local, "slots", None)
    if slots is None:
        slots = local.slots = ThreadSlots()
    return slots  # type: ignore[no-any-return]
