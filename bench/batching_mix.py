"""Mixed traffic on one model: do greedy calls of different planners share forward passes?

Three searches run at once on the real bundled model through one ``BatchingLM``, each making the
greedy calls its planner makes:

- a PG-TD-like caller: lookahead rollouts of 3 rows, each step's top-3 recorded, a stop condition;
- a greedy baseline: one row, nothing recorded, a stop string in its ``GenerationParams``;
- an AdaDec-like caller: short chunks of one row, top-3 recorded, stops that carry the text so far
  (so they differ from call to call).

Two merge rules are timed on the same calls, interleaved over ``--repeats`` rounds (each round on
a cleared KV cache) so background load hits them alike:

- ``strict``: the rule before ``merge_key`` (calls merge only when their stops and recorded top-k
  are equal too), so these three callers never share a batch;
- ``merged``: ``BatchingLM``'s rule (stops are each row's own, the batch records the largest
  top-k).

Prints JSON: wall time of the whole mix and of each caller (median over rounds), batches, merged
calls and the model's real forward passes, and the ratios strict / merged.

    python bench/batching_mix.py [--repeats 2] [--tokens 48] [--out bench/results/batching_mix.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.limits.stops import StopCondition, StopStrings, TopLevelStop, stops_key  # noqa: E402
from search.model.batching import BatchingLM, request_guard  # noqa: E402
from search.model.lm import GenerationParams  # noqa: E402


class StrictKeys(BatchingLM):
    """The merge rule before ``merge_key``: equal params but the length and seed, equal stops."""

    def rollout_key(self, params: GenerationParams, stops: Sequence[StopCondition]) -> Hashable:
        return ("roll", params.model_copy(update={"max_new_tokens": 1, "seed": None}), stops_key(stops))


def callers(lm: BatchingLM, prompts: list[list[int]], tokens: int) -> dict[str, Callable[[], None]]:
    def pgtd() -> None:
        params = GenerationParams(max_new_tokens=tokens, record_top_k=3)
        for i in range(3):
            top = lm.next_token_dists([prompts[0]], 3)[0].token_ids
            lm.rollouts([prompts[0] + [t] for t in top[: 3 - i % 2]], params, [TopLevelStop()])

    def greedy() -> None:
        params = GenerationParams(max_new_tokens=tokens, stop=("\nif __name__",))
        for i in range(3):
            lm.rollouts([prompts[1 + i]], params)

    def adadec() -> None:
        done: list[int] = []
        for _ in range(tokens // 8):
            params = GenerationParams(max_new_tokens=8, record_top_k=3)
            context = lm.decode(done)[-12:]
            roll = lm.rollouts([prompts[4] + done], params, [StopStrings((context + "\n\n\n",))])[0]
            done += roll.token_ids

    return {"pgtd": pgtd, "greedy": greedy, "adadec": adadec}


def timed_mix(lm: BatchingLM, prompts: list[list[int]], tokens: int) -> dict[str, Any]:
    lm.inner.kv.clear()
    before = (lm.batching.batches, lm.batching.merged_calls, lm.inner.counters.stats.forward_passes)
    walls: dict[str, float] = {}
    start = threading.Barrier(3)

    def run(name: str, fn: Callable[[], None]) -> None:
        with request_guard():
            start.wait()
            t0 = time.perf_counter()
            fn()
            walls[name] = time.perf_counter() - t0

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=kv) for kv in callers(lm, prompts, tokens).items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "seconds": time.perf_counter() - t0,
        "caller_seconds": walls,
        "batches": lm.batching.batches - before[0],
        "merged_calls": lm.batching.merged_calls - before[1],
        "forward_passes": lm.inner.counters.stats.forward_passes - before[2],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=48, help="rollout length (AdaDec: chunks of 8 up to it)")
    ap.add_argument("--dtype", default="w8a8")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from search.model.loader import load_model
    from search.problems.loaders import humaneval

    model = load_model("bundled-default", dtype=args.dtype)
    prompts = [model.encode(p.prompt) for p in humaneval([0, 2, 4, 7, 12])]
    rules = {"strict": StrictKeys(model, window_ms=20), "merged": BatchingLM(model, window_ms=20)}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in rules}
    for _ in range(args.repeats):
        for name, lm in rules.items():
            rounds[name].append(timed_mix(lm, prompts, args.tokens))
    result: dict[str, Any] = {
        "tokens": args.tokens,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "torch_threads": __import__("torch").get_num_threads(),
        "by_rule": {},
    }
    for name, rs in rounds.items():
        result["by_rule"][name] = {
            "seconds": round(statistics.median(r["seconds"] for r in rs), 2),
            "caller_seconds": {
                c: round(statistics.median(r["caller_seconds"][c] for r in rs), 2)
                for c in rs[0]["caller_seconds"]
            },
            "batches": rs[-1]["batches"],
            "merged_calls": rs[-1]["merged_calls"],
            "forward_passes": rs[-1]["forward_passes"],
            "seconds_all": [round(r["seconds"], 2) for r in rs],
        }
    strict, merged = result["by_rule"]["strict"], result["by_rule"]["merged"]
    result["strict_over_merged"] = {
        "seconds": round(strict["seconds"] / merged["seconds"], 2),
        "forward_passes": round(strict["forward_passes"] / max(1, merged["forward_passes"]), 2),
        **{
            f"{c}_seconds": round(strict["caller_seconds"][c] / merged["caller_seconds"][c], 2)
            for c in strict["caller_seconds"]
        },
    }
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
