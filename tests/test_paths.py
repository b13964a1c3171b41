"""Greedy-path reuse below the planners (search/state/paths.py, MeteredLM): a greedy rollout from a point
on an earlier greedy rollout is read off it, costs no forward pass and is counted in the spend, and
no planner's output depends on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import planners
from search.limits.budget import Budget, Meter
from search.limits.stops import FunctionBodyEnd, StopStrings, TopLevelStop
from search.model.lm import DecodeMode, GenerationParams, Rollout, TokenDist
from search.problems.problem import FunctionTest, Problem
from search.state.context import SearchContext, SearchResult
from search.state.paths import GreedyPaths

# ----- GreedyPaths on a character-level toy vocabulary ----------------------------------------

CHARS = "abcdefgh \n:"


def decode(ids: Sequence[int]) -> str:
    return "".join(CHARS[i] for i in ids)


def enc(text: str) -> list[int]:
    return [CHARS.index(c) for c in text]


def roll(text: str, finish: str = "length", k: int = 0, eos_dist: bool = False) -> Rollout:
    ids = enc(text)
    dists = [TokenDist([t, (t + 1) % 8][:k], [-0.1, -2.0][:k], 0.5) for t in ids] if k else None
    if dists is not None and eos_dist:
        dists.append(TokenDist([99, 0][:k], [-0.2, -3.0][:k], 0.4))
    return Rollout(ids, [-0.1 * (i + 1) for i in range(len(ids))], text, finish, dists)


def test_a_point_on_a_path_is_served_the_rest_cut_like_the_backend() -> None:
    paths = GreedyPaths()
    prompt = enc("ab")
    paths.add(prompt, roll("cd\n  e\n\nfgh"), 0)
    got = paths.serve(prompt + enc("cd"), 64, 0, [FunctionBodyEnd()], decode)
    assert got is not None and got.finish_reason == "stop"
    # it ends after the token whose addition lets the stop cut the continuation's own text
    assert got.token_ids == enc("\n  e\n\n") and got.text == "\n  e"
    assert got.logprobs == pytest.approx([-0.3, -0.4, -0.5, -0.6, -0.7, -0.8])
    short = paths.serve(prompt + enc("cd"), 2, 0, [], decode)
    assert short is not None and short.token_ids == enc("\n ") and short.finish_reason == "length"
    # undecided: the path runs out first; off the path; a stop the continuation's text cannot see
    assert paths.serve(prompt + enc("cd\n  e\n"), 64, 0, [], decode) is None
    assert paths.serve(prompt + enc("ca"), 4, 0, [], decode) is None
    top = GreedyPaths()
    top.add(prompt, roll("cd\nef", "stop"), 0, "toplevel")
    assert top.serve(prompt + enc("cd\n"), 64, 0, [TopLevelStop()], decode) is None
    # unless the caller asks for the rest of the completion under the same rule (PG-TD)
    rest = top.serve(prompt + enc("cd\n"), 64, 0, [TopLevelStop()], decode, path_stops="toplevel")
    assert rest is not None and rest.token_ids == enc("ef") and rest.finish_reason == "stop"
    assert top.serve(prompt + enc("cd\n"), 64, 0, [TopLevelStop()], decode, path_stops="other") is None


def test_end_of_sequence_top_k_and_an_extended_path() -> None:
    paths = GreedyPaths()
    prompt = enc("a")
    paths.add(prompt, roll("bcd", "eos", k=2, eos_dist=True), 2)
    got = paths.serve(prompt + enc("b"), 10, 1, [], decode)
    assert got is not None and got.finish_reason == "eos" and got.token_ids == enc("cd")
    assert got.step_dists is not None and len(got.step_dists) == 3  # one more: end-of-sequence
    assert all(len(d.token_ids) == 1 for d in got.step_dists)  # cut to the request's top-k
    assert paths.serve(prompt + enc("b"), 10, 3, [], decode) is None  # recorded with fewer
    chained = GreedyPaths()
    chained.add(prompt, roll("bc"), 0)
    chained.add(prompt + enc("bc"), roll("def"), 0)  # a later chunk from where the first ended
    got = chained.serve(prompt + enc("b"), 3, 0, [], decode)
    assert got is not None and got.token_ids == enc("cde") and got.finish_reason == "length"
    stop = chained.serve(prompt + enc("b"), 9, 0, [StopStrings(("e",))], decode)
    assert stop is not None and stop.token_ids == enc("cde") and stop.text == "cd"


# ----- MeteredLM on the tiny model ------------------------------------------------------------


def test_a_greedy_continuation_on_an_earlier_path_costs_no_forward_pass(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    prompt = tiny_lm.encode("def f(x):\n    return")
    tiny_lm.kv.clear()
    ctx = SearchContext.create(tiny_lm)
    first = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=16, record_top_k=3))[0]
    assert len(first.token_ids) == 16
    spend = ctx.meter.spend
    before = (spend.forward_passes, spend.generated_tokens, spend.rollouts, ctx.meter.tokens_used())
    point = prompt + first.token_ids[:5]
    params = GenerationParams(max_new_tokens=8, record_top_k=2)
    sources: list[str] = []
    got = ctx.lm.rollouts([point], params, sources=sources)[0]
    assert sources == ["path"]
    assert (spend.forward_passes, spend.generated_tokens, spend.rollouts, ctx.meter.tokens_used()) == before
    assert spend.path_hits == 1 and spend.path_tokens == 8
    assert got.token_ids == first.token_ids[5:13] and got.finish_reason == "length"
    # what the model itself returns from that point
    tiny_lm.kv.clear()
    fresh = tiny_lm.rollouts([point], params)[0]
    assert got.token_ids == fresh.token_ids and got.text == fresh.text
    assert got.logprobs == pytest.approx(fresh.logprobs, abs=1e-4)
    assert got.step_dists is not None and fresh.step_dists is not None
    assert [d.token_ids for d in got.step_dists] == [d.token_ids for d in fresh.step_dists]
    # past the path's end, sampling, or with reuse off: the model runs
    ctx.lm.rollouts([point], GenerationParams(max_new_tokens=12))
    assert spend.path_hits == 1 and spend.rollouts == 2
    sample = GenerationParams(max_new_tokens=4, mode=DecodeMode.sample, seed=1)
    ctx.lm.rollouts([point], sample)
    assert spend.path_hits == 1 and spend.rollouts == 3
    off = SearchContext.create(tiny_lm, reuse_paths=False)
    off.lm.rollouts([prompt], GenerationParams(max_new_tokens=16))
    assert off.lm.path_rollout(point, params) is None
    off.lm.rollouts([point], params)
    assert off.meter.spend.path_hits == 0 and off.meter.spend.rollouts == 2


def test_rows_keep_their_own_length_and_served_rows_leave_the_model_call(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    prompt = tiny_lm.encode("def g(y):\n    y =")
    tiny_lm.kv.clear()
    ctx = SearchContext.create(tiny_lm)
    first = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=10))[0]
    other = tiny_lm.encode("def h(z):\n    return")
    sources: list[str] = []
    rows = ctx.lm.rollouts(
        [prompt + first.token_ids[:2], other],
        GenerationParams(max_new_tokens=99),
        row_max_new_tokens=[8, 3],
        sources=sources,
    )
    assert sources == ["path", "model"]
    assert rows[0].token_ids == first.token_ids[2:10] and len(rows[1].token_ids) == 3
    # the model call ran to the longest row it had to run (3), not to the call's 99
    assert ctx.meter.spend.generated_tokens == 10 + 3


# ----- planners: the same outputs with and without the reuse -----------------------------------


@dataclass
class _Reward:
    pass_rate: float
    passed: int
    total: int
    compile_error: bool = False
    cached: bool = False
    shaped: float = 0.0


class ParityReward:
    """Public tests stand-in: a program 'passes' when its length is a multiple of 3."""

    def score_many(self, problem: Problem, completions: Sequence[str]) -> list[_Reward]:
        return [
            _Reward(1.0, 1, 1) if len(c) % 3 == 0 else _Reward(0.0, 0, 1, shaped=-0.3) for c in completions
        ]


PROBLEM = Problem(
    id="p",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    entry_point="add",
    public_tests=[FunctionTest(call="add(1, 2)", expected="3")],
)

CASES: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {"max_new_tokens": 16}),
    ("pgtd", {"rollouts": 6, "max_new_tokens": 16, "early_stop": False}),
    ("pgtd", {"rollouts": 5, "max_new_tokens": 12, "parallel_rollouts": 1, "early_stop": False}),
    ("adadec", {"entropy_threshold": 0.0, "max_new_tokens": 12, "greedy_chunk": 4}),
    ("astar", {"max_expansions": 4, "k": 2, "step_tokens": 6, "max_new_tokens": 24, "lookahead_tokens": 8}),
    ("vstar", {"rollouts": 5, "max_new_tokens": 10, "batch": 2}),
]


def _solve(lm: Any, planner: str, params: dict[str, Any], reuse: bool) -> SearchResult:
    lm.kv.clear()
    ctx = SearchContext.create(lm, meter=Meter(budget=Budget()), scorer=ParityReward(), reuse_paths=reuse)
    return planners.create(planner, params).solve(PROBLEM, ctx)


@pytest.mark.parametrize(("planner", "params"), CASES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(CASES)])
def test_planner_outputs_do_not_depend_on_the_reuse(tiny_lm, planner: str, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    on = _solve(tiny_lm, planner, params, reuse=True)
    off = _solve(tiny_lm, planner, params, reuse=False)
    assert on.best is not None and off.best is not None
    assert on.best.completion == off.best.completion
    assert on.best.token_ids == off.best.token_ids
    assert [c.completion for c in on.candidates] == [c.completion for c in off.candidates]
    assert [c.token_ids for c in on.candidates] == [c.token_ids for c in off.candidates]
    assert off.spend.path_hits == off.spend.path_tokens == 0
    # a read-off rollout is one the model did not run
    assert on.spend.forward_passes <= off.spend.forward_passes
    if planner in ("pgtd", "adadec"):
        assert on.spend.path_hits > 0 and on.spend.generated_tokens < off.spend.generated_tokens


def test_sampled_rows_stop_at_their_own_length_and_draw_what_they_draw_alone(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    prompt = tiny_lm.encode("def g(y):\n    y =")
    params = GenerationParams(max_new_tokens=12, mode=DecodeMode.sample, seed=5)
    alone = tiny_lm.rollouts([prompt, prompt], params)
    ctx = SearchContext.create(tiny_lm)
    rows = ctx.lm.rollouts([prompt, prompt], params, row_max_new_tokens=[12, 4])
    assert rows[0].token_ids == alone[0].token_ids and rows[1].token_ids == alone[1].token_ids[:4]
    assert ctx.meter.spend.generated_tokens == 12 + 4  # the short row left the batch at its length
