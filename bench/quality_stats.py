"""The statistics of the quality rows: each configuration's passes and tokens, every configuration
against a baseline and every pair against each other (exact McNemar p-values on the problems one
solves and the other does not), each search against the best-of-N curve at its own mean tokens,
and why each configuration failed where it did. Rows are dicts as ``bench/quality_runs.py`` writes
them; the derived best-of-k rows count as configurations of their own (``flat_rows``).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

SAMPLERS = ("bon", "sc")
"""Configurations whose samples make the reference curve: best-of-N with a public-test filter (code),
self-consistency (answers)."""


def is_sampler(name: str) -> bool:
    return name.startswith(SAMPLERS)


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows plus the derived best-of-k rows, each as its own configuration."""
    out = list(rows)
    for row in rows:
        for name, d in (row.get("derived") or {}).items():
            out.append(
                {
                    "config": name,
                    "task_id": row["task_id"],
                    **({"confidence": d["confidence"]} if "confidence" in d else {}),
                    "passed": d["passed"],
                    **({"base_passed": d["base_passed"]} if "base_passed" in d else {}),
                    "generated_tokens": d["generated_tokens"],
                    "executions": d["executions"],
                    # the share of the row's samples it read (answers: no executions to count)
                    "wall_seconds": row["wall_seconds"]
                    * d.get("samples_used", d["executions"])
                    / max(1, len(row["samples"])),
                    "program": d.get("program"),  # answer rows: the majority answer instead
                    "completion": d.get("completion"),
                    **({"answer": d["answer"]} if "answer" in d else {}),
                    "processed_tokens": None,
                    "forward_passes": None,
                }
            )
    return out


