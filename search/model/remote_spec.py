"""What a remote model spec names: the server and its options (``RemoteSpec``), and the local
tokenizer a ``RemoteModel`` needs (``load_tokenizer``).

>>> RemoteSpec.parse("http://127.0.0.1:8000/v1?model=qwen&tokenizer=qwen2.5-coder-0.5b").model
'qwen'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from search.model.remote_http import RemoteModelError


@dataclass(frozen=True)
class RemoteSpec:
    """``http(s)://host:port[/v1][?model=NAME&tokenizer=SPEC&api_key_env=VAR]`` taken apart."""

    base_url: str
    model: str | None = None
    tokenizer: str | None = None
    api_key_env: str | None = None

    @classmethod
    def parse(cls, spec: str) -> RemoteSpec:
        parts = urlsplit(spec)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RemoteModelError(f"not a server URL: {spec!r} (expected http(s)://host:port[?model=...])")
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - {"model", "tokenizer", "api_key_env"}
        if unknown:
            raise RemoteModelError(
                f"unknown option {sorted(unknown)[0]!r} in {spec!r}; known: model, tokenizer, api_key_env"
            )
        path = parts.path.rstrip("/").removesuffix("/v1")
        base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        return cls(base, query.get("model"), query.get("tokenizer"), query.get("api_key_env"))


def load_tokenizer(spec: str) -> Any:
    """The local tokenizer: a bundled model's (``search.model.bundled.tokenizer_dir``), a path,
    or a hub id."""
    from transformers import AutoTokenizer

    from search.model.bundled import canonical_name, tokenizer_dir

    source: str | Path = tokenizer_dir(spec) if canonical_name(spec) is not None else spec
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as e:
        raise RemoteModelError(
            f"cannot load the tokenizer {spec!r} ({str(e).splitlines()[0]}); pass "
            "tokenizer=<bundled name, model directory or hub id>"
        ) from e


class NoTokenizer:
    """Stands in for a tokenizer while only ``GET /v1/models`` is asked."""

    eos_token_id = None

    def __len__(self) -> int:
        return 0

    def get_vocab(self) -> dict[str, int]:
        return {}
