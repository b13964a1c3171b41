"""Process scorers: the model-based PRM's plumbing on tiny random models built here, and the
code-aware scorer's completability check and formula."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from scorers.prm import (
    CodeAwareScorer,
    HFProcessRewardModel,
    PartialState,
    close_open_block,
    completable,
)
from search.problems.problem import Problem
from search.state.context import SearchContext
from tests.tiny_model import bundled_tokenizer, tiny_prm_config

STEP_TAG = "ки"  # one token in the bundled tokenizer, like Math-Shepherd's tag


@pytest.fixture(scope="module")
def tag_prm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random causal-LM 'PRM' saved to disk, so loading by path is exercised too."""
    from transformers import Qwen2ForCausalLM

    tok = bundled_tokenizer()
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(tiny_prm_config(tok))
    path = tmp_path_factory.mktemp("prm_tag")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_tag_prm_gives_one_score_in_unit_interval_per_step(tag_prm_dir: Path) -> None:
    prm = HFProcessRewardModel.load(tag_prm_dir, mode="tag", step_tag=STEP_TAG)
    scores = prm.step_scores("Add two numbers.", [["x = 1\n", "y = 2\n", "return x + y\n"], ["return 0\n"]])
    assert [len(s) for s in scores] == [3, 1]
    assert all(0.0 <= v <= 1.0 for s in scores for v in s)
    assert prm.forward_passes == 1  # both solutions in one batch


def test_tag_prm_reads_the_good_bad_softmax_at_each_tag_position(tag_prm_dir: Path) -> None:
    prm = HFProcessRewardModel.load(tag_prm_dir, mode="tag", step_tag=STEP_TAG)
    steps = ["a = 1\n", "b = a * 2\n"]
    ids, positions = prm.build_input("Q", steps)
    assert [ids[p] for p in positions] == [prm.tag_ids[-1]] * 2
    with torch.inference_mode():
        logits = prm.model(input_ids=torch.tensor([ids])).logits[0].float()
    expected = [float(torch.softmax(logits[p, [prm.good_id, prm.bad_id]], -1)[0]) for p in positions]
    assert prm.step_scores("Q", [steps])[0] == pytest.approx(expected, abs=1e-5)
    # Padding another, longer solution into the batch does not change these scores.
    batched = prm.step_scores("Q", [steps, steps + ["c = b\n"] * 5])
    assert batched[0] == pytest.approx(expected, abs=1e-4)


def test_token_classification_prm_scores_at_the_separators() -> None:
    from transformers import Qwen2ForTokenClassification

    tok = bundled_tokenizer()
    torch.manual_seed(2)
    model = Qwen2ForTokenClassification(tiny_prm_config(tok, num_labels=2))
    prm = HFProcessRewardModel(model, tok, mode="token_classification", step_tag=STEP_TAG)
    steps = ["s1\n", "s2\n", "s3\n", "s4\n"]
    ids, positions = prm.build_input("Q", steps)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    expected = [float(torch.softmax(logits[p], -1)[1]) for p in positions]
    got = prm.step_scores("Q", [steps])[0]
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(got) == 4 and all(0 <= v <= 1 for v in got)


