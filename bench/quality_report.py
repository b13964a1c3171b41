"""The quality report, written beside the rows (``write_report``): the summary JSON, the README's
table against the best greedy style, the head-to-head of every pair of search configurations
(``_pairs.md``), each search against the best-of-N curve (``_equal_tokens.md``), why each
configuration failed (``_failures.md``) and the chart (``bench/quality_chart.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.quality_runs import load_rows
from bench.quality_stats import (
    FAILURE_KINDS,
    against,
    confidence_buckets,
    equal_tokens,
    failure_kinds,
    head_to_head,
    summarize,
)


def markdown(columns: list[str], lines: list[str]) -> str:
    """A markdown table: the header row of ``columns``, its rule, then ``lines`` (rows already
    written as ``| a | b |``)."""
    head = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(head + lines) + "\n"


def _public(s: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if k not in ("solved", "solved_or_not")}


def equal_tokens_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for e in rows:
        points = ", ".join(
            f"{p['config'].split('@')[0]} {p['passed']} @ {p['tokens']:.0f}" for p in e["best_of_n"]
        )
        lines.append(
            f"| `{e['config']}` | {e['problems']} | {e['passed']} | {e['tokens']:.0f} | "
            f"{e['best_of_n_passed']:.1f} ({e['curve']}) | {points} | {e['above']} | "
            f"{e['best_of_n_tokens_to_match']:.0f} ({e['match_curve']}) | {e['token_ratio']:.2f}x | "
            f"{e['a_third_of_the_tokens']} |"
        )
    columns = ["configuration", "problems both ran", "passed", "tokens / problem"]
    columns += ["best-of-N at those tokens", "best-of-N points there (passed @ tokens)", "above the curve"]
    columns += ["best-of-N tokens for as many passes", "their ratio to its tokens"]
    columns += ["as many passes as best-of-N at a third of its tokens (A*-decoding's claim)"]
    return markdown(columns, lines)


def failures_table(kinds: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"| `{name}` | {k['problems']} | {k['failed']} | "
        + " | ".join(str(len(k[kind])) for kind in FAILURE_KINDS)
        + " |"
        for name, k in sorted(kinds.items(), key=lambda kv: (-kv[1]["problems"], kv[1]["failed"]))
    ]
    return markdown(["configuration", "problems run", "failed", *FAILURE_KINDS.values()], lines)


def pairs_table(pairs: list[dict[str, Any]]) -> str:
    lines = []
    for p in pairs:
        lines.append(
            f"| `{p['a']}` | `{p['b']}` | {p['problems']} | {p['a_passed']} ({p['a_tokens']:.0f}) | "
            f"{p['b_passed']} ({p['b_tokens']:.0f}) | {len(p['only_a'])} / {len(p['only_b'])} | "
            f"{p['p_value']:.2g} |"
        )
    columns = ["A", "B", "problems both ran", "A passed (tokens / problem)", "B passed (tokens / problem)"]
    return markdown(columns + ["only A / only B", "p (exact McNemar)"], lines)


def markdown_table(configs: dict[str, Any], versus: dict[str, Any], baseline: str | None) -> str:
    """The summary as docs/results.md's table: each configuration on the problems it ran, against the
    best greedy on those same problems."""
    lines = []
    plus = all("base_passed" in s for s in configs.values()) and bool(configs)
    for name, s in sorted(configs.items(), key=lambda kv: (-kv[1]["problems"], -kv[1]["pass@1"])):
        v = versus.get(name)
        cmp = (
            f"{v['points']:+.1f}, {v['token_ratio']:.2f}x, "
            f"+{len(v['only_this'])} / -{len(v['only_baseline'])}, p={v['p_value']:.2g}"
            if v
            else "-"
        )
        base = (
            f"{s['base_passed']} ({100 * s['base_pass_at_1']:.1f}%) | "
            f"{100 * (s['base_pass_at_1'] - s['pass@1']):.1f} | "
            if plus
            else ""
        )
        lines.append(
            f"| `{name}` | {s['problems']} | {base}{s['passed']} | {100 * s['pass@1']:.1f}% | "
            f"{s['mean_generated_tokens']:.0f} | {s['mean_wall_seconds']:.1f} | {cmp} |"
        )
    columns = ["configuration", "problems run"]
    if plus:  # MBPP+: the base tests apart, and how many points the plus tests take off
        columns += ["base tests passed", "base - plus (points)", "base + plus passed"]
    else:
        columns += ["passed"]
    columns += ["pass@1", "tokens / problem", "s / problem"]
    return markdown(
        columns
        + [f"vs `{baseline}` on the same problems: points, tokens, solves only / loses, p (exact McNemar)"],
        lines,
    )


def confidence_table(buckets: dict[str, list[dict[str, Any]]]) -> str:
    """Accuracy by confidence bucket, one row per configuration."""
    names = [b["bucket"] for b in next(iter(buckets.values()), [])]
    lines = [
        f"| `{name}` | "
        + " | ".join(
            f"{b['correct']}/{b['problems']}" + (f" ({100 * b['accuracy']:.0f}%)" if b["problems"] else "")
            for b in bs
        )
        + " |"
        for name, bs in buckets.items()
    ]
    return markdown(["configuration", *[f"confidence {n}" for n in names]], lines)


def dataset_name(rows: list[dict[str, Any]]) -> str:
    """The benchmark the rows are from, by their task ids (for the chart's title).

    >>> dataset_name([{"task_id": "Mbpp/2"}]), dataset_name([{"task_id": "gsm8k/3"}])
    ('MBPP+ (passed: base and plus tests)', 'GSM8K')
    """
    first = str(rows[0]["task_id"]) if rows else ""
    if first.startswith("gsm8k"):
        return "GSM8K"
    if first.startswith("Mbpp/"):
        return "MBPP+ (passed: base and plus tests)"
    return "HumanEval"


def write_report(out: Path, also: Sequence[Path] = ()) -> None:
    """The report of the rows in ``out``, with the rows of the files in ``also`` read beside them
    (a baseline run on its own, or another part of the same run); it is written beside ``out``."""
    from bench.quality_chart import draw, model_label

    keyed = load_rows(out)
    for path in also:
        keyed.update({k: v for k, v in load_rows(path).items() if k not in keyed})
    rows = list(keyed.values())
    summary = summarize(rows)
    # A configuration that ran every problem is whole; the chart and the baseline use only those
    # (a run may be part-way); every configuration is compared on the problems it ran.
    most = max((s["problems"] for s in summary.values()), default=0)
    whole = {k: v for k, v in summary.items() if v["problems"] == most}
    greedy = [n for n in whole if n.startswith("greedy@")]
    best_greedy = max(greedy, key=lambda n: whole[n]["pass@1"]) if greedy else None
    versus = against(summary, rows, best_greedy) if best_greedy else {}
    report: dict[str, Any] = {
        "configs": {k: _public(v) for k, v in summary.items()},
        "whole_benchmark": sorted(whole),
        "problems": most,
        "best_greedy": best_greedy,
        "versus_best_greedy": versus,
        "head_to_head": head_to_head(summary, rows),
        "equal_tokens": equal_tokens(rows),
        "failures": failure_kinds(rows),
        "confidence": confidence_buckets(rows),
    }
    stem = out.with_suffix("")
    Path(f"{stem}_summary.json").write_text(json.dumps(report, indent=1))
    answers = any("answer" in r for r in rows)
    dataset = dataset_name(rows)
    draw(whole, Path(f"{stem}_chart"), dataset, answers, model_label(rows))
    if report["confidence"]:
        Path(f"{stem}_confidence.md").write_text(confidence_table(report["confidence"]))
    Path(f"{stem}_table.md").write_text(markdown_table(report["configs"], versus, best_greedy))
    Path(f"{stem}_pairs.md").write_text(pairs_table(report["head_to_head"]))
    Path(f"{stem}_equal_tokens.md").write_text(equal_tokens_table(report["equal_tokens"]))
    Path(f"{stem}_failures.md").write_text(failures_table(report["failures"]))
    for name, s in report["configs"].items():
        print(
            f"{name:28s} {s['passed']:4d}/{s['problems']:<4d} {100 * s['pass@1']:5.1f}%  "
            f"tokens/problem {s['mean_generated_tokens']:8.1f}  s/problem {s['mean_wall_seconds']:6.1f}"
        )
