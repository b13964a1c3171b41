"""Does the model judge its own reasoning? A probe on GSM8K train, before any planner uses it.

A*-decoding was published with a process reward model scoring each step. None ships offline, so
the candidate left is the policy model as its own judge: the probability it gives "Yes" (against
"No") when asked whether a solution, or its newest step, is correct. This probe asks that of the
40 greedy chains of thought of the room run (``gsm8k_train_room.jsonl``: train problems only, each
with its verdict) and measures how well each score separates right chains from wrong ones (ROC
AUC: 0.5 is chance), beside the signal the search already has for free, the chain's mean token
log-probability under its own prompt.

- ``chain``: P(Yes) to "Is this solution correct?" over the whole chain;
- ``step_min`` / ``step_mean``: P(Yes) to "Is the newest step correct?" for each step (the steps
  before it shown as context), the minimum and the mean over the chain's steps;
- ``likelihood``: the mean log-probability of the chain's tokens.

Every call is teacher-forced (``continuation_logprobs``): no generation. The verdict: a judge
worth a planner's forward passes must beat ``likelihood``'s AUC clearly.

    OMP_NUM_THREADS=1 python bench/step_judge_probe.py --dtype int8 \\
        --out bench/results/gsm8k_train_step_judge.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gsm8k_samples import TRAIN_40  # noqa: E402
from bench.quality_runs import code_commit  # noqa: E402

ROOM_ROWS = ROOT / "bench" / "results" / "gsm8k_train_room.jsonl"
JUDGE_SYSTEM = "You are a careful math teacher who checks students' work."
CHAIN_QUESTION = "Is this solution correct? Answer with Yes or No."
STEP_QUESTION = "Is the new step correct? Answer with Yes or No."
SCORES = ("chain", "step_min", "step_mean", "likelihood")


def yes_probability(lm: Any, messages: list[dict[str, str]]) -> float:
    """P("Yes") / (P("Yes") + P("No")) for the assistant's first word after ``messages``."""
    turn = lm.chat_text(messages)
    yes, no = lm.continuation_logprobs(lm.encode(turn), [lm.encode("Yes"), lm.encode("No")])
    log_yes, log_no = sum(yes), sum(no)
    top = max(log_yes, log_no)
    return math.exp(log_yes - top) / (math.exp(log_yes - top) + math.exp(log_no - top))


def chain_messages(question: str, solution: str) -> list[dict[str, str]]:
    body = f"Question: {question}\n\nProposed solution:\n{solution}\n\n{CHAIN_QUESTION}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def step_messages(question: str, before: str, step: str) -> list[dict[str, str]]:
    shown = before.strip() or "(no steps yet)"
    body = (
        f"Question: {question}\n\nSolution so far:\n{shown}\n\nNew step:\n{step.strip()}\n\n{STEP_QUESTION}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def roc_auc(scores: list[float], labels: list[bool]) -> float:
    """The chance that a right chain scores above a wrong one (ties count half)."""
    right = [s for s, y in zip(scores, labels, strict=True) if y]
    wrong = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not right or not wrong:
        return float("nan")
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def probe_one(lm: Any, problem: Any, row: dict[str, Any], commit: str) -> dict[str, Any]:
    from search.limits.steps import split_steps
    from search.problems.prompting import render_reasoning

    start = time.perf_counter()
    text = row["completion"]
    steps = [s for s in split_steps(text) if s.strip()]
    step_scores = [
        yes_probability(lm, step_messages(problem.prompt, "".join(steps[:i]), step))
        for i, step in enumerate(steps)
    ]
    prompt = render_reasoning(problem, "chain-of-thought", lm).model_prompt
    assert prompt is not None
    token_logprobs = lm.continuation_logprobs(lm.encode(prompt), [lm.encode(text)])[0]
    return {
        "task_id": problem.id,
        "correct": row["correct"],
        "steps": len(steps),
        "chain": yes_probability(lm, chain_messages(problem.prompt, text)),
        "step_scores": [round(s, 4) for s in step_scores],
        "step_min": min(step_scores, default=1.0),
        "step_mean": sum(step_scores) / len(step_scores) if step_scores else 1.0,
        "likelihood": sum(token_logprobs) / max(1, len(token_logprobs)),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "weights": lm.identity.dtype,
        "commit": commit,
    }


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [bool(r["correct"]) for r in rows]
    return {
        "chains": len(rows),
        "right": sum(labels),
        "auc": {name: round(roc_auc([float(r[name]) for r in rows], labels), 3) for name in SCORES},
        "mean_right": {
            name: round(sum(float(r[name]) for r in rows if r["correct"]) / max(1, sum(labels)), 4)
            for name in SCORES
        },
        "mean_wrong": {
            name: round(
                sum(float(r[name]) for r in rows if not r["correct"]) / max(1, len(rows) - sum(labels)), 4
            )
            for name in SCORES
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model spec (default: the bundled model)")
    ap.add_argument("--dtype", default="int8")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gsm8k_train_step_judge.jsonl")
    args = ap.parse_args()

    from api.core.evaluation import ResultsLog
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    room = {
        r["task_id"]: r
        for r in map(json.loads, ROOM_ROWS.read_text().splitlines())
        if r["style"] == "chain-of-thought" and not r["cut_off"]
    }
    problems = [p for p in load_problems(TRAIN_40) if p.id in room]
    log = ResultsLog(args.out, lambda r: r["task_id"])
    todo = log.pending(problems, key=lambda p: p.id)
    print(f"{len(todo)} chains to judge", file=sys.stderr)
    if todo:
        lm = load_model(*([args.model] if args.model else []), dtype=args.dtype)
        commit = code_commit()

        def show(i: int, n: int, problem: Any, row: dict[str, Any]) -> None:
            print(
                f"[{i}/{n}] {problem.id} {'right' if row['correct'] else 'wrong'} chain={row['chain']:.3f} "
                f"step_min={row['step_min']:.3f} lp={row['likelihood']:.3f} {row['wall_seconds']}s",
                file=sys.stderr,
                flush=True,
            )

        args.out.parent.mkdir(parents=True, exist_ok=True)
        log.run(todo, lambda problem: probe_one(lm, problem, room[problem.id], commit), show)
    rows = [json.loads(line) for line in args.out.read_text().splitlines()]
    summary = report(rows)
    args.out.with_name(args.out.stem + "_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
