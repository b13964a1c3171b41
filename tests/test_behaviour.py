"""Selection by behaviour with the real sandbox: probed values, inputs built only in the sandbox,
the selector on hand-written candidates, and best-of-N's selector on the tiny model."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

import planners
from sandbox import open_executor
from sandbox.executor import CallProbe, Limits
from sandbox.pool import SandboxPool
from sandbox.wire import decode_value
from scorers.agreement import Raised, Returned
from scorers.behaviour import BehaviourProbe, Digest, public_calls, select_by_behaviour
from scorers.group_scores import GROUP_SCORES
from scorers.inputs import CallInput
from scorers.tests import TestScorer
from search.problems.problem import FunctionTest, Problem
from search.state.context import SearchContext

PROBLEM = Problem(
    id="t/double_all",
    prompt=(
        'def double_all(xs):\n    """Double every item.\n    >>> double_all([1, 2])\n    [2, 4]\n    """\n'
    ),
    entry_point="double_all",
    public_tests=[FunctionTest(call="double_all([1, 2])", expected="[2, 4]")],
)
RIGHT = [
    "    return [2 * x for x in xs]\n",
    "    return [x + x for x in xs]\n",
    "    return list(map(lambda x: x * 2, xs))\n",
]
OUTLIER = "    return [2, 4] if xs == [1, 2] else list(xs)\n"  # passes the example, wrong elsewhere


@pytest.fixture(scope="module")
def pool() -> SandboxPool:
    return SandboxPool(open_executor("auto"))


def test_a_probe_sends_back_the_value_an_exception_or_a_timeout(pool: SandboxPool) -> None:
    program = (
        "def f(x):\n    if x < 0:\n        raise KeyError(x)\n"
        "    while x == 7:\n        pass\n    return (x, x / 4, {x})\n"
    )
    probes = [CallProbe(call=c) for c in ("f(2)", "f(-1)", "f(7)", "f(3)", "[0] * 100000")]
    result = pool.run_many([pool_job(program, probes)])[0]
    statuses = [(v.status, v.exc_type) for v in result.verdicts]
    assert statuses == [
        ("passed", None),
        ("error", "KeyError"),
        ("timeout", "Timeout"),
        ("passed", None),
        ("passed", None),
    ]
    assert decode_value(result.verdicts[0].value) == (2, 0.5, {2})
    assert decode_value(result.verdicts[3].value) == (3, 0.75, {3})
    big = result.verdicts[4]
    assert big.value is None and big.value_digest is not None and len(big.value_digest) == 64


def pool_job(program: str, probes: list[CallProbe]):  # type: ignore[no-untyped-def]
    from sandbox.pool import Job

    return Job(program, probes, Limits(wall_per_test=1.0, wall_total=20), "f")


def test_written_calls_are_built_only_in_the_sandbox_and_bad_ones_are_dropped(
    pool: SandboxPool, tmp_path: Path
) -> None:
    marker = tmp_path / "ran_on_host"
    calls = [
        "double_all([3, 4])",
        "double_all(xs=[0])",
        "double_all(__import__('builtins').__setattr__('PWNED_BY_INPUT', 1))",
        f"double_all(__import__('os').system('touch {marker}'))",
        "double_all([i for i in iter(int, 1)])",  # never ends: times out
        "double_all(1 / 0)",  # raises while building
        "__import__('os').getpid()",  # not a call of the entry point
        "double_all(object())",  # not a plain value
    ]
    probe = BehaviourProbe(pool, per_input=0.5)
    built = probe.build_inputs(PROBLEM, calls)
    assert built[0] == CallInput(([3, 4],), {})
    assert built[1] == CallInput((), {"xs": [0]})
    assert built[2] == CallInput((None,), {})  # ran, in the sandbox's own interpreter
    assert not hasattr(builtins, "PWNED_BY_INPUT")
    assert built[4:] == [None, None, None, None]
    assert probe.executions == 1
    if open_executor("auto").layer in ("bwrap", "unshare", "docker"):
        assert not marker.exists()


def test_the_selector_picks_the_majority_behaviour_over_a_lone_outlier_that_passes_the_examples(
    pool: SandboxPool,
) -> None:
    probe = BehaviourProbe(pool)
    completions = [OUTLIER, *RIGHT]
    selection = select_by_behaviour(probe, PROBLEM, completions, public_rates=[1.0] * 4, mutations=6)
    assert [g.members for g in selection.groups] == [[1, 2, 3], [0]]
    assert selection.chosen == 1
    assert selection.group_of() == {1: (0, 3), 2: (0, 3), 3: (0, 3), 0: (1, 1)}
    assert selection.inputs[0] == CallInput(([1, 2],))  # the example, then at most six mutations
    assert CallInput(([],)) in selection.inputs and 4 <= len(selection.inputs) <= 7
    assert selection.executions == 1 + 4  # the inputs built once, each program run once


def test_public_first_puts_a_candidate_that_raises_where_most_others_return_behind_a_tie_in_size(
    pool: SandboxPool,
) -> None:
    fragile = "    return [2 * xs[0]] + [2 * x for x in xs[1:]]\n"  # IndexError on []
    other = "    return [2 * x for x in xs] or [0]\n"  # returns on [], another value
    completions = [fragile, fragile, RIGHT[0], RIGHT[1], other]
    selection = select_by_behaviour(
        BehaviourProbe(pool),
        PROBLEM,
        completions,
        public_rates=[1.0] * 5,
        written=["double_all([])"],
        score=GROUP_SCORES["public-first"],
    )
    assert [(g.members, g.unhandled) for g in selection.groups] == [([2, 3], 0), ([4], 0), ([0, 1], 1)]
    assert selection.chosen == 2 and selection.written_built == 1
    empty = selection.inputs.index(CallInput(([],), {}))
    assert selection.groups[0].key[empty] == Returned([])
    assert selection.groups[2].key[empty] == Raised("IndexError")


def test_identical_programs_run_once_and_a_program_that_does_not_load_raises_everywhere(
    pool: SandboxPool,
) -> None:
    probe = BehaviourProbe(pool)
    inputs = [CallInput(([1],)), CallInput(([],))]
    behaviours = probe.behaviours(PROBLEM, [RIGHT[0], RIGHT[0], "    return (\n"], inputs)
    assert probe.executions == 2
    assert behaviours[0] == behaviours[1] == (Returned([2]), Returned([]))
    assert behaviours[2] == (Raised("compile_error"), Raised("compile_error"))
    assert public_calls(PROBLEM) == ["double_all([1, 2])"]
    assert Digest("a" * 64) == Digest("a" * 64)


def test_best_of_n_selects_by_behaviour_shows_the_groups_and_counts_the_spend(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    scorer = TestScorer(open_executor("auto"))
    ctx = SearchContext.create(tiny_lm, scorer=scorer)
    params = {
        "n": 4,
        "batch_size": 2,
        "max_new_tokens": 6,
        "early_stop": False,
        "selector": "behaviour",
        "written_inputs": 2,
        "mutated_inputs": 3,
    }
    result = planners.create("best_of_n", params).solve(PROBLEM, ctx)
    assert len(result.candidates) == 4
    groups = [c.meta["behaviour_group"] for c in result.candidates]
    sizes = [c.meta["behaviour_group_size"] for c in result.candidates]
    assert all(sizes[i] == groups.count(groups[i]) for i in range(4))
    assert result.best is not None and result.best.meta["behaviour_group"] == 0
    spend = result.spend
    written = spend.extra["input_writing_tokens"]
    assert written > 0
    assert spend.generated_tokens == sum(len(c.token_ids) for c in result.candidates) + written
    distinct = len({PROBLEM.program(c.completion) for c in result.candidates})
    # no cache: each sample's public run is charged, then one build and one run per distinct program
    assert spend.executions == 4 + 1 + distinct
    assert spend.extra["behaviour_inputs"] >= 1


def test_the_selector_is_a_validated_param_with_the_public_filter_by_default() -> None:
    assert planners.create("best_of_n").params.selector == "public"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="selector"):
        planners.create("best_of_n", {"selector": "vote"})
    described = {p["name"]: p for p in planners.describe()}["best_of_n"]["params"]
    assert {"selector", "written_inputs", "mutated_inputs"} <= set(described)


def test_a_second_selection_over_the_same_programs_runs_nothing(pool: SandboxPool) -> None:
    from search.cache.store import NS_EXECUTION, MemoryCache

    cache = MemoryCache()
    completions = [OUTLIER, *RIGHT]
    first_probe = BehaviourProbe(pool, cache=cache)
    first = select_by_behaviour(first_probe, PROBLEM, completions, [1.0] * 4, mutations=4)
    assert (first.executions, first.cache_hits) == (1 + 4, 0)
    second = select_by_behaviour(
        BehaviourProbe(pool, cache=cache), PROBLEM, completions, [1.0] * 4, mutations=4
    )
    assert (second.executions, second.cache_hits) == (0, 1 + 4)
    assert [g.members for g in second.groups] == [g.members for g in first.groups]
    assert [g.key for g in second.groups] == [g.key for g in first.groups]
    # other inputs are another key: the programs run again (the examples' build is the same one)
    other = select_by_behaviour(
        BehaviourProbe(pool, cache=cache), PROBLEM, completions, [1.0] * 4, mutations=1
    )
    assert (other.executions, other.cache_hits) == (4, 1)
    # a corrupted entry is not trusted: that run is made again
    stored = [key for ns, key in list(cache._data) if ns == NS_EXECUTION]
    assert len(stored) == 1 + 4 + 4  # each run kept: the build and eight program runs
    cache.set_many(NS_EXECUTION, {key: b"{not json" for key in stored})
    again = select_by_behaviour(
        BehaviourProbe(pool, cache=cache), PROBLEM, completions, [1.0] * 4, mutations=4
    )
    assert again.executions == 1 + 4 and again.chosen == first.chosen


def test_best_of_n_stops_drawing_once_one_behaviour_dominates(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    tiny_lm.kv.clear()
    params = {
        "n": 8,
        "batch_size": 1,
        "max_new_tokens": 4,
        "include_greedy": False,
        "selector": "behaviour",
        "written_inputs": 0,
        "mutated_inputs": 2,
        "dominance_size": 2,
        "dominance_share": 0.5,
        "dominance_after": 3,
    }
    # four tokens of a random model never make a program: every sample fails alike and one group wins
    stopped = planners.create("best_of_n", params).solve(
        PROBLEM, SearchContext.create(tiny_lm, scorer=TestScorer(open_executor("auto")))
    )
    assert stopped.stop_reason == "dominant_behaviour"
    assert len(stopped.candidates) == 3
    assert [c.meta["behaviour_group_size"] for c in stopped.candidates] == [3, 3, 3]
    distinct = len({PROBLEM.program(c.completion) for c in stopped.candidates})
    # every sample probed once although the groups were formed after each sample from the third on
    assert stopped.spend.executions == 3 + 1 + distinct
    drawn = planners.create("best_of_n", {**params, "early_stop": False}).solve(
        PROBLEM, SearchContext.create(tiny_lm, scorer=TestScorer(open_executor("auto")))
    )
    assert drawn.stop_reason == "done" and len(drawn.candidates) == 8


def test_the_dominance_and_group_score_params_are_validated() -> None:
    with pytest.raises(ValueError, match="dominance_share"):
        planners.create("best_of_n", {"dominance_share": 1.5})
    with pytest.raises(ValueError, match="group_score"):
        planners.create("best_of_n", {"group_score": "loudest"})
    assert planners.create("best_of_n", {"group_score": "public-share"}).params.group_score == "public-share"


def test_stated_values_build_in_the_sandbox_and_break_a_tie_toward_the_group_that_returns_them(
    pool: SandboxPool, tmp_path: Path
) -> None:
    marker = tmp_path / "ran_on_host"
    # two groups of one, alike on the example; the model's stated values side with the right one
    wrong = "    return [2 * x for x in xs] if xs else [0]\n"
    written = ["double_all([])", "double_all([5])", "double_all([7])", "double_all([9])"]
    stated = [
        ("double_all([])", "[]"),
        ("double_all([5])", "[10]"),
        ("double_all([7])", f"__import__('os').system('touch {marker}')"),  # runs in the sandbox only
        ("double_all([9])", "1 / 0"),  # raises while building: dropped
        ("double_all([11])", "[22]"),  # not a written call, so not an input: dropped
    ]
    probe = BehaviourProbe(pool, per_input=0.5)
    for score, chosen in (("public-share", 0), ("public-share-stated", 1), ("public-stated", 1)):
        selection = select_by_behaviour(
            probe,
            PROBLEM,
            [wrong, RIGHT[0]],
            public_rates=[1.0, 1.0],
            written=written,
            mutations=0,
            likelihoods=[-0.1, -0.5],  # the wrong one is the likelier: it wins unless stated values count
            score=GROUP_SCORES[score],
            stated=stated,
        )
        assert selection.chosen == chosen, score
        assert selection.stated == 3  # [] -> [], [5] -> [10], and the os.system call's return value
        agreed = {g.members[0]: g.agreed for g in selection.groups}
        assert agreed == {0: 1, 1: 2}
    if open_executor("auto").layer in ("bwrap", "unshare", "docker"):
        assert not marker.exists()
    assert selection.summary()["stated_values"] == 3


def test_selection_without_stated_values_is_unchanged_by_the_stated_rules(pool: SandboxPool) -> None:
    probe = BehaviourProbe(pool)
    completions = [OUTLIER, *RIGHT]
    for score in ("public-share", "public-share-stated", "public-stated", "public-codet"):
        selection = select_by_behaviour(
            probe, PROBLEM, completions, [1.0] * 4, mutations=6, score=GROUP_SCORES[score]
        )
        assert [g.members for g in selection.groups] == [[1, 2, 3], [0]], score
        assert selection.stated == 0 and all(g.agreed == 0 for g in selection.groups)


def test_a_search_reads_the_values_the_model_states_for_its_calls(tiny_lm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import planners.selection
    from scorers.written_inputs import WrittenInputs

    text = "double_all([]) == []\ndouble_all([5]) == [10]\ndouble_all([6])  # 3\n"
    written = WrittenInputs(
        calls=["double_all([])", "double_all([5])", "double_all([6])"],
        text=text,
        tokens=0,
        stated=[("double_all([])", "[]"), ("double_all([5])", "[10]"), ("double_all([6])", "3")],
    )
    monkeypatch.setattr(planners.selection, "write_inputs", lambda lm, problem, n: written)
    ctx = SearchContext.create(tiny_lm, scorer=TestScorer(open_executor("auto")))
    params = {
        "n": 2,
        "batch_size": 2,
        "max_new_tokens": 6,
        "early_stop": False,
        "selector": "behaviour",
        "group_score": "public-share-stated",
    }
    result = planners.create("best_of_n", params).solve(PROBLEM, ctx)
    assert result.spend.extra["stated_values"] == 3
