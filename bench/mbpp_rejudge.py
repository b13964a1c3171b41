"""Re-judge committed MBPP+ rows on the hidden tests at the current judge, and correct the rows
whose verdicts change (each such row gets ``rejudged``: the commit and the verdicts it had).

Written for the time allowance (``Problem.hidden_time``, EvalPlus's: 4x the reference's time per
input, at least 1 s): rows judged before it ran the slow tasks' suites (Mbpp/599 sums ranges of
1e8 numbers) under the scorer's fixed 3 s a test and 30 s a suite, and on a loaded machine a right
program timed out where EvalPlus passes it. Only programs are run again; nothing is generated.

    python bench/mbpp_rejudge.py bench/results/mbpp.jsonl --tasks 255,389,583,599 --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import code_commit  # noqa: E402

VERDICTS = ("passed", "base_passed", "plus_passed")


def rejudge(rows: list[dict[str, Any]], tasks: str) -> list[dict[str, Any]]:
    """The rows of the named tasks whose verdicts differ at the current judge, corrected."""
    import api  # noqa: F401  (sets the sandbox that computes expected values)
    from api.core.evaluation import hidden_verdicts
    from sandbox import open_executor
    from scorers.tests import TestScorer
    from search.problems.loaders import load_problems

    problems = {p.id: p for p in load_problems(f"mbpp:{tasks}")}
    scorer = TestScorer(open_executor("auto"))
    commit = code_commit()
    changed = []
    for row in rows:
        problem = problems.get(row["task_id"])
        if problem is None:
            continue
        bare = problem.model_copy(update={"prompt": "", "model_prompt": None})  # the row's program as is
        reward = scorer.score(bare, row["program"], hidden=True)
        verdicts = hidden_verdicts(problem, reward)
        before = {k: row[k] for k in VERDICTS}
        print(f"{row['config']} {row['task_id']}: {before} -> {verdicts}", file=sys.stderr)
        if verdicts != before:
            row.update(verdicts, hidden={"passed": reward.passed, "total": reward.total})
            row["rejudged"] = {"commit": commit, "before": before}
            changed.append(row)
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=Path)
    ap.add_argument("--tasks", required=True, help="MBPP task numbers, as mbpp:<list> reads them")
    ap.add_argument("--write", action="store_true", help="correct the rows file in place")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.rows.read_text().splitlines()]
    changed = rejudge(rows, args.tasks)
    print(f"{len(changed)} rows changed", file=sys.stderr)
    if args.write and changed:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
