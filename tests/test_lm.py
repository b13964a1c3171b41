"""The model layer on the tiny random model: KV reuse by counting, batching, decoding modes."""

from __future__ import annotations

import math

import pytest
import torch

from search.limits.budget import Budget, Meter
from search.limits.stops import StopStrings, TopLevelStop
from search.model.kv import PrefixKVCache
from search.model.lm import CallStats, DecodeMode, GenerationParams
from search.state.context import SearchContext

PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'


@pytest.fixture
def lm(tiny_lm):  # type: ignore[no-untyped-def]
    tiny_lm.kv.clear()
    return tiny_lm


def test_extending_a_cached_prefix_processes_only_the_new_tokens(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    first = CallStats()
    lm.next_token_dists([prefix], 3, first)
    assert first.processed_tokens == len(prefix)
    extension = lm.encode("    return a + b")
    second = CallStats()
    lm.next_token_dists([prefix + extension], 3, second)
    assert second.forward_passes == 1
    assert second.processed_tokens == len(extension)
    assert second.reused_tokens == len(prefix)


def test_a_fully_cached_prefix_needs_no_forward_pass(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    lm.next_token_dists([prefix], 3)
    again = CallStats()
    dist = lm.next_token_dists([prefix], 3, again)[0]
    assert again.forward_passes == 0
    assert len(dist.token_ids) == 3


def test_batched_distributions_equal_single_calls(lm) -> None:  # type: ignore[no-untyped-def]
    prefixes = [lm.encode(PROMPT), lm.encode("x = 1\n"), lm.encode(PROMPT + "    return")]
    single = []
    for p in prefixes:
        lm.kv.clear()
        single.append(lm.next_token_dists([p], 5)[0])
    lm.kv.clear()
    stats = CallStats()
    batched = lm.next_token_dists(prefixes, 5, stats)
    assert stats.forward_passes == 1
    for a, b in zip(single, batched, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.entropy == pytest.approx(b.entropy, abs=1e-4)


def test_entropy_is_that_of_the_full_distribution(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    dist = lm.next_token_dists([prefix], 2)[0]
    with torch.no_grad():
        logits = lm.model(torch.tensor([prefix])).logits[0, -1].float()
    logp = torch.log_softmax(logits, -1)
    expected = float(-(logp.exp() * logp).sum())
    assert dist.entropy == pytest.approx(expected, rel=1e-4)
    assert 0 < dist.entropy <= math.log(logits.numel()) + 1e-3


def test_greedy_rollout_equals_transformers_generate(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    ours = lm.rollouts([prefix], GenerationParams(max_new_tokens=16))[0]
    ref = lm.model.generate(
        torch.tensor([prefix]), max_new_tokens=16, do_sample=False, eos_token_id=list(lm.eos_token_ids)
    )[0, len(prefix) :].tolist()
    ref = [t for t in ref if t not in lm.eos_token_ids]
    assert ours.token_ids == ref[: len(ours.token_ids)]
    assert len(ours.token_ids) > 0


def test_batched_rollouts_equal_single_rollouts_and_reuse_kv(lm) -> None:  # type: ignore[no-untyped-def]
    prefixes = [lm.encode(PROMPT), lm.encode("import os\n"), lm.encode("class A:\n    pass\n")]
    params = GenerationParams(max_new_tokens=12)
    singles = []
    for p in prefixes:
        lm.kv.clear()
        singles.append(lm.rollouts([p], params)[0].token_ids)
    lm.kv.clear()
    stats = CallStats()
    batched = lm.rollouts(prefixes, params, stats=stats)
    assert [r.token_ids for r in batched] == singles
    assert stats.forward_passes <= params.max_new_tokens
    # A second, longer rollout from the first prefix reuses the stored KV of the first rollout.
    again = CallStats()
    lm.rollouts([prefixes[0] + batched[0].token_ids[:4]], GenerationParams(max_new_tokens=2), stats=again)
    assert again.reused_tokens >= len(prefixes[0]) + 3


def test_sampling_is_reproducible_by_seed_and_varies_across_seeds(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    params = GenerationParams(max_new_tokens=10, mode=DecodeMode.sample, temperature=1.5, seed=7)
    a = lm.rollouts([prefix, prefix], params)
    b = lm.rollouts([prefix, prefix], params)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert a[0].token_ids != a[1].token_ids  # rows get different streams
    c = lm.rollouts([prefix], params.model_copy(update={"seed": 8}))
    assert c[0].token_ids != a[0].token_ids


def test_rollout_logprobs_match_continuation_logprobs(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    r = lm.rollouts([prefix], GenerationParams(max_new_tokens=8))[0]
    lps = lm.continuation_logprobs(prefix, [r.token_ids])[0]
    assert lps == pytest.approx(r.logprobs, abs=1e-4)


def test_beam_search_scores_at_least_as_well_as_greedy(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    greedy = lm.rollouts([prefix], GenerationParams(max_new_tokens=8))[0]
    beam = lm.rollouts([prefix], GenerationParams(max_new_tokens=8, mode=DecodeMode.beam, num_beams=4))[0]
    assert len(beam.token_ids) > 0
    assert lm.continuation_logprobs(prefix, [beam.token_ids])[0] == pytest.approx(beam.logprobs, abs=1e-4)
    if len(beam.token_ids) == len(greedy.token_ids):
        assert beam.sum_logprob >= greedy.sum_logprob - 1e-4


def test_stop_conditions_cut_the_text() -> None:
    assert TopLevelStop().find("    return 1\nprint(2)") == 12
    assert TopLevelStop().find("    x = 1\n\n    return x") is None
    assert StopStrings(["END"]).find("abcEND") == 3


def test_record_top_k_gives_one_distribution_per_generated_token(lm) -> None:  # type: ignore[no-untyped-def]
    prefix = lm.encode(PROMPT)
    r = lm.rollouts([prefix], GenerationParams(max_new_tokens=6, record_top_k=3))[0]
    assert r.step_dists is not None and len(r.step_dists) >= len(r.token_ids)
    for tok, dist in zip(r.token_ids, r.step_dists, strict=False):
        assert dist.token_ids[0] == tok  # greedy picks the top-1


def test_metered_lm_serves_repeats_from_the_cache_without_forward_passes(lm) -> None:  # type: ignore[no-untyped-def]
    first = SearchContext.create(lm)
    prefix = lm.encode(PROMPT)
    first.lm.rollouts([prefix], GenerationParams(max_new_tokens=6, record_top_k=3))
    # another search on the same cache (a repeat within one search is read off its greedy path)
    ctx = SearchContext.create(lm, cache=first.cache)
    r = ctx.lm.rollouts([prefix], GenerationParams(max_new_tokens=6, record_top_k=3))[0]
    assert ctx.meter.spend.forward_passes == 0 and ctx.meter.spend.cache_hits == 1
    # Tree cache: every prefix along the path has its top-3 stored.
    ctx.lm.next_token_dists([prefix + r.token_ids[:i] for i in range(len(r.token_ids))], 3)
    assert ctx.meter.spend.forward_passes == 0
    assert ctx.meter.spend.cache_hits >= 1 + len(r.token_ids)


def test_sampled_rollouts_are_not_served_from_the_cache(lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(lm)
    prefix = lm.encode(PROMPT)
    params = GenerationParams(max_new_tokens=4, mode=DecodeMode.sample, seed=1)
    ctx.lm.rollouts([prefix], params)
    passes = ctx.meter.spend.forward_passes
    ctx.lm.rollouts([prefix], params)
    assert ctx.meter.spend.forward_passes > passes


def test_a_token_budget_clamps_a_rollout(lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(lm, meter=Meter(budget=Budget(max_tokens=5)))
    r = ctx.lm.rollouts([lm.encode(PROMPT)], GenerationParams(max_new_tokens=50))[0]
    assert len(r.token_ids) <= 5
    assert ctx.meter.exhausted_reason() == "max_tokens" or r.finish_reason != "length"


def test_a_forward_pass_budget_clamps_a_batched_rollout(lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(lm, meter=Meter(budget=Budget(max_forward_passes=4)))
    prefix = lm.encode(PROMPT)
    rolls = ctx.lm.rollouts([prefix + [i] for i in (5, 6, 7)], GenerationParams(max_new_tokens=50))
    assert ctx.meter.spend.forward_passes <= 4
    assert all(len(r.token_ids) <= 4 for r in rolls)


def test_a_past_deadline_stops_a_rollout_at_its_next_step_and_is_not_cached(lm) -> None:  # type: ignore[no-untyped-def]
    ctx = SearchContext.create(lm, meter=Meter(budget=Budget(max_seconds=5)))
    ctx.meter.started -= 10  # the wall-time budget is already spent when the call starts
    params = GenerationParams(max_new_tokens=40)
    r = ctx.lm.rollouts([lm.encode(PROMPT)], params)[0]
    assert r.finish_reason == "max_seconds"
    assert len(r.token_ids) <= 1
    fresh = SearchContext.create(lm, cache=ctx.lm.cache)
    full = fresh.lm.rollouts([lm.encode(PROMPT)], params)[0]
    assert len(full.token_ids) > 1  # the interrupted rollout was not stored as the answer


def test_prefix_kv_cache_is_bounded_in_bytes() -> None:
    cache = PrefixKVCache(max_bytes=10_000)
    layer = (torch.zeros(2, 10, 8), torch.zeros(2, 10, 8))  # 1280 bytes each tensor
    for i in range(20):
        cache.put([i] * 10, [layer], None)
    assert cache.size_bytes <= 10_000
    assert len(cache) < 20
    m, entry = cache.longest([19] * 10 + [1])
    assert m == 10 and entry is not None


def test_prefix_kv_cache_finds_the_longest_common_prefix() -> None:
    cache = PrefixKVCache()
    layer = (torch.zeros(1, 4, 2), torch.zeros(1, 4, 2))
    cache.put([1, 2, 3, 4], [layer], None)
    cache.put([1, 2, 9, 9], [layer], None)
    assert cache.longest([1, 2, 3, 7])[0] == 3
    assert cache.longest([1, 2, 9, 9, 5])[0] == 4
    assert cache.longest([5])[0] == 0


def test_an_empty_prefix_is_refused(lm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least one token"):
        lm.next_token_dists([[]], 3)


def test_generation_params_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="temperature"):
        GenerationParams(temperature=0)
