"""The next-token sampler: the distribution it draws from, its nucleus, its per-row generators, and
the one prefill shared by rows that repeat a prompt."""

from __future__ import annotations

import pytest
import torch

from search.model import sampling
from search.model.lm import CallStats, DecodeMode, GenerationParams
from search.model.sampling import choose_tokens, nucleus, row_generators

SAMPLE = GenerationParams(mode=DecodeMode.sample, temperature=1.0, seed=7)


def draw(probs: list[float], rows: int, params: GenerationParams = SAMPLE) -> torch.Tensor:
    logits = torch.tensor(probs).log().expand(rows, -1).contiguous()
    gens = row_generators(params, rows, torch.device("cpu"))
    return choose_tokens(logits, torch.log_softmax(logits, -1), params, gens)


def test_greedy_takes_the_argmax_of_every_row() -> None:
    logp = torch.log_softmax(torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0]]), -1)
    assert choose_tokens(logp, logp, GenerationParams(), None).tolist() == [1, 0]


def test_samples_follow_the_distribution_and_never_take_a_token_of_zero_probability() -> None:
    probs = [0.5, 0.0, 0.3, 0.15, 0.05, 0.0]
    picks = draw(probs, 20_000)
    freq = torch.bincount(picks, minlength=len(probs)).float() / len(picks)
    assert freq[1] == 0 and freq[5] == 0
    # 20,000 draws: each frequency is within 5 standard errors of its probability
    for p, f in zip(probs, freq.tolist(), strict=True):
        assert abs(f - p) <= 5 * (p * (1 - p) / len(picks)) ** 0.5 + 1e-9


def test_the_nucleus_keeps_the_token_that_crosses_top_p_and_drops_the_rest() -> None:
    ids, weights = nucleus(torch.tensor([[0.05, 0.3, 0.5, 0.15]]), top_p=0.7)
    kept = {int(i) for i, w in zip(ids[0].tolist(), weights[0].tolist(), strict=True) if w > 0}
    assert kept == {2, 1}
    picks = draw([0.05, 0.3, 0.5, 0.15], 2_000, SAMPLE.model_copy(update={"top_p": 0.7}))
    assert set(picks.tolist()) == {1, 2}


def test_a_nucleus_past_the_candidates_is_found_by_a_full_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling, "NUCLEUS_CANDIDATES", 2)
    probs = torch.tensor([[0.2, 0.25, 0.3, 0.25], [0.9, 0.05, 0.03, 0.02]])
    ids, weights = nucleus(probs, top_p=0.6)
    full_weights, full_ids = probs.sort(dim=-1, descending=True)
    assert ids.shape == full_ids.shape == (2, 4)
    kept = [
        {int(i) for i, w in zip(r_ids, r_w, strict=True) if w > 0}
        for r_ids, r_w in zip(ids.tolist(), weights.tolist(), strict=True)
    ]
    assert kept == [{2, 1, 3}, {0}]


def test_each_row_draws_the_same_token_alone_or_in_a_batch() -> None:
    params = SAMPLE.model_copy(update={"top_p": 0.9})
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(3)) * 2
    batch = choose_tokens(logits, logits, params, row_generators(params, 5, torch.device("cpu")))
    for i in range(5):
        alone = choose_tokens(
            logits[i : i + 1], logits[i : i + 1], params, [row_generators(params, 5, torch.device("cpu"))[i]]
        )
        assert alone.item() == batch[i].item()


def test_the_same_seed_draws_the_same_tokens_and_another_seed_differs() -> None:
    probs = [1 / 40] * 40
    first, again = draw(probs, 64), draw(probs, 64)
    other = draw(probs, 64, SAMPLE.model_copy(update={"seed": 8}))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_rows_that_repeat_a_prompt_share_one_prefill(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    tiny_lm.kv.clear()
    prompt = tiny_lm.encode('def add(a, b):\n    """Add two numbers."""\n')
    stats = CallStats()
    greedy = GenerationParams(max_new_tokens=4)
    rows = tiny_lm.rollouts([prompt] * 3, greedy, stats=stats)
    tiny_lm.kv.clear()
    alone = tiny_lm.rollouts([prompt], greedy)[0]
    assert all(r.token_ids == alone.token_ids for r in rows)
    generated = sum(len(r.token_ids) for r in rows)
    # the prompt once, then one token a row for each step but the last
    assert stats.processed_tokens <= len(prompt) + generated
