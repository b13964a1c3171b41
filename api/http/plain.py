"""A plain OpenAI-compatible completions server over one ``LanguageModel``: no search.

``create_plain_app(lm)`` serves ``GET /v1/models`` and ``POST /v1/completions`` (the legacy
completions API, the one vLLM and SGLang also serve). ``treedec serve --plain`` runs it; the
remote backend (``search/model/remote.py``) is tested against it, and users can point any OpenAI
client at it.

What a request may carry: a prompt as text, token ids, or a list of either; ``max_tokens``
(0 is allowed with ``echo``), ``temperature`` (0 = greedy), ``top_p``, ``seed``, ``n``, ``stop``,
``logprobs`` (top-k per position, at most ``MAX_LOGPROBS``), ``echo``, ``use_beam_search`` (beam
width ``n``; one choice per prompt, the best beam), and vLLM's ``return_tokens_as_token_ids``
(``logprobs.tokens`` / ``top_logprobs`` keys become ``"token_id:<id>"``).

What an answer carries beyond OpenAI's fields (extensions, as vLLM does):

- ``choices[i].token_ids``: the generated token ids; an EOS that ended the choice is included,
  as vLLM includes it (its text is not), with ``stop_reason`` null and ``finish_reason`` "stop";
- ``choices[i].prompt_token_ids``: the prompt as ids (when ``echo``);
- ``choices[i].stop_reason``: the stop string that ended the choice, or null (EOS or length);
- ``choices[i].logprobs.entropy``: per generated position, the entropy in nats of the *full*
  next-token distribution (prompt positions carry null), so clients need not estimate it from
  the top-k;
- ``/v1/models`` entries carry ``treedec``: the model identity (name, revision, tokenizer
  fingerprint, dtype), so a client can check it runs the same model and tokenizer.

Sampling is reproducible: row ``r`` of a request (prompt-major, then ``n``) samples with seed
``seed + 1_000_003 * r``, exactly as ``HFModel.rollouts`` seeds its rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from api.http.errors import APIError, install_handlers, read_json, validation_error
from search.model.lm import (
    SEED_STRIDE,
    CallStats,
    DecodeMode,
    GenerationParams,
    LanguageModel,
    Rollout,
    TokenDist,
)

MAX_LOGPROBS = 20
MAX_N = 64
MAX_PROMPTS = 256


class PlainCompletionRequest(BaseModel):
    """Body of ``POST /v1/completions`` (the OpenAI legacy completions API)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="must name the served model when given")
    prompt: str | list[int] | list[str] | list[list[int]] = Field(description="text, token ids, or a list")
    # this call's length (GenerationParams.max_new_tokens); no search, so no budget
    max_tokens: int = Field(16, ge=0, le=8192, description="tokens to generate (0 only with echo)")
    temperature: float = Field(1.0, ge=0, le=10, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N, description="choices per prompt (beam width with use_beam_search)")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stop: str | list[str] | None = Field(None, description="stop strings (at most 16)")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="top-k log-probs per position")
    echo: bool = Field(False, description="return the prompt (and its log-probs) before the completion")
    use_beam_search: bool = False
    return_tokens_as_token_ids: bool = Field(False, description='vLLM: tokens as "token_id:<id>"')
    return_token_ids: bool = Field(True, description="vLLM: token_ids / prompt_token_ids (always sent here)")
    stream: bool = Field(False, description="streaming is not supported by the plain server")
    user: str | None = None

    @field_validator("stop", mode="after")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 16:
            raise ValueError("at most 16 stop strings")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)


def _prompts(lm: LanguageModel, prompt: str | list[int] | list[str] | list[list[int]]) -> list[list[int]]:
    """The request's prompts as token-id lists (one prompt is a list of one)."""
    if isinstance(prompt, str):
        return [lm.encode(prompt)]
    if not prompt:
        raise APIError(422, "invalid value for 'prompt': empty", "prompt")
    items: list[Any] = list(prompt)
    if all(isinstance(x, int) for x in items):
        return [items]
    return [lm.encode(x) if isinstance(x, str) else list(x) for x in items]


