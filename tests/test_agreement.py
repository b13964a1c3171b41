"""Outcome grouping (scorers/agreement.py) and the extra inputs (scorers/inputs.py), on the host only."""

from __future__ import annotations

import random

import pytest

from scorers.agreement import (
    Raised,
    Returned,
    behaviours_equal,
    group_outcomes,
    rank_behaviours,
)
from scorers.group_scores import GROUP_SCORES
from scorers.inputs import CallInput, call_source, entry_calls, literal, mutate_inputs, mutate_value


def test_floats_within_the_judges_tolerance_share_a_group_and_far_ones_do_not() -> None:
    behaviours = [[Returned(0.3)], [Returned(0.1 + 0.2)], [Returned(0.3001)], [Returned([1.0, 2.0])]]
    groups = group_outcomes(behaviours, behaviours_equal)
    assert [g.members for g in groups] == [[0, 1], [2], [3]]


def test_exceptions_are_outcomes_equal_by_kind_and_never_equal_to_a_value() -> None:
    a = [Returned(1), Raised("ValueError")]
    b = [Returned(1), Raised("ValueError")]
    c = [Returned(1), Raised("Timeout")]
    d = [Returned(1), Returned(None)]
    assert [g.members for g in group_outcomes([a, b, c, d], behaviours_equal)] == [[0, 1], [2], [3]]


def test_a_list_and_a_tuple_of_the_same_items_behave_differently() -> None:
    assert not behaviours_equal([Returned([1, 2])], [Returned((1, 2))])
    assert not behaviours_equal([Returned(1)], [Returned(1), Returned(2)])


def test_ties_in_size_go_to_the_better_public_rate_then_to_the_group_drawn_first() -> None:
    x, y, z = [Returned("x")], [Returned("y")], [Returned("z")]
    ranked = rank_behaviours([x, y, y, x, z], public_rates=[1.0, 1.0, 1.0, 1.0, 1.0])
    assert [(g.members, g.size) for g in ranked] == [([0, 3], 2), ([1, 2], 2), ([4], 1)]
    ranked = rank_behaviours([x, y, y, x, z], public_rates=[0.5, 1.0, 1.0, 0.5, 1.0])
    assert [g.members for g in ranked] == [[1, 2], [4], [0, 3]]
    assert ranked[0].public_rate == 1.0 and ranked[2].public_rate == 0.5


def test_public_first_puts_a_group_that_raises_where_most_return_behind_a_smaller_one() -> None:
    fragile = [Returned(0), Raised("IndexError")]
    handles = [Returned(0), Returned(-1)]
    other = [Returned(0), Returned(-2)]
    ranked = rank_behaviours([fragile, fragile, handles, other, other], score=GROUP_SCORES["public-first"])
    assert [(g.members, g.unhandled) for g in ranked] == [([3, 4], 0), ([2], 0), ([0, 1], 1)]


def test_raising_where_most_candidates_raise_too_is_no_penalty() -> None:
    raises = [Raised("ValueError")]
    ranked = rank_behaviours([raises, raises, raises, [Returned(None)]])
    assert ranked[0].members == [0, 1, 2] and ranked[0].unhandled == 0


def test_grouping_answers_uses_the_callers_equality() -> None:
    groups = group_outcomes(["18", "8", "18.0", "eighteen"], lambda a, b: a.strip(".0") == b.strip(".0"))
    assert [g.members for g in groups] == [[0, 2], [1], [3]]
    assert group_outcomes([], behaviours_equal) == []


def test_mutations_are_deterministic_under_a_seed_and_differ_across_seeds() -> None:
    examples = [CallInput(([3, 1, 2], "Hello", 2.5)), CallInput(([], "", 0.0), {"flag": True})]
    first = mutate_inputs(examples, limit=12, seed=7)
    assert first == mutate_inputs(examples, limit=12, seed=7)
    assert len(first) == 12
    assert mutate_inputs(examples, limit=12, seed=8) != first


def test_mutations_keep_each_arguments_type_and_change_exactly_one() -> None:
    example = CallInput(([3, 1, 2], "Hello", 2.5, (1, "a"), {"k": 1}, True))
    mutations = mutate_inputs([example], limit=100, seed=0)
    assert len(mutations) > 15
    for m in mutations:
        assert [type(a) for a in m.args] == [type(a) for a in example.args]
        assert sum(a != b for a, b in zip(m.args, example.args, strict=True)) == 1
    assert CallInput(([3, 1, 2], "Hello", 2.5, (1, "a"), {"k": 1}, True)) not in mutations
    assert len({literal(m.args) for m in mutations}) == len(mutations)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, [6, 4, 0, -5]),
        (0, [1, -1]),
        (True, [False]),
        (1.5, [2.0, 0.0, -1.5, 0.75]),
        ("Ab", ["", "bA", "aB", "AbAb"]),
        ("", []),
        ([], []),
        ({}, []),
        (None, []),
    ],
)
def test_mutations_of_scalars_are_the_documented_neighbours(value: object, expected: list[object]) -> None:
    assert mutate_value(value, random.Random(0)) == expected


