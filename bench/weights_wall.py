"""Wall seconds per problem in each weight format, interleaved on a fixed subset of HumanEval.

Both formats' models are loaded in one process; for every problem of the subset, each format runs
the same configuration (``pgtd@chat-prefill`` by default) back to back, the order alternating from
one problem to the next, so a slower or busier stretch of the machine falls on both formats alike.
Each row starts on a fresh partial-state cache and an empty KV cache (``bench/quality_runs.run_one``,
the same code as the whole-benchmark rows). Resumable: rows already in ``--out`` are skipped.

The subset is ``random.Random(SEED).sample(range(164), SIZE)``: fixed before the first run.

    OMP_NUM_THREADS=1 python bench/weights_wall.py --formats bf16,int4 \
        --out bench/results/weights_wall.jsonl
    python bench/weights_wall.py --report --out bench/results/weights_wall.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import Config, code_commit, run_one  # noqa: E402

SEED = 20261206
SIZE = 30


def subset(size: int = SIZE, seed: int = SEED) -> list[int]:
    """The fixed HumanEval indices, in run order."""
    return sorted(random.Random(seed).sample(range(164), size))


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["format"], row["config"], row["task_id"])


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(out: Path, formats: list[str], config: Config, indices: list[int]) -> None:
    import torch

    import sandbox
    from search.model.loader import load_model
    from search.problems.loaders import humaneval

    done = {_key(r) for r in _rows(out)}
    models = {fmt: load_model("bundled-default", dtype=fmt) for fmt in formats}
    executor = sandbox.open_executor("auto")
    commit = code_commit()
    out.parent.mkdir(parents=True, exist_ok=True)
    for position, (index, problem) in enumerate(zip(indices, humaneval(indices), strict=True)):
        order = formats if position % 2 == 0 else formats[::-1]
        for fmt in order:
            if (fmt, config.name, problem.id) in done:
                continue
            row = run_one(models[fmt], executor, problem, config, commit)
            row.update(format=fmt, index=index, position=position, threads=torch.get_num_threads())
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"[{position + 1}/{len(indices)}] {fmt} {problem.id}: {'pass' if row['passed'] else 'fail'} "
                f"tokens={row['generated_tokens']} {row['wall_seconds']}s",
                file=sys.stderr,
                flush=True,
            )


def report(out: Path) -> str:
    """A markdown table: per format, problems, passes, mean tokens, mean wall seconds, and the
    ratio of the first format's wall time to each one's (total and median per problem)."""
    rows = _rows(out)
    formats = list(dict.fromkeys(r["format"] for r in rows))
    by = {(r["format"], r["task_id"]): r for r in rows}
    common = sorted({t for _, t in by} & set.intersection(*({t for f2, t in by if f2 == f} for f in formats)))
    base = formats[0]
    lines = [
        f"{len(common)} problems run in every format (subset: seed {SEED}, size {SIZE}; "
        f"config {rows[0]['config']}; {rows[0].get('threads', '?')} thread(s))",
        "",
        f"| format | passed | mean generated tokens | mean wall s | {base} wall / this (total) "
        f"| median per-problem ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base_total = sum(by[(base, t)]["wall_seconds"] for t in common)
    for fmt in formats:
        sel = [by[(fmt, t)] for t in common]
        total = sum(r["wall_seconds"] for r in sel)
        ratios = [by[(base, t)]["wall_seconds"] / max(by[(fmt, t)]["wall_seconds"], 1e-9) for t in common]
        lines.append(
            f"| {fmt} | {sum(bool(r['passed']) for r in sel)}/{len(sel)} "
            f"| {statistics.mean(r['generated_tokens'] for r in sel):.0f} | {total / len(sel):.1f} "
            f"| {base_total / total:.2f}x | {statistics.median(ratios):.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", default="bf16,int4", help="comma-separated weight formats, baseline first")
    ap.add_argument("--config", default="pgtd@chat-prefill")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/weights_wall.jsonl")
    ap.add_argument("--report", action="store_true", help="only print the table")
    args = ap.parse_args()
    if not args.report:
        run(args.out, args.formats.split(","), Config.parse(args.config), subset())
    table = report(args.out)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
