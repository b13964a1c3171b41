"""treedec's CPU attention (``search/model/attention.py``) against torch's ``sdpa``, in one process.

One model, loaded once; the two implementations are switched on it. On a loaded machine a timing
drifts by 2x within a minute, so the two are compared step by step: after a prefill of a batch of
``B`` random prompts of ``L`` tokens, one decode step (with a boolean mask, as ``HFModel`` passes
one) is timed with each implementation in turn, the cache cut back after each, ``--steps`` times,
alternating which goes first; the figure is the median of the per-step ratios. Then the tokens:
greedy generations through ``HFModel`` from HumanEval and GSM8K prompts with each, and the first
token where they differ (bf16 activations round differently, so a near tie can break the other way).

    OMP_NUM_THREADS=1 python bench/attention.py --dtype w8a8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import code_commit  # noqa: E402

IMPLEMENTATIONS = ("sdpa", "treedec-cpu")


SHAPES = ((1, 300), (4, 300), (1, 600), (4, 600))  # (batch, cached positions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--dtype", default="w8a8")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/attention.json")
    args = ap.parse_args()

    import torch

    from search.model.lm import GenerationParams
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    lm = load_model(args.model, dtype=args.dtype)
    steps = [step_ratios(lm.model, batch, length, args.steps) for batch, length in SHAPES]
    problems = load_problems("humaneval:0,5") + load_problems("gsm8k-train:376,1014")
    prompts = [lm.encode(p.prompt) for p in problems]
    params = GenerationParams(max_new_tokens=args.new_tokens)
    tokens: dict[str, list[list[int]]] = {}
    for impl in IMPLEMENTATIONS:
        lm.model.set_attn_implementation(impl)
        lm.kv.clear()
        tokens[impl] = [r.token_ids for r in lm.rollouts(prompts, params)]
    result: dict[str, Any] = {
        "model": args.model,
        "weights": args.dtype,
        "threads": torch.get_num_threads(),
        "commit": code_commit(),
        "decode_step_speedup": steps,
        "prompts": [p.id for p in problems],
        "new_tokens": args.new_tokens,
        "same_greedy_tokens": [a == b for a, b in zip(tokens["sdpa"], tokens["treedec-cpu"], strict=True)],
        "first_difference": [
            next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            for a, b in zip(tokens["sdpa"], tokens["treedec-cpu"], strict=True)
        ],
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def step_ratios(model: Any, batch: int, length: int, steps: int) -> dict[str, Any]:
    """sdpa's time over treedec-cpu's for one decode step, step by step (see the module's doc)."""
    import torch

    ids = torch.randint(100, 5000, (batch, length), generator=torch.Generator().manual_seed(length))
    token = torch.randint(100, 5000, (batch, 1), generator=torch.Generator().manual_seed(batch))
    mask = torch.ones(batch, 1, 1, length + 1, dtype=torch.bool)
    ratios = []
    with torch.inference_mode():
        model.set_attn_implementation("sdpa")
        cache = model(input_ids=ids, use_cache=True).past_key_values
        for i in range(steps + 1):
            seconds = {}
            for impl in IMPLEMENTATIONS if i % 2 else IMPLEMENTATIONS[::-1]:
                model.set_attn_implementation(impl)
                started = time.perf_counter()
                model(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
                seconds[impl] = time.perf_counter() - started
                cache.crop(-1)
            if i:  # the first pair warms up
                ratios.append(seconds["sdpa"] / seconds["treedec-cpu"])
    print(f"batch {batch}, {length} positions: {statistics.median(ratios):.2f}x", flush=True)
    return {
        "batch": batch,
        "positions": length,
        "median": round(statistics.median(ratios), 3),
        "quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
    }


if __name__ == "__main__":
    main()
