"""V-STAR: sibling-relative advantages, decisive-node selection, the value model, and searches on
the tiny random model (with a hand-made public-test reward so rewards differ between programs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import planners
from planners.base import PlannerError
from planners.vstar import PrefixNode, VStar, VStarParams, decisiveness, normalise
from scorers.value import ValueModel, node_features
from search.limits.budget import Budget, Meter
from search.model.lm import GenerationParams, Rollout
from search.problems.problem import FunctionTest, Problem
from search.state.context import SearchContext
from search.state.tree import Tree

PROBLEM = Problem(
    id="toy",
    prompt="Say something:",
    prompt_is_code=False,
    stop=["e"],
    entry_point="f",
    public_tests=[FunctionTest(call="f()", expected="1")],
)


@dataclass
class FakeReward:
    pass_rate: float
    passed: int
    total: int
    compile_error: bool = False
    cached: bool = False


class ParityReward:
    """A test double of the public-test scorer: a program 'passes' when its length is even."""

    def __init__(self) -> None:
        self.programs: list[str] = []

    def score_many(self, problem: Problem, completions: Sequence[str]) -> list[FakeReward]:
        self.programs.extend(completions)
        return [FakeReward(1.0, 1, 1) if len(c) % 2 == 0 else FakeReward(0.0, 0, 1) for c in completions]


def run(tiny_lm, budget: Budget | None = None, **params):  # type: ignore[no-untyped-def]
    p = VStarParams(**{"rollouts": 6, "max_new_tokens": 8, "batch": 2, **params})
    reward = ParityReward()
    ctx = SearchContext.create(tiny_lm, meter=Meter(budget=budget or Budget()), scorer=reward)
    return VStar(p).solve(PROBLEM, ctx), reward


@pytest.fixture(scope="module")
def searched(tiny_lm):  # type: ignore[no-untyped-def]
    return run(tiny_lm)


# ----- advantages -----------------------------------------------------------------------------


def test_sibling_advantages_match_hand_computed_values() -> None:
    t = Tree()
    root = t.add_root(text="P")
    a = t.add_child(root, [1], "a", reward=1.0)
    b = t.add_child(root, [2], "b", reward=0.0)
    c = t.add_child(root, [3], "c", reward=0.5)
    t.add_child(a, [4], "x", reward=0.2)  # a has one rewarded child: no group there
    d1 = t.add_child(b, [5], "y", reward=0.3)
    d2 = t.add_child(b, [6], "z", reward=0.3)  # identical siblings
    got = {r["node"]: r["advantage"] for r in t.advantage_records()}
    std = math.sqrt(((1 - 0.5) ** 2 + (0 - 0.5) ** 2 + 0) / 3)  # population std of (1, 0, 0.5)
    assert got[a] == pytest.approx(0.5 / (std + 1e-6))
    assert got[a] == pytest.approx(1.224744, abs=1e-5)
    assert got[b] == pytest.approx(-1.224744, abs=1e-5)
    assert got[c] == pytest.approx(0.0)
    assert got[d1] == 0.0 and got[d2] == 0.0
    assert set(got) == {a, b, c, d1, d2}
    rec = next(r for r in t.advantage_records() if r["node"] == d1)
    assert rec["prefix"] == "Pb" and rec["continuation"] == "y" and rec["parent"] == b


# ----- decisive nodes -------------------------------------------------------------------------


def rank_decisive(nodes: Sequence[PrefixNode], entropy_scale: float = math.log(3)) -> list[PrefixNode]:
    """``nodes`` from the most decisive to the least (ties: lower node id first)."""

    def gap(n: PrefixNode) -> float:
        return decisiveness([c.value or 0.0 for c in n.children], n.entropy, entropy_scale)

    return sorted(nodes, key=lambda n: (-gap(n), n.id))


def _nodes_with_values() -> dict[str, PrefixNode]:
    ids = iter(range(100))

    def node(parent: PrefixNode | None, value: float, entropy: float) -> PrefixNode:
        n = PrefixNode(next(ids), [], [], "", parent=parent, value=value, entropy=entropy)
        if parent is not None:
            parent.children.append(n)
        return n

    root = node(None, 0.5, 0.2)
    nodes = {"root": root, "A": node(root, 0.5, 0.1), "B": node(root, 0.55, 0.1)}
    nodes["C"] = node(root, 0.4, 2.5)  # one child, very unsure
    for v in (0.1, 0.9):
        node(nodes["A"], v, 0.0)  # children disagree: gap 0.8
    for v in (0.5, 0.6):
        node(nodes["B"], v, 0.0)  # children agree: gap 0.1
    node(nodes["C"], 0.4, 0.0)
    return nodes


def test_decisive_selection_picks_the_node_with_the_largest_value_gap() -> None:
    nodes = _nodes_with_values()
    assert decisiveness([0.1, 0.9], 0.1, math.log(3)) == pytest.approx(0.8)
    assert decisiveness([0.5, 0.6], 0.1, math.log(3)) == pytest.approx(0.1)
    a, b, c = nodes["A"], nodes["B"], nodes["C"]
    assert rank_decisive([b, a])[0] is a
    # With one child the entropy stands in: C (2.5 nats, scaled by ln 3) ranks between A and B.
    assert decisiveness([0.4], 2.5, math.log(3)) == pytest.approx(min(1.0, 2.5 / math.log(3)))
    assert rank_decisive([a, b, c]) == [c, a, b]


# ----- value model ----------------------------------------------------------------------------


def test_value_head_learns_from_features_and_mc_takes_over_with_visits() -> None:
    vm = ValueModel(ridge=0.1, prior_strength=2.0, min_fit=4)
    good = node_features([-0.1], 0.2, 10, 100, 1.0, True, [-0.1])
    bad = node_features([-2.0], 2.5, 10, 100, 0.0, False, [-2.0])
    assert vm.head(good) == 0.5  # nothing seen yet
    assert vm.fit([good, bad], [1.0, 0.0]) is False  # too few pairs: fallback = their mean
    assert vm.head(bad) == 0.5
    assert vm.fit([good, bad] * 3, [1.0, 0.0] * 3) is True
    assert vm.head(good) > 0.8 and vm.head(bad) < 0.2
    assert vm.blend(None, 0, good) == pytest.approx(vm.head(good))
    assert vm.blend(0.0, 2, good) == pytest.approx((0 + 2 * vm.head(good)) / 4)
    assert vm.blend(0.0, 1000, good) < 0.01


def test_value_model_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        ValueModel(ridge=-1)


# ----- searches on the tiny model ---------------------------------------------------------------


def test_vstar_is_registered_and_validates_params() -> None:
    assert "vstar" in planners.names()
    with pytest.raises(ValueError, match="top_k"):
        planners.create("vstar", {"top_k": 1})


def test_vstar_needs_a_sandbox(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(tiny_lm)
    with pytest.raises(PlannerError, match="sandbox"):
        VStar().solve(Problem(id="bare", prompt="x", prompt_is_code=False), ctx)


def test_without_public_tests_the_greedy_program_is_the_answer(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(tiny_lm, scorer=ParityReward())
    bare = Problem(id="bare", prompt="x", prompt_is_code=False)
    result = VStar(VStarParams(rollouts=6, max_new_tokens=6)).solve(bare, ctx)
    assert result.stop_reason == "no_public_tests"
    assert result.spend.extra["vstar_rollouts"] == 1 and result.best is not None


def test_a_round_is_one_batched_call_and_each_row_is_its_own_rollout(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    p = VStarParams(rollouts=6, max_new_tokens=8, batch=2)
    ctx = SearchContext.create(tiny_lm, scorer=ParityReward())
    calls: list[tuple[Any, Any, Any, list[Rollout]]] = []
    metered = ctx.lm.rollouts

    def recorded(prefixes, params, stops=(), stats=None, row_stops=None, **kw):  # type: ignore[no-untyped-def]
        out = metered(prefixes, params, stops, stats, row_stops, **kw)
        calls.append((prefixes, row_stops, kw["row_max_new_tokens"], out))
        return out

    ctx.lm.rollouts = recorded  # type: ignore[method-assign]
    search = VStar(p).start(PROBLEM, ctx)
    search.run()
    assert max(len(prefixes) for prefixes, *_ in calls) == 2  # a round's two expansions share a call
    for prefixes, row_stops, rooms, out in calls:  # ... and each row is what it would be alone
        for prefix, stops, room, r in zip(prefixes, row_stops, rooms, out, strict=True):
            forced = len(prefix) - len(search.prompt)  # type: ignore[attr-defined]
            assert room == max(1, p.max_new_tokens - forced)
            own_room = GenerationParams(max_new_tokens=room, record_top_k=p.top_k)
            alone = tiny_lm.rollouts([prefix], own_room, stops)[0]
            assert (r.token_ids, r.text, r.finish_reason) == (
                alone.token_ids,
                alone.text,
                alone.finish_reason,
            )
            assert r.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_vstar_generates_the_requested_rollouts_and_keeps_a_consistent_tree(searched) -> None:  # type: ignore[no-untyped-def]
    result, reward = searched
    assert result.stop_reason == "rollouts"
    assert result.spend.extra["vstar_rollouts"] == 6 == len(reward.programs)
    tree = Tree.from_dict(result.tree)
    leaves = [n for n in tree.nodes() if tree[n].get("kind") == "leaf"]
    assert len(leaves) == 6
    for n in tree.nodes():  # every node's reward is the mean reward of the leaves below it
        below = [m for m in leaves if n in tree.path(m)]
        assert tree[n]["visits"] == len(below)
        assert tree[n]["reward"] == pytest.approx(
            sum(tree[m]["pass_rate"] for m in below) / len(below), abs=1e-5
        )
    # Branch points came from the rollouts (a random model is unsure everywhere): the tree branches.
    assert any(len(tree.children(n)) >= 2 for n in tree.nodes())


def test_vstar_advantages_are_exported_from_its_tree(searched) -> None:  # type: ignore[no-untyped-def]
    result, _ = searched
    tree = Tree.from_dict(result.tree)
    records = tree.advantage_records()
    assert records
    for rec in records:
        sibs = [tree[c]["reward"] for c in tree.children(rec["parent"])]
        mean = sum(sibs) / len(sibs)
        std = math.sqrt(sum((v - mean) ** 2 for v in sibs) / len(sibs))
        assert rec["advantage"] == pytest.approx((rec["value"] - mean) / (std + 1e-6))


def test_vstar_returns_distinct_candidates_best_reward_first(searched) -> None:  # type: ignore[no-untyped-def]
    result, _ = searched
    keys = [normalise(c.completion) for c in result.candidates]
    assert len(keys) == len(set(keys))
    assert result.best is result.candidates[0]
    assert result.best.reward == max(c.reward for c in result.candidates)
    assert result.spend.extra["distinct_programs"] == len(result.candidates)
    assert "e" not in result.best.completion


def test_vstar_expansions_start_with_an_untried_alternative(searched) -> None:  # type: ignore[no-untyped-def]
    result, _ = searched
    tree = Tree.from_dict(result.tree)
    for n in tree.nodes():
        firsts = [tree[c]["action"][0] for c in tree.children(n) if tree[c]["action"]]
        assert len(firsts) == len(set(firsts))  # no alternative was rolled out twice


def test_vstar_stops_on_the_token_budget(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    result, _ = run(tiny_lm, budget=Budget(max_tokens=12), rollouts=50)
    assert result.stop_reason == "max_tokens"
    assert result.spend.generated_tokens <= 12
    assert result.best is not None


@pytest.mark.parametrize("passes", [4, 15])
def test_vstar_never_overruns_the_forward_pass_budget(tiny_lm, passes: int) -> None:  # type: ignore[no-untyped-def]
    result, _ = run(tiny_lm, budget=Budget(max_forward_passes=passes), rollouts=50, max_new_tokens=12)
    assert result.stop_reason == "max_forward_passes"
    assert result.spend.forward_passes <= passes
