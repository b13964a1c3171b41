"""Engine benchmark: greedy through the planner + HFModel path vs a raw ``model.generate``.

Same model, same prompts, same number of new tokens, interleaved in one process so machine load
hits both alike. Also: the speed-up of one batched next-token call over 8 single calls, for cold
prompts (prefill) and for 1-token extensions of cached prefixes (the search's common case).

    .venv/bin/python bench/engine.py [--problems 6] [--model bundled-default] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import planners
from search.model.lm import CallStats
from search.model.loader import load_model
from search.problems.loaders import humaneval
from search.state.context import SearchContext


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--out", default="bench/results/engine.json")
    args = ap.parse_args()

    lm = load_model(args.model)
    problems = humaneval(range(args.problems))
    greedy = planners.create("greedy", {"max_new_tokens": args.max_new_tokens})
    # Warm up both paths once.
    greedy.solve(problems[0], SearchContext.create(lm))
    lm.model.generate(torch.tensor([lm.encode(problems[0].prompt)]), max_new_tokens=4, do_sample=False)

    ours_tps, ref_tps = [], []
    for prob in problems:
        lm.kv.clear()
        ctx = SearchContext.create(lm)
        t = time.perf_counter()
        result = greedy.solve(prob, ctx)
        ours_s = time.perf_counter() - t
        n = ctx.meter.spend.generated_tokens
        ids = torch.tensor([lm.encode(prob.prompt)])
        t = time.perf_counter()
        lm.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        ref_s = time.perf_counter() - t
        ours_tps.append(n / ours_s)
        ref_tps.append(n / ref_s)
        print(
            f"{prob.id}: {n} tokens  treedec {n / ours_s:.1f} tok/s  generate {n / ref_s:.1f} tok/s",
            flush=True,
        )
        del result

    batch = batch_speedup(lm, problems)
    summary = {
        "model": lm.identity.name,
        "dtype": lm.identity.dtype,
        "threads": torch.get_num_threads(),
        "treedec_tok_s": round(statistics.mean(ours_tps), 2),
        "generate_tok_s": round(statistics.mean(ref_tps), 2),
        "ratio": round(statistics.mean(ours_tps) / statistics.mean(ref_tps), 3),
        **batch,
    }
    print(json.dumps(summary, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


def batch_speedup(lm, problems) -> dict[str, float]:  # type: ignore[no-untyped-def]
    prompts = [lm.encode(p.prompt) for p in (problems * 8)[:8]]
    prompts = [p + [i] for i, p in enumerate(prompts)]  # distinct even if problems repeat

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    lm.kv.clear()
    single_cold = sum(timed(lambda p=p: lm.next_token_dists([p], 5)) for p in prompts)
    lm.kv.clear()
    batch_cold = timed(lambda: lm.next_token_dists(prompts, 5))
    # Cached prefixes extended by one token each: what tree search does all the time.
    ext = [p + [42] for p in prompts]
    single_ext = sum(timed(lambda p=p: lm.next_token_dists([p], 5, CallStats())) for p in ext)
    ext2 = [p + [43] for p in prompts]
    batch_ext = timed(lambda: lm.next_token_dists(ext2, 5))
    return {
        "batch8_prefill_speedup": round(single_cold / batch_cold, 2),
        "batch8_extend_speedup": round(single_ext / batch_ext, 2),
        "single_extend_ms": round(1000 * single_ext / 8, 1),
        "batch8_extend_ms": round(1000 * batch_ext, 1),
    }


if __name__ == "__main__":
    main()
