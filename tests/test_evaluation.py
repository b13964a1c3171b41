"""The resumable run loop (api/core/evaluation.py): rows land as items finish, a rerun skips them, items
may run side by side, and a failing item costs no other item's row."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api.core.evaluation import ResultsLog


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_rerun_runs_only_what_has_no_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    ResultsLog(path, key=lambda r: r["id"]).run([1, 2], lambda i: {"id": i, "sq": i * i})
    again = ResultsLog(path, key=lambda r: r["id"])
    todo = again.pending([1, 2, 3, 4], key=lambda i: i)
    assert todo == [3, 4]
    again.run(todo, lambda i: {"id": i, "sq": i * i})
    assert sorted(r["id"] for r in _rows(path)) == [1, 2, 3, 4]


def test_items_run_side_by_side_and_each_row_lands_when_its_item_finishes(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    inside, most = 0, 0
    lock = threading.Lock()
    seen: list[int] = []

    def work(i: int) -> dict:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05 if i % 2 else 0.01)
        with lock:
            inside -= 1
        return {"id": i}

    log = ResultsLog(path, key=lambda r: r["id"])
    log.run(list(range(8)), work, on_row=lambda n, total, item, row: seen.append(n), workers=3)
    assert most == 3  # never more than asked for, and that many at once
    assert seen == list(range(1, 9))  # progress counts finished items
    assert sorted(r["id"] for r in _rows(path)) == list(range(8))
    assert set(log.done) == set(range(8))


def test_a_failing_item_stops_the_run_but_the_items_already_running_keep_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"

    def work(i: int) -> dict:
        if i == 0:
            raise RuntimeError("boom")
        time.sleep(0.05)
        return {"id": i}

    with pytest.raises(RuntimeError, match="boom"):
        ResultsLog(path, key=lambda r: r["id"]).run(list(range(10)), work, workers=3)
    ids = sorted(r["id"] for r in _rows(path))
    assert ids == [1, 2]  # the two started beside the failure finished and were written; nothing new began
    assert ResultsLog(path, key=lambda r: r["id"]).pending(list(range(10)), key=lambda i: i)[0] == 0


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        ResultsLog(tmp_path / "r.jsonl", key=lambda r: r["id"]).run([1], lambda i: {"id": i}, workers=0)


def test_threads_asking_the_planner_registry_at_once_all_see_every_planner() -> None:
    code = """
import threading, planners
seen = []
ts = [threading.Thread(target=lambda: seen.append(len(planners.names()))) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(set(seen)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    counts = json.loads(out.stdout)
    assert len(counts) == 1 and counts[0] >= 7  # every thread saw the whole registry
