"""The REST API on a real uvicorn server (loopback, free port) over the tiny model: solve, jobs,
server-sent events, cancel, trees, OpenAI-compatible routes (with the real ``openai`` client),
errors, the queue bound and concurrency."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

import planners
from api.core.engine import Engine
from api.http.schemas import ProblemIn, ServerSettings
from api.http.server import BackgroundServer, create_app
from planners.base import Planner, PlannerParams
from search.limits.budget import Budget

ADD = 'def add(a, b):\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
PROBLEM = {"prompt": ADD, "entry_point": "add", "public_tests": ["assert add(1, 2) == 3"]}
FREE_TEXT = {"prompt": "Once upon a time", "format": "program"}  # no stop condition applies


@pytest.fixture(scope="module")
def server(tiny_lm: Any) -> Iterator[str]:
    tiny_lm.kv.clear()
    engine = Engine(lm=tiny_lm, sandbox="auto")
    settings = ServerSettings(
        max_running=3,
        max_waiting=8,
        max_seconds=30,
        max_prompt_chars=2000,
        max_tests=5,
        max_budget_tokens=50_000,
    )
    with BackgroundServer(create_app(engine, settings)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def _events(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                out.append((kind, json.loads(line.split(":", 1)[1])))
    return out


def _wait_done(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# ----- solve and jobs -----------------------------------------------------------------------------


def test_solve_answers_with_program_verdicts_and_spend(client: httpx.Client) -> None:
    r = client.post(
        "/v1/solve", json={"problem": PROBLEM, "planner": "greedy", "params": {"max_new_tokens": 8}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["program"] == ADD + body["completion"]
    assert body["public"]["total"] == 1 and body["public"]["passed"] in (0, 1)
    assert 1 <= body["spend"]["generated_tokens"] <= 8
    assert body["spend"]["forward_passes"] >= 1


def test_solve_caps_the_time_budget_at_the_server_limit(client: httpx.Client) -> None:
    r = client.post(
        "/v1/solve",
        json={"problem": PROBLEM, "params": {"max_new_tokens": 2}, "budget": {"max_seconds": 5000}},
    )
    assert r.status_code == 200, r.text
    job = client.get(f"/v1/jobs/{r.json()['job_id']}").json()
    assert job["budget"]["max_seconds"] == 30


def test_job_events_stream_progress_between_started_and_finished(client: httpx.Client) -> None:
    r = client.post(
        "/v1/jobs",
        json={
            "problem": PROBLEM,
            "planner": "best_of_n",
            "params": {"n": 3, "batch_size": 1, "max_new_tokens": 6},
        },
    )
    assert r.status_code == 202, r.text
    events = _events(client, r.json()["id"])
    kinds = [k for k, _ in events]
    assert kinds[0] == "started" and kinds[-1] == "succeeded"
    progress = [d for k, d in events if k == "candidates"]
    assert [d["count"] for d in progress] == list(range(1, len(progress) + 1))
    tokens = [d["spend"]["tokens"] for d in progress]
    assert tokens == sorted(tokens) and tokens[-1] > 0
    assert all("best_reward" in d for d in progress)
    assert events[-1][1]["spend"]["generated_tokens"] >= tokens[-1]
    job = client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded" and len(job["result"]["candidates"]) == len(progress)


def test_cancel_stops_a_long_search_promptly(client: httpx.Client) -> None:
    r = client.post("/v1/jobs", json={"problem": FREE_TEXT, "params": {"max_new_tokens": 8000}})
    job_id = r.json()["id"]
    deadline = time.monotonic() + 10
    while client.get(f"/v1/jobs/{job_id}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert client.get(f"/v1/jobs/{job_id}/tree").status_code == 409  # still running: no tree yet
    t0 = time.monotonic()
    d = client.delete(f"/v1/jobs/{job_id}")
    assert d.status_code == 200 and d.json()["cancel_requested"] is True
    job = _wait_done(client, job_id, timeout=10)
    assert time.monotonic() - t0 < 3.0
    assert job["status"] == "cancelled"
    assert job["result"]["stop_reason"] == "cancelled"
    assert 0 < job["result"]["spend"]["generated_tokens"] < 8000
    kinds = [k for k, _ in _events(client, job_id)]
    assert kinds[-1] == "cancelled"


def test_tree_is_json_and_a_picture_with_the_chosen_path(client: httpx.Client) -> None:
    r = client.post(
        "/v1/solve",
        json={
            "problem": PROBLEM,
            "planner": "pgtd",
            "params": {"rollouts": 3, "width": 2, "max_new_tokens": 8},
        },
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    tree = client.get(f"/v1/jobs/{job_id}/tree").json()
    nodes = {n["id"]: n for n in tree["nodes"]}
    assert len(nodes) > 1
    chosen = [n for n in nodes.values() if n.get("chosen")]
    assert chosen and any(n["parent"] is None for n in chosen)
    for n in chosen:  # the chosen nodes form one path from the root
        assert n["parent"] is None or nodes[n["parent"]].get("chosen")
    svg = client.get(f"/v1/jobs/{job_id}/tree", params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg") and svg.text.count('class="node chosen"') == len(chosen)
    assert svg.text.count('class="node') == len(nodes)
    page = client.get(f"/v1/jobs/{job_id}/tree", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html") and "<svg" in page.text


def test_tree_of_a_planner_without_one_shows_its_candidates(client: httpx.Client) -> None:
    r = client.post(
        "/v1/solve",
        json={
            "problem": PROBLEM,
            "planner": "sampling",
            "params": {"n": 2, "batch_size": 2, "max_new_tokens": 4},
        },
    )
    tree = client.get(f"/v1/jobs/{r.json()['job_id']}/tree").json()
    assert tree["synthesized"] is True and len(tree["nodes"]) == 3
    assert sum(bool(n.get("chosen")) for n in tree["nodes"]) == 2  # the root and the best candidate


# ----- listing, health, metrics ---------------------------------------------------------------------


def test_planners_lists_every_registered_planner_with_defaults(client: httpx.Client) -> None:
    rows = {p["name"]: p for p in client.get("/v1/planners").json()["planners"]}
    assert set(rows) == set(planners.names())
    assert rows["greedy"]["params"]["max_new_tokens"]["default"] == 384
    assert rows["greedy"]["description"]


def test_health_and_metrics_count_requests_and_spend(client: httpx.Client) -> None:
    client.post("/v1/solve", json={"problem": PROBLEM, "params": {"max_new_tokens": 3}})
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"].startswith("tiny-qwen2")
    assert health["sandbox"]["resource_scope"] in ("cgroup", "process")
    text = client.get("/metrics").text
    solves = [
        line
        for line in text.splitlines()
        if line.startswith("treedec_requests_total{")
        and 'route="/v1/solve"' in line
        and 'status="200"' in line
    ]
    assert solves and float(solves[0].rsplit(" ", 1)[1]) >= 1
    tokens = [
        line
        for line in text.splitlines()
        if line.startswith('treedec_generated_tokens_total{planner="greedy"}')
    ]
    assert tokens and float(tokens[0].rsplit(" ", 1)[1]) > 0
    assert "treedec_request_seconds_bucket" in text and "treedec_cache_hits_total" in text


# ----- OpenAI-compatible routes ---------------------------------------------------------------------


@pytest.fixture
def oai(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_models_are_the_planners(oai: openai.OpenAI, tiny_lm: Any) -> None:
    models = oai.models.list().data
    assert {m.id for m in models} == {f"treedec-{n}" for n in planners.names()}
    # each names the model searched over and its weight format (bf16 and int8 answer differently)
    assert {m.model_extra["treedec"]["weights"] for m in models} == {tiny_lm.identity.dtype}


def test_an_engine_names_its_weight_format_before_loading() -> None:
    assert Engine(dtype="int8").weights() == "int8"
    assert Engine(dtype="bf16").weights() == "bfloat16"
    assert Engine(model_spec="http://127.0.0.1:1/v1").weights() == "remote"


def test_openai_completions_honour_max_tokens_stop_and_n(oai: openai.OpenAI, tiny_lm: Any) -> None:
    free = oai.completions.create(model="treedec-greedy", prompt="Once upon a time", max_tokens=12)
    text = free.choices[0].text
    assert len(tiny_lm.encode(text)) <= 12 and free.choices[0].finish_reason == "length"
    assert free.object == "text_completion" and free.usage.prompt_tokens == len(
        tiny_lm.encode("Once upon a time")
    )
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    cut = oai.completions.create(
        model="treedec-greedy", prompt="Once upon a time", max_tokens=12, stop=[stop], n=2
    )
    assert [c.index for c in cut.choices] == [0, 1]
    assert all(c.text == text[: text.find(stop)] for c in cut.choices)
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].logprobs is None
    assert cut.usage.completion_tokens == 2 * len(tiny_lm.encode(cut.choices[0].text))


def test_openai_completions_carry_tests_and_budget_to_the_search(oai: openai.OpenAI) -> None:
    r = oai.completions.create(
        model="treedec-best_of_n",
        prompt=ADD,
        max_tokens=5,
        extra_body={
            "tests": ["assert add(1, 2) == 3"],
            "entry_point": "add",
            "budget": {"max_rollouts": 2},
            "params": {"n": 4, "batch_size": 1},
        },
    )
    extra = r.model_extra["treedec"][0]  # type: ignore[index]
    assert extra["public"]["total"] == 1
    assert extra["spend"]["rollouts"] == 2 and extra["spend"]["executions"] >= 1


def test_openai_chat_uses_the_chat_template_or_continues_code(oai: openai.OpenAI, tiny_lm: Any) -> None:
    messages = [{"role": "user", "content": "Write a function that adds two numbers."}]
    r = oai.chat.completions.create(model="treedec-greedy", messages=messages, max_tokens=4)  # type: ignore[arg-type]
    templated = tiny_lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert r.usage.prompt_tokens == len(tiny_lm.encode(templated))
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    code = oai.chat.completions.create(
        model="treedec-greedy", max_tokens=4, messages=[{"role": "user", "content": ADD}]
    )
    assert code.usage.prompt_tokens == len(tiny_lm.encode(ADD))


def test_openai_chat_with_tests_answers_a_fenced_program_judged_by_them(oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Complete this function:\n```python\n" + ADD + "```"}]
    r = oai.chat.completions.create(
        model="treedec-greedy",
        messages=messages,
        max_tokens=6,  # type: ignore[arg-type]
        extra_body={"tests": ["assert add(1, 2) == 3"]},
    )
    content = r.choices[0].message.content or ""
    assert content.startswith("```python\n") and content.endswith("```")
    assert r.model_extra["treedec"][0]["public"]["total"] == 1  # type: ignore[index]


NO_EXAMPLES = 'def inc(x):\n    """Return x plus one."""\n'  # nothing to derive public tests from
SANDBOX_PLANNERS = sorted(n for n in planners.names() if planners.get(n).needs_sandbox)


@pytest.mark.parametrize("planner", SANDBOX_PLANNERS)
def test_a_search_without_public_tests_answers_and_says_it_had_none(
    client: httpx.Client, planner: str
) -> None:
    small = {"max_new_tokens": 6} if "max_new_tokens" in planners.get(planner).Params.model_fields else {}
    body = {
        "problem": {"prompt": NO_EXAMPLES, "entry_point": "inc"},
        "planner": planner,
        "params": small,
        "budget": {"max_tokens": 64},
    }
    r = client.post("/v1/solve", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["public_tests"] == {"from": "request", "tests": []}
    assert out["public"] is None and out["program"].startswith(NO_EXAMPLES)
    if planner in ("pgtd", "vstar"):
        assert out["stop_reason"] == "no_public_tests"


def test_the_openai_route_searches_a_prompt_without_examples_instead_of_refusing_it(
    oai: openai.OpenAI,
) -> None:
    """A harness sends every benchmark problem; one without docstring examples must not fail the run."""
    messages = [{"role": "user", "content": "Complete this function:\n```python\n" + NO_EXAMPLES + "```"}]
    r = oai.chat.completions.create(
        model="treedec-pgtd",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=6,
    )
    assert (r.choices[0].message.content or "").startswith("```python\n")
    extra = r.model_extra["treedec"][0]  # type: ignore[index]
    assert extra["stop_reason"] == "no_public_tests" and extra["public"] is None


# ----- errors ----------------------------------------------------------------------------------------

BAD_INPUTS = [
    ("malformed_json", b'{"problem": ', 400, "body"),
    ("unknown_planner", {"problem": PROBLEM, "planner": "nope"}, 400, "planner"),
    ("budget_out_of_range", {"problem": PROBLEM, "budget": {"max_tokens": 0}}, 422, "budget.max_tokens"),
    (
        "budget_above_server_limit",
        {"problem": PROBLEM, "budget": {"max_tokens": 10**6}},
        422,
        "budget.max_tokens",
    ),
    (
        "bad_planner_param",
        {"problem": PROBLEM, "params": {"max_new_tokens": -3}},
        422,
        "params.max_new_tokens",
    ),
    (
        "unknown_planner_param",
        {"problem": PROBLEM, "params": {"temperature_x": 1}},
        422,
        "params.temperature_x",
    ),
    ("oversized_prompt", {"problem": {**PROBLEM, "prompt": "x" * 3000}}, 413, "problem.prompt"),
    (
        "too_many_tests",
        {"problem": {**PROBLEM, "public_tests": ["assert 1"] * 6}},
        413,
        "problem.public_tests",
    ),
    (
        "unsupported_test_format",
        {"problem": {**PROBLEM, "public_tests": [{"kind": "fuzz"}]}},
        422,
        "problem.public_tests.0",
    ),
    (
        "tests_without_entry_point",
        {"problem": {**PROBLEM, "entry_point": None, "prompt": "x = 1\n"}},
        422,
        "problem.entry_point",
    ),
    ("missing_prompt", {"problem": {"entry_point": "add"}}, 422, "problem.prompt"),
    ("unknown_field", {"problem": PROBLEM, "planer": "greedy"}, 422, "planer"),
]


@pytest.mark.parametrize(("name", "body", "status", "param"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_4xx_that_names_the_field(
    client: httpx.Client, name: str, body: Any, status: int, param: str
) -> None:
    for route in ("/v1/solve", "/v1/jobs"):
        if isinstance(body, bytes):
            r = client.post(route, content=body, headers={"content-type": "application/json"})
        else:
            r = client.post(route, json=body)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["param"] == param
        assert param.split(".")[-1] in error["message"] or name == "malformed_json"


def test_bad_openai_requests_are_4xx_in_the_openai_shape(oai: openai.OpenAI, client: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        oai.completions.create(model="treedec-nope", prompt="x", max_tokens=2)
    assert e.value.body["param"] == "model"  # type: ignore[index]
    r = client.post("/v1/completions", json={"model": "treedec-greedy", "prompt": "x", "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
    r = client.post(
        "/v1/completions", json={"model": "treedec-greedy", "prompt": "x", "echo": True, "logprobs": 1}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
    r = client.post("/v1/completions", json={"model": "treedec-greedy", "prompt": "x", "n": 100})
    assert r.status_code == 422 and r.json()["error"]["param"] == "n"
    r = client.post("/v1/chat/completions", json={"model": "treedec-greedy", "messages": []})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages"
    assert client.get("/v1/jobs/job-missing").status_code == 404
    assert (
        client.get("/v1/jobs/job-missing/tree", params={"format": "png"}).json()["error"]["param"] == "format"
    )


class _Broken(Planner[PlannerParams]):
    name = "test-broken"
    description = "raises (a bug)"
    Params = PlannerParams

    def solve(self, problem: Any, ctx: Any) -> Any:
        raise RuntimeError("planner bug")


def test_internal_error_is_a_500_with_an_id_that_is_logged(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    planners.register(_Broken)
    try:
        with caplog.at_level(logging.ERROR, logger="treedec.server"):
            r = client.post("/v1/solve", json={"problem": PROBLEM, "planner": "test-broken"})
    finally:
        planners._REGISTRY.pop("test-broken", None)
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["type"] == "internal_error" and "planner bug" in error["message"]
    error_id = error["message"].split("error id ")[1].split(")")[0]
    assert any(error_id in rec.getMessage() and rec.exc_info for rec in caplog.records)


# ----- queue bound and concurrency --------------------------------------------------------------------


def test_full_queue_answers_429_with_retry_after(tiny_lm: Any) -> None:
    settings = ServerSettings(max_running=1, max_waiting=0, retry_after_seconds=7)
    with BackgroundServer(create_app(Engine(lm=tiny_lm), settings)) as url, httpx.Client(base_url=url) as c:
        first = c.post("/v1/jobs", json={"problem": FREE_TEXT, "params": {"max_new_tokens": 8000}}).json()[
            "id"
        ]
        r = c.post("/v1/solve", json={"problem": FREE_TEXT, "params": {"max_new_tokens": 2}})
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert r.json()["error"]["type"] == "rate_limit_error"
        c.delete(f"/v1/jobs/{first}")
        _wait_done(c, first)
        assert (
            c.post("/v1/solve", json={"problem": FREE_TEXT, "params": {"max_new_tokens": 2}}).status_code
            == 200
        )


def test_concurrent_solves_share_batches_without_mixing_results(server: str, tiny_lm: Any) -> None:
    prompts = [f"def f{i}(x):\n    return x * {i} +" for i in range(4)]
    body = [
        {"problem": {"prompt": p, "format": "program"}, "params": {"max_new_tokens": 10}} for p in prompts
    ]
    alone = []
    with httpx.Client(base_url=server, timeout=60) as c:
        before = _metric(c.get("/metrics").text, "treedec_batching_merged_calls")
        for b in body:
            tiny_lm.kv.clear()
            # one token longer, so the concurrent runs below miss the rollout cache and reach the model
            longer = {**b, "params": {"max_new_tokens": 11}}
            alone.append(c.post("/v1/solve", json=longer).json()["completion"])
        together: list[str] = [""] * 4

        def run(i: int) -> None:
            together[i] = c.post("/v1/solve", json=body[i]).json()["completion"]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = _metric(c.get("/metrics").text, "treedec_batching_merged_calls")
    assert all(a.startswith(t) and t for a, t in zip(alone, together, strict=True))
    assert after > before


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_openai_chat_turns_a_fenced_function_into_a_problem_with_docstring_tests(oai: openai.OpenAI) -> None:
    """As harnesses send HumanEval: an instruction, the function in a fence, their own n and top_p."""
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Complete the following function.\n```python\n" + ADD + "```\n"},
    ]
    r = oai.chat.completions.create(
        model="treedec-best_of_n",
        messages=messages,  # type: ignore[arg-type]
        n=2,
        top_p=0.95,
        max_completion_tokens=6,
        extra_body={"params": {"n": 2, "batch_size": 1}},
    )
    assert len(r.choices) == 2
    for choice in r.choices:
        content = choice.message.content or ""
        assert content.startswith("```python\n") and content.endswith("\n```")
    extras = r.model_extra["treedec"]  # type: ignore[index]
    assert all(e["public"]["total"] == 1 for e in extras)  # add(1, 2) == 3, from the docstring


def test_solve_derives_public_tests_from_docstring_examples_and_says_so(client: httpx.Client) -> None:
    body = {
        "problem": {"prompt": ADD},
        "planner": "best_of_n",
        "params": {"n": 2, "batch_size": 1, "max_new_tokens": 4},
        "prompt_style": "chat-prefill",
    }
    r = client.post("/v1/solve", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["public_tests"] == {"from": "docstring", "tests": ["add(1, 2) == 3"]}
    assert out["public"]["total"] == 1
    assert out["prompt_style"] == "chat-prefill"


def test_finished_jobs_expire_after_keep_seconds(tiny_lm: Any) -> None:
    from api.core.contracts import SolveSpec
    from api.jobs.local import JobManager

    manager = JobManager(Engine(lm=tiny_lm), max_running=1, max_waiting=4, keep_jobs=100, keep_seconds=0.05)
    spec = SolveSpec(
        problem=ProblemIn.model_validate(PROBLEM).to_problem(),
        planner="greedy",
        params={"max_new_tokens": 2},
        budget=Budget(),
    )
    job = manager.submit(spec)
    assert job.future is not None
    job.future.result(timeout=60)
    assert job.done
    time.sleep(0.1)
    assert manager.get(job.id) is None  # its result, events and tree are gone
    manager.shutdown()
