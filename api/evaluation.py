"""Resumable runs over a dataset: one JSON line per finished piece of work, appended as it finishes.

``treedec eval``, ``bench/quality.py`` and ``bench/adadec.py`` all run many (configuration,
problem) pieces that each take seconds to minutes. Each writes its own row format; what they share
is here: the rows already in the file are read back by a key, a rerun runs only the pieces whose
key is not there, and every new row is written and flushed at once, so a run killed at any point
resumes after its last row.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "rows.jsonl"
>>> log = ResultsLog(path, key=lambda row: row["id"])
>>> log.run(log.pending([1, 2], key=str), lambda i: {"id": str(i), "square": i * i})
>>> again = ResultsLog(path, key=lambda row: row["id"])
>>> again.pending([1, 2, 3], key=str), again.done["2"]["square"]
([3], 4)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
Row = dict[str, Any]


def load_rows(path: Path | None, key: Callable[[Row], K]) -> dict[K, Row]:
    """The rows of a JSONL file by ``key`` (a later row replaces an earlier one with its key); none
    when there is no file."""
    rows: dict[K, Row] = {}
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[key(row)] = row
    return rows


class ResultsLog(Generic[K]):
    """The rows a resumable run has written to ``path`` (None: keep them in memory only)."""

    def __init__(self, path: Path | None, key: Callable[[Row], K]) -> None:
        self.path = path
        self.key = key
        self.done = load_rows(path, key)

    def pending(self, items: Iterable[T], key: Callable[[T], K]) -> list[T]:
        """The items, in order, whose key (as ``key`` gives it, equal to their row's key) has no row."""
        return [item for item in items if key(item) not in self.done]

    def run(
        self,
        todo: Sequence[T],
        work: Callable[[T], Row],
        on_row: Callable[[int, int, T, Row], None] | None = None,
    ) -> None:
        """Run ``work`` on each item; each row is kept, appended to the file and flushed before the
        next item starts, then reported as ``on_row(i, len(todo), item, row)`` (``i`` from 1)."""
        sink = open(self.path, "a") if self.path is not None else None  # noqa: SIM115
        try:
            for i, item in enumerate(todo, 1):
                row = work(item)
                self.done[self.key(row)] = row
                if sink is not None:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                if on_row is not None:
                    on_row(i, len(todo), item, row)
        finally:
            if sink is not None:
                sink.close()
