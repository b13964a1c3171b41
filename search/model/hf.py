"""``HFModel``: a transformers causal LM in process, with KV reuse across calls.

Batches of prefixes of different lengths run as one forward pass: each row's reused past
keys/values are left-padded to a common length, its new tokens are left-padded too, and a 4-D
boolean attention mask (key valid and causal) plus explicit position ids make the padding
invisible. After a call, each row's keys/values are kept in a ``PrefixKVCache`` so the next call
on an extension of that prefix runs only the new tokens.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search.limits.stops import StopCondition, StopStrings, first_stop
from search.model.kv import LayerKV, PrefixKVCache
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
)
from search.model.sampling import choose_tokens, row_generators
from search.model.weights import activation_dtype, identity_dtype, load_quantized, pick_device, resolve_format
from search.problems.prompting import TokenizerText

log = logging.getLogger("treedec.lm")


@dataclass
class _Batch:
    """A running batch: its cache, which cache slots are real, and each row's next position."""

    cache: Any
    kv_valid: torch.Tensor  # [B, T] bool
    next_pos: torch.Tensor  # [B] long
    last_logits: torch.Tensor  # [B, V] float32
    fresh: bool = True  # False when served entirely from the KV cache (nothing new to store)


class HFModel(TokenizerText):
    """A ``LanguageModel`` over a transformers ``AutoModelForCausalLM``."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        identity: ModelIdentity,
        kv_cache_bytes: int = 1 << 30,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.identity = identity
        self.device = next(model.parameters()).device
        self.kv = PrefixKVCache(kv_cache_bytes)
        self.counters = ModelCounters()
        self.lock = threading.RLock()
        eos = set()
        for source in (
            getattr(tokenizer, "eos_token_id", None),
            getattr(model.generation_config, "eos_token_id", None),
        ):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, (list, tuple)):
                eos.update(int(x) for x in source)
        self.eos_token_ids = frozenset(eos)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._config = model.config
        self.vocab_size = max(len(tokenizer), int(model.config.vocab_size))

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str | None = None,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        kv_cache_bytes: int = 1 << 30,
    ) -> HFModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = pick_device(device)
        fmt = resolve_format(dev, dtype)
        dt = activation_dtype(fmt)
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dt, attn_implementation="sdpa")
        model.to(dev)  # type: ignore[arg-type]
        revision = revision or _dir_fingerprint(Path(path))
        load_quantized(model, fmt, name or Path(path).name, revision)
        identity = ModelIdentity(
            name=name or Path(path).name,
            revision=revision,
            tokenizer_hash=tokenizer_fingerprint(tok),
            dtype=identity_dtype(fmt),
        )
        return cls(model, tok, identity, kv_cache_bytes=kv_cache_bytes)

    # ----- protocol -----------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_dists(
        self, prefixes: Sequence[Sequence[int]], k: int, stats: CallStats | None = None
    ) -> list[TokenDist]:
        stats = stats if stats is not None else CallStats()

        def dists(unique: list[tuple[int, ...]]) -> list[TokenDist]:
            with self.lock:
                batch = self._prefill([list(p) for p in unique], stats)
                self._store_rows(batch, [list(p) for p in unique])
                logp = torch.log_softmax(batch.last_logits, dim=-1)
                return _topk_dists(logp, k)

        out = per_prefix(prefixes, dists)
        self._count(stats)
        return out

    @torch.inference_mode()
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
        """``row_stops`` (optional, one list per prefix) adds stop conditions that apply to that row
        only: the batching wrapper (search/model/batching.py) uses it to stop one caller's rows;
        ``rows`` gives each row its own seed and length (a row ends at its own cap)."""
        stats = stats if stats is not None else CallStats()
        all_stops = list(stops) + ([StopStrings(params.stop)] if params.stop else [])
        extra = [list(r) for r in row_stops] if row_stops is not None else None
        with self.lock:
            if params.mode == DecodeMode.beam and params.num_beams > 1:
                out = [
                    self._beam(list(p), params, all_stops + (extra[i] if extra else []), stats)
                    for i, p in enumerate(prefixes)
                ]
            else:
                out = self._generate([list(p) for p in prefixes], params, all_stops, stats, extra, rows)
        self._count(stats)
        return out

    @torch.inference_mode()
    def continuation_logprobs(
        self,
        prefix: Sequence[int],
        continuations: Sequence[Sequence[int]],
        stats: CallStats | None = None,
    ) -> list[list[float]]:
        stats = stats if stats is not None else CallStats()
        if not prefix:
            raise ValueError("continuation_logprobs needs a non-empty prefix")
        seqs = [list(prefix) + list(c) for c in continuations]
        with self.lock:
            logits, starts = self._forward_all_logits(seqs, stats, len(prefix))
        out: list[list[float]] = []
        for row, cont in enumerate(continuations):
            lps = []
            for j, tok in enumerate(cont):
                pos = len(prefix) - 1 + j - starts[row]
                lps.append(float(torch.log_softmax(logits[row, pos].float(), -1)[tok]))
            out.append(lps)
        self._count(stats)
        return out

    @torch.inference_mode()
    def position_stats(
        self, tokens: Sequence[int], start: int, stats: CallStats | None = None
    ) -> list[tuple[float, bool]]:
        """Teacher forcing in one forward pass: for each position ``i >= start``, the entropy
        (nats) of the full next-token distribution after ``tokens[:i]`` and whether ``tokens[i]``
        is its argmax (AdaDec's calibration data)."""
        stats = stats if stats is not None else CallStats()
        if not 1 <= start < len(tokens):
            raise ValueError(
                f"position_stats needs 1 <= start < len(tokens), got start={start}, len={len(tokens)}"
            )
        seq = list(tokens)
        with self.lock:
            logits, starts = self._forward_all_logits([seq], stats, start)
        first = start - 1 - starts[0]  # the logits row that predicts tokens[start]
        rows = logits[0, first : first + len(seq) - start].float()
        logp = torch.log_softmax(rows, dim=-1)
        entropy = -(logp.exp() * logp).nan_to_num(0.0).sum(-1)
        top1 = rows.argmax(dim=-1).cpu() == torch.tensor(seq[start:], dtype=torch.long)
        self._count(stats)
        return list(zip(entropy.tolist(), top1.tolist(), strict=True))

    # ----- batching core ------------------------------------------------------------------
    def _plan_reuse(self, seqs: list[list[int]]) -> list[tuple[int, Any]]:
        plans = []
        for seq in seqs:
            m, entry = self.kv.longest(seq)
            plans.append((m, entry))
        return plans

    def _prefill(self, seqs: list[list[int]], stats: CallStats) -> _Batch:
        """Run each sequence up to its end; reuse cached KV; return a batch ready to extend."""
        if any(len(s) == 0 for s in seqs):
            raise ValueError("a prefix must have at least one token")
        unique = list({tuple(s): s for s in seqs}.values())
        if len(unique) < len(seqs):
            # Rows that repeat a prefix (N samples of one prompt) share one prefill: run each
            # distinct prefix once, keep its KV, then build the batch from the cache.
            first = self._prefill(unique, stats)
            self._store_rows(first, unique)
        plans = self._plan_reuse(seqs)
        reuse = []
        for seq, (m, entry) in zip(seqs, plans, strict=True):
            exact = entry is not None and m == len(seq) == entry.length and entry.last_logits is not None
            reuse.append(len(seq) if exact else min(m, len(seq) - 1))
        if all(r == len(s) for r, s in zip(reuse, seqs, strict=True)):
            # Every row is fully cached with its logits: no forward pass at all.
            return self._batch_from_cache(seqs, plans, stats)
        reuse = [min(r, len(s) - 1) for r, s in zip(reuse, seqs, strict=True)]
        return self._run(seqs, plans, reuse, stats, keep_all_logits=False)[0]

    def _batch_from_cache(
        self, seqs: list[list[int]], plans: list[tuple[int, Any]], stats: CallStats
    ) -> _Batch:
        length = max(len(s) for s in seqs)
        layers = self._assemble_past([(len(s), e) for s, (_, e) in zip(seqs, plans, strict=True)], length)
        kv_valid = torch.zeros(len(seqs), length, dtype=torch.bool, device=self.device)
        for b, s in enumerate(seqs):
            kv_valid[b, length - len(s) :] = True
        stats.reused_tokens += sum(len(s) for s in seqs)
        logits = torch.stack([e.last_logits for _, e in plans]).to(self.device)
        return _Batch(
            self._make_cache(layers),
            kv_valid,
            torch.tensor([len(s) for s in seqs], device=self.device),
            logits,
            fresh=False,
        )

    def _run(
        self,
        seqs: list[list[int]],
        plans: list[tuple[int, Any]],
        reuse: list[int],
        stats: CallStats,
        keep_all_logits: bool,
    ) -> tuple[_Batch, torch.Tensor | None]:
        bsz = len(seqs)
        r_max = max(reuse)
        new = [s[r:] for s, r in zip(seqs, reuse, strict=True)]
        n_max = max(len(n) for n in new)
        layers = self._assemble_past([(r, e) for r, (_, e) in zip(reuse, plans, strict=True)], r_max)
        input_ids = torch.full((bsz, n_max), self.pad_id, dtype=torch.long)
        positions = torch.zeros((bsz, n_max), dtype=torch.long)
        kv_valid = torch.zeros((bsz, r_max + n_max), dtype=torch.bool)
        for b, (r, toks) in enumerate(zip(reuse, new, strict=True)):
            n = len(toks)
            input_ids[b, n_max - n :] = torch.tensor(toks, dtype=torch.long)
            positions[b, n_max - n :] = torch.arange(r, r + n)
            kv_valid[b, r_max - r : r_max] = True
            kv_valid[b, r_max + n_max - n :] = True
        input_ids, positions, kv_valid = (t.to(self.device) for t in (input_ids, positions, kv_valid))
        causal = torch.ones((n_max, r_max + n_max), dtype=torch.bool, device=self.device).tril(r_max)
        mask = kv_valid[:, None, None, :] & causal[None, None]
        # Padding queries see only themselves, so no row of the mask is empty (no NaN).
        eye = torch.arange(n_max, device=self.device)
        mask[:, 0, eye, r_max + eye] = True
        cache = self._make_cache(layers)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=0 if keep_all_logits else 1,
            **{self._cache_arg: cache},
        )
        stats.forward_passes += 1
        stats.processed_tokens += sum(len(n) for n in new)
        stats.reused_tokens += sum(reuse)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        logits = out.logits
        batch = _Batch(
            cache,
            kv_valid,
            torch.tensor([len(s) for s in seqs], device=self.device),
            logits[:, -1, :].float(),
        )
        return batch, (logits if keep_all_logits else None)

    def _forward_all_logits(
        self, seqs: list[list[int]], stats: CallStats, prefix_len: int
    ) -> tuple[torch.Tensor, list[int]]:
        """Logits at every new position; returns them and, per row, the first position they cover."""
        plans = self._plan_reuse(seqs)
        # Only the prefix may be reused (minus its last token): continuation logits must be computed.
        reuse = [min(m, prefix_len - 1) for m, _ in plans]
        batch, logits = self._run(seqs, plans, reuse, stats, keep_all_logits=True)
        assert logits is not None
        n_max = logits.shape[1]
        starts = [r - (n_max - (len(s) - r)) for s, r in zip(seqs, reuse, strict=True)]
        return logits, starts

    def _assemble_past(self, rows: list[tuple[int, Any]], length: int) -> list[LayerKV] | None:
        if length == 0:
            return None
        n_layers = self._config.num_hidden_layers
        template = next(e for r, e in rows if r > 0 and e is not None)
        k0 = template.layers[0][0]
        heads, dim = k0.shape[0], k0.shape[2]
        layers: list[LayerKV] = []
        for layer in range(n_layers):
            keys = torch.zeros((len(rows), heads, length, dim), dtype=k0.dtype, device=self.device)
            values = torch.zeros_like(keys)
            for b, (r, entry) in enumerate(rows):
                if r > 0:
                    ek, ev = entry.layers[layer]
                    keys[b, :, length - r :] = ek[:, :r]
                    values[b, :, length - r :] = ev[:, :r]
            layers.append((keys, values))
        return layers

    def _make_cache(self, layers: list[LayerKV] | None) -> Any:
        from transformers import DynamicCache

        if layers is None:
            return DynamicCache(config=self._config)
        return DynamicCache(ddp_cache_data=layers, config=self._config)

    def _store_rows(self, batch: _Batch, seqs: list[list[int]], rows: Sequence[int] | None = None) -> None:
        """Keep each row's KV (only its real slots) for later reuse."""
        if not batch.fresh:
            return
        rows = range(len(seqs)) if rows is None else rows
        for b, seq in zip(rows, seqs, strict=True):
            idx = batch.kv_valid[b].nonzero().squeeze(-1)
            if idx.numel() != len(seq):
                continue
            layers = [
                (lay.keys[b].index_select(1, idx).clone(), lay.values[b].index_select(1, idx).clone())
                for lay in batch.cache.layers
            ]
            self.kv.put(seq, layers, batch.last_logits[b].detach().clone().cpu())

    def _step(self, batch: _Batch, tokens: torch.Tensor, stats: CallStats) -> None:
        bsz = tokens.shape[0]
        batch.kv_valid = torch.cat(
            [batch.kv_valid, torch.ones((bsz, 1), dtype=torch.bool, device=self.device)], dim=1
        )
        mask = batch.kv_valid[:, None, None, :]
        out = self.model(
            input_ids=tokens.view(bsz, 1),
            attention_mask=mask,
            position_ids=batch.next_pos.view(bsz, 1),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: batch.cache},
        )
        batch.next_pos = batch.next_pos + 1
        batch.last_logits = out.logits[:, -1, :].float()
        stats.forward_passes += 1
        stats.processed_tokens += bsz

    def _select(self, batch: _Batch, keep: torch.Tensor) -> None:
        batch.cache.batch_select_indices(keep)
        batch.kv_valid = batch.kv_valid.index_select(0, keep)
        batch.next_pos = batch.next_pos.index_select(0, keep)
        batch.last_logits = batch.last_logits.index_select(0, keep)

    # ----- decoding loops -----------------------------------------------------------------
    def _generate(
        self,
        prefixes: list[list[int]],
        params: GenerationParams,
        stops: list[StopCondition],
        stats: CallStats,
        row_stops: list[list[StopCondition]] | None = None,
        rows: RowSettings | None = None,
    ) -> list[Rollout]:
        batch = self._prefill(prefixes, stats)
        self._store_rows(batch, prefixes)
        n = len(prefixes)
        caps = list(rows.max_new_tokens) if rows is not None else [params.max_new_tokens] * n
        gens: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        dists: list[list[TokenDist]] = [[] for _ in range(n)]
        results: list[Rollout | None] = [None] * n
        active = list(range(n))  # batch row -> original index
        generators = row_generators(params, n, self.device, rows.seeds if rows is not None else None)
        for _ in range(max(caps, default=0)):
            logp = torch.log_softmax(batch.last_logits, dim=-1)
            chosen = choose_tokens(
                batch.last_logits, logp, params, [generators[i] for i in active] if generators else None
            )
            if params.record_top_k:
                step_d = _topk_dists(logp, params.record_top_k)
            chosen_list = chosen.tolist()
            chosen_lp = logp.gather(1, chosen.view(-1, 1)).squeeze(1).tolist()
            finished_rows = []
            for row, orig in enumerate(active):
                tok = chosen_list[row]
                if params.record_top_k:
                    dists[orig].append(step_d[row])
                row_rule = stops + row_stops[orig] if row_stops else stops
                if tok in self.eos_token_ids:
                    results[orig] = self._finish(gens[orig], lps[orig], dists[orig], "eos", row_rule, params)
                    finished_rows.append(row)
                    continue
                gens[orig].append(tok)
                lps[orig].append(chosen_lp[row])
                stats.generated_tokens += 1
                text = self.decode(gens[orig])
                cut = first_stop(text, row_rule)
                if cut is not None:
                    results[orig] = Rollout(
                        gens[orig],
                        lps[orig],
                        text[:cut],
                        "stop",
                        dists[orig] if params.record_top_k else None,
                    )
                    finished_rows.append(row)
                elif len(gens[orig]) >= caps[orig]:
                    results[orig] = Rollout(
                        gens[orig], lps[orig], text, "length", dists[orig] if params.record_top_k else None
                    )
                    finished_rows.append(row)
            if finished_rows:
                done = set(finished_rows)
                self._store_finished(batch, prefixes, gens, active, finished_rows)
                keep = [row for row in range(len(active)) if row not in done]
                if not keep:
                    break
                chosen = chosen[torch.tensor(keep, device=self.device)]
                self._select(batch, torch.tensor(keep, device=self.device))
                active = [active[row] for row in keep]
            batch.fresh = True
            self._step(batch, chosen, stats)
        return [
            r
            if r is not None
            else Rollout(
                gens[i], lps[i], self.decode(gens[i]), "length", dists[i] if params.record_top_k else None
            )
            for i, r in enumerate(results)
        ]

    def _store_finished(
        self,
        batch: _Batch,
        prefixes: list[list[int]],
        gens: list[list[int]],
        active: list[int],
        rows: list[int],
    ) -> None:
        """Keep the KV of finished rows: the prefix and the generated tokens already fed."""
        counts = batch.kv_valid.sum(dim=1).tolist()
        seqs = [(prefixes[active[row]] + gens[active[row]])[: int(counts[row])] for row in rows]
        self._store_rows(batch, seqs, rows)

    def _finish(
        self,
        gen: list[int],
        lp: list[float],
        dists: list[TokenDist],
        reason: str,
        stops: list[StopCondition],
        params: GenerationParams,
    ) -> Rollout:
        text = self.decode(gen)
        cut = first_stop(text, stops)
        return Rollout(
            gen,
            lp,
            text if cut is None else text[:cut],
            reason if cut is None else "stop",
            dists if params.record_top_k else None,
        )

    def _beam(
        self, prefix: list[int], params: GenerationParams, stops: list[StopCondition], stats: CallStats
    ) -> Rollout:
        """Beam search on one prefix (length-normalised scores)."""
        nb = params.num_beams
        batch = self._prefill([prefix], stats)
        self._store_rows(batch, [prefix])
        beams: list[tuple[list[int], list[float], float]] = [([], [], 0.0)]
        finished: list[tuple[float, list[int], list[float], str, str]] = []
        for step in range(params.max_new_tokens):
            logp = torch.log_softmax(batch.last_logits, dim=-1)
            scores = torch.tensor([b[2] for b in beams], device=self.device)[:, None] + logp
            top = torch.topk(scores.view(-1), min(2 * nb, scores.numel()))
            vocab = logp.shape[1]
            next_beams: list[tuple[list[int], list[float], float]] = []
            src_rows: list[int] = []
            next_tokens: list[int] = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, tok = divmod(flat, vocab)
                toks, lps, _ = beams[row]
                tok_lp = float(logp[row, tok])
                if tok in self.eos_token_ids:
                    text = self.decode(toks)
                    cut = first_stop(text, stops)
                    finished.append(
                        (score / max(1, len(toks)), toks, lps, text if cut is None else text[:cut], "eos")
                    )
                    continue
                new_toks, new_lps = toks + [tok], lps + [tok_lp]
                text = self.decode(new_toks)
                cut = first_stop(text, stops)
                stats.generated_tokens += 1
                if cut is not None:
                    finished.append((score / len(new_toks), new_toks, new_lps, text[:cut], "stop"))
                    continue
                next_beams.append((new_toks, new_lps, score))
                src_rows.append(row)
                next_tokens.append(tok)
                if len(next_beams) == nb:
                    break
            best_active = max((b[2] / len(b[0]) for b in next_beams), default=float("-inf"))
            if not next_beams or (len(finished) >= nb and max(f[0] for f in finished) >= best_active):
                break
            if step == params.max_new_tokens - 1:
                for toks, lps, score in next_beams:
                    finished.append((score / len(toks), toks, lps, self.decode(toks), "length"))
                break
            self._select(batch, torch.tensor(src_rows, device=self.device))
            batch.fresh = True
            beams = next_beams
            self._step(batch, torch.tensor(next_tokens, device=self.device), stats)
        if not finished:
            return Rollout([], [], "", "length")
        best = max(finished, key=lambda f: f[0])
        return Rollout(best[1], best[2], best[3], best[4])

    def _count(self, stats: CallStats) -> None:
        self.counters.record(stats)


def _topk_dists(logp: torch.Tensor, k: int) -> list[TokenDist]:
    k = min(k, logp.shape[-1])
    top = torch.topk(logp, k, dim=-1)
    entropy = -(logp.exp() * logp).nan_to_num(0.0).sum(-1)
    return [
        TokenDist(ids, lps, float(h))
        for ids, lps, h in zip(top.indices.tolist(), top.values.tolist(), entropy.tolist(), strict=True)
    ]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    payload = "\n".join(f"{t}\t{i}" for t, i in sorted(vocab.items(), key=lambda kv: kv[1]))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _dir_fingerprint(path: Path) -> str:
    marker = path / "treedec-revision.txt"
    if marker.exists():
        return marker.read_text().strip()
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]
