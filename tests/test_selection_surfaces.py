"""best-of-N's ``selector=behaviour`` end to end on every surface (tiny model, real sandbox): the CLI's
``--set selector=behaviour``, REST ``/v1/solve`` and the OpenAI route, each showing the groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api.core.engine import Engine
from api.http.schemas import ServerSettings
from api.http.server import BackgroundServer, create_app

ROOT = Path(__file__).resolve().parent.parent
ADD = 'def add(a, b):\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
PARAMS = {
    "n": 3,
    "batch_size": 1,
    "max_new_tokens": 5,
    "selector": "behaviour",
    "early_stop": False,
    "written_inputs": 1,
    "mutated_inputs": 2,
}


def assert_groups_cover_the_candidates(groups: list[dict[str, Any]], candidates: int) -> None:
    assert [g["rank"] for g in groups] == list(range(len(groups)))
    assert all(g["size"] == len(g["members"]) >= 1 for g in groups)
    assert sorted(m for g in groups for m in g["members"]) == list(range(candidates))


@pytest.fixture(scope="module")
def server(tiny_lm: Any) -> Iterator[str]:
    tiny_lm.kv.clear()
    settings = ServerSettings(max_running=2, max_waiting=4, max_seconds=60, max_budget_tokens=50_000)
    with BackgroundServer(create_app(Engine(lm=tiny_lm, sandbox="auto"), settings)) as url:
        yield url


def test_rest_solve_with_the_behaviour_selector_shows_the_groups(server: str) -> None:
    body = {"problem": {"prompt": ADD, "entry_point": "add"}, "planner": "best_of_n", "params": PARAMS}
    with httpx.Client(base_url=server, timeout=120) as client:
        r = client.post("/v1/solve", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["candidates"]) == 3
    assert_groups_cover_the_candidates(out["groups"], 3)
    for g in out["groups"]:
        for m in g["members"]:
            assert out["candidates"][m]["meta"]["behaviour_group"] == g["rank"]
    assert out["best"]["meta"]["behaviour_group"] == 0
    assert out["spend"]["extra"]["behaviour_inputs"] >= 1


def test_rest_solve_with_the_public_selector_shows_no_groups(server: str) -> None:
    body = {"problem": {"prompt": ADD}, "planner": "best_of_n", "params": {"n": 2, "max_new_tokens": 4}}
    with httpx.Client(base_url=server, timeout=120) as client:
        out = client.post("/v1/solve", json=body).json()
    assert "groups" not in out


def test_rest_refuses_an_unknown_group_score_in_one_line(server: str) -> None:
    body = {"problem": {"prompt": ADD}, "planner": "best_of_n", "params": {"group_score": "loudest"}}
    with httpx.Client(base_url=server, timeout=60) as client:
        r = client.post("/v1/solve", json=body)
    assert r.status_code in (400, 422) and "group_score" in r.text


def test_openai_completions_with_the_behaviour_selector_show_the_groups(server: str) -> None:
    oai = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)
    r = oai.completions.create(
        model="treedec-best_of_n",
        prompt=ADD,
        max_tokens=5,
        extra_body={"entry_point": "add", "tests": ["assert add(1, 2) == 3"], "params": PARAMS},
    )
    extra = r.model_extra["treedec"][0]  # type: ignore[index]
    assert_groups_cover_the_candidates(extra["groups"], 3)
    assert extra["spend"]["extra"]["behaviour_inputs"] >= 1


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_lm.model.save_pretrained(path)
    tiny_lm.tokenizer.save_pretrained(path)
    return path


def test_cli_set_selector_behaviour_prints_the_groups(tiny_model_dir: Path, tmp_path: Path) -> None:
    problem = tmp_path / "add.json"
    problem.write_text(json.dumps({"id": "add", "prompt": ADD, "entry_point": "add"}))
    sets = [arg for k, v in PARAMS.items() for arg in ("--set", f"{k}={str(v).lower()}")]
    base = [sys.executable, "-m", "api.cli.app", "solve", str(problem), "--planner", "best_of_n"]
    command = [*base, "--model", str(tiny_model_dir), "--dtype", "fp32", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 300, "env": env}
    as_json = subprocess.run([*command, "--json"], **run)  # type: ignore[call-overload]
    assert as_json.returncode == 0, as_json.stderr
    out = json.loads(as_json.stdout)
    assert_groups_cover_the_candidates(out["groups"], 3)
    table = subprocess.run(command, **run)  # type: ignore[call-overload]
    assert table.returncode == 0, table.stderr
    sizes = ", ".join(str(g["size"]) for g in out["groups"])
    assert f"behaviour groups (best first, the answer from the first): {sizes}" in table.stdout
