"""Re-judge GSM8K rows with math-verify's own extraction and comparison, and list where it differs.

treedec reads a final answer from a text (``search/problems/extraction.py``: ``\\boxed{}``, "The answer
is", ``####``, the last number) and compares numbers within a tolerance
(``search/problems/verification.py``). This check leaves both to math-verify (PyPI, the judge of
HF's Open R1 and search-and-learn): ``math_verify.parse`` on the row's whole text with its default
extraction (LaTeX, then plain expressions; the last answer found), and ``math_verify.verify``
against the reference. A program-aided row's answer is what its ``solution()`` returned in the
sandbox, which math-verify cannot run, so there the returned value is what it parses.

Each row's verdict is compared with treedec's; every disagreement is listed with both extractions.
A text cut off at the token limit has no answer in treedec (its last number is not an answer yet);
math-verify still parses one from it, so such a row can differ, and says it was cut off.
The result goes beside the rows (``<rows>_math_verify_check.json``).

    python bench/gsm8k_check.py bench/results/gsm8k_w8a8.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def math_verify_verdict(row: dict[str, Any]) -> tuple[bool, str]:
    """math-verify's verdict on a row, and what it extracted (as text)."""
    from math_verify import parse, verify

    gold = parse(f"${row['reference']}$")
    if str(row.get("config", "")).endswith("@program-aided"):
        answer = row.get("answer")
        predicted = parse(f"${answer}$") if answer not in (None, "") else []
    else:
        predicted = parse(row.get("text") or "")
    shown = str(predicted[-1]) if predicted else ""
    return bool(predicted) and bool(verify(gold, predicted)), shown


def check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    differ = []
    verdicts = [math_verify_verdict(row) for row in rows]
    for row, (verdict, extracted) in zip(rows, verdicts, strict=True):
        if verdict != bool(row.get("passed")):
            differ.append(
                {
                    "config": row["config"],
                    "task_id": row["task_id"],
                    "reference": row["reference"],
                    "treedec": {
                        "passed": bool(row.get("passed")),
                        "answer": row.get("answer"),
                        "rule": row.get("rule"),
                        "cut_off": bool(row.get("cut_off")),
                    },
                    "math_verify": {"passed": verdict, "answer": extracted},
                }
            )
    return {
        "rows": len(rows),
        "treedec_passed": sum(bool(r.get("passed")) for r in rows),
        "math_verify_passed": sum(verdict for verdict, _ in verdicts),
        "agree": len(rows) - len(differ),
        "differ": differ,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=Path, nargs="+", help="GSM8K rows files (bench/quality.py's)")
    args = ap.parse_args()
    for path in args.rows:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "reference" in r and "passed" in r]  # bench/quality.py rows
        result = check(rows)
        Path(f"{path.with_suffix('')}_math_verify_check.json").write_text(json.dumps(result, indent=1))
        print(
            f"{path.name}: {result['rows']} rows, treedec {result['treedec_passed']} passed, "
            f"math-verify {result['math_verify_passed']}, agree {result['agree']}"
        )
        for d in result["differ"]:
            print(
                f"  differ {d['task_id']} {d['config']}: reference {d['reference']}, treedec "
                f"{d['treedec']['answer']!r} ({d['treedec']['rule']}, {d['treedec']['passed']}"
                f"{', cut off at the token limit' if d['treedec']['cut_off'] else ''}), "
                f"math-verify {d['math_verify']['answer']!r} ({d['math_verify']['passed']})"
            )


if __name__ == "__main__":
    main()
