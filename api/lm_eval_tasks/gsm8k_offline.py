"""Data of the offline ``treedec_gsm8k`` lm-eval task (see the YAML beside it).

``load`` builds the dataset from the GSM8K test split shipped inside treedec
(``search/problems/data/gsm8k/``, no hub download): each row keeps GSM8K's ``question`` and worked
``answer`` (ending in ``#### N``, the target lm-eval's gsm8k filters and ``exact_match`` read), plus
its treedec ``id`` (``gsm8k/3``) and ``answer_type``, which tell the plugin to search the row as a
question with a final answer rather than continue the harness's prompt as sent.
"""

from __future__ import annotations

from typing import Any


def rows(split: str = "test") -> list[dict[str, Any]]:
    """The rows of a shipped GSM8K split as the task's documents."""
    from search.problems.gsm8k import gsm8k_rows

    name = "gsm8k" if split == "test" else f"gsm8k-{split}"
    return [
        {"id": f"{name}/{i}", "question": r["question"], "answer": r["answer"], "answer_type": "number"}
        for i, r in enumerate(gsm8k_rows(split))
    ]


def load(**_: Any) -> Any:
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows("test"))})
