"""AdaDec planner and threshold calibration, on a tiny random model and synthetic data."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import planners
import planners.adadec as adadec_mod
from planners.adadec import (
    AdaDecParams,
    candidate_score,
    outcome_is_fixed,
    prunable,
    score_candidates,
)
from planners.base import PlannerError
from planners.calibration import (
    Example,
    best_cutoff,
    check_source_style,
    entropy_at,
    fit_threshold,
    in_style,
    stdlib_examples,
    teacher_force,
    worked_answer_examples,
    worked_answer_text,
)
from planners.thresholds import lookup, write_entry
from search.limits.budget import Budget, Meter
from search.limits.stops import FunctionBodyEnd, StopCondition, StopStrings, TopLevelStop, first_stop
from search.model.hf import HFModel
from search.model.lm import GenerationParams, LanguageModel, ModelIdentity, position_stats_from_dists
from search.problems.problem import Problem
from search.state.context import SearchContext, stops_for

try:
    from tests.tiny_model import make_tiny_lm
except ImportError:  # tests/ itself on sys.path
    from tiny_model import make_tiny_lm  # type: ignore[no-redef]

PROBLEM = Problem(
    id="add", prompt='def add(a, b):\n    """Return the sum of a and b."""\n', entry_point="add"
)
MID = 8.1  # about half of this model's steps have entropy above it (they range over ~7.5..8.5)


def untied_tiny_lm(output_scale: float, name: str) -> HFModel:
    """The tiny model with an untied random output layer of the given scale: the larger the scale,
    the more peaked (lower-entropy) its next-token distributions."""
    lm = make_tiny_lm(seed=1)
    torch.manual_seed(0)
    emb = lm.model.model.embed_tokens.weight
    with torch.no_grad():
        emb.normal_(0, 1.0)
        lm.model.lm_head.weight = torch.nn.Parameter(torch.randn_like(emb) * output_scale)
    lm.identity = ModelIdentity(name, "test", lm.identity.tokenizer_hash, "float32")
    return lm


@pytest.fixture(scope="module")
def peaked_lm() -> HFModel:
    """A tiny model whose entropies vary from step to step (an untied, wider output layer), so a
    threshold between them makes some steps pause and others not."""
    return untied_tiny_lm(0.35, "tiny-peaked")


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has an empty $TREEDEC_HOME, so no user thresholds file leaks in."""
    monkeypatch.setenv("TREEDEC_HOME", str(tmp_path / "home"))


def solve(lm, planner: str = "adadec", budget: Budget | None = None, reuse_paths: bool = True, **params):  # type: ignore[no-untyped-def]
    lm.kv.clear()
    ctx = SearchContext.create(lm, meter=Meter(budget=budget or Budget()), reuse_paths=reuse_paths)
    return planners.create(planner, params).solve(PROBLEM, ctx)


def paper_rule(
    lm: LanguageModel,
    prompt: Sequence[int],
    stops: Sequence[StopCondition],
    threshold: float,
    num_candidates: int = 3,
    lookahead_tokens: int = 5,
    weight: float = 1.0,
    max_new_tokens: int = 384,
) -> tuple[list[int], int]:
    """AdaDec's rule as the paper states it, one model call per step and per candidate: the
    committed tokens (cut where the stops end the text) and the number of pauses.

    The planner commits the same tokens with far fewer calls (chunks, reused and pruned
    lookaheads); the tests hold it to this reference copy.
    """
    tokens: list[int] = []
    pauses = 0
    for _ in range(max_new_tokens):
        if tokens and first_stop(lm.decode(tokens), stops) is not None:
            break
        dist = lm.next_token_dists([[*prompt, *tokens]], num_candidates)[0]
        token = dist.token_ids[0]  # H < H*: the argmax
        if dist.entropy >= threshold:  # pause: re-rank the top-B by a greedy lookahead each
            pauses += 1
            best = -math.inf
            for cand, lp in zip(dist.token_ids[:num_candidates], dist.logprobs[:num_candidates], strict=True):
                params = GenerationParams(max_new_tokens=lookahead_tokens)
                roll = lm.rollouts([[*prompt, *tokens, cand]], params, [FunctionBodyEnd()])[0]
                score = candidate_score(lp, roll.logprobs, weight)
                if score > best:
                    best, token = score, cand
        if token in lm.eos_token_ids:
            break
        tokens.append(token)
    cut = first_stop(lm.decode(tokens), stops)
    if cut is not None:
        tokens = tokens[: next(i for i in range(1, len(tokens) + 1) if len(lm.decode(tokens[:i])) > cut)]
    return tokens, pauses


