"""GSM8K, shipped with treedec: ``gsm8k:3``, ``gsm8k:0-99``, ``gsm8k:3,10-19`` (the test split) and
``gsm8k-train:...`` (the train split); ``gsm8k`` alone is the whole test split.

The data is OpenAI's grade-school-math release (MIT; its LICENSE is beside the files in
``search/problems/data/gsm8k/``): 1,319 test and 7,473 train problems, each a question and a worked
answer ending in ``#### N``. A problem's id is its spec: ``gsm8k/3``, ``gsm8k-train/3``.

>>> p = load_gsm8k("gsm8k:3")[0]
>>> p.id, p.final_answer.reference, p.final_answer.type
('gsm8k/3', '540', 'number')
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from search.problems.answer_problems import gsm8k_record
from search.problems.errors import ProblemError
from search.problems.index_lists import index_list
from search.problems.problem import Problem

DATA = Path(__file__).parent / "data" / "gsm8k"
SPLITS = {"gsm8k": "test", "gsm8k-train": "train"}
"""A spec's dataset name and the split it reads."""


def is_gsm8k_spec(spec: str) -> bool:
    """Whether a problem spec names GSM8K problems (``gsm8k``, ``gsm8k:...``, ``gsm8k-train:...``)."""
    return spec.partition(":")[0] in SPLITS


@lru_cache(maxsize=2)
def gsm8k_rows(split: str) -> tuple[dict[str, Any], ...]:
    """The rows of a split as shipped: ``question`` and ``answer`` (the worked answer)."""
    path = DATA / f"{split}.jsonl.gz"
    if not path.exists():  # pragma: no cover - a broken install
        raise ProblemError(f"GSM8K's {split} split is missing from this install ({path}); reinstall treedec")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def load_gsm8k(spec: str) -> list[Problem]:
    """The GSM8K problems a spec names, in its order."""
    name, _, ref = spec.strip().partition(":")
    if name not in SPLITS:
        raise ProblemError(f"{spec!r} is not a GSM8K spec: use gsm8k:N or gsm8k-train:N")
    rows = gsm8k_rows(SPLITS[name])
    indices = index_list(ref, len(rows), name) if ref.strip() else range(len(rows))
    return [gsm8k_record(rows[i], f"{name}/{i}").to_problem(f"{name}/{i}") for i in indices]
