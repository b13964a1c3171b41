"""The API keeps its own contract: schemathesis (``--checks all``) against a real uvicorn server on
the tiny model finds no server error, no undocumented status or content type, no schema-valid
request refused and no schema-violating request accepted. Plus unit checks of what the OpenAPI
document states about this server (limits, planners, errors)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import planners
from api.core.engine import Engine
from api.http.schemas import ServerSettings
from api.http.server import BackgroundServer, create_app
from search.cache.store import MemoryCache

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
SETTINGS = ServerSettings(
    max_running=2,
    max_waiting=4,
    max_seconds=1,
    default_max_tokens=32,
    max_budget_tokens=256,
    max_prompt_chars=2000,
    max_tests=5,
)


@pytest.fixture(scope="module")
def server(tiny_lm: Any) -> Iterator[str]:
    engine = Engine(lm=tiny_lm, cache=MemoryCache(), sandbox="auto")
    with BackgroundServer(create_app(engine, SETTINGS)) as url:
        yield url


@pytest.fixture(scope="module")
def openapi(server: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{server}/openapi.json", timeout=30).json()
    return doc


def _schemathesis() -> str:
    exe = Path(sys.executable).parent / "schemathesis"
    found = str(exe) if exe.exists() else shutil.which("schemathesis")
    assert found, "schemathesis is not installed (pip install -e '.[test]')"
    return found


def test_schemathesis_finds_no_contract_failures(server: str, tmp_path: Path) -> None:
    cmd = [
        _schemathesis(),
        "--config-file",
        str(CONFIG),
        "run",
        f"{server}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--workers",
        "1",  # schemathesis' own generation is not thread-safe on Python 3.11 (runtime errors)
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--no-color",
    ]
    # tests/schemathesis_hooks.py: positive cases keep to the reference-answer rule JSON Schema cannot state
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(CONFIG.parent)}
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    out = run.stdout + run.stderr
    summary = [line for line in out.splitlines() if re.search(r"\d+ generated", line)]
    assert run.returncode == 0, out[-6000:]
    assert summary and "found" not in summary[-1] and "passed" in summary[-1], out[-3000:]
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) == 12, out[-3000:]  # every operation was exercised


def test_openapi_states_this_servers_limits(openapi: dict[str, Any], tiny_lm: Any) -> None:
    schemas = openapi["components"]["schemas"]
    problem = schemas["ProblemIn"]["properties"]
    assert problem["prompt"]["maxLength"] == 2000 and problem["prompt"]["minLength"] == 1
    arrays = [b for b in problem["public_tests"]["anyOf"] if b.get("type") == "array"]
    assert arrays[0]["maxItems"] == 5
    budget = [b for b in schemas["Budget"]["properties"]["max_tokens"]["anyOf"] if b.get("type") == "integer"]
    assert budget[0]["maximum"] == 256
    assert schemas["CompletionRequest"]["properties"]["n"]["maximum"] == SETTINGS.max_n
    prompt = schemas["CompletionRequest"]["properties"]["prompt"]["anyOf"]
    token_ids = [b for b in prompt if b.get("items", {}).get("type") == "integer"]
    assert token_ids[0]["items"]["maximum"] == len(tiny_lm.tokenizer) - 1


def test_openapi_names_the_planners_and_their_params(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert schemas["SolveRequest"]["properties"]["planner"]["enum"] == planners.names()
    assert schemas["ChatRequest"]["properties"]["model"]["enum"] == [f"treedec-{n}" for n in planners.names()]
    greedy = schemas["PlannerParams_greedy"]
    assert (
        greedy["additionalProperties"] is False and greedy["properties"]["max_new_tokens"]["maximum"] == 8192
    )
    # the tiny model has no calibrated AdaDec threshold: the schema asks for one, as the server does
    assert "entropy_threshold" in schemas["PlannerParams_adadec"]["required"]
    # no process reward models configured: A* requests use the code scorer
    assert schemas["PlannerParams_astar"]["properties"]["scorer"]["const"] == "code"


def test_every_route_documents_its_errors_in_the_error_model(openapi: dict[str, Any]) -> None:
    ref = "#/components/schemas/ErrorResponse"
    for path, operations in openapi["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": ref}, (method, path, status)
    jobs = openapi["paths"]["/v1/jobs/{job_id}"]
    assert "404" in jobs["get"]["responses"] and "404" in jobs["delete"]["responses"]
    assert "429" in openapi["paths"]["/v1/jobs"]["post"]["responses"]
    assert "text/plain" in openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


def test_refusals_name_the_field_in_one_line(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as c:
        cases = [
            (c.post("/v1/solve", json={"problem": {"prompt": "  "}}), 422, "problem.prompt"),
            (c.post("/v1/solve", json={"problem": {"prompt": "x", "public_tests": [" "]}}), 422, None),
            (
                c.post("/v1/solve", json={"problem": {"prompt": "x"}, "options": {"include_tree": 0}}),
                422,
                None,
            ),
            (c.post("/v1/solve", json={"problem": {"prompt": "x"}, "planner": "adadec"}), 422, None),
            (
                c.post("/v1/solve", json={"problem": {"prompt": "x"}, "params": {"max_new_tokens": "3"}}),
                422,
                "params.max_new_tokens",
            ),
            (
                c.post(
                    "/v1/jobs",
                    json={
                        "problem": {"prompt": "def f(x):\n", "public_tests": ["assert f(1)"]},
                        "planner": "astar",
                        "params": {"scorer": "prm", "prm": "/etc/passwd"},
                    },
                ),
                422,
                "params.scorer",
            ),
            (c.post("/v1/completions", json={"model": "treedec-greedy", "prompt": [10**7]}), 422, "prompt"),
            (c.post("/v1/completions", json={"model": "treedec-greedy", "prompt": []}), 422, "prompt"),
            (c.get("/v1/jobs/nope/tree", params={"format": "png"}), 422, "format"),
        ]
        expected_params = {
            1: "problem.public_tests.0",
            2: "options.include_tree",
            3: "params.entropy_threshold",
        }
        for i, (r, status, param) in enumerate(cases):
            assert r.status_code == status, (i, r.text)
            error = r.json()["error"]
            want = param or expected_params[i]
            assert error["param"] == want, (i, error)
            assert "\n" not in error["message"] and want.split(".")[-1] in error["message"], (i, error)
        options = c.request("OPTIONS", "/v1/jobs/job-x")
        assert options.status_code == 405 and options.headers["allow"] == "DELETE, GET"
