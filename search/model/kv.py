"""A bounded cache of past key/values by token prefix, so extending a seen prefix costs only the
new tokens.

Attention is causal, so the keys/values of positions ``0..m-1`` depend only on tokens
``0..m-1``: an entry for tokens ``T`` serves any query that shares its first ``m`` tokens with
``T`` (sliced to ``m``). Lookup returns the longest such match over all entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]  # each [kv_heads, length, head_dim]


@dataclass
class KVEntry:
    tokens: np.ndarray
    layers: list[LayerKV]
    last_logits: torch.Tensor | None
    nbytes: int

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class PrefixKVCache:
    """LRU over KV entries, bounded in bytes. Thread-safe."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, KVEntry] = OrderedDict()
        self._next_id = 0
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tokens: Sequence[int]) -> tuple[int, KVEntry | None]:
        """The entry sharing the longest prefix with ``tokens`` and that length."""
        query = np.asarray(tokens, dtype=np.int64)
        best_len, best_id = 0, None
        with self._lock:
            for entry_id, entry in self._entries.items():
                m = _common_prefix(entry.tokens, query)
                # Prefer an exact match that carries the last logits.
                if m > best_len or (
                    m == best_len and m == entry.length and m == len(query) and entry.last_logits is not None
                ):
                    best_len, best_id = m, entry_id
            if best_id is None or best_len == 0:
                return 0, None
            self._entries.move_to_end(best_id)
            return best_len, self._entries[best_id]

    def put(self, tokens: Sequence[int], layers: list[LayerKV], last_logits: torch.Tensor | None) -> None:
        arr = np.asarray(tokens, dtype=np.int64)
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        nbytes += arr.nbytes + (
            last_logits.numel() * last_logits.element_size() if last_logits is not None else 0
        )
        if nbytes > self.max_bytes:
            return
        entry = KVEntry(arr, layers, last_logits, nbytes)
        with self._lock:
            # An entry that is a strict prefix of the new one is subsumed (its KV is a slice of ours).
            for entry_id in [
                i
                for i, e in self._entries.items()
                if e.length <= entry.length
                and _common_prefix(e.tokens, arr) == e.length
                and (e.length < entry.length or last_logits is not None)
            ]:
                self._bytes -= self._entries.pop(entry_id).nbytes
            self._entries[self._next_id] = entry
            self._next_id += 1
            self._bytes += nbytes
            while self._bytes > self.max_bytes and self._entries:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
