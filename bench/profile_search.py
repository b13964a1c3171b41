"""Where a search's wall time goes: the model, its forward passes, the sandbox, or the planner's Python.

Runs one configuration on a few problems (HumanEval by default; ``--dataset`` names any other)
under ``cProfile`` (each on a fresh cache and an
empty KV cache, as the whole-benchmark rows are) and splits the total into:

- model calls: the model's public entry points (``HFModel.next_token_dists``, ``rollouts``,
  ``continuation_logprobs``, ``position_stats``), and within them the transformer's own
  ``forward`` (the arithmetic) and the rest (sampling, KV bookkeeping, tokenizer);
- scoring: ``TestScorer.score`` / ``score_many`` (sandbox executions and the judge, plus their cache);
- everything else: the planner's own loop (tree, selection, backup) and the engine around it.

cProfile slows Python-heavy code more than torch's kernels, so the planner's share is an upper
bound. ``--dtype`` picks the weight format.

    OMP_NUM_THREADS=1 python bench/profile_search.py --config pgtd@chat-prefill --dtype int4 \
        --problems 0,5,17,52,90
    OMP_NUM_THREADS=1 python bench/profile_search.py --config astar@chain-of-thought --dtype w8a8 \
        --dataset gsm8k-train:376,1014
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import Config, run_one  # noqa: E402

MODEL_CALLS = ("next_token_dists", "rollouts", "continuation_logprobs", "position_stats")
SCORER_CALLS = ("score", "score_many")


def _cumulative(stats: pstats.Stats, file_part: str, names: tuple[str, ...]) -> float:
    """Summed cumulative seconds of the named functions defined in files whose path contains
    ``file_part`` (outermost calls only matter: these entry points do not call each other)."""
    table = stats.stats  # type: ignore[attr-defined]
    return sum(
        ct for (path, _, name), (_, _, _, ct, _) in table.items() if file_part in path and name in names
    )


def profile(config: Config, dtype: str, dataset: str, top: int = 0) -> dict[str, float]:
    import sandbox
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    lm = load_model("bundled-default", dtype=dtype)
    executor = sandbox.open_executor("auto")
    problems = load_problems(dataset)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for problem in problems:
        run_one(lm, executor, problem, config)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    if top:
        stats.sort_stats("tottime").print_stats(top)
    model = _cumulative(stats, "search/model/hf.py", MODEL_CALLS)
    # the outermost Qwen2 forward is the causal-LM head's; inner layers' forwards nest inside it
    table = stats.stats  # type: ignore[attr-defined]
    forwards = [
        ct for (path, _, name), (_, _, _, ct, _) in table.items() if "qwen2" in path and name == "forward"
    ]
    forward = max(forwards, default=0.0)
    # linear layers: torch's own (bf16) or treedec's quantized ones (int8, int4, w8a8); they do not nest
    linears = sum(
        _cumulative(stats, where, ("forward",))
        for where in ("torch/nn/modules/linear.py", "search/model/weights.py", "search/model/w8a8.py")
    )
    scoring = _cumulative(stats, "scorers/tests.py", SCORER_CALLS)
    return {
        "total": total,
        "model calls": model,
        "  transformer forward": forward,
        "    linear layers (weights read)": linears,
        "    attention, norms, activations, dispatch": forward - linears,
        "  sampling, KV, tokenizer": model - forward,
        "scoring (sandbox + judge)": scoring,
        "planner and engine": total - model - scoring,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="pgtd@chat-prefill")
    ap.add_argument("--dtype", default="int4")
    ap.add_argument("--problems", default="0,5,17,52,90", help="HumanEval indices (without --dataset)")
    ap.add_argument("--dataset", help="a problem list such as gsm8k-train:376,1014 or mbpp:2-10")
    ap.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    args = ap.parse_args()
    dataset = args.dataset or f"humaneval:{args.problems}"
    shares = profile(Config.parse(args.config), args.dtype, dataset, args.top)
    total = shares["total"]
    print(f"{args.config}, {args.dtype}, {dataset}: {total:.1f} s under cProfile\n")
    print("| part | seconds | share |\n| --- | --- | --- |")
    for part, seconds in shares.items():
        print(f"| {part} | {seconds:.1f} | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