def naive_adadec(
    lm: HFModel, threshold: float, b: int = 3, lookahead: int = 5, max_new: int = 12
) -> tuple[list[int], int]:
    """The rule step by step, one uncached model call per step and per candidate."""
    prompt, stops = lm.encode(PROBLEM.prompt), stops_for(PROBLEM)
    return paper_rule(lm, prompt, stops, threshold, b, lookahead, 1.0, max_new)


# ----- the decoding rule ----------------------------------------------------------------------


def test_infinite_threshold_equals_greedy_token_for_token(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    greedy = solve(peaked_lm, "greedy", max_new_tokens=20)
    ada = solve(peaked_lm, entropy_threshold=math.inf, max_new_tokens=20, greedy_chunk=7)
    assert ada.best.token_ids == greedy.best.token_ids
    assert ada.best.completion == greedy.best.completion
    assert ada.spend.extra["pauses"] == 0
    assert ada.spend.extra["lookahead_tokens"] == 0
    assert ada.spend.generated_tokens == greedy.spend.generated_tokens  # chunks waste nothing without pauses


def test_zero_threshold_pauses_at_every_step(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    res = solve(peaked_lm, entropy_threshold=0.0, max_new_tokens=6)
    pauses = res.best.meta["pauses"]
    assert res.spend.extra["pauses"] == len(pauses) == len(res.best.token_ids) == 6
    assert [p["position"] for p in pauses] == list(range(6))
    assert [p["chosen"] for p in pauses] == res.best.token_ids
    assert all(len(p["candidates"]) == 3 for p in pauses)
    assert 0 < res.spend.extra["lookahead_tokens"] <= 6 * 3 * 5


def test_commits_the_same_tokens_as_the_step_by_step_rule(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    expected, expected_pauses = naive_adadec(peaked_lm, MID)
    assert 0 < expected_pauses < len(expected), "the threshold should split this model's steps"
    extensions = 0
    for chunk in (1, 4, 64):
        res = solve(peaked_lm, entropy_threshold=MID, max_new_tokens=12, greedy_chunk=chunk)
        assert res.best.token_ids == expected, f"greedy_chunk={chunk}"
        assert res.spend.extra["pauses"] == expected_pauses
        extensions += res.spend.extra["path_extensions"]
    assert extensions > 0  # short chunks end before a lookahead is decided: the path was extended


def test_chunked_greedy_needs_fewer_calls_and_counts_its_waste(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    step = solve(peaked_lm, entropy_threshold=MID, max_new_tokens=12, greedy_chunk=1)
    chunked = solve(peaked_lm, entropy_threshold=MID, max_new_tokens=12, greedy_chunk=64)
    assert chunked.best.token_ids == step.best.token_ids
    assert chunked.spend.extra["greedy_calls"] < step.spend.extra["greedy_calls"]
    # Every generated token is accounted for: the useful ones (plus the lookahead tokens read off a
    # chunk instead of generated) are the same, the rest is waste.
    useful = [
        s.generated_tokens - s.extra["wasted_tokens"] + s.path_tokens for s in (step.spend, chunked.spend)
    ]
    assert useful[0] == useful[1]


def test_pause_picks_the_highest_scoring_candidate(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    res = solve(peaked_lm, entropy_threshold=0.0, max_new_tokens=4)
    for pause in res.best.meta["pauses"]:
        best = max(pause["candidates"], key=lambda c: c["score"])
        assert pause["chosen"] == best["token"]
        for c in pause["candidates"]:
            assert c["lookahead"] <= 5


def test_batched_lookahead_scores_equal_separate_lookaheads(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    prefix = peaked_lm.encode(PROBLEM.prompt + "    ")
    dist = peaked_lm.next_token_dists([prefix], 3)[0]
    cands = list(zip(dist.token_ids, dist.logprobs, strict=True))
    peaked_lm.kv.clear()
    batched = score_candidates(peaked_lm, prefix, cands, lookahead_tokens=5)
    separate = []
    for cand in cands:
        peaked_lm.kv.clear()
        separate += score_candidates(peaked_lm, prefix, [cand], lookahead_tokens=5)
    assert [c.token for c in batched] == [c.token for c in separate] == dist.token_ids
    for a, b in zip(batched, separate, strict=True):
        assert a.lookahead is not None and b.lookahead is not None
        assert a.lookahead.token_ids == b.lookahead.token_ids
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.score == pytest.approx(candidate_score(a.logprob, a.lookahead.logprobs, 1.0))


def test_lookahead_weight_scales_only_the_lookahead_part() -> None:
    assert candidate_score(-2.0, [-1.0, -1.0], 0.5) == pytest.approx((-2.0 + 0.5 * -2.0) / 3)
    assert candidate_score(-2.0, [-1.0, -1.0], 0.0) == pytest.approx(-2.0 / 3)


def test_stops_when_the_token_budget_is_spent(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    res = solve(peaked_lm, budget=Budget(max_tokens=10), entropy_threshold=0.0, max_new_tokens=50)
    assert res.stop_reason == "max_tokens"
    assert res.best is not None
    assert res.spend.generated_tokens <= 10 + 3 * 5  # at most one lookahead batch past the check


# ----- savings: reused and skipped lookaheads -------------------------------------------------


def test_lookahead_read_off_a_greedy_path_equals_the_rolled_out_one(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    prefix = peaked_lm.encode(PROBLEM.prompt)
    peaked_lm.kv.clear()
    ctx = SearchContext.create(peaked_lm)
    path = ctx.lm.rollouts([prefix], GenerationParams(max_new_tokens=24, record_top_k=3))[0]
    la = GenerationParams(max_new_tokens=5, record_top_k=3)
    reused = 0
    for j in range(len(path.token_ids)):
        got = ctx.lm.path_rollout(prefix + path.token_ids[: j + 1], la, [FunctionBodyEnd()])
        if j + 1 + 5 > len(path.token_ids):
            assert got is None  # the path ends before the lookahead is decided
            continue
        assert got is not None
        reused += 1
        tok, lp = path.token_ids[j], path.logprobs[j]
        peaked_lm.kv.clear()
        rolled = score_candidates(peaked_lm, prefix + path.token_ids[:j], [(tok, lp)], lookahead_tokens=5)[0]
        assert rolled.lookahead is not None
        assert got.token_ids == rolled.lookahead.token_ids
        assert got.finish_reason == rolled.lookahead.finish_reason
        assert candidate_score(lp, got.logprobs, 1.0) == pytest.approx(rolled.score, abs=1e-4)
    assert reused == len(path.token_ids) - 5
    assert ctx.meter.spend.path_hits == 0  # peeking charges nothing


def _no_savings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adadec_mod._Walk, "_argmax_lookahead", lambda *a, **k: None)
    monkeypatch.setattr(adadec_mod, "outcome_is_fixed", lambda *a, **k: False)


@pytest.mark.parametrize("threshold", [0.0, MID])
def test_savings_keep_tokens_and_scores_and_cost_fewer_lookahead_tokens(
    peaked_lm, monkeypatch: pytest.MonkeyPatch, threshold: float
) -> None:  # type: ignore[no-untyped-def]
    saved = solve(peaked_lm, entropy_threshold=threshold, max_new_tokens=40, greedy_chunk=16)
    with monkeypatch.context() as m:
        _no_savings(m)
        plain = solve(
            peaked_lm,
            entropy_threshold=threshold,
            max_new_tokens=40,
            greedy_chunk=16,
            prune=False,
            reuse_paths=False,
        )
    assert saved.spend.extra["lookahead_pruned"] == 0  # this model is too flat for a bound to prune
    assert saved.best.token_ids == plain.best.token_ids
    assert saved.best.completion == plain.best.completion
    assert saved.spend.extra["pauses"] == plain.spend.extra["pauses"]
    assert plain.spend.path_tokens == plain.spend.extra["lookahead_skipped"] == 0
    reused, skipped = saved.spend.path_tokens, saved.spend.extra["lookahead_skipped"]
    assert reused > 0
    by_pos = {p["position"]: p for p in plain.best.meta["pauses"]}
    for pause in saved.best.meta["pauses"]:
        other = by_pos[pause["position"]]
        assert pause["chosen"] == other["chosen"]
        if pause.get("lookahead_skipped"):
            continue
        for a, b in zip(pause["candidates"], other["candidates"], strict=True):
            assert (a["token"], a["lookahead"]) == (b["token"], b["lookahead"])
            assert a["score"] == pytest.approx(b["score"], abs=2e-4)  # both rounded to 1e-4
    # Every skipped pause saved at most B*L lookahead tokens; every reused token saved one. (Path
    # extensions are greedy chunk tokens, not lookahead: on this flat model, which switches at
    # almost every pause, they are mostly wasted, unlike on a real model.)
    saved_tokens = plain.spend.extra["lookahead_tokens"] - saved.spend.extra["lookahead_tokens"]
    assert reused <= saved_tokens <= reused + skipped * 3 * 5
    if threshold == 0.0:
        assert skipped >= 1  # this model ends its body at a pause there


@pytest.fixture(scope="module")
def sharp_lm() -> HFModel:
    """Like ``peaked_lm`` with a larger output scale: step entropies of about 0 to 2.2 nats, so the
    argmax often has a high log-prob and the score bound prunes other candidates."""
    return untied_tiny_lm(1.5, "tiny-sharp")


def test_prunable_drops_only_candidates_whose_best_possible_score_cannot_win() -> None:
    cands = [(1, -0.2), (2, -1.5), (3, -3.0)]
    # bounds with L = 5: -0.25, -0.5
    assert prunable(cands, argmax_score=-0.3, lookahead_tokens=5) == {3}
    assert prunable(cands, argmax_score=-0.1, lookahead_tokens=5) == {2, 3}
    assert prunable(cands, argmax_score=-0.6, lookahead_tokens=5) == set()
    assert prunable(cands, argmax_score=-0.25, lookahead_tokens=5) == {2, 3}  # a tie never wins


@pytest.mark.parametrize("threshold", [0.0, 0.65])
def test_pruning_commits_the_same_tokens_with_fewer_lookahead_tokens(sharp_lm, threshold: float) -> None:  # type: ignore[no-untyped-def]
    pruned = solve(sharp_lm, entropy_threshold=threshold, max_new_tokens=30)
    full = solve(sharp_lm, entropy_threshold=threshold, max_new_tokens=30, prune=False)
    assert pruned.best.token_ids == full.best.token_ids
    assert [p["chosen"] for p in pruned.best.meta["pauses"]] == [
        p["chosen"] for p in full.best.meta["pauses"]
    ]
    assert pruned.spend.extra["lookahead_pruned"] > 0
    assert full.spend.extra["lookahead_pruned"] == 0
    assert pruned.spend.extra["lookahead_tokens"] < full.spend.extra["lookahead_tokens"]
    for pause in pruned.best.meta["pauses"]:
        for c in pause["candidates"][1:]:
            if c["score"] is None and not pause.get("lookahead_skipped"):
                assert c["lookahead"] == 0  # a pruned candidate was never rolled out


def test_outcome_is_fixed_only_when_every_candidate_cuts_inside_the_committed_text(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    lm = peaked_lm
    body = lm.encode("    return 1\n")
    words = [lm.encode(w) for w in ("def", "print", "class")]
    assert all(len(w) == 1 for w in words)
    new_stmt = [w[0] for w in words]  # each starts a new top-level statement
    indent = lm.encode("    ")
    assert len(indent) == 1
    stops = [TopLevelStop()]
    eos = next(iter(lm.eos_token_ids))
    assert outcome_is_fixed(lm, body, new_stmt, stops)
    assert not outcome_is_fixed(lm, body, new_stmt + indent, stops)  # the body could go on
    assert not outcome_is_fixed(lm, body, new_stmt + [eos], stops)  # eos keeps the trailing newline
    assert not outcome_is_fixed(lm, [], new_stmt, stops)
    assert not outcome_is_fixed(lm, body, [], stops)
    # A cut at the very end of the committed text keeps the candidate's token: not fixed.
    assert not outcome_is_fixed(lm, body, new_stmt[:1], [StopStrings(("def",))])
    # Already stopped text is the walk's business, not a pause's.
    assert not outcome_is_fixed(lm, body + new_stmt[:1] + body, new_stmt, stops)


# ----- thresholds -----------------------------------------------------------------------------


def test_refuses_without_a_threshold_and_says_how_to_calibrate(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlannerError) as err:
        solve(peaked_lm, max_new_tokens=4)
    assert "treedec calibrate" in str(err.value)
    assert "entropy_threshold" in str(err.value)
    assert "\n" not in str(err.value)


def test_uses_the_stored_threshold_for_the_model_in_use(peaked_lm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "home" / "thresholds.json"
    write_entry(path, peaked_lm.identity, {"entropy_threshold": 0.0, "source": "test"})
    res = solve(peaked_lm, max_new_tokens=3)
    assert res.best.meta["threshold"] == 0.0
    assert res.best.meta["threshold_source"] == str(path)
    assert res.spend.extra["pauses"] == 3


def test_param_overrides_the_stored_threshold(peaked_lm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_entry(tmp_path / "home" / "thresholds.json", peaked_lm.identity, {"entropy_threshold": 0.0})
    res = solve(peaked_lm, entropy_threshold=math.inf, max_new_tokens=3)
    assert res.spend.extra["pauses"] == 0 and res.best.meta["threshold_source"] == "param"


def test_thresholds_file_keeps_other_models_and_prefers_the_user_file(tmp_path: Path) -> None:
    a, b = ModelIdentity("a", "1", "t", "bfloat16"), ModelIdentity("b", "1", "t", "bfloat16")
    user, shipped = tmp_path / "user.json", tmp_path / "shipped.json"
    write_entry(user, a, {"entropy_threshold": 1.0})
    write_entry(user, b, {"entropy_threshold": 2.0})
    write_entry(shipped, a, {"entropy_threshold": 9.0})
    assert set(json.loads(user.read_text())) == {a.key(), b.key()}
    assert (lookup(a, [user, shipped]) or {})["entropy_threshold"] == 1.0
    assert (lookup(a, [tmp_path / "missing.json", shipped]) or {})["entropy_threshold"] == 9.0
    assert lookup(ModelIdentity("c", "1", "t", "bfloat16"), [user, shipped]) is None


def test_shipped_file_has_a_threshold_for_the_bundled_model() -> None:
    from planners.thresholds import SHIPPED, read_entries

    entries = [e for e in read_entries(SHIPPED).values() if e["name"] == "qwen2.5-coder-0.5b"]
    styles = sorted(e.get("prompt_style", "completion") for e in entries)
    assert styles == ["chain-of-thought", "chat-prefill", "completion"]  # one per calibrated style
    for entry in entries:
        assert 0 < entry["entropy_threshold"] < 5
        for key in ("source", "functions", "positions", "accuracy", "cutoff", "date"):
            assert key in entry


def test_threshold_lookup_takes_the_prompt_styles_own_entry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from planners.thresholds import lookup, write_entry
    from search.model.lm import ModelIdentity

    ident = ModelIdentity("m", "r", "tok", "bfloat16")
    path = tmp_path / "t.json"
    write_entry(path, ident, {"entropy_threshold": 0.8})
    write_entry(path, ident, {"entropy_threshold": 0.6, "prompt_style": "chat-prefill"})
    assert lookup(ident, [path])["entropy_threshold"] == 0.8
    assert lookup(ident, [path], prompt_style="chat-prefill")["entropy_threshold"] == 0.6
    assert lookup(ident, [path], prompt_style="chat") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"num_candidates": 0},
        {"entropy_threshold": -1.0},
        {"lookahead_tokens": 0},
        {"greedy_chunk": 0},
        {"unknown": 1},
    ],
)
def test_invalid_params_fail_naming_the_field(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError) as err:
        AdaDecParams.model_validate(bad)
    assert next(iter(bad)) in str(err.value)


# ----- calibration ----------------------------------------------------------------------------


def test_entropy_at_inverts_the_logistic() -> None:
    a, b = 2.5, -1.7
    for h in (0.1, 1.0, 3.0):
        p = 1 / (1 + math.exp(-(a + b * h)))
        assert entropy_at(p, a, b) == pytest.approx(h)
    with pytest.raises(ValueError):
        entropy_at(0.5, 1.0, 0.0)


def test_best_cutoff_maximises_balanced_accuracy() -> None:
    prob = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
    y = np.array([1, 1, 0, 1, 0, 0])
    cutoff, bal = best_cutoff(prob, y)
    # Cutting below 0.8 gives TPR 2/3, TNR 1; below 0.4: TPR 1, TNR 2/3: both 5/6; the first is kept.
    assert bal == pytest.approx(5 / 6)
    assert 0.7 < cutoff <= 0.8
    with pytest.raises(ValueError):
        best_cutoff(prob, np.ones(6))


def test_fit_recovers_the_threshold_of_a_known_logistic() -> None:
    rng = np.random.default_rng(1)
    a, b = 3.0, -2.0
    h = rng.uniform(0, 4, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-(a + b * h)))
    prior = y.mean()
    # The balanced-accuracy optimum is where P(rank 1 | H) equals the prevalence of rank 1.
    expected = (math.log(prior / (1 - prior)) - a) / b
    fit = fit_threshold(h, y, groups=np.arange(20000) // 100)
    assert fit.entropy_threshold == pytest.approx(expected, abs=0.1)
    assert fit.coef == pytest.approx(b, abs=0.2)  # class weighting shifts only the intercept
    assert 0.7 < fit.balanced_accuracy < 0.95
    assert fit.test_positions + fit.train_positions == 20000


def test_fit_finds_a_clean_boundary() -> None:
    h = np.linspace(0, 4, 2000)
    fit = fit_threshold(h, h < 1.3)
    assert fit.entropy_threshold == pytest.approx(1.3, abs=0.05)
    assert fit.balanced_accuracy > 0.98


def test_fit_rejects_data_where_entropy_does_not_predict_errors() -> None:
    h = np.linspace(0, 4, 500)
    with pytest.raises(ValueError, match="does not predict"):
        fit_threshold(h, h > 2.0)
    with pytest.raises(ValueError):
        fit_threshold(h[:5], h[:5] < 1)


def test_stdlib_examples_split_signature_and_docstring_from_body(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "import os\n\n"
        "@decorator\n"
        "def documented(x):\n"
        '    """Twice x.\n\n    More text.\n    """\n'
        "    y = x * 2\n"
        "    return y\n\n"
        "def undocumented(x):\n"
        "    return x\n\n"
        "def only_docstring():\n"
        '    """Nothing else."""\n\n'
        "class C:\n"
        "    def method(self):\n"
        '        """Methods are skipped."""\n'
        "        return 1\n"
    )
    examples = stdlib_examples(tmp_path)
    assert examples == [
        Example(
            "stdlib:mod.documented",
            '@decorator\ndef documented(x):\n    """Twice x.\n\n    More text.\n    """\n',
            "    y = x * 2\n    return y\n",
        )
    ]


def test_position_stats_match_next_token_dists_of_every_prefix(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    ex = Example("e", PROBLEM.prompt, "    return a + b\n")
    fast = teacher_force(peaked_lm, ex)
    prompt = peaked_lm.encode(ex.prompt)
    tokens = prompt + peaked_lm.encode(ex.target)
    peaked_lm.kv.clear()
    # what a backend without a one-pass method (the remote one) computes
    slow = position_stats_from_dists(peaked_lm, tokens, len(prompt))
    assert len(fast) == len(slow) == len(peaked_lm.encode(ex.target))
    for (h1, top1), (h2, top2) in zip(fast, slow, strict=True):
        assert h1 == pytest.approx(h2, abs=1e-3)
        assert top1 == top2


def test_position_stats_rejects_a_start_outside_the_sequence(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        peaked_lm.position_stats([1, 2, 3], 0)
    with pytest.raises(ValueError):
        peaked_lm.position_stats([1, 2, 3], 3)


def test_worked_answers_calibrate_chain_of_thought_as_boxed_answers(peaked_lm) -> None:  # type: ignore[no-untyped-def]
    from search.problems.gsm8k import load_gsm8k
    from search.problems.prompting import REASONING_SYSTEM

    examples = worked_answer_examples("gsm8k-train:0-2")
    problems = load_gsm8k("gsm8k-train:0-2")
    assert [e.id for e in examples] == [p.id for p in problems] == [f"gsm8k-train/{i}" for i in range(3)]
    for ex, problem in zip(examples, problems, strict=True):
        assert ex.kind == "answer" and ex.prompt == problem.prompt
        assert "<<" not in ex.target and "####" not in ex.target
        assert problem.final_answer is not None
        assert ex.target.endswith(f"The final answer is $\\boxed{{{problem.final_answer.reference}}}$.\n")
        styled = in_style(ex, peaked_lm, "chain-of-thought")
        assert REASONING_SYSTEM in styled.prompt and problem.prompt.strip() in styled.prompt
        assert styled.target == ex.target and styled.kind == "answer"
        assert len(teacher_force(peaked_lm, styled)) == len(peaked_lm.encode(ex.target))


@pytest.mark.parametrize(
    ("source", "style", "fragment"),
    [
        ("gsm8k-train:0-9", "chat-prefill", "calibrates the chain-of-thought style"),
        ("stdlib", "chain-of-thought", "use --source gsm8k-train:A-B"),
        ("stdlib", "program-aided", "no reference texts"),
        ("gsm8k-train:0-9", "program-aided", "calibrates the chain-of-thought style"),
    ],
)
def test_a_source_that_cannot_calibrate_the_style_is_refused(source: str, style: str, fragment: str) -> None:
    with pytest.raises(PlannerError, match=fragment):
        check_source_style(source, style)


def test_worked_answers_come_from_train_only_and_end_with_an_answer() -> None:
    with pytest.raises(PlannerError, match="the test split is for results"):
        worked_answer_examples("gsm8k:0-9")
    with pytest.raises(PlannerError, match="#### N"):
        worked_answer_text("no final answer here")
    expected = "2 + 2 = 4.\nThe final answer is $\\boxed{4}$.\n"
    assert worked_answer_text("2 + 2 = <<2+2=4>>4.\n#### 4") == expected
