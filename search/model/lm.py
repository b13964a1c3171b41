"""The model layer every planner talks to, in token ids.

``LanguageModel`` is the protocol; backends live beside it (``search/model/hf.py`` runs a
transformers model in process, ``search/model/remote.py`` talks to an OpenAI-compatible server).
A planner never imports a backend: it gets one through ``SearchContext.lm``.

Every method takes an optional ``CallStats`` that the backend adds its work to (forward passes,
tokens run through the model, tokens generated); ``search/state/context.py`` turns those into the
search's spend.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from search.limits.stops import StopCondition

T = TypeVar("T")


@dataclass(frozen=True)
class ModelIdentity:
    """Everything that determines a model's outputs; part of every cache key."""

    name: str
    revision: str
    tokenizer_hash: str
    dtype: str

    def key(self) -> str:
        raw = f"{self.name}|{self.revision}|{self.tokenizer_hash}|{self.dtype}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass
class TokenDist:
    """Top-k of a next-token distribution, plus the entropy (nats) of the *full* distribution."""

    token_ids: list[int]
    logprobs: list[float]
    entropy: float

    def topk_softmax(self) -> list[float]:
        """Probabilities renormalised over the top-k only (PG-TD's P(a|s))."""
        m = max(self.logprobs)
        exps = [math.exp(lp - m) for lp in self.logprobs]
        z = sum(exps)
        return [e / z for e in exps]


class DecodeMode(str, Enum):
    greedy = "greedy"
    sample = "sample"
    beam = "beam"


class GenerationParams(BaseModel):
    """How to continue a prefix. Invalid values fail here, naming the field.

    >>> GenerationParams(mode="sample", temperature=0.8, seed=1).deterministic
    False
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_new_tokens: int = Field(256, ge=1, le=8192)
    mode: DecodeMode = DecodeMode.greedy
    temperature: float = Field(1.0, gt=0, le=10)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    num_beams: int = Field(4, ge=1, le=64)
    stop: tuple[str, ...] = ()
    record_top_k: int = Field(0, ge=0, le=100, description="record each step's top-k (tree cache)")

    @property
    def deterministic(self) -> bool:
        return self.mode != DecodeMode.sample

    def cache_part(self) -> str:
        return self.model_dump_json()


@dataclass
class Rollout:
    """What a continuation produced. ``text`` is cut at the stop; ``token_ids`` may run past it
    by the one token in which the stop began."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    step_dists: list[TokenDist] | None = None

    @property
    def sum_logprob(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean_logprob(self) -> float:
        return self.sum_logprob / max(1, len(self.logprobs))


@dataclass
class CallStats:
    """Work a backend did for one caller."""

    forward_passes: int = 0
    processed_tokens: int = 0
    generated_tokens: int = 0
    reused_tokens: int = 0
    calls: int = 0

    def add(self, other: CallStats) -> None:
        self.forward_passes += other.forward_passes
        self.processed_tokens += other.processed_tokens
        self.generated_tokens += other.generated_tokens
        self.reused_tokens += other.reused_tokens
        self.calls += other.calls


@dataclass
class ModelCounters:
    """Process-wide totals of a backend (for /metrics and benchmarks)."""

    stats: CallStats = field(default_factory=CallStats)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, stats: CallStats) -> None:
        """Count one finished call (``stats`` is its work) into the totals; safe from any thread."""
        stats.calls += 1
        with self._lock:
            self.stats.add(stats)


SEED_STRIDE = 1_000_003
"""Row ``i`` of a sampled call with seed ``s`` draws from a generator seeded ``s + SEED_STRIDE * i``."""


def row_seed(params: GenerationParams, row: int) -> int | None:
    """The seed of row ``row`` of a call with ``params`` (None: the call names no seed)."""
    return params.seed + SEED_STRIDE * row if params.seed is not None else None


@dataclass(frozen=True)
class RowSettings:
    """Per-row settings of one ``rollouts`` call, one entry per prefix: each row's sampling seed
    (None: a random one) and its cap on new tokens (at most the call's ``max_new_tokens``)."""

    seeds: tuple[int | None, ...]
    max_new_tokens: tuple[int, ...]

    @classmethod
    def of(cls, params: GenerationParams, n: int, caps: Sequence[int] | None = None) -> RowSettings:
        """The settings a call with ``params`` gives its ``n`` rows (``caps``: their own lengths)."""
        seeds = tuple(row_seed(params, i) for i in range(n))
        return cls(seeds, tuple(caps) if caps is not None else (params.max_new_tokens,) * n)

    def pick(self, indices: Sequence[int]) -> RowSettings:
        return RowSettings(
            tuple(self.seeds[i] for i in indices), tuple(self.max_new_tokens[i] for i in indices)
        )

    def __add__(self, other: RowSettings) -> RowSettings:
        return RowSettings(self.seeds + other.seeds, self.max_new_tokens + other.max_new_tokens)


