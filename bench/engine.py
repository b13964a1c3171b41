"""Engine benchmark: greedy through the planner + HFModel path vs a raw ``model.generate``.

Same model, same prompts, same number of new tokens, interleaved in one process so machine load
hits both alike. Also: the speed-up of one batched next-token call over 8 single calls, for cold
prompts (prefill) and for 1-token extensions of cached prefixes (the search's common case).

    .venv/bin/python bench/engine.py [--problems 6] [--model bundled-default] [--out FILE.json]

With ``--formats bf16,int8,int4`` it measures the weight formats instead (search/model/weights.py),
one model per format loaded in the same process and timed in turn, round after round, at each
``--threads`` count: decode tokens/s at batch 1 and for a batch of 8 rows, prefill tokens/s, and
the machine's read bandwidth measured in the same rounds on the same threads (the time
``amax`` takes to read a 1 GiB bf16 tensor's bytes as float32, best of 3). A format's bandwidth limit is that
bandwidth over the bytes of weights one decode step reads; its share is its decode speed over that
limit.

    .venv/bin/python bench/engine.py --formats bf16,int8,int4 --threads 1,2 --rounds 3
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
    ap.add_argument("--out", default=None)
    ap.add_argument("--formats", default=None, help="e.g. bf16,int8,int4: compare weight formats")
    ap.add_argument("--threads", default="1,2", help="with --formats: thread counts, in turn")
    ap.add_argument("--rounds", type=int, default=3, help="with --formats: interleaved rounds")
    args = ap.parse_args()
    if args.formats:
        formats_main(args)
        return
    args.out = args.out or "bench/results/engine.json"

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


def read_bandwidth(gib: float = 1.0, repeats: int = 3) -> float:
    """GB/s of reading a 1 GiB bf16 tensor once (best of ``repeats``): ``amax`` over its bytes seen
    as float32, a pure vectorised read (a bf16 reduction itself runs compute-bound here)."""
    t = torch.ones(int(gib * (1 << 30)) // 2, dtype=torch.bfloat16)
    words = t.view(torch.float32)
    words.amax()  # touch every page once
    best = min(_seconds(lambda: words.amax()) for _ in range(repeats))
    return t.numel() * t.element_size() / best / 1e9


def _seconds(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def format_speeds(lm, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Decode tok/s at batch 1 and at batch 8 (a 1-token call subtracted, so prefill is not
    counted), and prefill tok/s of 8 cold prompts in one call."""
    from search.model.lm import GenerationParams

    one, many = GenerationParams(max_new_tokens=1), GenerationParams(max_new_tokens=new_tokens)

    def decode(rows: list[list[int]]) -> float:
        lm.kv.clear()
        short = _seconds(lambda: lm.rollouts(rows, one))
        lm.kv.clear()
        t = time.perf_counter()
        out = lm.rollouts(rows, many)
        long = time.perf_counter() - t
        steps = max(len(r.token_ids) for r in out) - 1
        return sum(len(r.token_ids) - 1 for r in out) / (long - short) if steps > 0 else float("nan")

    lm.kv.clear()
    prefill_s = _seconds(lambda: lm.next_token_dists(prompts, 5))
    return {
        "decode_batch1_tok_s": decode(prompts[:1]),
        "decode_batch8_tok_s": decode(prompts),
        "prefill_tok_s": sum(map(len, prompts)) / prefill_s,
    }


def formats_main(args) -> None:  # type: ignore[no-untyped-def]
    from search.model.weights import weight_bytes

    formats = args.formats.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    models = {fmt: load_model(args.model, dtype=fmt) for fmt in formats}
    problems = humaneval(range(8))
    any_lm = next(iter(models.values()))
    prompts = [any_lm.encode(p.prompt) for p in problems]
    for lm in models.values():  # warm every path once
        format_speeds(lm, prompts[:2], 4)
    samples: dict[tuple[int, str], list[dict[str, float]]] = {}
    bandwidth: dict[int, list[float]] = {}
    for r in range(args.rounds):
        for n in threads:
            torch.set_num_threads(n)
            bandwidth.setdefault(n, []).append(read_bandwidth())
            order = formats[r % len(formats) :] + formats[: r % len(formats)]  # rotate who goes first
            for fmt in order:
                speeds = format_speeds(models[fmt], prompts, args.max_new_tokens // 2)
                samples.setdefault((n, fmt), []).append(speeds)
                print(f"round {r} threads {n} {fmt}: " + ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()))
    rows = []
    for n in threads:
        gbs = statistics.median(bandwidth[n])
        for fmt in formats:
            med = {k: statistics.median(s[k] for s in samples[(n, fmt)]) for k in samples[(n, fmt)][0]}
            step_bytes = weight_bytes(models[fmt].model)
            limit = gbs * 1e9 / step_bytes
            rows.append(
                {
                    "threads": n,
                    "format": fmt,
                    "weight_bytes_per_step": step_bytes,
                    "read_gb_s": round(gbs, 1),
                    "limit_tok_s": round(limit, 1),
                    **{k: round(v, 2) for k, v in med.items()},
                    "share_of_limit": round(med["decode_batch1_tok_s"] / limit, 3),
                }
            )
    base = {(row["threads"]): row for row in rows if row["format"] == formats[0]}
    for row in rows:
        for key in ("decode_batch1_tok_s", "decode_batch8_tok_s", "prefill_tok_s"):
            row[f"{key}_vs_{formats[0]}"] = round(row[key] / base[row["threads"]][key], 2)
    summary = {
        "model": any_lm.identity.name,
        "rounds": args.rounds,
        "new_tokens": args.max_new_tokens // 2,
        "prompts": "HumanEval 0-7 (completion prompts); batch 1 is HumanEval/0",
        "bandwidth_method": "amax over a 1 GiB bf16 tensor seen as float32, best of 3, each round",
        "rows": rows,
    }
    print(json.dumps(summary, indent=1))
    out = Path(args.out or "bench/results/engine_weights.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
