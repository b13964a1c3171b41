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
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from itertools import islice
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
        workers: int = 1,
    ) -> None:
        """Run ``work`` on each item; each row is kept, appended to the file and flushed as soon as
        its item finishes, then reported as ``on_row(i, len(todo), item, row)`` (``i`` counts
        finished items from 1). ``workers`` > 1 runs that many items at a time on threads (rows
        then land in the order they finish); a failing item stops the run after the rows of the
        items already started are written."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        sink = open(self.path, "a") if self.path is not None else None  # noqa: SIM115
        finished = 0

        def keep(item: T, row: Row) -> None:
            nonlocal finished
            finished += 1
            self.done[self.key(row)] = row
            if sink is not None:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            if on_row is not None:
                on_row(finished, len(todo), item, row)

        try:
            if workers == 1:
                for item in todo:
                    keep(item, work(item))
                return
            failure: Exception | None = None
            with ThreadPoolExecutor(workers, thread_name_prefix="eval") as pool:
                running = {pool.submit(work, item): item for item in todo[:workers]}
                queued = iter(todo[workers:])
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = running.pop(future)
                        try:
                            row = future.result()
                        except Exception as e:  # the others finish and keep their rows first
                            failure = failure or e
                            continue
                        keep(item, row)
                        if failure is None:
                            for nxt in islice(queued, 1):
                                running[pool.submit(work, nxt)] = nxt
            if failure is not None:
                raise failure
        finally:
            if sink is not None:
                sink.close()
