"""Chart of selection by behaviour against public-test filtering: passes at 4, 8 and 16 samples.

Reads the rows ``bench/select_behaviour.py`` wrote and draws, per group-score rule, the hidden-test
passes of the program each selector chose among the first k of the committed best-of-16 samples,
with the problems whose first k samples hold a passing program as the ceiling. On MBPP+ rows a pass
is EvalPlus's: the base and the plus tests.

    python bench/select_chart.py
    python bench/select_chart.py --rows bench/results/mbpp_select.jsonl \
        --out bench/results/mbpp_select_chart \
        --baseline bench/results/mbpp.jsonl --baseline-config greedy@evalplus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_chart import save_figure  # noqa: E402
from scorers.group_scores import DEFAULT_SCORE  # noqa: E402


def passes(rows: list[dict], config: str) -> int:
    return sum(bool(r["passed"]) for r in rows if r["config"] == config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=Path, default=ROOT / "bench/results/humaneval_select_rules.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/humaneval_select_chart")
    ap.add_argument("--baseline", type=Path, help="quality rows holding a greedy configuration to draw")
    ap.add_argument("--baseline-config", default="greedy@chat-prefill")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in args.rows.open() if line.strip()]
    ks = sorted({r["k"] for r in rows if "grid" not in r})
    n_problems = len({r["task_id"] for r in rows})
    ceiling = [sum(any(r["samples_passed"][:k]) for r in rows if "grid" in r) for k in ks]
    series = {"public-test filtering": [passes(rows, f"bon{k}-public@chat-prefill") for k in ks]}
    rules = sorted({r["rule"] for r in rows if r.get("rule")})
    for rule in rules:
        label = f"behaviour, {rule}" + (" (default)" if rule == DEFAULT_SCORE.name else "")
        series[label] = [passes(rows, f"bon{k}-behaviour-{rule}@chat-prefill") for k in ks]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, ys in series.items():
        style = "-o" if label.startswith("public") or "default" in label else "--."
        ax.plot(ks, ys, style, label=label)
    ax.plot(ks, ceiling, ":", color="grey", label="a passing sample among the first k")
    if args.baseline is not None:
        tasks = {r["task_id"] for r in rows}
        base = [json.loads(line) for line in args.baseline.open() if line.strip()]
        same = [r for r in base if r["config"] == args.baseline_config and r["task_id"] in tasks]
        greedy = sum(bool(r["passed"]) for r in same)
        ax.axhline(greedy, color="black", linewidth=0.8, label=f"{args.baseline_config} (same problems)")
        series[args.baseline_config] = [greedy] * len(ks)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("samples (k, the first k of the committed best-of-16)")
    mbpp = any(str(r["task_id"]).startswith("Mbpp/") for r in rows)
    tests = "base and plus tests" if mbpp else "hidden tests"
    ax.set_ylabel(f"passes of {n_problems} ({tests})")
    where = "MBPP+ (never tuned on)" if mbpp else "HumanEval (in-sample)"
    ax.set_title(f"{where}: choosing among k samples (Qwen2.5-Coder-0.5B)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, args.out.with_suffix(""))
    print(json.dumps({"ks": ks, "ceiling": ceiling, **series}))


if __name__ == "__main__":
    main()
