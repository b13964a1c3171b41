"""How many votes settle an answer: A*'s answer budget, chosen on GSM8K train by replaying
self-consistency's samples.

On an answer problem A* ends once the leading answer holds ``goal_votes`` votes, and draws at most
``max_value_rollouts`` value rollouts (``planners/astar.py``). Running A* once per setting on the
train problems would cost hours each; this replays the stop rule on rows that are already paid
for: each self-consistency row keeps its samples' answers and tokens in the order drawn. For each
(``goal_votes``, cap) the samples are cast in that order until the leader holds ``goal_votes``
votes or ``cap`` samples are cast; the answer is the leader then (``scorers/answers.py``'s
``Votes``: the same grouping and ties as the planners), judged against the reference by
``search/problems/verification.py``. The tokens are the samples cast.

What it prices is the stop rule, not the search: A*'s votes come from rollouts of shared prefixes,
which agree with each other more than independent samples do, so a goal comes sooner and is
wrong more often than here. The replay also reads the vote weighted by likelihood
(``vote=weighted``: exp of a sample's mean log-probability) at 4, 8 and 16 samples.

    python bench/vote_budget.py bench/results/gsm8k_train_sc16_w8a8.jsonl
    python bench/vote_budget.py bench/results/gsm8k_w8a8.jsonl bench/results/gsm8k_w8a8_b.jsonl \
        --out bench/results/gsm8k_w8a8_vote_budget
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_report import markdown as table_markdown  # noqa: E402
from bench.quality_runs import sample_answer  # noqa: E402
from scorers.answers import Votes  # noqa: E402
from search.problems.verification import verify  # noqa: E402

GOAL_VOTES = (2, 3, 4, 5, 6, 8)
CAPS = (8, 12, 16)


@dataclass(frozen=True)
class Sample:
    answer: str | None
    tokens: int
    logprob: float


@dataclass(frozen=True)
class Replay:
    answer: str | None
    samples: int
    tokens: int


def replay(samples: Sequence[Sample], goal_votes: int | None, cap: int, weighted: bool = False) -> Replay:
    """Cast ``samples`` in order until the leader holds ``goal_votes`` votes (None: never stop
    early, self-consistency over the first ``cap``) or ``cap`` are cast.

    >>> s = [Sample("3", 10, -1.0), Sample("4", 10, -1.0), Sample("4", 10, -1.0), Sample("3", 10, -1.0)]
    >>> replay(s, 2, 16)
    Replay(answer='4', samples=3, tokens=30)
    >>> replay(s, 3, 16), replay(s, 2, 1)
    (Replay(answer='3', samples=4, tokens=40), Replay(answer='3', samples=1, tokens=10))
    """
    votes = Votes("number")
    cast = tokens = 0
    for s in samples[:cap]:
        weight = math.exp(s.logprob / max(1, s.tokens)) if weighted else 1.0
        votes.add(sample_answer(s.answer), weight)
        cast, tokens = cast + 1, tokens + s.tokens
        leader = votes.leader()
        if goal_votes is not None and leader is not None and votes.votes_for(leader) >= goal_votes:
            break
    return Replay(votes.leader(), cast, tokens)


def samples_of(row: dict[str, Any]) -> list[Sample]:
    return [Sample(s.get("answer"), int(s["tokens"]), float(s["logprob"])) for s in row["samples"]]


def table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and mean tokens of every stop rule and of the weighted vote, over ``rows``."""
    n = len(rows)

    def score(runs: list[tuple[Replay, str]]) -> dict[str, Any]:
        right = sum(verify(r.answer, ref) for r, ref in runs)
        return {
            "passed": right,
            "accuracy": round(right / n, 4),
            "tokens": round(sum(r.tokens for r, _ in runs) / n, 1),
            "samples": round(sum(r.samples for r, _ in runs) / n, 2),
        }

    per_row = [(samples_of(r), r["reference"]) for r in rows]
    out: dict[str, Any] = {"problems": n, "stop_rules": [], "self_consistency": [], "weighted": []}
    for k in (4, 8, 16):
        out["self_consistency"].append({"k": k, **score([(replay(s, None, k), ref) for s, ref in per_row])})
        out["weighted"].append({"k": k, **score([(replay(s, None, k, True), ref) for s, ref in per_row])})
    for cap in CAPS:
        for v in GOAL_VOTES:
            if v <= cap:
                runs = [(replay(s, v, cap), ref) for s, ref in per_row]
                out["stop_rules"].append({"goal_votes": v, "cap": cap, **score(runs)})
    return out


def markdown(result: dict[str, Any]) -> str:
    stops = result["stop_rules"]
    named = [(f"self-consistency at {e['k']}", e) for e in result["self_consistency"]]
    named += [(f"vote weighted by likelihood at {e['k']}", e) for e in result["weighted"]]
    named += [(f"stop at {e['goal_votes']} votes, at most {e['cap']} samples", e) for e in stops]
    columns = ["rule", "passed", "accuracy", "samples / problem", "tokens / problem"]
    cells = "| {} | {passed} | {accuracy:.1%} | {samples} | {tokens:.0f} |"
    lines = [cells.format(name, **e) for name, e in named]
    return table_markdown(columns, lines)


def shown(path: Path) -> str:
    """``path`` as the result names it: from the repository's root when it is inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=Path, nargs="+", help="self-consistency rows (sc16) with their samples")
    ap.add_argument("--out", type=Path, help="where the result goes (default: beside the first rows file)")
    args = ap.parse_args()
    rows = [json.loads(line) for path in args.rows for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(r.get("samples") or ()) >= 16]
    if not rows:
        sys.exit(f"{', '.join(map(str, args.rows))}: no row with 16 samples")
    result = {"rows": [shown(p) for p in args.rows], **table(rows)}
    stem = args.out if args.out is not None else Path(f"{args.rows[0].with_suffix('')}_vote_budget")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
