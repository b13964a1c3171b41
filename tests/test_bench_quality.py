"""The whole-benchmark report: search configurations against sampling + filter at equal tokens."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.quality_report import equal_tokens_table, failures_table
from bench.quality_runs import PRESETS, Config
from bench.quality_stats import (
    _above,
    _saves,
    equal_tokens,
    failure_kinds,
    head_to_head,
    mcnemar_p,
    summarize,
    tokens_to_match,
)


def _bon16(task: str, passed: dict[int, bool], tokens: dict[int, int]) -> dict[str, Any]:
    """A best-of-16 row whose first 4 and 8 samples give the derived best-of-4 and best-of-8."""
    return {
        "config": "bon16@chat-prefill",
        "task_id": task,
        "passed": passed[16],
        "generated_tokens": tokens[16],
        "executions": 16,
        "wall_seconds": 16.0,
        "samples": [{}] * 16,
        "derived": {
            f"bon{k}@chat-prefill": {
                "passed": passed[k],
                "generated_tokens": tokens[k],
                "executions": k,
                "program": "",
                "completion": "",
            }
            for k in (4, 8)
        },
    }


def _row(config: str, task: str, passed: bool, tokens: int) -> dict[str, Any]:
    return {
        "config": config,
        "task_id": task,
        "passed": passed,
        "generated_tokens": tokens,
        "executions": 1,
        "wall_seconds": 1.0,
    }


def _rows() -> list[dict[str, Any]]:
    # best-of-N on two problems: passes 0, 1, 2 at 200, 400, 800 tokens a problem
    tokens = {4: 200, 8: 400, 16: 800}
    return [
        _bon16("T/0", {4: False, 8: True, 16: True}, tokens),
        _bon16("T/1", {4: False, 8: False, 16: True}, tokens),
        _row("pgtd@chat-prefill", "T/0", True, 100),  # 1 pass at 150 tokens: curve at most 0
        _row("pgtd@chat-prefill", "T/1", False, 200),
        _row("astar@chat-prefill", "T/0", False, 300),  # 0 at 300: curve 0.5, below
        _row("astar@chat-prefill", "T/1", False, 300),
        _row("vstar@chat-prefill", "T/0", True, 900),  # 2 at 900: no more than best-of-16 at 800
        _row("vstar@chat-prefill", "T/1", True, 900),
        _row("adadec@chat-prefill", "T/0", False, 50),  # 0 at 50: cannot tell
        _row("adadec@chat-prefill", "T/1", False, 50),
        _row("greedy@chat-prefill", "T/0", True, 50),  # plain decoding is not compared
        _row("cascade@chat-prefill", "T/2", True, 50),  # no problem in common with best-of-N
    ]


def test_equal_tokens_reads_the_best_of_n_curve_at_each_configurations_tokens() -> None:
    by = {e["config"]: e for e in equal_tokens(_rows())}

    assert set(by) == {"pgtd@chat-prefill", "astar@chat-prefill", "vstar@chat-prefill", "adadec@chat-prefill"}
    pgtd = by["pgtd@chat-prefill"]
    assert (pgtd["passed"], pgtd["tokens"], pgtd["best_of_n_passed"], pgtd["curve"]) == (
        1,
        150.0,
        0.0,
        "at most",
    )
    assert pgtd["above"] == "yes"
    assert [p["passed"] for p in pgtd["best_of_n"]] == [0, 1, 2]
    astar = by["astar@chat-prefill"]
    assert (astar["best_of_n_passed"], astar["curve"], astar["above"]) == (0.5, "between", "no")
    assert (by["vstar@chat-prefill"]["curve"], by["vstar@chat-prefill"]["above"]) == ("beyond", "no")
    assert by["adadec@chat-prefill"]["above"] == "not shown"


def test_equal_tokens_reads_the_tokens_best_of_n_needs_for_as_many_passes() -> None:
    by = {e["config"]: e for e in equal_tokens(_rows())}

    def claim(name: str) -> tuple[float, str, float, str]:
        e = by[name]
        keys = ("best_of_n_tokens_to_match", "match_curve", "token_ratio", "a_third_of_the_tokens")
        return tuple(e[k] for k in keys)  # type: ignore[return-value]

    assert claim("pgtd@chat-prefill") == (400.0, "between", 2.67, "no")  # best-of-8 passes 1 at 400
    assert claim("astar@chat-prefill") == (200.0, "at most", 0.67, "no")
    assert claim("vstar@chat-prefill") == (800.0, "between", 0.89, "no")
    assert claim("adadec@chat-prefill") == (200.0, "at most", 4.0, "not shown")  # an upper bound only


def test_the_token_claim_is_only_shown_where_the_curve_bounds_it() -> None:
    assert _saves(3.0, "between") == "yes"
    assert _saves(2.9, "between") == "no"
    assert _saves(5.0, "at least") == "yes"  # best-of-N needs at least this many tokens
    assert _saves(2.0, "at least") == "not shown"
    assert _saves(2.0, "at most") == "no"  # best-of-N needs at most this many
    assert _saves(5.0, "at most") == "not shown"
    flat_then_rising = [(100.0, 3, "sc4"), (200.0, 3, "sc8"), (400.0, 5, "sc16")]
    assert tokens_to_match(flat_then_rising, 4) == (300.0, "between")


def test_equal_tokens_needs_every_best_of_n_point_on_the_same_problems() -> None:
    rows = [r for r in _rows() if not r["config"].startswith("bon")]
    assert equal_tokens(rows) == []
    partial = _rows()
    del partial[1]["derived"]["bon8@chat-prefill"]  # bon8 missing on T/1: the curve is only on T/0
    assert {e["problems"] for e in equal_tokens(partial)} == {1}


def test_equal_tokens_table_has_a_line_per_configuration() -> None:
    table = equal_tokens_table(equal_tokens(_rows()))
    assert table.count("\n") == 2 + 4
    assert (
        "| `pgtd@chat-prefill` | 2 | 1 | 150 | 0.0 (at most) "
        "| bon4 0 @ 200, bon8 1 @ 400, bon16 2 @ 800 | yes | 400 (between) | 2.67x | no |" in table
    )


def test_a_point_beyond_the_curve_is_only_ever_shown_below_it() -> None:
    assert _above(3, 2.0, "beyond") == "not shown"  # the curve may still rise past its last point
    assert _above(2, 2.0, "beyond") == "no"
    assert _above(3, 2.0, "at most") == "yes"  # the curve is at most 2 there
    assert _above(2, 2.0, "at most") == "not shown"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_a_valid_planner_configuration(preset: str) -> None:
    config = Config.parse(f"{preset}@chat-prefill")
    assert (config.name, config.planner) == (f"{preset}@chat-prefill", PRESETS[preset][0])


def test_a_preset_the_planner_refuses_stops_before_any_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PRESETS, "vstar-wrong", ("vstar", {"max_expansions": 48}))
    with pytest.raises(SystemExit, match="(?s)does not fit planner 'vstar'.*max_expansions"):
        Config.parse("vstar-wrong@chat-prefill")


def test_mcnemar_p_is_the_exact_two_sided_binomial_of_the_discordant_problems() -> None:
    assert mcnemar_p(10, 5) == mcnemar_p(5, 10) == pytest.approx(2 * 4944 / 2**15)  # sum C(15, 0..5)
    assert mcnemar_p(3, 0) == pytest.approx(2 / 8)
    assert mcnemar_p(0, 0) == mcnemar_p(4, 4) == 1.0  # no difference is never significant
    assert mcnemar_p(24, 0) < 1e-6


def test_head_to_head_gives_each_pair_its_discordant_problems_and_p_value() -> None:
    rows = _rows()
    pairs = {(p["a"], p["b"]): p for p in head_to_head(summarize(rows), rows)}
    p = pairs[("astar@chat-prefill", "pgtd@chat-prefill")]
    assert (p["only_a"], p["only_b"], p["p_value"]) == ([], ["T/0"], 1.0)


def _judged(task: str, passed: bool, public_passed: int, public_total: int) -> dict[str, Any]:
    row = _row("astar@chat-prefill", task, passed, 10)
    public = {"passed": public_passed, "total": public_total}
    return {**row, "public": public, "public_passed": public_total > 0 and public_passed == public_total}


def test_failures_are_sorted_by_what_the_public_tests_could_tell() -> None:
    rows = [
        _judged("T/0", True, 2, 2),
        _judged("T/1", False, 0, 0),  # nothing to steer by
        _judged("T/2", False, 1, 2),  # no program passed the public tests
        _judged("T/3", False, 2, 2),  # passed them, failed the hidden: weak public tests
        {**_judged("T/4", False, 0, 0), "public": None},
        *_rows()[:2],  # rows without a public verdict (and their derived best-of-k): left out
    ]
    kinds = failure_kinds(rows)
    assert set(kinds) == {"astar@chat-prefill"}
    k = kinds["astar@chat-prefill"]
    assert (k["problems"], k["failed"]) == (5, 4)
    assert (k["no_public_tests"], k["public_failed"], k["public_passed_hidden_failed"]) == (
        ["T/1", "T/4"],
        ["T/2"],
        ["T/3"],
    )
    assert "| `astar@chat-prefill` | 5 | 4 | 2 | 1 | 1 |" in failures_table(kinds)


def test_chart_labels_drop_the_common_style_and_the_title_names_it(tmp_path: Any) -> None:
    from bench.quality_chart import draw, short_labels

    names = ["pgtd@chat-prefill", "bon4@chat-prefill", "bon8@chat-prefill", "greedy@completion"]
    labels, style = short_labels(names)
    assert style == "chat-prefill"
    assert labels == {
        "pgtd@chat-prefill": "pgtd",
        "bon4@chat-prefill": "bon4",
        "bon8@chat-prefill": "bon8",
        "greedy@completion": "greedy@completion",
    }
    assert short_labels([]) == ({}, None)
    # on the seconds panel all four points share one spot: every label is still drawn, moved apart
    summary = {
        name: {"mean_generated_tokens": 100.0 + i, "mean_wall_seconds": 5.0, "pass@1": 0.5, "problems": 164}
        for i, name in enumerate(names)
    }
    draw(summary, tmp_path / "chart")
    svg = (tmp_path / "chart.svg").read_text()
    assert (tmp_path / "chart.png").stat().st_size > 0
    for label in ("pgtd", "bon4", "bon8", "greedy@completion"):
        assert svg.count(f"<!-- {label} -->") == 2  # once on each panel
    assert "prompt style chat-prefill unless named -->" in svg
    first = {ext: (tmp_path / f"chart.{ext}").read_bytes() for ext in ("png", "svg")}
    draw(summary, tmp_path / "chart")  # the same rows draw the same bytes: no date, no random ids
    assert {ext: (tmp_path / f"chart.{ext}").read_bytes() for ext in ("png", "svg")} == first


# ----- answer datasets (GSM8K) -------------------------------------------------------------------


def test_answer_presets_parse_in_reasoning_styles() -> None:
    sc = Config.parse("sc16@chain-of-thought")
    assert (sc.name, sc.planner, sc.params["n"], sc.params["vote"]) == (
        "sc16@chain-of-thought",
        "best_of_n",
        16,
        "majority",
    )
    assert Config.parse("astar@program-aided").style == "program-aided"
    with pytest.raises(ValueError, match="unknown prompt style"):
        Config.parse("greedy@socratic")


def test_self_consistency_at_k_is_the_majority_of_the_first_k_samples() -> None:
    from bench.quality_runs import majority_of_first
    from search.problems.answers import FinalAnswer
    from search.problems.problem import Problem

    q = Problem(id="q", prompt="?", final_answer=FinalAnswer(reference="18"))
    samples = [{"answer": a, "tokens": 5} for a in ("17", "18", "17", "$18", "18.0", "18", "17", "x")]
    assert majority_of_first(q, samples, 4)["answer"] == "17"  # 2-2: the answer drawn first
    eight = majority_of_first(q, samples, 8)
    assert (eight["passed"], eight["confidence"], eight["generated_tokens"]) == (True, 0.5, 40)


def test_accuracy_by_confidence_bucket_counts_the_derived_rows_too() -> None:
    from bench.quality_stats import confidence_buckets

    derived = {"passed": False, "confidence": 0.25, "generated_tokens": 3, "executions": 0}
    row = {
        "config": "sc16@chain-of-thought",
        "task_id": "gsm8k/0",
        "passed": True,
        "confidence": 0.8,
        "generated_tokens": 10,
        "executions": 0,
        "wall_seconds": 1.0,
        "samples": [{}] * 16,
        "derived": {"sc4@chain-of-thought": {**derived, "program": "", "completion": ""}},
    }
    buckets = confidence_buckets([row, {**row, "task_id": "gsm8k/1", "passed": False, "confidence": 1.0}])
    sixteen = buckets["sc16@chain-of-thought"]
    assert [(b["problems"], b["correct"]) for b in sixteen] == [(0, 0), (0, 0), (0, 0), (2, 1)]
    four = buckets["sc4@chain-of-thought"][1]
    assert (four["problems"], four["correct"]) == (2, 0)


def test_mbpp_rows_report_the_base_tests_apart_and_the_points_plus_takes_off() -> None:
    from bench.quality_report import dataset_name, markdown_table

    rows = [
        {**_row("greedy@evalplus", "Mbpp/2", True, 10), "base_passed": True},
        {**_row("greedy@evalplus", "Mbpp/3", False, 10), "base_passed": True},
        {**_row("greedy@evalplus", "Mbpp/4", False, 10), "base_passed": False},
    ]
    bon = _bon16("Mbpp/2", {4: False, 8: True, 16: True}, {4: 1, 8: 2, 16: 4})
    for k in (4, 8):
        bon["derived"][f"bon{k}@chat-prefill"]["base_passed"] = True
    summary = summarize([*rows, {**bon, "base_passed": True}])
    greedy = summary["greedy@evalplus"]
    assert (greedy["passed"], greedy["base_passed"], greedy["base_pass_at_1"]) == (1, 2, 0.6667)
    assert summary["bon4@chat-prefill"]["base_passed"] == 1  # derived rows keep their base verdict
    table = markdown_table({"greedy@evalplus": greedy}, {}, "greedy@evalplus")
    assert "base - plus (points)" in table and "| 2 (66.7%) | 33.3 | 1 | 33.3% |" in table
    humaneval = summarize([_row("greedy@chat", "HumanEval/0", True, 10)])
    assert "base" not in markdown_table(humaneval, {}, None)
    assert dataset_name(rows).startswith("MBPP+")


def test_the_report_reads_a_baseline_kept_in_another_rows_file(tmp_path: Any) -> None:
    import json

    from bench.quality_report import write_report

    search = tmp_path / "search.jsonl"
    baseline = tmp_path / "baseline.jsonl"
    search.write_text(
        "".join(json.dumps(_row("pgtd@chat-prefill", f"T/{i}", i < 3, 50)) + "\n" for i in range(4))
    )
    baseline.write_text(
        "".join(json.dumps(_row("greedy@chat-prefill", f"T/{i}", i < 1, 10)) + "\n" for i in range(4))
    )
    write_report(search, [baseline])
    summary = json.loads((tmp_path / "search_summary.json").read_text())
    assert summary["best_greedy"] == "greedy@chat-prefill"
    assert summary["versus_best_greedy"]["pgtd@chat-prefill"]["only_this"] == ["T/1", "T/2"]
    assert not (tmp_path / "baseline_summary.json").exists()


@pytest.mark.parametrize(
    ("config", "text", "answer", "passed"),
    [
        (
            "greedy@chain-of-thought",
            "So she earns 9 * 2 = 18 dollars.\n\nThe total is \\boxed{18}.",
            "18",
            True,
        ),
        ("greedy@chain-of-thought", "Each costs 3, so 3 * 5 = \\boxed{15}.", "15", False),
        ("greedy@program-aided", "def solution():\n    return 36 / 2", "18.0", True),
        ("greedy@program-aided", "def solution():\n    return 1 / 0", None, False),
    ],
)
def test_math_verify_judges_a_row_from_its_text_or_its_programs_value(
    config: str, text: str, answer: str | None, passed: bool
) -> None:
    from bench.gsm8k_check import check

    row = {
        "config": config,
        "task_id": "gsm8k/0",
        "reference": "18",
        "text": text,
        "answer": answer,
        "passed": passed,
    }
    assert check([row])["agree"] == 1
    assert check([{**row, "passed": not passed}])["differ"][0]["math_verify"]["passed"] is passed


def test_a_row_names_its_model_format_and_batching_only_where_they_differ_from_the_first_runs() -> None:
    from bench.quality_runs import run_fields
    from search.model.lm import ModelIdentity

    larger = ModelIdentity("qwen2.5-coder-1.5b", "rev", "tok", "w8a8")
    assert run_fields(larger, 4) == {"model": "qwen2.5-coder-1.5b", "weights": "w8a8", "parallel": 4}
    assert run_fields(ModelIdentity("qwen2.5-coder-0.5b", "rev", "tok", "bfloat16"), 1) == {}


CODE_ROW_KEYS = [
    "config", "task_id", "planner", "prompt_style", "params", "passed", "hidden", "public_passed", "public",
    "program", "completion", "generated_tokens", "processed_tokens", "forward_passes", "executions",
    "wall_seconds", "stop_reason", "spend", "commit",
]  # fmt: skip
ANSWER_ROW_KEYS = [
    "config", "task_id", "planner", "prompt_style", "params", "passed", "reference", "answer", "rule",
    "no_answer", "cut_off", "confidence", "votes", "signal", "text", "generated_tokens", "processed_tokens",
    "forward_passes", "executions", "wall_seconds", "stop_reason", "spend", "commit",
]  # fmt: skip


@pytest.mark.parametrize(
    ("problem_spec", "config_spec", "keys"),
    [
        ("humaneval:0", "greedy@chat-prefill", CODE_ROW_KEYS),
        ("gsm8k:0", "greedy@chain-of-thought", ANSWER_ROW_KEYS),
    ],
)
def test_a_run_writes_the_committed_rows_fields_in_their_order(
    tiny_lm: Any, problem_spec: str, config_spec: str, keys: list[str]
) -> None:
    """The committed rows files are read by the reports and the judges' checks by these names."""
    from dataclasses import replace

    from bench.quality_runs import run_one
    from sandbox.process import ProcessExecutor
    from search.problems.loaders import load_problems

    config = replace(Config.parse(config_spec), params={"max_new_tokens": 8})
    (problem,) = load_problems(problem_spec)
    row = run_one(tiny_lm, ProcessExecutor(), problem, config, commit="abc123", parallel=4)
    assert list(row)[: len(keys)] == keys
    assert row["task_id"] == problem.id and row["config"] == config_spec and row["commit"] == "abc123"
    assert row["generated_tokens"] == row["spend"]["generated_tokens"] <= 8
    assert row["parallel"] == 4 and row["weights"] == "float32"


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "-1/2"])
def test_a_part_outside_its_parts_is_refused(text: str) -> None:
    from bench.quality import part_spec

    with pytest.raises(argparse.ArgumentTypeError, match="K/N"):
        part_spec(text)


def test_the_parts_of_a_run_cover_every_problem_once() -> None:
    from bench.quality import take_part

    problems = list(range(301))
    for parts in (1, 2, 3, 7):
        pieces = [take_part(problems, k, parts) for k in range(1, parts + 1)]
        assert [p for piece in pieces for p in piece] == problems
        assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
