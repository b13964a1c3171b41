"""treedec's CPU attention (``search/model/attention.py``) against torch's ``sdpa``, on the real path.

One model, loaded once; the two attention implementations are switched on it in turn, round
after round, so machine load hits both alike. Each round times, through ``HFModel`` (its masks,
its KV cache), a greedy generation of ``--new-tokens`` from cold prompts at batch 1 and at batch
4 (prefill and decode together, as a search spends them), on HumanEval and GSM8K prompts, and
then the tokens: whether both implementations generate the same greedy tokens on every prompt
(bf16 activations round differently, so a tie can break the other way).

    OMP_NUM_THREADS=1 python bench/attention.py --dtype w8a8 --rounds 3
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--dtype", default="w8a8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/attention.json")
    args = ap.parse_args()

    import torch

    from search.model.lm import GenerationParams
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    lm = load_model(args.model, dtype=args.dtype)
    problems = load_problems("humaneval:0,5") + load_problems("gsm8k-train:376,1014")
    prompts = [lm.encode(p.prompt) for p in problems]
    params = GenerationParams(max_new_tokens=args.new_tokens)
    timings: dict[str, dict[str, list[float]]] = {i: {"batch1": [], "batch4": []} for i in IMPLEMENTATIONS}
    tokens: dict[str, list[list[int]]] = {}

    def generate(rows: list[list[int]]) -> tuple[float, list[list[int]], int]:
        lm.kv.clear()
        started = time.perf_counter()
        out = lm.rollouts(rows, params)
        return time.perf_counter() - started, [r.token_ids for r in out], sum(len(r.token_ids) for r in out)

    for round_ in range(args.rounds):
        for impl in IMPLEMENTATIONS:
            lm.model.set_attn_implementation(impl)
            with torch.inference_mode():
                seconds, ids, n = generate(prompts[:1])
                timings[impl]["batch1"].append(n / seconds)
                seconds, ids, n = generate(prompts)
                timings[impl]["batch4"].append(n / seconds)
            tokens[impl] = ids
            speeds = " / ".join(f"{timings[impl][b][-1]:.2f}" for b in ("batch1", "batch4"))
            print(f"round {round_ + 1} {impl}: {speeds} tok/s (batch 1 / batch 4)")
    result: dict[str, Any] = {
        "model": args.model,
        "weights": args.dtype,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "new_tokens": args.new_tokens,
        "prompts": [p.id for p in problems],
        "commit": code_commit(),
        "tok_s": {i: {k: round(statistics.median(v), 2) for k, v in t.items()} for i, t in timings.items()},
        "speedup": {
            k: round(statistics.median(timings["treedec-cpu"][k]) / statistics.median(timings["sdpa"][k]), 3)
            for k in ("batch1", "batch4")
        },
        "same_greedy_tokens": [a == b for a, b in zip(tokens["sdpa"], tokens["treedec-cpu"], strict=True)],
        "first_difference": [
            next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            for a, b in zip(tokens["sdpa"], tokens["treedec-cpu"], strict=True)
        ],
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
