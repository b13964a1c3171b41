"""Questions with a final answer end to end on the real bundled model (marked integration: run with
-m integration): the CLI on a GSM8K problem, the REST server and the chat route on one question, and
the lm-eval plugin's offline treedec_gsm8k task with --limit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.core.engine import Engine
from api.http.schemas import ServerSettings
from api.http.server import BackgroundServer, create_app
from search.problems.verification import verify

pytestmark = pytest.mark.integration
QUESTION = "Sam has 3 apples and buys 4 more. Then he eats 2. How many apples does he have?"


@pytest.fixture(scope="module")
def engine(real_lm: Any) -> Engine:
    return Engine(lm=real_lm)


def test_cli_solves_a_gsm8k_problem_with_an_answer_its_rule_and_verdict(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.cli.app as cli
    import api.cli.options

    monkeypatch.setattr(api.cli.options, "_engine", lambda *a, **k: engine)
    run = CliRunner().invoke(cli.app, ["solve", "gsm8k:3", "--set", "max_new_tokens=400", "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    verdict = out["final_answer"]
    assert verdict["answer"]["text"] is not None and verdict["answer"]["rule"] in (
        "boxed",
        "answer-is",
        "last-number",
    )
    assert verdict["correct"] == verify(verdict["answer"]["text"], "540")
    assert out["spend"]["executions"] == 0


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[str]:
    with BackgroundServer(create_app(engine, ServerSettings(max_seconds=600))) as url:
        yield url


def test_rest_and_chat_answer_a_question_on_the_real_model(server: str) -> None:
    with httpx.Client(base_url=server, timeout=900) as http:
        body = {"problem": {"question": QUESTION, "answer": "5"}, "params": {"max_new_tokens": 300}}
        solved = http.post("/v1/solve", json=body).json()
        verdict = solved["final_answer"]
        assert verdict["answer"]["text"] is not None and verdict["correct"] == verify(
            verdict["answer"]["text"], "5"
        )
        chat = http.post(
            "/v1/chat/completions",
            json={
                "model": "treedec-greedy",
                "messages": [{"role": "user", "content": QUESTION}],
                "max_tokens": 300,
                "answer_type": "number",
                "answer": 5,
            },
        ).json()
        extra = chat["treedec"][0]["final_answer"]
        assert (
            chat["choices"][0]["message"]["content"] == solved["completion"].rstrip()
        )  # the same greedy search
        assert extra == verdict


def test_lm_eval_gsm8k_task_on_the_real_model(engine: Engine) -> None:
    lm_eval = pytest.importorskip("lm_eval")
    import api.harness as harness

    model = harness.TreedecLM(planner="greedy", params={"max_new_tokens": 400}, engine=engine)
    out = lm_eval.simple_evaluate(
        model=model,
        tasks=["treedec_gsm8k"],
        limit=2,
        task_manager=harness.task_manager(include_defaults=False),
    )
    result = out["results"]["treedec_gsm8k"]
    for key in ("exact_match,strict-match", "exact_match,flexible-extract"):
        assert result[key] in (0.0, 0.5, 1.0)
    found = [r["final_answer"]["answer"]["text"] for r in model.reports]
    assert [r["task_id"] for r in model.reports] == ["gsm8k/0", "gsm8k/1"] and all(found)
