"""The EvalPlus re-check: a disagreeing program is judged again alone, and both figures are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import mbpp_check


def _row(config: str, program: str, base: bool, plus: bool) -> dict[str, object]:
    return {
        "config": config,
        "task_id": "Mbpp/392",
        "program": program,
        "base_passed": base,
        "plus_passed": plus,
    }


def test_only_disagreeing_programs_are_judged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_row("a", "fast", True, True), _row("b", "fast", True, True), _row("c", "slow", False, False)]
    first = {("Mbpp/392", "fast"): (True, False), ("Mbpp/392", "slow"): (False, False)}
    asked: list[tuple[str, list[str]]] = []

    def isolated(task_id: str, programs: list[str], python: Path) -> list[tuple[bool, bool]]:
        asked.append((task_id, programs))
        return [(True, True)] * len(programs)

    monkeypatch.setattr(mbpp_check, "isolated_verdicts", isolated)
    again = mbpp_check.recheck_disagreements(rows, first, Path("python"))
    assert asked == [("Mbpp/392", ["fast"])]
    assert again["agree_plus"] == 3 and again["differ"] == []
    assert again["programs"] == [
        {
            "task_id": "Mbpp/392",
            "program": "fast",
            "evalplus_first": [True, False],
            "evalplus_isolated": [True, True],
        }
    ]


def test_a_disagreement_that_stays_is_still_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_row("a", "fast", True, True)]
    monkeypatch.setattr(mbpp_check, "isolated_verdicts", lambda t, ps, py: [(True, False)] * len(ps))
    again = mbpp_check.recheck_disagreements(rows, {("Mbpp/392", "fast"): (True, False)}, Path("python"))
    assert again["agree_plus"] == 0
    assert again["differ"] == [
        {"config": "a", "task_id": "Mbpp/392", "treedec": (True, True), "evalplus": [True, False]}
    ]