def by_config(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row (derived best-of-k ones included) by configuration, then by task id."""
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in flat_rows(rows):
        by.setdefault(r["config"], {})[r["task_id"]] = r
    return by


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = by_config(rows)
    out: dict[str, Any] = {}
    for name, rs in sorted(by.items()):
        n = len(rs)
        passed = sum(r["passed"] for r in rs.values())
        tokens = sum(r["generated_tokens"] for r in rs.values())
        out[name] = {
            "problems": n,
            "passed": passed,
            "pass@1": round(passed / n, 4),
            "generated_tokens": tokens,
            "mean_generated_tokens": round(tokens / n, 1),
            "executions": sum(r["executions"] or 0 for r in rs.values()),
            "mean_wall_seconds": round(sum(r["wall_seconds"] for r in rs.values()) / n, 2),
            "solved": sorted(t for t, r in rs.items() if r["passed"]),
            "solved_or_not": sorted(rs),
        }
        if all("base_passed" in r for r in rs.values()):  # MBPP+: passed is base and plus tests
            base = sum(bool(r["base_passed"]) for r in rs.values())
            out[name].update(base_passed=base, base_pass_at_1=round(base / n, 4))
    return out


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value of a paired comparison: how likely a split of the discordant
    problems at least this uneven is when neither configuration is better (a fair coin per problem).

    >>> round(mcnemar_p(10, 5), 4), mcnemar_p(0, 0), f"{mcnemar_p(24, 0):.2g}"
    (0.3018, 1.0, '1.2e-07')
    """
    n, k = only_a + only_b, min(only_a, only_b)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def against(summary: dict[str, Any], rows: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """Each configuration against the baseline on the problems that configuration ran: points,
    token ratio, and the problems one solves and the other does not."""
    out: dict[str, Any] = {}
    if baseline not in summary:
        return out
    for name, s in summary.items():
        if name == baseline:
            continue
        ran = set(s["solved_or_not"])
        base = summarize([r for r in rows if r["task_id"] in ran and r["config"] == baseline]).get(baseline)
        if not base:
            continue
        mine, theirs = set(s["solved"]), set(base["solved"])
        only_this, only_baseline = sorted(mine - theirs), sorted(theirs - mine)
        out[name] = {
            "problems": len(ran),
            "points": round(100 * (s["pass@1"] - base["pass@1"]), 1),
            "token_ratio": round(s["generated_tokens"] / max(1, base["generated_tokens"]), 2),
            "only_this": only_this,
            "only_baseline": only_baseline,
            "p_value": mcnemar_p(len(only_this), len(only_baseline)),
        }
    return out


def head_to_head(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of search configurations (not greedy) on the problems both ran: each one's
    passes and tokens there, and the problems one solves and the other does not."""
    by = by_config(rows)
    searches = sorted(n for n in summary if not n.startswith("greedy@"))
    out = []
    for i, a in enumerate(searches):
        for b in searches[i + 1 :]:
            common = sorted(set(by[a]) & set(by[b]))
            if not common or (is_sampler(a) and is_sampler(b)):  # one row's samples
                continue
            won = {n: {t for t in common if by[n][t]["passed"]} for n in (a, b)}
            only_a, only_b = sorted(won[a] - won[b]), sorted(won[b] - won[a])
            out.append(
                {
                    "a": a,
                    "b": b,
                    "problems": len(common),
                    "a_passed": len(won[a]),
                    "b_passed": len(won[b]),
                    "a_tokens": round(sum(by[a][t]["generated_tokens"] for t in common) / len(common), 1),
                    "b_tokens": round(sum(by[b][t]["generated_tokens"] for t in common) / len(common), 1),
                    "only_a": only_a,
                    "only_b": only_b,
                    "p_value": mcnemar_p(len(only_a), len(only_b)),
                }
            )
    return out


def best_of_n_curve(
    by: dict[str, dict[str, dict[str, Any]]], problems: set[str]
) -> list[tuple[float, int, str]]:
    """The best-of-N points (mean generated tokens, passes, configuration) on ``problems``, by tokens;
    empty unless every best-of-N configuration ran all of them."""
    points = []
    for name, rs in by.items():
        if is_sampler(name):
            if not problems <= set(rs):
                return []
            tokens = sum(rs[t]["generated_tokens"] for t in problems) / len(problems)
            points.append((tokens, sum(bool(rs[t]["passed"]) for t in problems), name))
    return sorted(points)


def curve_at(curve: list[tuple[float, int, str]], tokens: float) -> tuple[float, str]:
    """The best-of-N passes at ``tokens`` read off the curve (straight lines between its points) and
    how: "between" two points, "at most" below its first point (fewer samples cannot pass more, on
    average), "beyond" its last point (where the curve may still rise).

    >>> curve = [(200.0, 48, "bon4"), (400.0, 50, "bon8"), (800.0, 51, "bon16")]
    >>> curve_at(curve, 300.0), curve_at(curve, 100.0), curve_at(curve, 900.0)
    ((49.0, 'between'), (48.0, 'at most'), (51.0, 'beyond'))
    """
    if tokens <= curve[0][0]:
        return float(curve[0][1]), "at most"
    for (t0, p0, _), (t1, p1, _) in pairwise(curve):
        if tokens <= t1:
            return p0 + (p1 - p0) * (tokens - t0) / (t1 - t0), "between"
    return float(curve[-1][1]), "beyond"


def tokens_to_match(curve: list[tuple[float, int, str]], passed: int) -> tuple[float, str]:
    """The generated tokens best-of-N needs to pass ``passed`` problems, read off the curve
    (straight lines between its points), and how: "between" two points, "at most" its first
    point's tokens (it already passes as many there), "at least" its last point's (it never passes
    as many within the curve).

    >>> curve = [(200.0, 48, "bon4"), (400.0, 50, "bon8"), (800.0, 51, "bon16")]
    >>> tokens_to_match(curve, 49), tokens_to_match(curve, 40), tokens_to_match(curve, 53)
    ((300.0, 'between'), (200.0, 'at most'), (800.0, 'at least'))
    """
    if passed <= curve[0][1]:
        return curve[0][0], "at most"
    for (t0, p0, _), (t1, p1, _) in pairwise(curve):
        if p0 < passed <= p1:
            return t0 + (t1 - t0) * (passed - p0) / (p1 - p0), "between"
    return curve[-1][0], "at least"


TOKEN_SAVING_CLAIM = 3.0  # A*-decoding's claim: best-of-N's accuracy at a third of its tokens


def _saves(ratio: float, how: str) -> str:
    """Whether best-of-N needs ``TOKEN_SAVING_CLAIM`` times the search's tokens to pass as many,
    given how its tokens were read: "at most" is an upper bound, "at least" a lower bound."""
    if how == "at most":
        return "no" if ratio < TOKEN_SAVING_CLAIM else "not shown"
    if how == "at least":
        return "yes" if ratio >= TOKEN_SAVING_CLAIM else "not shown"
    return "yes" if ratio >= TOKEN_SAVING_CLAIM else "no"


def equal_tokens(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each search configuration against sampling + public-test filter at its own mean generated
    tokens, on the problems both ran: its passes and the best-of-N curve's there. "above" means it
    passes more than best-of-N would at the same tokens (see ``_above``). The other way round, the
    tokens best-of-N needs to pass as many (``tokens_to_match``), their ratio to the search's, and
    whether that ratio reaches A*-decoding's claim of 3 (``_saves``)."""
    by = by_config(rows)
    samplers = [n for n in by if is_sampler(n)]
    out = []
    for name, rs in sorted(by.items()):
        if name.startswith(("greedy@", "beam")) or is_sampler(name) or not samplers:
            continue
        common = set(rs) & set.intersection(*(set(by[n]) for n in samplers))
        curve = best_of_n_curve({n: by[n] for n in samplers}, common) if common else []
        if not curve:
            continue
        tokens = sum(rs[t]["generated_tokens"] for t in common) / len(common)
        passed = sum(bool(rs[t]["passed"]) for t in common)
        at, how = curve_at(curve, tokens)
        needed, needed_how = tokens_to_match(curve, passed)
        ratio = needed / tokens if tokens else float("inf")
        out.append(
            {
                "config": name,
                "problems": len(common),
                "passed": passed,
                "tokens": round(tokens, 1),
                "best_of_n_passed": round(at, 1),
                "curve": how,
                "above": _above(passed, at, how),
                "best_of_n_tokens_to_match": round(needed, 1),
                "match_curve": needed_how,
                "token_ratio": round(ratio, 2),
                "a_third_of_the_tokens": _saves(ratio, needed_how),
                "best_of_n": [{"config": n, "tokens": round(t, 1), "passed": p} for t, p, n in curve],
            }
        )
    return out


def _above(passed: int, at: float, how: str) -> str:
    """Whether ``passed`` beats the curve, given how the curve's value was read: below its first
    point the value is an upper bound (so only a win is certain), beyond its last a lower bound."""
    if how == "at most":
        return "yes" if passed > at else "not shown"
    if how == "beyond":
        return "no" if passed <= at else "not shown"
    return "yes" if passed > at else "no"


FAILURE_KINDS = {
    "no_public_tests": "no public tests",
    "public_failed": "no program passed the public tests",
    "public_passed_hidden_failed": "passed the public tests, failed the hidden",
}


def failure_kinds(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Why each configuration failed where it did: the problem has no public tests (nothing to
    steer by), no program it found passed them (search or sampling did not reach one), or its
    answer passed them and failed the hidden tests (public tests too weak to tell). Derived
    best-of-k rows carry no public verdict and are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name, rs in sorted(by_config(rows).items()):
        if any("public" not in r for r in rs.values()):
            continue
        kinds: dict[str, list[str]] = {k: [] for k in FAILURE_KINDS}
        for task, r in rs.items():
            if r["passed"]:
                continue
            if not (r["public"] or {}).get("total"):
                kinds["no_public_tests"].append(task)
            else:
                kinds["public_passed_hidden_failed" if r["public_passed"] else "public_failed"].append(task)
        out[name] = {"problems": len(rs), "failed": sum(map(len, kinds.values())), **kinds}
    return out


CONFIDENCE_BUCKETS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def confidence_buckets(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Answer rows only: each configuration's accuracy by the confidence of its answer (the chosen
    answer's vote share), in ``CONFIDENCE_BUCKETS`` (the last includes 1.0): does the vote share
    predict correctness?

    >>> rows = [{"config": "sc16@cot", "task_id": str(i), "passed": i < 3, "confidence": c}
    ...         for i, c in enumerate([1.0, 0.8, 0.3, 0.2, 0.9])]
    >>> [(b["bucket"], b["problems"], b["correct"]) for b in confidence_buckets(rows)["sc16@cot"]]
    [('0.00-0.25', 1, 0), ('0.25-0.50', 1, 1), ('0.50-0.75', 0, 0), ('0.75-1.00', 3, 2)]
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for name, rs in sorted(by_config(rows).items()):
        scored = [r for r in rs.values() if r.get("confidence") is not None]
        if not scored:
            continue
        buckets = []
        for lo, hi in CONFIDENCE_BUCKETS:
            inside = [
                r for r in scored if lo <= r["confidence"] < hi or (hi == 1.0 and r["confidence"] == 1.0)
            ]
            correct = sum(bool(r["passed"]) for r in inside)
            buckets.append(
                {
                    "bucket": f"{lo:.2f}-{hi:.2f}",
                    "problems": len(inside),
                    "correct": correct,
                    "accuracy": round(correct / len(inside), 4) if inside else None,
                }
            )
        out[name] = buckets
    return out
