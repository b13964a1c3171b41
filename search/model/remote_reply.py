"""One ``/v1/completions`` choice read back: token ids, log-probs, top-k, entropies and usage.

Token ids come from ``choices[i].token_ids`` (vLLM's ``return_token_ids``, and ``api/http/plain.py``),
else from ``logprobs.tokens`` as ``"token_id:<id>"`` (vLLM's ``return_tokens_as_token_ids``).

>>> ids_from_tokens(["token_id:5", "token_id:17"])
[5, 17]
>>> top_from_json({"token_id:3": -0.5, "x": -1.0})
{3: -0.5}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from search.model.remote_http import RemoteModelError


@dataclass
class CompletionReply:
    """One choice of a completions reply: its tokens and their log-probs, and the reply's usage."""

    ids: list[int]
    logprobs: list[float]
    tops: list[dict[int, float] | None]
    entropies: list[float | None]
    finish_reason: str
    stop_reason: Any
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def parse_choice(choice: dict[str, Any], usage: dict[str, Any], server: str) -> CompletionReply:
    """A choice of ``server``'s reply (and the reply's ``usage``); ``RemoteModelError`` without token ids."""
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None:
        ids = ids_from_tokens(logprobs.get("tokens") or [])
        if ids is None:
            raise RemoteModelError(
                f"{server} returned no token ids (needs vLLM's return_token_ids or "
                "return_tokens_as_token_ids)"
            )
    ids = [int(t) for t in ids]
    token_lps = [float(x) if x is not None else 0.0 for x in (logprobs.get("token_logprobs") or [])]
    tops = [top_from_json(t) for t in (logprobs.get("top_logprobs") or [])]
    entropies = list(logprobs.get("entropy") or [])
    details = usage.get("prompt_tokens_details") or {}
    return CompletionReply(
        ids,
        token_lps,
        tops,
        entropies,
        str(choice.get("finish_reason") or "length"),
        choice.get("stop_reason"),
        int(usage.get("prompt_tokens") or 0),
        int(usage["completion_tokens"]) if "completion_tokens" in usage else len(ids),
        int(details.get("cached_tokens") or 0),
    )


def ids_from_tokens(tokens: Sequence[Any]) -> list[int] | None:
    """vLLM's ``return_tokens_as_token_ids`` tokens (``"token_id:123"``) as ids, else None."""
    out = []
    for t in tokens:
        if not isinstance(t, str) or not t.startswith("token_id:"):
            return None
        out.append(int(t.removeprefix("token_id:")))
    return out


def top_from_json(top: Any) -> dict[int, float] | None:
    if not isinstance(top, dict):
        return None
    out: dict[int, float] = {}
    for key, lp in top.items():
        if not isinstance(key, str) or not key.startswith("token_id:") or lp is None:
            continue
        out[int(key.removeprefix("token_id:"))] = float(lp)
    return out
