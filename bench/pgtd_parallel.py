"""Is a batched lookahead faster per rollout? PG-TD's ``parallel_rollouts`` on the real model.

Takes one HumanEval prompt, builds ``--leaves`` sibling leaves the way PG-TD does (the prompt,
a few greedy tokens, then each of the top-k next tokens), warms the shared prefix's KV (PG-TD's
first rollout leaves it cached), and generates the same greedy lookahead rollouts from all leaves
with batch sizes 1, 2 and 4 (``record_top_k=3`` as PG-TD does). Every rollout runs exactly
``--tokens`` tokens (no stop condition) so each setting does the same work; the settings are
interleaved over ``--repeats`` rounds so background load hits them alike. Prints JSON: seconds
per rollout and generated tokens per second for each batch size (median over rounds).

    python bench/pgtd_parallel.py [--task 9] [--leaves 4] [--tokens 48] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.model.lm import CallStats, GenerationParams  # noqa: E402


def leaves(lm: Any, prompt: list[int], count: int, depth: int) -> tuple[list[int], list[list[int]]]:
    """The shared prefix (prompt + ``depth`` greedy tokens) and ``count`` children of it."""
    prefix = list(prompt)
    for _ in range(depth):
        prefix.append(lm.next_token_dists([prefix], 1)[0].token_ids[0])
    top = lm.next_token_dists([prefix], count)[0].token_ids
    return prefix, [prefix + [t] for t in top]


def timed_round(lm: Any, prefix: list[int], kids: list[list[int]], batch: int, tokens: int) -> float:
    lm.kv.clear()
    lm.next_token_dists([prefix], 3)  # the shared prefix is cached, as after PG-TD's first rollout
    params = GenerationParams(max_new_tokens=tokens, record_top_k=3)
    stats = CallStats()
    t0 = time.perf_counter()
    for i in range(0, len(kids), batch):
        rolls = lm.rollouts(kids[i : i + batch], params, (), stats)
        assert all(len(r.token_ids) == tokens for r in rolls), (
            "a rollout ended early (EOS): use fewer --tokens"
        )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", type=int, default=9, help="HumanEval index")
    ap.add_argument("--leaves", type=int, default=4)
    ap.add_argument("--depth", type=int, default=3, help="greedy tokens before the branching point")
    ap.add_argument("--tokens", type=int, default=48, help="tokens per rollout")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from search.model.loader import load_model
    from search.problems.loaders import humaneval

    lm = load_model("bundled-default")
    prompt = lm.encode(humaneval([args.task])[0].prompt)
    prefix, kids = leaves(lm, prompt, args.leaves, args.depth)
    batches = [int(b) for b in args.batches.split(",")]
    times: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(args.repeats):
        for b in batches:
            times[b].append(timed_round(lm, prefix, kids, b, args.tokens))
    result: dict[str, Any] = {
        "task": f"HumanEval/{args.task}",
        "leaves": args.leaves,
        "tokens_per_rollout": args.tokens,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "torch_threads": __import__("torch").get_num_threads(),
        "by_batch": {},
    }
    for b, ts in times.items():
        med = statistics.median(ts)
        result["by_batch"][str(b)] = {
            "seconds_all": [round(t, 2) for t in ts],
            "seconds_per_rollout": round(med / args.leaves, 3),
            "tokens_per_second": round(args.leaves * args.tokens / med, 2),
        }
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
