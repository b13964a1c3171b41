"""What nucleus sampling costs per decoding step, before and after ``search/model/sampling.py``.

The earlier sampler sorted the whole vocabulary of every row for top-p and drew with one
``torch.multinomial`` per row; the current one looks for the nucleus among the likeliest
``NUCLEUS_CANDIDATES`` tokens and draws by inverse CDF. Both run here in the same process,
interleaved, on the model's own next-token logits for a GSM8K train prompt (best-of-N's batch of
16, and a single row), then whole sampled rollouts of 16 rows with each sampler swapped in, so the
ratios hold on whatever machine runs it.

    OMP_NUM_THREADS=1 python bench/sampling.py --dtype int8 --out bench/results/sampling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import code_commit  # noqa: E402
from search.model import hf  # noqa: E402
from search.model.lm import CallStats, DecodeMode, GenerationParams  # noqa: E402
from search.model.sampling import choose_tokens  # noqa: E402


def full_sort_tokens(
    logits: torch.Tensor,
    logp: torch.Tensor,
    params: GenerationParams,
    generators: list[torch.Generator] | None,
) -> torch.Tensor:
    """The earlier sampler, kept as the baseline: a full sort for top-p, one multinomial per row."""
    if params.mode != DecodeMode.sample:
        return logp.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    assert generators is not None
    return torch.stack(
        [torch.multinomial(probs[i], 1, generator=g).squeeze(0) for i, g in enumerate(generators)]
    )


def best_of(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="int8")
    ap.add_argument(
        "--reps", type=int, default=20, help="repetitions of each sampler call (the fastest kept)"
    )
    ap.add_argument("--tokens", type=int, default=48, help="new tokens of each timed rollout")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rollout rounds per sampler")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sampling.json")
    args = ap.parse_args()

    from search.model.loader import load_model
    from search.problems.loaders import load_problems
    from search.problems.prompting import render_reasoning

    lm = load_model(dtype=args.dtype)
    problem = load_problems("gsm8k-train:376")[0]
    prompt = lm.encode(render_reasoning(problem, "chain-of-thought", lm).model_prompt or "")
    params = GenerationParams(mode=DecodeMode.sample, temperature=0.8, top_p=0.95, seed=0)
    last = lm._prefill([prompt], CallStats()).last_logits  # the model's own next-token logits
    result: dict[str, Any] = {"dtype": lm.identity.dtype, "commit": code_commit(), "sampler_ms": {}}
    for rows in (1, 16):
        batch = last.expand(rows, -1).contiguous()
        logp = torch.log_softmax(batch, -1)
        gens = [torch.Generator().manual_seed(i) for i in range(rows)]
        old = best_of(lambda b=batch, lp=logp, g=gens: full_sort_tokens(b, lp, params, g), args.reps)
        new = best_of(lambda b=batch, lp=logp, g=gens: choose_tokens(b, lp, params, g), args.reps)
        result["sampler_ms"][f"{rows} rows"] = {
            "full sort": round(old * 1e3, 2),
            "nucleus among top 1,024": round(new * 1e3, 2),
            "ratio": round(old / new, 1),
        }
        print(f"{rows} rows: full sort {old * 1e3:.1f} ms, nucleus {new * 1e3:.1f} ms ({old / new:.1f}x)")

    rollout = GenerationParams(
        mode=DecodeMode.sample, temperature=0.8, top_p=0.95, seed=0, max_new_tokens=args.tokens
    )
    walls: dict[str, list[float]] = {"full sort": [], "nucleus among top 1,024": []}
    for _ in range(args.rounds):
        for name, sampler in (("full sort", full_sort_tokens), ("nucleus among top 1,024", choose_tokens)):
            hf.choose_tokens = sampler  # type: ignore[assignment]
            lm.kv.clear()
            lm.rollouts([prompt], GenerationParams(max_new_tokens=1))  # the prompt's KV cached: time decoding
            start = time.perf_counter()
            lm.rollouts([prompt] * 16, rollout)
            walls[name].append(time.perf_counter() - start)
    hf.choose_tokens = choose_tokens  # type: ignore[assignment]
    old_wall, new_wall = (statistics.median(walls[k]) for k in walls)
    result["rollouts_16_rows"] = {
        "new_tokens": args.tokens,
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in walls.items()},
        "ratio": round(old_wall / new_wall, 2),
    }
    print(
        f"16 sampled rollouts of {args.tokens} tokens: {old_wall:.1f} s -> {new_wall:.1f} s "
        f"({old_wall / new_wall:.2f}x)"
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
