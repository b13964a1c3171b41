"""Reasoning steps: where a step of a chain of thought ends (a blank line, or every newline)."""

from __future__ import annotations

import pytest

from search.limits.steps import reasoning_step_stop, split_steps

COT = "Janet has 16 eggs.\nShe eats 3.\n\nSo 16 - 3 = 13 left.\n\n13 * 2 = 26, so \\boxed{26}."


def test_a_step_ends_at_a_blank_line_by_default() -> None:
    assert split_steps(COT) == [
        "Janet has 16 eggs.\nShe eats 3.\n\n",
        "So 16 - 3 = 13 left.\n\n",
        "13 * 2 = 26, so \\boxed{26}.",
    ]


def test_a_step_ends_at_every_newline_when_asked() -> None:
    assert split_steps(COT, "newline") == [
        "Janet has 16 eggs.\n",
        "She eats 3.\n",
        "\nSo 16 - 3 = 13 left.\n",
        "\n13 * 2 = 26, so \\boxed{26}.",
    ]


@pytest.mark.parametrize("kind", ["blank-line", "newline"])
def test_the_steps_join_back_into_the_text(kind: str) -> None:
    for text in (COT, "", "no end", "\n\n\nleading blanks\n\n", "a\n \t\nb"):
        assert "".join(split_steps(text, kind)) == text  # type: ignore[arg-type]


def test_the_stop_sees_the_text_before_the_step() -> None:
    # a rollout from "She eats 3.\n" sees only its new text: the blank line is this newline
    stop = reasoning_step_stop("blank-line", "Janet has 16 eggs.\nShe eats 3.\n")
    assert stop.find("\nSo 13 left.") == 1
    assert reasoning_step_stop("blank-line").find("\nSo 13 left.") is None  # nothing before it
    assert reasoning_step_stop("newline").find("13 left.\nThen") == 9


def test_an_unknown_step_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="use blank-line or newline"):
        reasoning_step_stop("sentence")  # type: ignore[arg-type]


def test_a_step_after_a_blank_line_needs_content_of_its_own() -> None:
    stop = reasoning_step_stop("blank-line", "She eats 3.\n\n")
    assert stop.find("\nSo 13 left.\n\nThen") == len("\nSo 13 left.\n\n")
