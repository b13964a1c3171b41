"""The fixed GSM8K samples every reasoning benchmark runs on, each drawn once with a named seed.

- ``TEST_300``: 300 of GSM8K's 1,319 test problems (``TEST_SEED``), the whole-benchmark set of
  ``bench/quality.py`` (all 1,319 would cost about four times the CPU). It is never used to choose
  a default or a threshold.
- ``TRAIN_40``: 40 of the 7,473 train problems (``TRAIN_SEED``), on which defaults are chosen
  (each reasoning style's room, ``bench/reasoning_room.py``).

A sample is a problem spec (``gsm8k:3,17,...``), so every configuration reads the same problems in
the same order.

>>> len(sample_indices(TEST_SEED, 300, TEST_SIZE)), sample_indices(TEST_SEED, 300, TEST_SIZE)[:3]
(300, [0, 1, 12])
>>> spec("gsm8k-train", [5, 2])
'gsm8k-train:2,5'
"""

from __future__ import annotations

import random

TEST_SEED = 20240924
"""The seed of the 300 GSM8K test problems (named in docs/results.md before the first run)."""
TRAIN_SEED = 7473
"""The seed of the 40 GSM8K train problems defaults are chosen on."""
TEST_SIZE, TRAIN_SIZE = 1319, 7473


def sample_indices(seed: int, count: int, population: int) -> list[int]:
    """``count`` distinct problem numbers out of ``population``, drawn with ``seed``, in order."""
    return sorted(random.Random(seed).sample(range(population), count))


def spec(dataset: str, indices: list[int]) -> str:
    """A problem spec naming ``indices`` of ``dataset`` (``gsm8k`` or ``gsm8k-train``), in order."""
    return f"{dataset}:{','.join(str(i) for i in sorted(indices))}"


TEST_300 = spec("gsm8k", sample_indices(TEST_SEED, 300, TEST_SIZE))
TRAIN_40 = spec("gsm8k-train", sample_indices(TRAIN_SEED, 40, TRAIN_SIZE))