def test_prm_aggregates_step_scores_per_state(tag_prm_dir: Path, tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = Problem(id="p", prompt="def f():\n", prompt_is_code=True)
    states = [PartialState("    x = 1\n    return x\n", steps=["    x = 1\n", "    return x\n"])]
    ctx = SearchContext.create(tiny_lm)
    per_step = HFProcessRewardModel.load(tag_prm_dir, step_tag=STEP_TAG).step_scores(
        problem.prompt, [states[0].steps]
    )[0]
    for agg, want in (("last", per_step[-1]), ("min", min(per_step)), ("mean", sum(per_step) / 2)):
        prm = HFProcessRewardModel.load(tag_prm_dir, step_tag=STEP_TAG, aggregate=agg)
        assert prm.score_steps(problem, states, ctx) == pytest.approx([want], abs=1e-6)
    assert ctx.meter.spend.extra["process_scorer_calls"] == 3


def test_prm_rejects_bad_configuration(tag_prm_dir: Path) -> None:
    with pytest.raises(ValueError, match="single tokens"):
        HFProcessRewardModel.load(tag_prm_dir, good_token="good step")
    with pytest.raises(ValueError, match="mode"):
        HFProcessRewardModel.load(tag_prm_dir, mode="regression")  # type: ignore[arg-type]


# ----- code-aware scorer ----------------------------------------------------------------------

PROMPT = 'def add(a, b):\n    """Add."""\n'


@pytest.mark.parametrize(
    "partial",
    [
        "",
        "    s = a + b\n",
        "    if a > b:\n",  # open block: closed by a pass
        "    return (a +\n",  # open bracket: a valid prefix
        "    total = 0\n    for x in [a, b]:\n        total += x\n",
        '    """more docs\n',  # open string
    ],
)
def test_completable_accepts_valid_partial_programs(partial: str) -> None:
    assert completable(PROMPT + partial)


@pytest.mark.parametrize(
    "partial",
    [
        "    return a +* b\n",
        "    return a)\n",
        "    retur n a\n",
        "    if a > b:\n    return 1\n",  # block body not indented
        "    x = [1, 2}\n",
    ],
)
def test_completable_rejects_invalid_partial_programs(partial: str) -> None:
    assert not completable(PROMPT + partial)


def test_close_open_block_adds_an_indented_pass() -> None:
    assert (
        close_open_block("def f():\n    for x in y:  # loop\n")
        == "def f():\n    for x in y:  # loop\n        pass\n"
    )
    assert close_open_block("x = 1\n") == "x = 1\n"


def test_code_scorer_gives_zero_to_incompletable_and_likelihood_without_tests(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = Problem(id="p", prompt=PROMPT, entry_point="add")  # no public tests: the pass term is dropped
    ctx = SearchContext.create(tiny_lm)
    scorer = CodeAwareScorer()
    good = PartialState("    s = a + b\n", logprobs=[-0.5, -1.5])
    bad = PartialState("    return a)\n", logprobs=[-0.1])
    scores = scorer.evaluate(problem, [good, bad], ctx)
    assert scores[0].r == pytest.approx(math.exp(-1.0))
    assert scores[1].r == 0.0 and scores[1].parts["completable"] == 0.0
    assert ctx.meter.spend.generated_tokens == 0  # no lookahead without tests


def test_code_scorer_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="w_lp"):
        CodeAwareScorer(w_lp=0, w_pass=0)


def test_a_lookahead_on_an_earlier_greedy_path_is_exact_even_when_lazy(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    from sandbox import open_executor
    from scorers.tests import TestScorer
    from search.cache.store import MemoryCache
    from search.limits.steps import in_context
    from search.model.lm import GenerationParams
    from search.problems.problem import FunctionTest
    from search.state.context import stops_for

    problem = Problem(
        id="p", prompt=PROMPT, entry_point="add", public_tests=[FunctionTest(call="add(1, 2)", expected="3")]
    )
    tiny_lm.kv.clear()
    ctx = SearchContext.create(tiny_lm, scorer=TestScorer(open_executor("auto"), cache=MemoryCache()))
    prompt = tiny_lm.encode(problem.model_text)
    start = tiny_lm.encode("    return (a +")
    stops = in_context(stops_for(problem), tiny_lm.decode(start))
    path = ctx.lm.rollouts([prompt + start], GenerationParams(max_new_tokens=12), stops)[0]
    assert len(path.token_ids) == 12  # this model repeats " +" on and on (still completable)
    spent = (ctx.meter.spend.generated_tokens, ctx.meter.spend.forward_passes)
    toks = start + path.token_ids[:3]
    state = PartialState(tiny_lm.decode(toks), token_ids=toks, logprobs=[-0.5] * len(toks))
    scorer = CodeAwareScorer(w_lp=0.3, w_pass=0.7, lookahead_tokens=5)
    score = scorer.evaluate(problem, [state], ctx, lookahead=False)[0]
    assert score.exact and score.lookahead is not None  # its own lookahead, not a borrowed pass rate
    assert score.lookahead.token_ids == path.token_ids[3:8]
    assert (ctx.meter.spend.generated_tokens, ctx.meter.spend.forward_passes) == spent
    assert ctx.meter.spend.path_hits == 1 and ctx.meter.spend.path_tokens == 5
    assert ctx.meter.spend.executions == 1  # its program was judged once


def test_code_scorer_lookahead_is_tested_once_and_then_served_from_caches(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    from sandbox import open_executor
    from scorers.tests import TestScorer
    from search.cache.store import MemoryCache
    from search.problems.problem import FunctionTest

    problem = Problem(
        id="p", prompt=PROMPT, entry_point="add", public_tests=[FunctionTest(call="add(1, 2)", expected="3")]
    )
    ctx = SearchContext.create(tiny_lm, scorer=TestScorer(open_executor("auto"), cache=MemoryCache()))
    scorer = CodeAwareScorer(w_lp=0.3, w_pass=0.7, lookahead_tokens=5)
    state = PartialState("    s = a + b\n", token_ids=tiny_lm.encode("    s = a + b\n"), logprobs=[-0.2] * 7)
    first = scorer.evaluate(problem, [state], ctx)[0]
    assert first.lookahead is not None and 1 <= len(first.lookahead.token_ids) <= 5
    assert first.exact and first.lookahead.pass_rate == 0.0  # a random model's code fails the test
    assert first.r == pytest.approx(0.3 * math.exp(-0.2) / 1.0)
    spent = (ctx.meter.spend.generated_tokens, ctx.meter.spend.executions)
    assert spent[0] == len(first.lookahead.token_ids) and spent[1] == 1
    again = scorer.evaluate(problem, [state], ctx)[0]
    assert again.r == first.r
    assert (
        ctx.meter.spend.generated_tokens,
        ctx.meter.spend.executions,
    ) == spent  # rollout + execution caches
    lazy = scorer.evaluate(problem, [PartialState("    t = 1\n", prior_pass=0.5)], ctx, lookahead=False)[0]
    assert not lazy.exact and lazy.r == pytest.approx(0.3 * 1.0 + 0.7 * 0.5)  # borrowed pass rate
    assert ctx.meter.spend.generated_tokens == spent[0]
