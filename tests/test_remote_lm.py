"""The remote backend against a real HTTP server: treedec's plain completions server on the tiny model.

The server runs its own instance of the tiny model (same seed, so the same weights; its own KV
cache), in uvicorn on a free loopback port; the in-process reference is the session's ``tiny_lm``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI, Request, Response

from api.http.plain import create_plain_app
from api.http.server import BackgroundServer
from search.limits.stops import StopStrings, TopLevelStop
from search.model.lm import DecodeMode, GenerationParams, LanguageModel, RowSettings
from search.model.remote import RemoteModel, RemoteModelError, RemoteSpec, entropy_bounds, topk_entropy

PROMPTS = ['def add(a, b):\n    """Add two numbers."""\n', "x = 1\n", "# a comment\nimport os\n"]


@pytest.fixture(scope="module")
def served_lm() -> Any:
    try:
        from tests.tiny_model import make_tiny_lm
    except ImportError:
        from tiny_model import make_tiny_lm
    return make_tiny_lm()


@pytest.fixture(scope="module")
def server_url(served_lm: Any) -> Iterator[str]:
    with BackgroundServer(create_plain_app(served_lm)) as url:
        yield url


@pytest.fixture(scope="module")
def remote(server_url: str) -> Iterator[RemoteModel]:
    lm = RemoteModel.connect(server_url, tokenizer="bundled-default")
    yield lm
    lm.close()


@pytest.fixture
def local(tiny_lm: Any, served_lm: Any) -> Any:
    tiny_lm.kv.clear()
    served_lm.kv.clear()
    return tiny_lm


def prompts(lm: LanguageModel) -> list[list[int]]:
    return [lm.encode(p) for p in PROMPTS]


# ----- connect ------------------------------------------------------------------------------------


def test_connect_takes_the_servers_identity_after_checking_model_and_vocabulary(
    remote: RemoteModel, tiny_lm: Any
) -> None:
    assert remote.identity == tiny_lm.identity  # same cache keys as the in-process model
    assert remote.eos_token_ids == tiny_lm.eos_token_ids
    assert remote.encode(PROMPTS[0]) == tiny_lm.encode(PROMPTS[0])


def test_connect_refuses_a_server_that_serves_another_model(server_url: str) -> None:
    with pytest.raises(RemoteModelError, match=r"serves \['tiny-qwen2-seed0'\], not 'qwen2.5-coder-0.5b'"):
        RemoteModel.connect(server_url, model="qwen2.5-coder-0.5b", tokenizer="bundled-default")


def test_connect_refuses_a_different_vocabulary(server_url: str, tiny_lm: Any) -> None:
    from tests.tiny_model import bundled_tokenizer

    other = bundled_tokenizer()
    other.add_tokens(["return {'é'"])  # a new token: another fingerprint, and the probe tokenises differently
    with pytest.raises(RemoteModelError, match="vocabulary fingerprint"):
        RemoteModel.connect(server_url, tokenizer=other)
    # Without the server's fingerprint extension (vLLM), the probe string decides.
    lm = RemoteModel(server_url, other, "tiny-qwen2-seed0")
    try:
        with pytest.raises(RemoteModelError, match="tokenises a probe string differently"):
            lm.check_vocabulary(None)
    finally:
        lm.close()
    same = RemoteModel(server_url, tiny_lm.tokenizer, "tiny-qwen2-seed0")
    try:
        same.check_vocabulary(None)  # the same tokenizer passes the probe
    finally:
        same.close()


def test_an_unreachable_server_is_a_one_line_error() -> None:
    from tests.redis_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteModelError, match=r"127\.0\.0\.1.*ConnectError.*after 2 attempts"):
        RemoteModel.connect(url, tokenizer="bundled-default")


def test_model_spec_urls_are_parsed_and_bad_ones_refused() -> None:
    spec = RemoteSpec.parse("http://gpu-1:8000/v1?model=qwen&tokenizer=bundled-default")
    assert (spec.base_url, spec.model, spec.tokenizer) == ("http://gpu-1:8000", "qwen", "bundled-default")
    with pytest.raises(RemoteModelError, match="not a server URL"):
        RemoteSpec.parse("gpu-1:8000")
    with pytest.raises(RemoteModelError, match="unknown option 'modle'"):
        RemoteSpec.parse("http://gpu-1:8000?modle=qwen")


def test_load_model_with_a_url_connects_a_remote_model(server_url: str) -> None:
    from search.model.loader import load_model

    lm = load_model(f"{server_url}?tokenizer=bundled-default")
    try:
        assert isinstance(lm, RemoteModel)
        assert lm.model_name == "tiny-qwen2-seed0"
    finally:
        lm.close()


# ----- protocol equivalence -----------------------------------------------------------------------


def test_next_token_distributions_equal_the_in_process_ones(remote: RemoteModel, local: Any) -> None:
    batch = prompts(local) + [local.encode(PROMPTS[0])]  # a repeated prefix keeps its place
    want = local.next_token_dists(batch, 8)
    got = remote.next_token_dists(batch, 8)
    assert len(got) == len(batch)
    for a, b in zip(want, got, strict=True):
        assert b.token_ids == a.token_ids
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)
        assert b.entropy == pytest.approx(a.entropy, abs=1e-4)  # the server's exact entropy, not an estimate


@pytest.mark.parametrize("chunks", [(32, 256), (3, 6)])
def test_greedy_rollouts_equal_the_in_process_ones(
    remote: RemoteModel, local: Any, server_url: str, chunks: tuple[int, int]
) -> None:
    lm = (
        remote
        if chunks == (32, 256)
        else RemoteModel.connect(
            server_url, tokenizer="bundled-default", first_chunk=chunks[0], max_chunk=chunks[1]
        )
    )
    try:
        params = GenerationParams(max_new_tokens=40, record_top_k=3)
        for stops in ([], [TopLevelStop()], [StopStrings(("\n",))]):
            want = local.rollouts(prompts(local), params, stops)
            got = lm.rollouts(prompts(local), params, stops)
            for a, b in zip(want, got, strict=True):
                assert (b.token_ids, b.text, b.finish_reason) == (a.token_ids, a.text, a.finish_reason)
                assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)
                assert b.step_dists is not None and a.step_dists is not None
                assert [d.token_ids for d in b.step_dists] == [d.token_ids for d in a.step_dists]
    finally:
        if lm is not remote:
            lm.close()


def test_a_local_stop_cuts_where_in_process_decoding_stops(remote: RemoteModel, local: Any) -> None:
    # A stop string only the client knows about (no server-side stop): found in the chunk, cut there.
    class After:
        def __init__(self, n: int) -> None:
            self.n = n

        def find(self, text: str) -> int | None:
            return self.n if len(text) > self.n else None

        def key(self) -> str:
            return f"after:{self.n}"

    params = GenerationParams(max_new_tokens=30)
    want = local.rollouts(prompts(local), params, [After(12)])
    got = remote.rollouts(prompts(local), params, [After(12)])
    for a, b in zip(want, got, strict=True):
        assert (b.token_ids, b.text, b.finish_reason) == (a.token_ids, a.text, "stop")
        assert len(b.text) == 12


def test_seeded_samples_equal_the_in_process_ones(remote: RemoteModel, local: Any) -> None:
    params = GenerationParams(max_new_tokens=20, mode=DecodeMode.sample, temperature=0.7, top_p=0.9, seed=11)
    rows = prompts(local) + prompts(local)[:1]
    # The server decodes each row in a request of its own, so the reference is each row decoded
    # alone in process with that row's seed: on a near-uniform random model, a batch's rounding
    # differs enough from a single row's to flip a sampled token on some CPUs.
    settings = RowSettings.of(params, len(rows))
    want = [local.rollouts([row], params, rows=settings.pick([i]))[0] for i, row in enumerate(rows)]
    got = remote.rollouts(rows, params)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    assert got[0].token_ids != got[3].token_ids  # row i has its own seed, as in process


def test_beam_search_runs_on_the_server(remote: RemoteModel, local: Any) -> None:
    params = GenerationParams(max_new_tokens=8, mode=DecodeMode.beam, num_beams=3)
    want = local.rollouts(prompts(local)[:2], params)
    got = remote.rollouts(prompts(local)[:2], params)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]


def test_continuation_logprobs_match_within_tolerance(remote: RemoteModel, local: Any) -> None:
    prefix = local.encode(PROMPTS[0])
    conts = [local.encode("    return a + b"), local.encode("    pass"), []]
    want = local.continuation_logprobs(prefix, conts)
    got = remote.continuation_logprobs(prefix, conts)
    assert [len(g) for g in got] == [len(c) for c in conts]
    for a, b in zip(want, got, strict=True):
        assert b == pytest.approx(a, abs=1e-3)


def test_spend_counts_the_servers_tokens(remote: RemoteModel, local: Any) -> None:
    from search.model.lm import CallStats

    stats = CallStats()
    rows = prompts(local)
    out = remote.rollouts(rows, GenerationParams(max_new_tokens=10), stats=stats)
    assert stats.generated_tokens == sum(len(r.token_ids) for r in out)
    assert stats.processed_tokens == sum(len(p) for p in rows)
    assert stats.forward_passes == max(len(r.token_ids) for r in out)


def test_top_k_above_the_servers_limit_is_refused(remote: RemoteModel, local: Any) -> None:
    with pytest.raises(RemoteModelError, match="top-k of 21 is outside 1..20"):
        remote.next_token_dists(prompts(local)[:1], 21)


# ----- faults -------------------------------------------------------------------------------------


def flaky(app: FastAPI, failures: int, status: int = 503) -> FastAPI:
    """A real server that answers ``status`` to the first ``failures`` completions, then ``app``."""
    state = {"left": failures}

    @app.middleware("http")
    async def fail_first(request: Request, call_next: Any) -> Response:
        if request.url.path == "/v1/completions" and state["left"] > 0:
            state["left"] -= 1
            return Response('{"error": {"message": "overloaded"}}', status, headers={"Retry-After": "0"})
        response: Response = await call_next(request)
        return response

    return app


def test_overloaded_servers_are_retried_with_backoff(served_lm: Any, local: Any) -> None:
    with BackgroundServer(flaky(create_plain_app(served_lm), failures=3)) as url:
        lm = RemoteModel.connect(url, tokenizer="bundled-default", backoff_s=0.01)
        try:
            got = lm.next_token_dists(prompts(local)[:1], 4)[0]
            assert lm.http_retries == 3
            assert got.token_ids == local.next_token_dists(prompts(local)[:1], 4)[0].token_ids
        finally:
            lm.close()


def test_a_persistent_server_error_ends_in_one_clear_error(served_lm: Any, local: Any) -> None:
    with BackgroundServer(flaky(create_plain_app(served_lm), failures=100, status=500)) as url:
        lm = RemoteModel(url, local.tokenizer, "tiny-qwen2-seed0", max_retries=2, backoff_s=0.01)
        try:
            with pytest.raises(
                RemoteModelError, match=r"/v1/completions: 500 overloaded \(after 3 attempts\)"
            ):
                lm.next_token_dists(prompts(local)[:1], 4)
        finally:
            lm.close()


def test_a_client_error_is_not_retried(served_lm: Any, local: Any) -> None:
    with BackgroundServer(flaky(create_plain_app(served_lm), failures=1, status=400)) as url:
        lm = RemoteModel(url, local.tokenizer, "tiny-qwen2-seed0", backoff_s=0.01)
        try:
            with pytest.raises(RemoteModelError, match="400 overloaded"):
                lm.next_token_dists(prompts(local)[:1], 4)
            assert lm.http_retries == 0
        finally:
            lm.close()


# ----- entropy estimate ---------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_topk_entropy_bounds_contain_the_true_entropy(temperature: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(1000, generator=gen).double() / temperature, -1)
    true = float(-(logp.exp() * logp).sum())
    for k in (1, 5, 20, 200):
        top = torch.topk(logp, k).values.tolist()
        lo, hi = entropy_bounds(top, 1000)
        assert lo <= true + 1e-9 <= hi + 2e-9
        assert topk_entropy(top, 1000) == lo
    full = logp.tolist()
    assert entropy_bounds(full, 1000) == pytest.approx((true, true), abs=1e-9)  # no tail: exact
    assert not math.isnan(topk_entropy([0.0], 1000))  # a point mass


# ----- the plain server as users see it -----------------------------------------------------------


def test_the_plain_server_answers_the_openai_client(server_url: str, local: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=server_url + "/v1", api_key="unused")
    reply = client.completions.create(
        model="tiny-qwen2-seed0", prompt=PROMPTS[1], max_tokens=6, temperature=0, logprobs=2
    )
    want = local.rollouts([local.encode(PROMPTS[1])], GenerationParams(max_new_tokens=6))[0]
    assert reply.choices[0].text == want.text
    assert reply.choices[0].logprobs is not None
    assert len(reply.choices[0].logprobs.tokens or []) == len(want.token_ids)
    assert reply.usage is not None and reply.usage.completion_tokens == len(want.token_ids)


def test_the_plain_server_echoes_the_prompt_with_its_logprobs(server_url: str, local: Any) -> None:
    ids = local.encode(PROMPTS[0])
    body = {"prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 1, "return_tokens_as_token_ids": True}
    data = httpx.post(server_url + "/v1/completions", json=body, timeout=30).json()
    choice = data["choices"][0]
    assert choice["prompt_token_ids"] == ids
    assert choice["logprobs"]["tokens"] == [f"token_id:{t}" for t in ids]
    lps = choice["logprobs"]["token_logprobs"]
    assert lps[0] is None
    assert lps[1:] == pytest.approx(local.continuation_logprobs(ids[:1], [ids[1:]])[0], abs=1e-4)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"prompt": [10**9], "max_tokens": 1}, 422, "token id 1000000000 is outside the vocabulary"),
        ({"prompt": "x", "max_tokens": 0}, 422, "'max_tokens': 0 needs echo=true"),
        ({"prompt": "x", "stream": True}, 400, "does not stream"),
        ({"prompt": "x", "best_of": 2}, 422, "'best_of': unknown field"),
        ({"prompt": "x", "logprobs": 21}, 422, "'logprobs'"),
        ({"prompt": "x", "model": "gpt-4"}, 404, "model 'gpt-4' is not served here"),
        ({"prompt": []}, 422, "'prompt': empty"),
    ],
)
def test_the_plain_server_refuses_bad_requests_naming_the_field(
    server_url: str, body: dict[str, Any], status: int, needle: str
) -> None:
    resp = httpx.post(server_url + "/v1/completions", json=body, timeout=30)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]["message"]


def test_the_plain_server_lists_its_model_with_identity(server_url: str, local: Any) -> None:
    data = httpx.get(server_url + "/v1/models", timeout=30).json()
    entry = data["data"][0]
    assert entry["id"] == "tiny-qwen2-seed0"
    assert entry["treedec"]["tokenizer_hash"] == local.identity.tokenizer_hash