def test_nested_lists_mutate_inside_and_grow_and_shrink() -> None:
    out = mutate_value([[1, 2], [3]], random.Random(0))
    assert [] in out and [[1, 2], [3], [1, 2], [3]] in out and [[1, 2], [3], [1, 2]] in out
    inner = [v for v in out if len(v) == 2 and v not in ([[1, 2], [3]], [[3], [1, 2]])]
    assert inner and all(type(v[0]) is list and type(v[1]) is list for v in inner)


def test_calls_are_found_by_parsing_without_running_anything() -> None:
    text = "f(__import__('builtins').__setattr__('PWNED_BY_PARSE', 1))\nassert f(2) == 3\nx = g(f(1))\n"
    assert entry_calls(text, "f") == [
        "f(__import__('builtins').__setattr__('PWNED_BY_PARSE', 1))",
        "f(2)",
        "f(1)",
    ]
    import builtins

    assert not hasattr(builtins, "PWNED_BY_PARSE")
    assert entry_calls("f(" * 5000, "f") == []  # too long or too deep: skipped, not raised
    assert entry_calls("f(1)\nf(2)\nf(3)", "f", limit=2) == ["f(1)", "f(2)"]


def test_calls_written_with_their_expected_result_in_prose_are_still_found() -> None:
    # what the bundled model writes when asked for test calls (HumanEval/74, /76, /83, /3)
    text = (
        "total_match( ['hi', 'admin'], ['hI', 'Hi'] ) ➞ ['hI', 'Hi']\n"
        "is_simple_power(1, 4) => true\n"
        "starts_one_ends(2): 18\n"
        "below_zero([1, 2, -4, 5]) -> True\n"
        "- below_zero(')(') gives an error\n"
        "below_zero([1, 2 -> unfinished\n"
    )
    found = [
        c
        for name in ("total_match", "is_simple_power", "starts_one_ends", "below_zero")
        for c in entry_calls(text, name)
    ]
    assert found == [
        "total_match( ['hi', 'admin'], ['hI', 'Hi'] )",
        "is_simple_power(1, 4)",
        "starts_one_ends(2)",
        "below_zero([1, 2, -4, 5])",
        "below_zero(')(')",
    ]
    assert entry_calls("not_f(1) -> 2\nf.g(1) -> 2\nf (1) -> 2", "f") == []


def test_a_built_input_renders_as_source_that_means_the_same_values() -> None:
    call = CallInput(([1.5, float("-inf")], (1,), frozenset(), {"a": b"x"}), {"k": None})
    source = call_source("f", call)
    assert source == "f([1.5, float('-inf')], (1,), frozenset(), {'a': b'x'}, k=None)"
    assert eval(source, {"f": lambda *a, **k: (a, k)}) == (call.args, call.kwargs)  # test's own literal


def test_dual_agreement_lets_a_larger_group_failing_one_doubtful_example_beat_a_lone_full_pass() -> None:
    from scorers.group_scores import GROUP_SCORES

    lone, crowd = [Returned("a")], [Returned("b")]
    behaviours = [lone, crowd, crowd, crowd]
    rates = [1.0, 2 / 3, 2 / 3, 2 / 3]
    assert rank_behaviours(behaviours, rates, score=GROUP_SCORES["public-first"])[0].members == [0]
    assert rank_behaviours(behaviours, rates, score=GROUP_SCORES["dual"])[0].members == [1, 2, 3]
    # two full passes against three at 2/3: 2.0 vs 2.0 is a tie in agreement, broken by likelihood
    tied = [lone, lone, crowd, crowd, crowd]
    tie_rates = [1.0, 1.0, 2 / 3, 2 / 3, 2 / 3]
    likelier_crowd = [-0.5, -0.5, -0.1, -0.1, -0.1]
    ranked = rank_behaviours(tied, tie_rates, likelier_crowd, GROUP_SCORES["dual"])
    assert ranked[0].members == [2, 3, 4] and ranked[0].score == (2.0, 0, 3)


def test_groups_equal_under_the_rule_go_to_the_likelier_group_not_the_first_drawn() -> None:
    x, y = [Returned("x")], [Returned("y")]
    ranked = rank_behaviours([x, y, y, x], [1.0] * 4, likelihoods=[-0.9, -0.2, -0.3, -0.8])
    assert [g.members for g in ranked] == [[1, 2], [0, 3]]
    assert ranked[0].likelihood == pytest.approx(-0.25)
    assert ranked[0].summary()["likelihood"] == -0.25


def test_the_chosen_member_is_the_likeliest_among_equal_public_rates() -> None:
    from scorers.agreement import Group, best_member

    group = Group([0, 1, 2], "x")
    assert best_member(group, [1.0, 1.0, 1.0], [-0.9, -0.1, -0.5]) == 1
    assert best_member(group, [0.5, 1.0, 1.0], [-0.01, -0.9, -0.5]) == 2
    assert best_member(group, [1.0, 1.0, 1.0], None) == 0