class PlainCompletions:
    """The work behind ``/v1/completions``: maps a request to ``LanguageModel`` calls."""

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm
        self.vocab_size = lm.vocab_size

    def complete(self, req: PlainCompletionRequest) -> dict[str, Any]:
        prompts = _prompts(self.lm, req.prompt)
        self._check(req, prompts)
        stats = CallStats()
        choices: list[dict[str, Any]] = []
        firsts = self._next_tokens(prompts, req, stats)
        for p_index, prompt in enumerate(prompts):
            rollouts = firsts[p_index] if firsts is not None else self._generate(prompt, req, p_index, stats)
            prompt_lps = (
                self._prompt_logprobs(prompt, stats) if req.echo and req.logprobs is not None else None
            )
            for j, roll in enumerate(rollouts):
                choices.append(self._choice(len(choices), prompt, roll, req, prompt_lps, p_index * req.n + j))
        completion_tokens = sum(len(c["token_ids"]) for c in choices)
        prompt_tokens = sum(len(p) for p in prompts)
        return {
            "id": "cmpl-" + uuid.uuid4().hex[:24],
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.lm.identity.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _check(self, req: PlainCompletionRequest, prompts: list[list[int]]) -> None:
        if req.stream:
            raise APIError(
                400, "invalid value for 'stream': the plain server does not stream; send false", "stream"
            )
        if req.model is not None and req.model != self.lm.identity.name:
            raise APIError(
                404,
                f"model {req.model!r} is not served here; this server serves {self.lm.identity.name!r}",
                "model",
                "not_found_error",
            )
        if len(prompts) > MAX_PROMPTS:
            raise APIError(413, f"'prompt' has {len(prompts)} prompts; at most {MAX_PROMPTS}", "prompt")
        if req.max_tokens == 0 and not req.echo:
            raise APIError(422, "invalid value for 'max_tokens': 0 needs echo=true", "max_tokens")
        for prompt in prompts:
            if not prompt:
                raise APIError(422, "invalid value for 'prompt': a prompt needs at least one token", "prompt")
            bad = [t for t in prompt if not 0 <= t < self.vocab_size]
            if bad:
                raise APIError(
                    422,
                    f"invalid value for 'prompt': token id {bad[0]} is outside the vocabulary "
                    f"(0..{self.vocab_size - 1})",
                    "prompt",
                )

    # ----- generation ---------------------------------------------------------------------
    def _generate(
        self, prompt: list[int], req: PlainCompletionRequest, p_index: int, stats: CallStats
    ) -> list[Rollout]:
        if req.max_tokens == 0:
            return [Rollout([], [], "", "length", []) for _ in range(req.n)]
        top_k = max(1, req.logprobs or 0)  # the EOS step's distribution is needed to name the EOS token
        greedy = req.temperature == 0 and not req.use_beam_search
        if req.use_beam_search:
            params = _params(
                max_new_tokens=req.max_tokens, mode=DecodeMode.beam, num_beams=req.n, stop=req.stop_strings()
            )
            return self.lm.rollouts([prompt], params, stats=stats)
        if greedy:
            params = _params(max_new_tokens=req.max_tokens, stop=req.stop_strings(), record_top_k=top_k)
            return self.lm.rollouts([prompt], params, stats=stats) * req.n
        seed = None if req.seed is None else req.seed + SEED_STRIDE * p_index * req.n
        params = _params(
            max_new_tokens=req.max_tokens,
            mode=DecodeMode.sample,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=seed,
            stop=req.stop_strings(),
            record_top_k=top_k,
        )
        return self.lm.rollouts([prompt] * req.n, params, stats=stats)

    def _next_tokens(
        self, prompts: list[list[int]], req: PlainCompletionRequest, stats: CallStats
    ) -> list[list[Rollout]] | None:
        """A greedy one-token request (a next-token distribution) for all prompts in one batched call."""
        if req.temperature != 0 or req.use_beam_search or req.max_tokens != 1 or req.stop_strings():
            return None
        dists = self.lm.next_token_dists(prompts, max(1, req.logprobs or 0), stats)
        return [[self._one_token(d)] * req.n for d in dists]

    def _one_token(self, dist: TokenDist) -> Rollout:
        tok, lp = dist.token_ids[0], dist.logprobs[0]
        if tok in self.lm.eos_token_ids:
            return Rollout([], [], "", "eos", [dist])
        return Rollout([tok], [lp], self.lm.decode([tok]), "length", [dist])

    def _prompt_logprobs(self, prompt: list[int], stats: CallStats) -> list[float | None]:
        if len(prompt) < 2:
            return [None] * len(prompt)
        lps = self.lm.continuation_logprobs(prompt[:1], [prompt[1:]], stats)[0]
        return [None, *lps]

    def _eos_step(self, prompt: list[int], roll: Rollout, stats: CallStats) -> tuple[int, float]:
        """The EOS token that ended a rollout and its log-prob (the likeliest EOS of the last step)."""
        last = roll.step_dists[-1] if roll.step_dists else None
        if last is not None:
            for tok, lp in zip(last.token_ids, last.logprobs, strict=True):
                if tok in self.lm.eos_token_ids:
                    return tok, lp
        eos = min(self.lm.eos_token_ids)
        lp = self.lm.continuation_logprobs(prompt + roll.token_ids, [[eos]], stats)[0][0]
        return eos, lp

    # ----- answer -------------------------------------------------------------------------
    def _choice(
        self,
        index: int,
        prompt: list[int],
        roll: Rollout,
        req: PlainCompletionRequest,
        prompt_lps: list[float | None] | None,
        row: int,
    ) -> dict[str, Any]:
        del row
        ids, lps = list(roll.token_ids), list(roll.logprobs)
        dists: list[TokenDist | None] = list(roll.step_dists or [])
        finish, stop_reason = "length", None
        if roll.finish_reason == "eos":
            tok, lp = self._eos_step(prompt, roll, CallStats())
            ids.append(tok)
            lps.append(lp)
            finish = "stop"
        elif roll.finish_reason == "stop":
            finish = "stop"
            stop_reason = _which_stop(self.lm.decode(roll.token_ids), roll.text, req.stop_strings())
        dists = dists[: len(ids)] + [None] * (len(ids) - len(dists))
        text = roll.text
        choice: dict[str, Any] = {
            "index": index,
            "text": (self.lm.decode(prompt) if req.echo else "") + text,
            "finish_reason": finish,
            "stop_reason": stop_reason,
            "token_ids": ids,
            "prompt_token_ids": prompt if req.echo else None,
            "logprobs": None,
        }
        if req.logprobs is not None:
            choice["logprobs"] = self._logprobs(prompt, ids, lps, dists, req, prompt_lps)
        return choice

    def _logprobs(
        self,
        prompt: list[int],
        ids: list[int],
        lps: list[float],
        dists: Sequence[TokenDist | None],
        req: PlainCompletionRequest,
        prompt_lps: list[float | None] | None,
    ) -> dict[str, Any]:
        name = self._token_name(req.return_tokens_as_token_ids)
        k = req.logprobs or 0
        tokens: list[str] = []
        token_lps: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        entropy: list[float | None] = []
        if req.echo:
            for tok, lp in zip(prompt, prompt_lps or [None] * len(prompt), strict=True):
                tokens.append(name(tok))
                token_lps.append(lp)
                tops.append(None)
                entropy.append(None)
        for tok, lp, dist in zip(ids, lps, dists, strict=True):
            tokens.append(name(tok))
            token_lps.append(lp)
            top: dict[str, float] = {}
            if dist is not None:
                for t, tlp in zip(dist.token_ids[:k], dist.logprobs[:k], strict=True):
                    top[name(t)] = tlp
            top.setdefault(name(tok), lp)  # like vLLM: the chosen token is always listed
            tops.append(top)
            entropy.append(dist.entropy if dist is not None else None)
        offsets, at = [], 0
        for piece in tokens:
            offsets.append(at)
            at += len(piece)
        return {
            "tokens": tokens,
            "token_logprobs": token_lps,
            "top_logprobs": tops,
            "text_offset": offsets,
            "entropy": entropy,
        }

    def _token_name(self, as_ids: bool) -> Any:
        if as_ids:
            return lambda t: f"token_id:{t}"
        return lambda t: self.lm.decode([t])


def _params(**values: Any) -> GenerationParams:
    return GenerationParams.model_validate(values)


def _which_stop(full: str, cut: str, stops: Sequence[str]) -> str | None:
    """The stop string found where the text was cut (None when another rule stopped it)."""
    rest = full[len(cut) :]
    for s in stops:
        if rest.startswith(s):
            return s
    return None


def create_plain_app(lm: LanguageModel, batch_window_ms: float | None = 2.0) -> FastAPI:
    """An OpenAI-compatible completions server over ``lm`` (no search, no sandbox).

    Concurrent requests share forward passes through ``search.model.batching.BatchingLM`` (next-token
    requests always, greedy ones with equal settings; ``batch_window_ms`` None turns it off), the
    way a vLLM server batches the requests of many treedec workers."""
    from search.model.batching import BatchingLM

    served: LanguageModel = lm
    if batch_window_ms is not None and not isinstance(lm, BatchingLM):
        served = BatchingLM(lm, batch_window_ms)
    engine = PlainCompletions(served)
    app = FastAPI(
        title="treedec plain completions",
        version="0.1.0",
        description="OpenAI-compatible /v1/completions over one model, without search.",
    )
    install_handlers(app)
    ident = lm.identity

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": ident.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "treedec",
                    "root": ident.name,
                    "treedec": {
                        "name": ident.name,
                        "revision": ident.revision,
                        "tokenizer_hash": ident.tokenizer_hash,
                        "dtype": ident.dtype,
                        "max_logprobs": MAX_LOGPROBS,
                        "eos_token_ids": sorted(lm.eos_token_ids),
                    },
                }
            ],
        }

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        """OpenAI legacy completions; the body is read by hand so a malformed one is a clean 400."""
        body = await read_json(request)
        try:
            req = PlainCompletionRequest.model_validate(body)
        except ValidationError as e:
            raise validation_error(e) from e
        return JSONResponse(await run_in_threadpool(engine.complete, req))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": ident.name}

    return app