@runtime_checkable
class LanguageModel(Protocol):
    """A causal language model seen in token ids.

    Every backend implements all of it (``search/model/hf.py``, ``search/model/remote.py``, the
    batching wrapper ``search/model/batching.py`` and the per-search view
    ``search/state/context.py``), so planners and scorers never probe a model for what it can do
    (docs/architecture.md names the few callers above them that still do).
    """

    identity: ModelIdentity
    eos_token_ids: frozenset[int]
    counters: ModelCounters

    @property
    def vocab_size(self) -> int:
        """How many token ids the model knows (valid ids are ``0 .. vocab_size - 1``)."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def chat_text(self, messages: Sequence[dict[str, str]]) -> str | None:
        """The chat template over ``messages`` with the assistant turn opened (None: no template)."""
        ...

    def next_token_dists(
        self, prefixes: Sequence[Sequence[int]], k: int, stats: CallStats | None = None
    ) -> list[TokenDist]: ...

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
        """Continue each prefix. ``stops`` apply to every row; ``row_stops`` (one list per prefix)
        add stops for that row only (the batching wrapper stops one caller's rows with them);
        ``rows`` gives each row its own seed and length (the batching wrapper merges the sampled
        calls of several callers, each row as its own call would have drawn it)."""
        ...

    def continuation_logprobs(
        self,
        prefix: Sequence[int],
        continuations: Sequence[Sequence[int]],
        stats: CallStats | None = None,
    ) -> list[list[float]]: ...

    def position_stats(
        self, tokens: Sequence[int], start: int, stats: CallStats | None = None
    ) -> list[tuple[float, bool]]:
        """Teacher forcing: for each position ``i >= start``, the entropy (nats) of the full
        next-token distribution after ``tokens[:i]`` and whether ``tokens[i]`` is its argmax."""
        ...


def position_stats_from_dists(
    lm: LanguageModel, tokens: Sequence[int], start: int, stats: CallStats | None = None, batch: int = 16
) -> list[tuple[float, bool]]:
    """``position_stats`` from the next-token distributions of every prefix, ``batch`` prefixes a
    call: for a backend without a one-pass teacher-forcing method."""
    if not 1 <= start < len(tokens):
        raise ValueError(f"position_stats needs 1 <= start < len(tokens), got {start} and {len(tokens)}")
    tokens = list(tokens)
    out: list[tuple[float, bool]] = []
    for lo in range(start, len(tokens), batch):
        prefixes = [tokens[:i] for i in range(lo, min(lo + batch, len(tokens)))]
        dists = lm.next_token_dists(prefixes, 1, stats)
        for i, dist in zip(range(lo, lo + len(prefixes)), dists, strict=True):
            out.append((dist.entropy, dist.token_ids[0] == tokens[i]))
    return out


def per_prefix(
    prefixes: Sequence[Sequence[int]], compute: Callable[[list[tuple[int, ...]]], list[T]]
) -> list[T]:
    """``compute`` once over the distinct prefixes (in first-seen order), answered per prefix.

    >>> per_prefix([[1], [2], [1]], lambda unique: [sum(p) * 10 for p in unique])
    [10, 20, 10]
    """
    unique = list(dict.fromkeys(tuple(p) for p in prefixes))
    by_prefix = dict(zip(unique, compute(unique), strict=True))
    return [by_prefix[tuple(p)] for p in prefixes]


class ModelWrapper:
    """What a wrapper of a model (``BatchingLM``, ``MeteredLM``) takes from the model as it is:
    identity, EOS ids, counters, vocabulary size and the text edges."""

    def __init__(self, inner: LanguageModel) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.eos_token_ids = inner.eos_token_ids
        self.counters = inner.counters
        self.vocab_size = inner.vocab_size

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.inner.decode(token_ids)

    def chat_text(self, messages: Sequence[dict[str, str]]) -> str | None:
        return self.inner.chat_text(messages)