def test_weighted_agreement_counts_confident_votes_more_and_handled_first_puts_raising_last() -> None:
    from scorers.agreement import Group
    from scorers.group_scores import HandledFirst, WeightedAgreement

    sure = Group([0], "a", public_rate=1.0, likelihoods=[-0.01])
    unsure = Group([1, 2], "b", public_rate=1.0, likelihoods=[-3.0, -3.0])
    assert WeightedAgreement()(sure) > WeightedAgreement()(unsure)
    big_fragile = Group([0, 1, 2], "a", public_rate=1.0, unhandled=1)
    small_sound = Group([3], "b", public_rate=1.0)
    assert HandledFirst()(small_sound) > HandledFirst()(big_fragile)


def test_public_share_lets_only_a_quarter_of_the_pool_outvote_the_likelier_group() -> None:
    from scorers.group_scores import GROUP_SCORES

    share = GROUP_SCORES["public-share"]
    right, wrong = [Returned("right")], [Returned("wrong")]
    # a wrong pair against a likelier right singleton among 16: the pair is under a quarter, so
    # the two tie at size 0 and the likelier wins (public-first lets the pair win by one vote)
    pool = [wrong, wrong, right, *[[Returned(i)] for i in range(13)]]
    rates = [1.0, 1.0, 1.0] + [0.0] * 13
    likelihoods = [-0.22, -0.21, -0.16] + [-0.1] * 13
    assert rank_behaviours(pool, rates, likelihoods, GROUP_SCORES["public-first"])[0].members == [0, 1]
    ranked = rank_behaviours(pool, rates, likelihoods, share)
    assert ranked[0].members == [2] and ranked[0].score == (1.0, 0) and ranked[0].pool == 16
    # four of sixteen is a quarter: size counts again and the less likely crowd wins
    crowd = [wrong] * 4 + [right] + [[Returned(i)] for i in range(11)]
    ranked = rank_behaviours(crowd, [1.0] * 5 + [0.0] * 11, [-0.3] * 4 + [-0.1] * 12, share)
    assert ranked[0].members == [0, 1, 2, 3] and ranked[0].score == (1.0, 4)
    # the public pass rate still comes first, whatever the size
    assert rank_behaviours(crowd, [0.5] * 4 + [1.0] + [0.0] * 11, None, share)[0].members == [4]


def test_public_share_does_not_hold_raising_on_an_extra_input_against_a_group() -> None:
    from scorers.group_scores import GROUP_SCORES

    # the right program raises on an input outside the task's domain where a hard-coded one and
    # most others return: public-first puts it last of the full passes, public-share by likelihood
    strict = [Returned([4, 2]), Raised("ValueError")]
    constant = [Returned([4, 2]), Returned([4, 2])]
    others = [[Returned([i]), Returned([i])] for i in range(6)]
    rates, likelihoods = [1.0, 1.0] + [0.0] * 6, [-0.16, -0.17] + [-0.3] * 6
    behaviours = [strict, constant, *others]
    first = rank_behaviours(behaviours, rates, likelihoods, GROUP_SCORES["public-first"])
    assert first[0].members == [1] and first[1].unhandled == 1
    assert rank_behaviours(behaviours, rates, likelihoods, GROUP_SCORES["public-share"])[0].members == [0]


def test_written_tests_state_values_in_every_form_a_model_writes_them() -> None:
    from scorers.inputs import entry_expectations

    text = (
        "f(1) == 2\n"
        "assert f(2) == [1, 2]\n"
        "f(3)  # Expected output: (1, 0)\n"
        "f(4) ==> 'x'\n"
        "f(5) -> None\n"
        "f(6) => FALSE\n"
        "f(7) returns 3\n"  # prose, not a separator: no value
        "f(8) == f(7)\n"  # calls the function itself: no value
        "f(9) == (1,\n"  # not an expression: no value
        "f(1) == 99\n"  # the first value stated for a call stands
        "print(f(10))  # 4\n"  # a call nested in another: not read as a stated test
        "f(11) == 12"  # the last line, cut off by the token limit: its value may be cut too
    )
    assert entry_expectations(text, "f") == [
        ("f(1)", "2"),
        ("f(2)", "[1, 2]"),
        ("f(3)", "(1, 0)"),
        ("f(4)", "'x'"),
        ("f(5)", "None"),
        ("f(6)", "False"),
    ]
    assert entry_expectations(text, "f", limit=2) == [("f(1)", "2"), ("f(2)", "[1, 2]")]
    assert entry_expectations("", "f") == [] and entry_expectations("g(1) == 2\n", "f") == []
    assert entry_expectations("f(" * 5000 + "\n", "f") == []  # a line too long to read


def test_every_group_score_is_a_name_the_selector_params_accept() -> None:
    from typing import get_args

    from planners.selection import GroupScoreName
    from scorers.group_scores import GROUP_SCORES

    assert list(get_args(GroupScoreName)) == list(GROUP_SCORES)
