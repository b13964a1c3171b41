"""Questions with a checked final answer on every surface, over the tiny model: the CLI (solve a
GSM8K spec, a file of questions, eval rows), REST ``/v1/solve`` and ``/v1/jobs`` on a real server,
the OpenAI chat route, the refusals (a code-only planner, a style of the other kind, bad input),
and prose that is never run in the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

import api.cli.app as cli
import api.cli.options
import planners
from api.core.contracts import SolveSpec
from api.core.engine import Engine
from api.http.schemas import ServerSettings
from api.http.server import BackgroundServer, create_app
from api.jobs.queue_codec import decode_spec, encode_spec
from scorers.tests import TestReward
from search.problems.answers import FinalAnswer
from search.problems.extraction import CUT_OFF
from search.problems.loaders import load_problem
from search.problems.problem import IOTest, Problem
from search.problems.verification import verify

ROOT = Path(__file__).resolve().parent.parent
WORD_PROBLEMS = ROOT / "examples" / "word_problems.json"
QUESTION = {"question": "Sam has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"}
SMALL = {"max_new_tokens": 8}


@pytest.fixture
def tiny_cli(tiny_lm: Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(api.cli.options, "_engine", lambda *a, **k: Engine(lm=tiny_lm))
    return CliRunner()


# ----- the CLI ---------------------------------------------------------------------------------------


def test_solve_a_gsm8k_spec_reports_the_answer_its_rule_and_verdict(tiny_cli: CliRunner) -> None:
    run = tiny_cli.invoke(cli.app, ["solve", "gsm8k:3", "--set", "max_new_tokens=8", "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert out["problem_id"] == "gsm8k/3" and out["prompt_style"] == "chain-of-thought"
    verdict = out["final_answer"]
    # the tiny model's 8 tokens end before any answer: none, because it was cut off, and so wrong
    assert verdict == {"answer": {"text": None, "rule": None, "reason": CUT_OFF}, "correct": False}
    assert out["program"] == "" and out["spend"]["executions"] == 0  # prose is never run


def test_solve_shows_the_reasoning_the_final_answer_and_the_verdict(
    tiny_cli: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "question.json"
    path.write_text(json.dumps({**QUESTION, "id": "apples"}))
    run = tiny_cli.invoke(cli.app, ["solve", str(path), "--set", "max_new_tokens=8"])
    assert run.exit_code == 0, run.output
    assert "apples" in run.stdout and "chain-of-thought" in run.stdout
    assert "final answer" in run.stdout and "cut off before an answer" in run.stdout
    assert "wrong" in run.stdout  # a reference was given: there is a verdict


def test_reasoning_and_answer_are_printed_as_written_not_as_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO
    from types import SimpleNamespace

    from rich.console import Console

    import api.cli.solve as solve

    console = Console(file=StringIO(), width=200)
    monkeypatch.setattr(solve, "out", console)
    text = "Left: \\[ 16 - 3 = 13 \\] and [bold]not bold[/], so \\(\\boxed{26}\\)."
    answer = SimpleNamespace(text="\\frac{1}{2}[/]", rule="boxed", reason=None)
    spend = SimpleNamespace(generated_tokens=9, forward_passes=10, executions=0, seconds=0.5)
    report = SimpleNamespace(
        problem_id="q[1]",
        prompt_style="chain-of-thought",
        completion=text,
        final_answer=SimpleNamespace(answer=answer, correct=False),
        planner="greedy",
        spend=spend,
        no_signal=None,
    )
    solve._print_answer(report)  # type: ignore[arg-type]
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert text in shown and "final answer: \\frac{1}{2}[/] (rule: boxed)" in shown and "q[1]" in shown


def test_solve_a_file_of_questions_solves_each_in_turn(tiny_cli: CliRunner) -> None:
    run = tiny_cli.invoke(cli.app, ["solve", str(WORD_PROBLEMS), "--set", "max_new_tokens=4", "--json"])
    assert run.exit_code == 0, run.output
    reports = json.loads(run.stdout)
    assert [r["problem_id"] for r in reports] == ["example/bakery", "example/bike", "example/garden"]
    assert all(r["final_answer"]["correct"] is False for r in reports)


def test_solve_a_question_in_the_program_aided_style_runs_its_code(
    tiny_cli: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "question.json"
    path.write_text(json.dumps(QUESTION))
    args = ["solve", str(path), "--set", "max_new_tokens=8", "--prompt-style", "program-aided", "--json"]
    run = tiny_cli.invoke(cli.app, args)
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert out["prompt_style"] == "program-aided"
    assert out["final_answer"]["answer"]["reason"] == "the code defines no solution()"


def test_eval_rows_carry_text_answer_rule_verdict_cut_off_and_spend(
    tiny_cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    run = tiny_cli.invoke(
        cli.app, ["eval", "-d", "gsm8k:0-1", "--set", "max_new_tokens=8", "-o", str(out), "--json"]
    )
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["gsm8k/0", "gsm8k/1"]
    for row in rows:
        assert row["text"] is not None and row["prompt_style"] == "chain-of-thought"
        assert (row["answer"], row["rule"], row["no_answer"]) == (None, None, CUT_OFF)
        assert row["correct"] is False and row["passed"] is False
        assert row["cut_off"] is True and row["spend"]["generated_tokens"] == 8
    summary = json.loads(run.stdout)
    assert (summary["problems"], summary["passed"], summary["cut_off"], summary["no_answer"]) == (2, 0, 2, 2)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["solve", "gsm8k:3", "--planner", "styles"], "planner 'styles' searches code problems only"),
        (["solve", "gsm8k:3", "--planner", "cascade"], "planner 'cascade' searches code problems only"),
        (["eval", "-d", "gsm8k:0-1", "--planner", "styles"], "planner 'styles' searches code problems only"),
        (["solve", "gsm8k:3", "--prompt-style", "chat"], "auto, chain-of-thought, program-aided"),
        (["solve", "humaneval:0", "--prompt-style", "chain-of-thought"], "completion, chat, chat-prefill"),
        (["solve", "gsm8k:3", "--prompt-style", "fancy"], "unknown prompt style 'fancy'"),
    ],
)
def test_a_planner_or_style_that_does_not_fit_is_a_one_line_error(
    args: list[str], fragment: str, tiny_lm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []
    monkeypatch.setattr(api.cli.options, "_engine", lambda *a, **k: built.append(1) or Engine(lm=tiny_lm))
    run = CliRunner().invoke(cli.app, args)
    assert run.exit_code == 2, run.output
    assert fragment in run.output and "Traceback" not in run.output
    assert built == []  # refused before any model loads


def test_a_bad_question_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"question": "How many?", "answer": "eighteen"}))
    run = CliRunner().invoke(cli.app, ["solve", str(path)])
    assert run.exit_code == 2 and "field 'answer'" in run.output and "Traceback" not in run.output


# ----- planners: refusal and no signal -----------------------------------------------------------------


def test_code_only_planners_refuse_a_question_and_name_the_ones_that_fit() -> None:
    question = load_problem("gsm8k:3")
    refusing = [n for n in planners.names() if planners.get(n).refusal(question) is not None]
    assert refusing == ["cascade", "styles"]
    message = planners.get("styles").refusal(question) or ""
    assert "greedy" in message and "pgtd" in message and "cascade" not in message
    assert planners.get("styles").refusal(load_problem("humaneval:0")) is None
    assert {d["name"]: d["accepts_answer_problems"] for d in planners.describe()}["cascade"] is False


def test_engine_refuses_a_code_only_planner_on_a_question(tiny_lm: Any) -> None:
    with pytest.raises(planners.PlannerError, match="code problems only"):
        Engine(lm=tiny_lm).solve(load_problem("gsm8k:3"), "styles", SMALL)


def test_prose_is_never_run_and_gets_no_reward() -> None:
    prose = Problem(id="p", prompt="Tell me a story.", prompt_is_code=False, answer_is_text=True)
    assert not prose.runs_program and prose.program("Once upon a time") == ""
    reward = TestReward.not_run()
    assert (reward.pass_rate, reward.total, reward.result.starts, reward.compile_error) == (0.0, 0, 0, False)
    with pytest.raises(ValueError, match="no tests"):
        Problem(
            id="p",
            prompt="x",
            prompt_is_code=False,
            answer_is_text=True,
            hidden_tests=[IOTest(expected_stdout="1")],
        )


def test_a_search_planner_says_what_steered_it_and_only_a_test_driven_search_without_tests_has_no_signal(
    tiny_lm: Any,
) -> None:
    engine = Engine(lm=tiny_lm)
    question = load_problem("gsm8k:3")
    pgtd = engine.solve(question, "pgtd", {**SMALL, "rollouts": 2}, include_tree=False)
    assert pgtd.choice is not None and pgtd.choice.signal == "agreement"  # the answers' agreement steers it
    assert pgtd.no_signal is None and "no_signal" not in pgtd.to_json()
    assert pgtd.spend.executions == 0  # a chain of thought is not a program
    greedy = engine.solve(question, "greedy", SMALL)
    assert greedy.choice is not None and greedy.choice.signal == "none"
    assert greedy.no_signal is None and "no_signal" not in greedy.to_json()  # greedy needs no signal
    untested = Problem(id="u", prompt="def f(x):\n", entry_point="f", hidden_tests=[])
    report = engine.solve(untested, "pgtd", {**SMALL, "rollouts": 2}, include_tree=False)
    assert report.no_signal is not None and "no public tests" in report.no_signal


# ----- REST --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_lm: Any) -> Iterator[str]:
    engine = Engine(lm=tiny_lm, sandbox="auto")
    settings = ServerSettings(max_running=2, max_waiting=8, max_seconds=60, max_budget_tokens=50_000)
    with BackgroundServer(create_app(engine, settings)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


def test_rest_solve_answers_a_question_with_its_answer_reasoning_and_verdict(client: httpx.Client) -> None:
    body = {"problem": {**QUESTION, "answer_type": "number"}, "params": SMALL}
    r = client.post("/v1/solve", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["prompt_style"] == "chain-of-thought" and out["completion"] is not None
    verdict = out["final_answer"]
    assert verdict["answer"]["reason"] == CUT_OFF and verdict["correct"] is False
    assert out["spend"]["executions"] == 0
    no_reference = client.post(
        "/v1/solve", json={"problem": {"question": QUESTION["question"]}, "params": SMALL}
    )
    assert no_reference.status_code == 200 and no_reference.json()["final_answer"]["correct"] is None


def test_rest_job_answers_a_question_in_the_program_aided_style(client: httpx.Client) -> None:
    body = {"problem": QUESTION, "params": SMALL, "prompt_style": "program-aided"}
    created = client.post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        __import__("time").sleep(0.1)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["prompt_style"] == "program-aided"
    assert result["final_answer"]["answer"]["reason"] == "the code defines no solution()"


BAD_QUESTIONS = [
    ("no_question", {"problem": {"answer_type": "number", "answer": "7"}}, "problem.question"),
    ("blank_question", {"problem": {"question": "  "}}, "problem.question"),
    ("unknown_answer_type", {"problem": {**QUESTION, "answer_type": "date"}}, "problem.answer_type"),
    ("unparseable_number", {"problem": {**QUESTION, "answer": "seven"}}, "problem.answer"),
    (
        "not_an_option",
        {"problem": {**QUESTION, "answer_type": "choice", "choices": ["6", "7"], "answer": "Q"}},
        "problem.answer",
    ),
    ("code_only_planner", {"problem": QUESTION, "planner": "styles"}, "planner"),
    ("code_style", {"problem": QUESTION, "prompt_style": "chat-prefill"}, "prompt_style"),
    (
        "reasoning_style_for_code",
        {"problem": {"prompt": "def f():\n", "entry_point": "f"}, "prompt_style": "chain-of-thought"},
        "prompt_style",
    ),
    ("unknown_style", {"problem": QUESTION, "prompt_style": "socratic"}, "prompt_style"),
]


@pytest.mark.parametrize(("name", "body", "param"), BAD_QUESTIONS, ids=[b[0] for b in BAD_QUESTIONS])
def test_a_bad_question_is_a_422_that_names_the_field(
    client: httpx.Client, name: str, body: dict[str, Any], param: str
) -> None:
    for route in ("/v1/solve", "/v1/jobs"):
        r = client.post(route, json=body)
        assert r.status_code == 422, (route, r.text)
        error = r.json()["error"]
        assert error["param"] == param and param.split(".")[-1] in error["message"]
        assert "\n" not in error["message"]


def test_a_question_spec_round_trips_through_the_queue_json() -> None:
    problem = load_problem("gsm8k:3")
    spec = SolveSpec(problem=problem, planner="pgtd", params=SMALL, prompt_style="program-aided")
    back = decode_spec(encode_spec(spec))
    assert back == spec and back.problem.final_answer == FinalAnswer(type="number", reference="540")


# ----- the OpenAI chat route -------------------------------------------------------------------------


@pytest.fixture
def oai(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_question_is_searched_n_times_and_each_choice_has_its_answer(
    oai: openai.OpenAI, tiny_lm: Any
) -> None:
    r = oai.chat.completions.create(
        model="treedec-sampling",
        messages=[{"role": "user", "content": QUESTION["question"]}],
        max_tokens=8,
        n=2,
        extra_body={"answer_type": "number", "answer": 7, "params": {"n": 2}},
    )
    assert [c.index for c in r.choices] == [0, 1]
    extras = r.model_extra["treedec"]  # type: ignore[index]
    assert len(extras) == 2 and len({e["job_id"] for e in extras}) == 2  # two searches
    for choice, extra in zip(r.choices, extras, strict=True):
        verdict = extra["final_answer"]
        assert verdict["correct"] == verify(verdict["answer"]["text"], "7")
        text = choice.message.content or ""
        assert len(tiny_lm.encode(text)) <= 8 and choice.finish_reason in ("stop", "length")


def test_chat_question_in_the_program_aided_style_says_its_answer(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="treedec-greedy",
        messages=[{"role": "user", "content": QUESTION["question"]}],
        max_tokens=8,
        extra_body={"answer_type": "number", "prompt_style": "program-aided"},
    )
    content = r.choices[0].message.content or ""
    assert content.startswith("```python\n") and content.endswith(
        "No answer: the code defines no solution()."
    )
    assert r.model_extra["treedec"][0]["final_answer"]["correct"] is None  # type: ignore[index]


def test_chat_prose_is_answered_as_sent_never_run_and_a_search_says_it_had_no_signal(
    oai: openai.OpenAI, tiny_lm: Any
) -> None:
    messages = [{"role": "user", "content": "Janet has 16 eggs and eats 3. How many are left?"}]
    greedy = oai.chat.completions.create(model="treedec-greedy", messages=messages, max_tokens=8)  # type: ignore[arg-type]
    pgtd = oai.chat.completions.create(model="treedec-pgtd", messages=messages, max_tokens=8)  # type: ignore[arg-type]
    assert pgtd.choices[0].message.content == greedy.choices[0].message.content
    extra = pgtd.model_extra["treedec"][0]  # type: ignore[index]
    assert extra["spend"]["executions"] == 0 and "no public tests" in extra["no_signal"]
    assert "no_signal" not in greedy.model_extra["treedec"][0]  # type: ignore[index]
    templated = tiny_lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert greedy.usage.prompt_tokens == len(tiny_lm.encode(templated))  # the client's turn, as today


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "treedec-styles", "answer_type": "number"}, 422, "model"),
        ({"model": "treedec-greedy", "answer_type": "number", "prompt_style": "chat"}, 422, "prompt_style"),
        ({"model": "treedec-greedy", "prompt_style": "chain-of-thought"}, 422, "prompt_style"),
        ({"model": "treedec-greedy", "answer_type": "number", "answer": "seven"}, 422, "answer"),
        ({"model": "treedec-greedy", "answer_type": "weight"}, 422, "answer_type"),
        ({"model": "treedec-greedy", "answer_type": "number", "tests": ["assert 1"]}, 422, "tests"),
    ],
)
def test_bad_chat_questions_are_4xx_naming_the_field(
    client: httpx.Client, body: dict[str, Any], status: int, param: str
) -> None:
    body = {**body, "messages": [{"role": "user", "content": QUESTION["question"]}], "max_tokens": 4}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


# ----- the lm-eval plugin -------------------------------------------------------------------------


def test_lm_eval_gsm8k_task_searches_questions_and_scores_with_lm_evals_filters(tiny_lm: Any) -> None:
    lm_eval = pytest.importorskip("lm_eval")
    import api.harness as harness

    model = harness.TreedecLM(planner="greedy", params=SMALL, engine=Engine(lm=tiny_lm))
    out = lm_eval.simple_evaluate(
        model=model,
        tasks=["treedec_gsm8k"],
        limit=2,
        task_manager=harness.task_manager(include_defaults=False),
        log_samples=True,
    )
    result = out["results"]["treedec_gsm8k"]
    assert result["exact_match,strict-match"] == 0.0 and result["exact_match,flexible-extract"] == 0.0
    samples = out["samples"]["treedec_gsm8k"]
    assert sorted({s["doc"]["id"] for s in samples}) == ["gsm8k/0", "gsm8k/1"]  # a sample per filter
    assert [r["task_id"] for r in model.reports] == ["gsm8k/0", "gsm8k/1"]
    assert all(r["final_answer"]["answer"]["reason"] == CUT_OFF for r in model.reports)
    assert all(r["spend"]["generated_tokens"] == 8 for r in model.reports)  # max_gen_toks never overrides


def test_lm_eval_filters_read_a_program_aided_answer_after_its_hashes() -> None:
    from lm_eval.filters.extraction import RegexFilter

    import api.harness as harness
    from api.core.contracts import SolveReport

    report = SolveReport.model_validate(
        {
            "planner": "greedy",
            "problem_id": "q",
            "completion": "def solution():\n    return 3 + 4\n```",
            "best": None,
            "candidates": [],
            "spend": {},
            "stop_reason": "done",
            "model": "m",
            "program": "",
            "prompt_style": "program-aided",
            "public_tests": {"from": "request", "tests": []},
            "prompt_completion": "",
            "public": None,
            "hidden": None,
            "final_answer": {"answer": {"text": "7", "rule": "program"}, "correct": True},
        }
    )
    text = harness.harness_text(report)
    assert text.endswith("```\n#### 7")
    strict = RegexFilter(regex_pattern=r"#### (\-?[0-9\.\,]+)")
    assert list(strict.apply([[text]], [{}]))[0] == ["7"]
    assert harness.question_of({"question": "q?", "answer": "x #### 7", "answer_type": "number", "id": "g/1"})
    assert harness.question_of({"prompt": "def f():\n", "task_id": "HumanEval/0"}) is None


# ----- the queue: a question through Redis and a real worker --------------------------------------


def test_a_question_goes_through_the_redis_queue_and_a_worker(redis_server: Any) -> None:
    import subprocess
    import sys

    from api.http.server import create_queued_app

    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "worker_entry.py"), redis_server.url, "--name", "q1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        app = create_queued_app(Engine(model_spec="unused"), redis_server.url)
        with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=180) as http:
            bad = http.post("/v1/solve", json={"problem": {**QUESTION, "answer": "seven"}})
            assert bad.status_code == 422 and bad.json()["error"]["param"] == "problem.answer"
            body = {"problem": QUESTION, "params": SMALL, "prompt_style": "chain-of-thought"}
            r = http.post("/v1/solve", json=body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["prompt_style"] == "chain-of-thought" and out["problem_id"] == "request"
            assert out["final_answer"] == {
                "answer": {"text": None, "rule": None, "reason": CUT_OFF},
                "correct": False,
            }
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
