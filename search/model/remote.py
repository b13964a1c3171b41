"""``RemoteModel``: a ``LanguageModel`` served by an OpenAI-compatible completions server.

vLLM is the reference server (SGLang and TGI's OpenAI routes work where they accept the same
fields); treedec's own ``treedec serve --plain`` (``api/http/plain.py``) is one too. The search runs
here, on CPU; the server holds the weights, batches requests from every worker (continuous
batching) and reuses KV across requests through its prefix cache, so this backend keeps no KV of
its own: a request that extends a prefix the server has seen costs the server only the new tokens.

How each protocol method maps to ``POST /v1/completions`` (prompts are always token ids, so the
server never re-tokenises a prefix the search built token by token):

- ``next_token_dists``: ``max_tokens=1, temperature=0, logprobs=k`` per prefix; the first step's
  ``top_logprobs`` is the top-k. The entropy is the server's ``logprobs.entropy`` extension when it
  sends one (``api/http/plain.py`` does: the exact entropy of the full distribution); otherwise it is
  *estimated* from the top-k (``topk_entropy`` in ``search/model/entropy.py``: a lower bound, never above
  the truth). vLLM caps ``k`` at its ``--max-logprobs`` (default 20).
- ``rollouts``: ``max_tokens``, ``temperature`` (0 for greedy), ``top_p``, ``seed`` (row ``i`` gets
  ``seed + 1_000_003 * i``, as ``HFModel`` seeds its rows), ``stop`` (``GenerationParams.stop`` and
  any ``StopStrings`` go to the server). Stop conditions the server cannot evaluate (``TopLevelStop``,
  ``FunctionBodyEnd``, planners' own) run here: the rollout is generated in chunks (``first_chunk``
  tokens, doubling up to ``max_chunk``), each chunk a request on prefix + tokens so far (cheap: the
  server's prefix cache), and cut at the first token where a stop fires, as ``HFModel`` cuts it. A
  sampled rollout that needs chunks draws each chunk with its own derived seed.
  Output token ids come from the response, in this order of preference: ``choices[i].token_ids``
  (vLLM's ``return_token_ids``, and ``api/http/plain.py``), ``logprobs.tokens`` as ``"token_id:<id>"``
  (vLLM's ``return_tokens_as_token_ids``); there is no re-encoding of text, which would not
  round-trip at token boundaries. An EOS token at the end is stripped and ends the rollout with
  ``finish_reason="eos"``, as in-process. ``record_top_k`` uses ``logprobs=k`` on every step.
- beam: ``use_beam_search=true`` with ``n`` = beam width (vLLM); the best choice is taken and local
  stops cut its text afterwards. A server that refuses the field raises ``RemoteModelError``.
- ``continuation_logprobs``: ``echo=true, logprobs=0, max_tokens=1`` on prefix + continuation; the
  prompt's ``token_logprobs`` are read back (vLLM: ``prompt_logprobs`` computes the same).

Batched calls fan out as concurrent requests (the transport, ``search/model/remote_http.py``: at most
``max_concurrency`` in flight, retries with backoff, timeouts): ``next_token_dists`` sends its
prefixes as one multi-prompt request per ``prompts_per_request`` (the OpenAI list-of-prompts form;
one HTTP round trip for a whole batch), rollouts and continuations one request per row, all at once.

Spend: ``generated_tokens`` are the tokens the server generated (including any past a local
stop: the server did that work), ``processed_tokens`` the prompt tokens sent, ``reused_tokens``
what the server reports cached (vLLM ``prompt_tokens_details.cached_tokens``), ``forward_passes``
one per decoding step of the longest row of a call (a batched call's steps).

At connect (``RemoteModel.connect``) the client checks it talks to the same model and tokenizer:
``GET /v1/models`` must list the model name asked for, and the vocabulary must match the local
tokenizer, by the ``treedec.tokenizer_hash`` of ``api/http/plain.py``'s ``/v1/models`` when present,
else by tokenising a probe string through the server (``echo``) and comparing token ids.

The server URL and its options are parsed in ``search/model/remote_spec.py`` (with the local
tokenizer's loading), a completion choice is read back in ``search/model/remote_reply.py``.

>>> lm = RemoteModel.connect("http://127.0.0.1:8000", model="qwen2.5-coder-0.5b")  # doctest: +SKIP
>>> lm.next_token_dists([lm.encode("def add(a, b):")], k=5)[0].token_ids  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search.limits.stops import StopCondition, StopStrings, first_stop
from search.model.entropy import entropy_bounds, topk_dist, topk_entropy
from search.model.lm import (
    CallStats,
    DecodeMode,
    GenerationParams,
    ModelCounters,
    ModelIdentity,
    Rollout,
    RowSettings,
    TokenDist,
    per_prefix,
    position_stats_from_dists,
)
from search.model.remote_http import HttpTransport, RemoteModelError
from search.model.remote_reply import CompletionReply, ids_from_tokens, parse_choice
from search.model.remote_spec import NoTokenizer, RemoteSpec, load_tokenizer
from search.problems.prompting import TokenizerText

__all__ = [
    "RemoteModel",
    "RemoteModelError",
    "RemoteSpec",
    "entropy_bounds",
    "load_tokenizer",
    "topk_entropy",
]

PROBE_TEXT = "def probe(x):\n    return {'é': x ** 2, \"世界\": [1, 2]}  # 🙂\t\r\n"


class RemoteModel(TokenizerText):
    """A ``LanguageModel`` over an OpenAI-compatible ``/v1/completions`` server (see the module doc)."""

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        model: str,
        identity: ModelIdentity | None = None,
        *,
        eos_token_ids: Sequence[int] | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        max_concurrency: int = 64,
        first_chunk: int = 32,
        max_chunk: int = 256,
        max_logprobs: int = 20,
        prompts_per_request: int = 16,
    ) -> None:
        if max_retries < 0 or max_concurrency < 1 or first_chunk < 1 or max_chunk < first_chunk:
            raise ValueError("need max_retries >= 0, max_concurrency >= 1 and 1 <= first_chunk <= max_chunk")
        from search.model.hf import tokenizer_fingerprint

        self.base_url = base_url.rstrip("/")
        self.tokenizer = tokenizer
        self.model_name = model
        self.identity = identity or ModelIdentity(
            model, f"remote:{self.base_url}", tokenizer_fingerprint(tokenizer), "remote"
        )
        eos = set(eos_token_ids or ())
        if not eos and getattr(tokenizer, "eos_token_id", None) is not None:
            eos.add(int(tokenizer.eos_token_id))
        self.eos_token_ids = frozenset(eos)
        self.vocab_size = len(tokenizer)
        self.counters = ModelCounters()
        self.first_chunk, self.max_chunk, self.max_logprobs = first_chunk, max_chunk, max_logprobs
        self.prompts_per_request = max(1, prompts_per_request)
        self.http = HttpTransport(
            self.base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            max_concurrency=max_concurrency,
        )

    @property
    def http_requests(self) -> int:
        return self.http.requests

    @property
    def http_retries(self) -> int:
        return self.http.retries

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def connect(
        cls,
        base_url: str,
        model: str | None = None,
        tokenizer: str | Any | None = None,
        check_vocab: bool = True,
        **kwargs: Any,
    ) -> RemoteModel:
        """Connect and verify: the server must serve ``model`` (the only one it serves when None) and
        tokenise like the local ``tokenizer`` (a spec for ``load_tokenizer``; default: the model name)."""
        spec = RemoteSpec.parse(base_url)
        model = model or spec.model
        probe = cls(
            spec.base_url,
            NoTokenizer(),
            model or "?",
            ModelIdentity("?", "?", "?", "?"),
            max_retries=1,
            **{k: v for k, v in kwargs.items() if k in ("api_key", "connect_timeout_s")},
        )
        try:
            listing = probe.http.run(probe.http.get("/v1/models"))
        finally:
            probe.close()
        served = [m for m in listing.get("data", []) if isinstance(m, dict) and "id" in m]
        names = [str(m["id"]) for m in served]
        if model is None:
            if len(names) != 1:
                raise RemoteModelError(f"{spec.base_url} serves {names}; say which with model=<name>")
            model = names[0]
        if model not in names:
            raise RemoteModelError(
                f"{spec.base_url} serves {names}, not {model!r}: point treedec at the server "
                "of that model or pass its served name"
            )
        entry = served[names.index(model)]
        ext = entry.get("treedec") if isinstance(entry.get("treedec"), dict) else None
        tok = (
            tokenizer
            if tokenizer is not None and not isinstance(tokenizer, str)
            else load_tokenizer(str(tokenizer or spec.tokenizer or model))
        )
        identity = None
        if ext is not None and {"name", "revision", "tokenizer_hash", "dtype"} <= set(ext):
            identity = ModelIdentity(
                str(ext["name"]), str(ext["revision"]), str(ext["tokenizer_hash"]), str(ext["dtype"])
            )
            kwargs.setdefault("eos_token_ids", ext.get("eos_token_ids"))
            if ext.get("max_logprobs"):
                kwargs.setdefault("max_logprobs", int(ext["max_logprobs"]))
        if spec.api_key_env and "api_key" not in kwargs:
            import os

            kwargs["api_key"] = os.environ.get(spec.api_key_env)
        lm = cls(spec.base_url, tok, model, identity, **kwargs)
        try:
            if check_vocab:
                lm.check_vocabulary(ext)
        except BaseException:
            lm.close()
            raise
        return lm

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> RemoteModel:
        """``RemoteModel.connect`` on a model spec URL (what ``--model http://...`` resolves to)."""
        return cls.connect(spec, **kwargs)

    def check_vocabulary(self, ext: dict[str, Any] | None = None) -> None:
        """Refuse a server whose tokenizer differs from the local one (one-line error)."""
        from search.model.hf import tokenizer_fingerprint

        if ext is not None and ext.get("tokenizer_hash"):
            local = tokenizer_fingerprint(self.tokenizer)
            if ext["tokenizer_hash"] != local:
                raise RemoteModelError(
                    f"{self.base_url} model {self.model_name!r} has vocabulary fingerprint "
                    f"{ext['tokenizer_hash']}, the local tokenizer {local}: use the model's "
                    "own tokenizer (tokenizer=...)"
                )
            return
        local_ids = list(self.tokenizer.encode(PROBE_TEXT, add_special_tokens=True))
        body = {
            "model": self.model_name,
            "prompt": PROBE_TEXT,
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }
        data = self.http.run(self._post(body))
        choice = data["choices"][0]
        remote_ids = choice.get("prompt_token_ids")
        if remote_ids is None:
            tokens = (choice.get("logprobs") or {}).get("tokens") or []
            remote_ids = ids_from_tokens(tokens[: len(local_ids)])
        if remote_ids is None or list(remote_ids)[: len(local_ids)] != local_ids:
            raise RemoteModelError(
                f"{self.base_url} model {self.model_name!r} tokenises a probe string differently "
                "from the local tokenizer: use the model's own tokenizer (tokenizer=...)"
            )

    def close(self) -> None:
        self.http.close()

    # ----- protocol -----------------------------------------------------------------------
    def next_token_dists(
        self, prefixes: Sequence[Sequence[int]], k: int, stats: CallStats | None = None
    ) -> list[TokenDist]:
        stats = stats if stats is not None else CallStats()
        self._check_k(k)
        if any(not p for p in prefixes):
            raise ValueError("a prefix must have at least one token")

        async def group(chunk: list[tuple[int, ...]]) -> list[TokenDist]:
            prompt: list[Any] = list(chunk[0]) if len(chunk) == 1 else [list(p) for p in chunk]
            replies = await self._complete_all(
                {"prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": k}, len(chunk), stats
            )
            return [self._first_dist(r, k) for r in replies]

        def dists(unique: list[tuple[int, ...]]) -> list[TokenDist]:
            step = self.prompts_per_request
            chunks = [unique[i : i + step] for i in range(0, len(unique), step)]
            return [d for part in self.http.gather([group(c) for c in chunks]) for d in part]

        out = per_prefix(prefixes, dists)
        stats.forward_passes += 1
        self._count(stats)
        return out

    def rollouts(
        self,
        prefixes: Sequence[Sequence[int]],
        params: GenerationParams,
        stops: Sequence[StopCondition] = (),
        stats: CallStats | None = None,
        row_stops: Sequence[Sequence[StopCondition]] | None = None,
        *,
        rows: RowSettings | None = None,
    ) -> list[Rollout]:
        """``row_stops`` (one list per prefix) adds stops for that row only, and ``rows`` gives each
        row its own seed and length, as in ``HFModel``."""
        stats = stats if stats is not None else CallStats()
        if params.record_top_k:
            self._check_k(params.record_top_k)
        if any(not p for p in prefixes):
            raise ValueError("a prefix must have at least one token")
        from search.model.batching import _current_guard

        guard = _current_guard.get()
        base = list(stops) + ([StopStrings(params.stop)] if params.stop else [])
        ends = [base + (list(row_stops[i]) if row_stops is not None else []) for i in range(len(prefixes))]
        settings = rows if rows is not None else RowSettings.of(params, len(prefixes))
        passes = [0] * len(prefixes)

        async def one(i: int, prefix: Sequence[int]) -> Rollout:
            if params.mode == DecodeMode.beam and params.num_beams > 1:
                return await self._beam(list(prefix), params, ends[i], stats, passes, i)
            mine = params.model_copy(update={"max_new_tokens": settings.max_new_tokens[i]})
            return await self._generate(
                list(prefix), mine, ends[i], stats, passes, i, guard, settings.seeds[i]
            )

        out = self.http.gather([one(i, p) for i, p in enumerate(prefixes)])
        stats.forward_passes += max(passes, default=0)
        self._count(stats)
        return out

    def position_stats(
        self, tokens: Sequence[int], start: int, stats: CallStats | None = None
    ) -> list[tuple[float, bool]]:
        """Teacher forcing over a server: the next-token distribution of every prefix."""
        return position_stats_from_dists(self, tokens, start, stats)

    def continuation_logprobs(
        self,
        prefix: Sequence[int],
        continuations: Sequence[Sequence[int]],
        stats: CallStats | None = None,
    ) -> list[list[float]]:
        stats = stats if stats is not None else CallStats()
        if not prefix:
            raise ValueError("continuation_logprobs needs a non-empty prefix")
        n = len(prefix)

        async def one(cont: Sequence[int]) -> list[float]:
            if not cont:
                return []
            seq = list(prefix) + list(cont)
            data = await self._post(
                {
                    "prompt": seq,
                    "max_tokens": 1,
                    "temperature": 0,
                    "echo": True,
                    "logprobs": 0,
                    "return_tokens_as_token_ids": True,
                }
            )
            reply = parse_choice(data["choices"][0], data.get("usage") or {}, self.base_url)
            self._add_usage(stats, reply)
            lps = (data["choices"][0].get("logprobs") or {}).get("token_logprobs") or []
            out = lps[n : n + len(cont)]
            if len(out) != len(cont) or any(x is None for x in out):
                raise RemoteModelError(
                    f"{self.base_url} did not echo the prompt's log-probs (needs echo + logprobs)"
                )
            return [float(x) for x in out]

        result = self.http.gather([one(c) for c in continuations])
        stats.forward_passes += 1
        self._count(stats)
        return result

    # ----- decoding loops -----------------------------------------------------------------
    def _sampling_body(self, params: GenerationParams, seed: int | None) -> dict[str, Any]:
        if params.mode == DecodeMode.sample:
            body: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p}
            if seed is not None:
                body["seed"] = seed
            return body
        return {"temperature": 0}

    async def _generate(
        self,
        prefix: list[int],
        params: GenerationParams,
        stops: list[StopCondition],
        stats: CallStats,
        passes: list[int],
        row: int,
        guard: Any,
        base_seed: int | None,
    ) -> Rollout:
        server_stops = tuple(s for st in stops if isinstance(st, StopStrings) for s in st.strings)
        local_only = any(not isinstance(st, StopStrings) for st in stops)
        k = params.record_top_k
        gen: list[int] = []
        lps: list[float] = []
        dists: list[TokenDist] = []
        chunk = self.first_chunk if local_only else params.max_new_tokens
        part = 0
        while True:
            if guard is not None and (why := guard.reason()) is not None:
                return Rollout(gen, lps, self.decode(gen), why, dists if k else None)
            n_tok = min(chunk, params.max_new_tokens - len(gen))
            seed = (
                None if base_seed is None else (base_seed if part == 0 else (base_seed + 7919 * part) % 2**31)
            )
            body = {
                "prompt": prefix + gen,
                "max_tokens": n_tok,
                "logprobs": k,
                **self._sampling_body(params, seed),
            }
            if server_stops:
                body["stop"] = list(server_stops)
            reply = await self._complete(body)
            new_ids, eos = self._take(reply, stats, passes, row)
            start = len(gen)
            gen.extend(new_ids)
            lps.extend(reply.logprobs[: len(new_ids)])
            if k:
                dists.extend(self._dists(reply, k, len(reply.ids)))
            cut = self._first_cut(gen, start, stops)
            if cut is not None:
                end, text = cut
                return Rollout(gen[:end], lps[:end], text, "stop", dists[:end] if k else None)
            if eos or (reply.finish_reason == "stop" and reply.stop_reason is None):
                text = self.decode(gen)
                return Rollout(gen, lps, text, "eos", dists[: len(gen) + 1] if k else None)
            if reply.finish_reason == "stop":  # a server-side stop string the local check did not see
                return Rollout(gen, lps, self.decode(gen), "stop", dists if k else None)
            if len(gen) >= params.max_new_tokens or not new_ids:
                return Rollout(gen, lps, self.decode(gen), "length", dists if k else None)
            chunk = min(self.max_chunk, chunk * 2)
            part += 1

    def _first_cut(self, gen: list[int], start: int, stops: list[StopCondition]) -> tuple[int, str] | None:
        """Where in-process decoding would have stopped: the first token after ``start`` after which a
        stop fires on the decoded text, and the text cut there. Tokens before ``start`` were checked
        by the previous chunk; stops only fire more as text grows, so when the whole text has none,
        no shorter one has."""
        if not stops or len(gen) <= start or first_stop(self.decode(gen), stops) is None:
            return None
        for j in range(start + 1, len(gen) + 1):
            text = self.decode(gen[:j])
            cut = first_stop(text, stops)
            if cut is not None:
                return j, text[:cut]
        return None

    def _dists(self, reply: CompletionReply, k: int, count: int) -> list[TokenDist]:
        return [
            topk_dist(
                reply.tops[j] if j < len(reply.tops) else None,
                k,
                reply.entropies[j] if j < len(reply.entropies) else None,
                self.vocab_size,
            )
            for j in range(count)
        ]

    async def _beam(
        self,
        prefix: list[int],
        params: GenerationParams,
        stops: list[StopCondition],
        stats: CallStats,
        passes: list[int],
        row: int,
    ) -> Rollout:
        server_stops = [s for st in stops if isinstance(st, StopStrings) for s in st.strings]
        body: dict[str, Any] = {
            "prompt": prefix,
            "max_tokens": params.max_new_tokens,
            "temperature": 0,
            "use_beam_search": True,
            "n": params.num_beams,
            "logprobs": 0,
        }
        if server_stops:
            body["stop"] = server_stops
        try:
            reply = await self._complete(body)
        except RemoteModelError as e:
            raise RemoteModelError(
                f"{self.base_url} refused beam search ({e}); use mode=greedy or sample with this server"
            ) from e
        ids, eos = self._take(reply, stats, passes, row)
        lps = reply.logprobs[: len(ids)]
        cut = self._first_cut(ids, 0, stops)
        if cut is not None:
            return Rollout(ids[: cut[0]], lps[: cut[0]], cut[1], "stop")
        reason = "eos" if eos else ("stop" if reply.finish_reason == "stop" else "length")
        return Rollout(ids, lps, self.decode(ids), reason)

    # ----- HTTP ---------------------------------------------------------------------------
    def _check_k(self, k: int) -> None:
        if k < 1 or k > self.max_logprobs:
            raise RemoteModelError(
                f"top-k of {k} is outside 1..{self.max_logprobs}, the server's logprobs limit "
                "(vLLM: raise --max-logprobs)"
            )

    def _first_dist(self, reply: CompletionReply, k: int) -> TokenDist:
        if not (reply.tops and reply.tops[0]):
            raise RemoteModelError(f"{self.base_url} sent no top_logprobs for a next-token request")
        return self._dists(reply, k, 1)[0]

    async def _complete_all(
        self, body: dict[str, Any], count: int, stats: CallStats
    ) -> list[CompletionReply]:
        """One request with ``count`` prompts (n=1): a reply per prompt, in prompt order."""
        body = {"return_tokens_as_token_ids": True, "return_token_ids": True, **body}
        data = await self._post(body)
        choices = sorted(data.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if len(choices) != count:
            raise RemoteModelError(f"{self.base_url} answered {len(choices)} choices for {count} prompts")
        usage = data.get("usage") or {}
        none = {"prompt_tokens": 0, "completion_tokens": 0}
        replies = [parse_choice(c, none, self.base_url) for c in choices]
        stats.processed_tokens += int(usage.get("prompt_tokens") or 0)
        stats.generated_tokens += int(usage.get("completion_tokens") or sum(len(r.ids) for r in replies))
        stats.reused_tokens += int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        return replies

    async def _complete(self, body: dict[str, Any]) -> CompletionReply:
        body = {"return_tokens_as_token_ids": True, "return_token_ids": True, **body}
        data = await self._post(body)
        choices = data.get("choices") or []
        if not choices:
            raise RemoteModelError(f"{self.base_url} answered without choices")
        return parse_choice(choices[0], data.get("usage") or {}, self.base_url)

    def _take(
        self, reply: CompletionReply, stats: CallStats, passes: list[int], row: int
    ) -> tuple[list[int], bool]:
        """A generation reply's tokens without a final EOS, and whether it ended with one; its usage
        is added to ``stats`` and its decoding steps to row ``row``'s ``passes``."""
        self._add_usage(stats, reply)
        passes[row] += max(1, len(reply.ids))
        eos = bool(reply.ids) and reply.ids[-1] in self.eos_token_ids
        return (reply.ids[:-1] if eos else reply.ids), eos

    def _add_usage(self, stats: CallStats, reply: CompletionReply) -> None:
        stats.processed_tokens += reply.prompt_tokens
        stats.generated_tokens += reply.completion_tokens
        stats.reused_tokens += reply.cached_tokens

    def _count(self, stats: CallStats) -> None:
        self.counters.record(stats)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.http.post("/v1/completions", {"model": self.model_name, **body})
