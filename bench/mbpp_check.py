"""Re-judge MBPP+ rows with EvalPlus's own evaluator and compare with treedec's base and plus verdicts.

The rows are ``bench/quality.py``'s on an ``mbpp`` dataset (or this script's own ``--canonical`` /
``--wrong`` rows): each holds the program treedec judged (``program``), and its verdicts
(``base_passed``, ``plus_passed``). Every program goes to one samples file as EvalPlus expects it
(``{"task_id", "solution"}``; EvalPlus wants every task present, so a task without a row gets an
empty solution whose verdict is not read), and ``evalplus.evaluate --dataset mbpp`` judges it in a
throwaway environment that holds evalplus 0.3.1 (``--evalplus-python``; made under ``/tmp`` with
``--make-env``), with ``MBPP_OVERRIDE_PATH`` set to the shipped data file, uncompressed. Each row's
two verdicts are compared, and every disagreement is listed. EvalPlus runs the programs on this
host with only its own guards: run this on rows whose programs you have looked at.

EvalPlus times the reference solution once, when it first computes the expected outputs, and
caches those times: a program is then allowed 4x the cached time on each input. A run of the
whole benchmark shares the machine with other work, so a disagreement can come from the clock, not
the output. Each disagreeing program is therefore judged once more by EvalPlus alone (``isolated``):
its task's reference is timed afresh just before, in the same conditions, and the program is
checked against those times. Both figures are kept.

    python bench/mbpp_check.py --canonical bench/results/mbpp_canonical.jsonl   # treedec's rows
    python bench/mbpp_check.py bench/results/mbpp_canonical.jsonl               # EvalPlus agrees?
    python bench/mbpp_check.py bench/results/mbpp_select.jsonl   # re-selection rows: each program once
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV = Path("/tmp/evalplus-0.3.1")
EVALPLUS = "evalplus==0.3.1"

# Deliberately wrong (or deliberately odd but right) programs, one per rule the judge applies:
# (task number, what it shows, the function)
WRONG: list[tuple[int, str, str]] = [
    (
        2,
        "set rule: order differs, still right",
        "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n",
    ),
    (
        2,
        "set rule: a list where a tuple is returned, still right",
        "def similar_elements(a, b):\n    return list(set(a) & set(b))\n",
    ),
    (3, "wrong on odd composites", "def is_not_prime(n):\n    return n % 2 == 0 and n != 2\n"),
    (
        82,
        "float within the task's atol",
        "import math\ndef volume_sphere(r):\n    return (4 / 3) * math.pi * r**3 * (1 + 1e-9)\n",
    ),
    (82, "float outside the task's atol", "def volume_sphere(r):\n    return (4 / 3) * 3.1416 * r**3\n"),
    (
        581,
        "its own oracle: the height taken to the apex",
        "import math\ndef surface_Area(b, h):\n"
        "    return round(b**2 + 2 * b * math.sqrt((b / 2) ** 2 + h**2))\n",
    ),
    (
        558,
        "its own oracle: zero-padded digits",
        "def digit_distance_nums(a, b):\n"
        "    return sum(abs(int(x) - int(y)) for x, y in zip(str(a).zfill(30), str(b).zfill(30)))\n",
    ),
    (
        787,
        "not-None rule: a bool where a match is returned",
        "import re\ndef text_match_three(text):\n    return re.search('ab{3}?', text) is not None\n",
    ),
    (787, "not-None rule: always None", "def text_match_three(text):\n    return None\n"),
    (
        4,
        "an int where a float is expected... or the reverse",
        "import heapq\ndef heap_queue_largest(nums, n):\n"
        "    return [float(x) for x in heapq.nlargest(n, nums)]\n",
    ),
    (17, "passes base, fails plus (floats)", "def square_perimeter(a):\n    return 4 * int(a)\n"),
    (
        255,
        "a list of lists where tuples are expected",
        "from itertools import combinations_with_replacement\ndef combinations_colors(l, n):\n"
        "    return [list(c) for c in combinations_with_replacement(l, n)]\n",
    ),
    (
        11,
        "raises on an input",
        "def remove_Occ(s, ch):\n    i = s.index(ch)\n    j = s.rindex(ch)\n"
        "    return s[:i] + s[i + 1:j] + s[j + 1:]\n",
    ),
]


def make_env() -> Path:
    """A throwaway virtual environment under /tmp with evalplus 0.3.1 (not the project's venv)."""
    python = ENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", EVALPLUS], check=True)
    return python


def treedec_rows(which: str) -> list[dict[str, Any]]:
    """Rows judged by treedec: each problem's canonical solution (``canonical``) or the programs of
    ``WRONG`` (``wrong``), on the hidden tests, through the real sandbox."""
    import api  # noqa: F401  (sets the sandbox that computes expected values on a first load)
    from api.core.evaluation import hidden_verdicts
    from sandbox import open_executor
    from scorers.tests import TestScorer
    from search.problems.loaders import load_problems

    problems = {p.id: p for p in load_problems("mbpp")}
    if which == "canonical":
        todo = [(p, "canonical", p.canonical_solution or "") for p in problems.values()]
    else:
        todo = [(problems[f"Mbpp/{n}"], f"wrong: {why}", code) for n, why, code in WRONG]
    scorer = TestScorer(open_executor("auto"))
    rows = []
    for i, (problem, config, completion) in enumerate(todo, 1):
        start = time.perf_counter()
        reward = scorer.score(problem, completion, hidden=True)
        failed = [v for v in reward.result.verdicts if not v.ok]
        row = {
            "config": config,
            "task_id": problem.id,
            "program": problem.program(completion),
            **hidden_verdicts(problem, reward),
            "hidden": {"passed": reward.passed, "total": reward.total},
            "first_failure": failed[0].model_dump(exclude={"stdout"}) if failed else None,
            "judge_seconds": round(time.perf_counter() - start, 2),
        }
        rows.append(row)
        print(
            f"[{i}/{len(todo)}] {problem.id} {config}: base {row['base_passed']} plus {row['plus_passed']} "
            f"{row['judge_seconds']}s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def evalplus_env(tmp: str) -> dict[str, str]:
    """The environment EvalPlus runs in: ``MBPP_OVERRIDE_PATH`` at the shipped data file,
    uncompressed into ``tmp``."""
    from search.problems.mbpp import DATA_FILE

    data = Path(tmp) / "MbppPlus.jsonl"
    data.write_bytes(gzip.decompress(DATA_FILE.read_bytes()))
    return {**os.environ, "MBPP_OVERRIDE_PATH": str(data)}


def evalplus_verdicts(rows: list[dict[str, Any]], python: Path) -> list[tuple[bool, bool]]:
    """EvalPlus's (base, plus) verdict of each row's program, in the rows' order."""
    from search.problems.mbpp import _rows

    all_tasks = [r["task_id"] for r in _rows().values()]
    with tempfile.TemporaryDirectory() as tmp:
        env = evalplus_env(tmp)
        samples = Path(tmp) / "samples.jsonl"
        have = {r["task_id"] for r in rows}
        lines = [{"task_id": r["task_id"], "solution": r["program"]} for r in rows]
        lines += [{"task_id": t, "solution": ""} for t in all_tasks if t not in have]
        samples.write_text("".join(json.dumps(x) + "\n" for x in lines))
        subprocess.run(
            [
                str(python),
                "-m",
                "evalplus.evaluate",
                "--dataset",
                "mbpp",
                "--samples",
                str(samples),
                "--i_just_wanna_run",
                "--parallel",
                "2",
            ],
            check=True,
            env=env,
            cwd=tmp,
        )
        results = json.loads((Path(tmp) / "samples_eval_results.json").read_text())["eval"]
    seen: dict[str, int] = {}
    out = []
    for r in rows:  # EvalPlus numbers a task's samples in the order they come
        k = seen.get(r["task_id"], 0)
        seen[r["task_id"]] = k + 1
        res = results[r["task_id"]][k]
        base = res["base_status"] == "pass"
        out.append((base, base and res["plus_status"] == "pass"))
    return out


# Run in EvalPlus's environment: one task's reference timed afresh, then each program checked
# against those times, as ``evalplus.evaluate`` does (its ``check_correctness``, fast_check on).
_ISOLATED = """
import json, sys
from evalplus.data import get_mbpp_plus
from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
from evalplus.evaluate import check_correctness
from evalplus.gen.util import trusted_exec
job = json.load(sys.stdin)
problem = get_mbpp_plus()[job["task_id"]]
code = problem["prompt"] + problem["canonical_solution"]
oracle = {}
for suite in ("base", "plus"):
    oracle[suite], oracle[suite + "_time"] = trusted_exec(
        code, problem[suite + "_input"], problem["entry_point"], record_time=True,
        output_not_none=problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS)
out = []
for program in job["programs"]:
    r = check_correctness("mbpp", 0, problem, program, oracle, fast_check=True)
    base = r["base"][0] == "pass"
    out.append([base, base and r["plus"][0] == "pass"])
print(json.dumps(out))
"""


def isolated_verdicts(task_id: str, programs: list[str], python: Path) -> list[tuple[bool, bool]]:
    """EvalPlus's (base, plus) verdicts of ``programs`` on one task, its reference timed just before."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [str(python), "-c", _ISOLATED],
            input=json.dumps({"task_id": task_id, "programs": programs}),
            capture_output=True,
            text=True,
            check=True,
            env=evalplus_env(tmp),
            cwd=tmp,
        )
    return [(bool(b), bool(p)) for b, p in json.loads(done.stdout.strip().splitlines()[-1])]


def recheck_disagreements(
    rows: list[dict[str, Any]], verdict: dict[tuple[str, str], tuple[bool, bool]], python: Path
) -> dict[str, Any]:
    """Each program whose EvalPlus verdicts differ from treedec's, judged again by EvalPlus alone
    (``isolated_verdicts``), and the agreement once those verdicts replace the first ones."""
    differing = {
        (r["task_id"], r["program"])
        for r in rows
        if verdict[(r["task_id"], r["program"])] != (bool(r.get("base_passed")), bool(r.get("plus_passed")))
    }
    by_task: dict[str, list[str]] = {}
    for task_id, program in sorted(differing):
        by_task.setdefault(task_id, []).append(program)
    again: dict[tuple[str, str], tuple[bool, bool]] = {}
    for task_id, programs in by_task.items():
        again.update(
            zip(((task_id, p) for p in programs), isolated_verdicts(task_id, programs, python), strict=True)
        )
    after = compare(
        rows, [again.get((r["task_id"], r["program"]), verdict[(r["task_id"], r["program"])]) for r in rows]
    )
    return {
        "programs": [
            {
                "task_id": t,
                "program": p,
                "evalplus_first": list(verdict[(t, p)]),
                "evalplus_isolated": list(v),
            }
            for (t, p), v in sorted(again.items())
        ],
        "agree_base": after["agree_base"],
        "agree_plus": after["agree_plus"],
        "differ": after["differ"],
    }


def compare(rows: list[dict[str, Any]], theirs: list[tuple[bool, bool]]) -> dict[str, Any]:
    differ = []
    for r, (base, plus) in zip(rows, theirs, strict=True):
        ours = (bool(r.get("base_passed")), bool(r.get("plus_passed")))
        if ours != (base, plus):
            differ.append(
                {"config": r["config"], "task_id": r["task_id"], "treedec": ours, "evalplus": [base, plus]}
            )
    return {
        "rows": len(rows),
        "treedec_base": sum(bool(r.get("base_passed")) for r in rows),
        "treedec_plus": sum(bool(r.get("plus_passed")) for r in rows),
        "evalplus_base": sum(b for b, _ in theirs),
        "evalplus_plus": sum(p for _, p in theirs),
        "agree_base": sum(bool(r.get("base_passed")) == b for r, (b, _) in zip(rows, theirs, strict=True)),
        "agree_plus": sum(bool(r.get("plus_passed")) == p for r, (_, p) in zip(rows, theirs, strict=True)),
        "differ": differ,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "rows", type=Path, help="the rows JSONL to check (or to write, with --canonical / --wrong)"
    )
    ap.add_argument(
        "--canonical", action="store_true", help="write rows of every canonical solution, judged by treedec"
    )
    ap.add_argument("--wrong", action="store_true", help="write rows of the deliberately wrong programs")
    ap.add_argument("--evalplus-python", type=Path, default=None, help="a python with evalplus 0.3.1")
    args = ap.parse_args()
    if args.canonical or args.wrong:
        rows = treedec_rows("canonical" if args.canonical else "wrong")
        args.rows.parent.mkdir(parents=True, exist_ok=True)
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    # selection rows choose among the same samples: each distinct program is judged once
    rows = [r for r in rows if str(r.get("task_id", "")).startswith("Mbpp/") and "program" in r]
    python = args.evalplus_python or make_env()
    distinct = list(dict.fromkeys((r["task_id"], r["program"]) for r in rows))
    judged = evalplus_verdicts([{"task_id": t, "program": p} for t, p in distinct], python)
    verdict = dict(zip(distinct, judged, strict=True))
    result = compare(rows, [verdict[(r["task_id"], r["program"])] for r in rows])
    result["distinct_programs"] = len(distinct)
    if result["differ"]:
        result["isolated"] = recheck_disagreements(rows, verdict, python)
    Path(f"{args.rows.with_suffix('')}_evalplus_check.json").write_text(json.dumps(result, indent=1))
    print(
        f"{result['rows']} rows: base treedec {result['treedec_base']} / EvalPlus {result['evalplus_base']} "
        f"(agree {result['agree_base']}), plus treedec {result['treedec_plus']} / EvalPlus "
        f"{result['evalplus_plus']} (agree {result['agree_plus']})"
    )
    for d in result["differ"]:
        print(f"  differ {d['task_id']} {d['config']}: treedec {d['treedec']} EvalPlus {d['evalplus']}")
    if "isolated" in result:
        iso = result["isolated"]
        print(
            f"each disagreeing program judged again by EvalPlus alone, its reference timed just before: "
            f"agree base {iso['agree_base']}, plus {iso['agree_plus']} of {result['rows']}"
        )


if __name__ == "__main__":
    main()
