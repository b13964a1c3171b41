"""Load a model spec as a ``LanguageModel``: a bundled name, a path or a hub id in process
(``search/model/hf.py``), or an ``http(s)://`` URL of an OpenAI-compatible server
(``search/model/remote.py``).

It sits above the registry (``search/model/bundled.py``) and both backends, so the backends can ask the
registry for a bundled model's tokenizer without importing what chooses between them.
"""

from __future__ import annotations

from typing import Any

from search.model.bundled import DEFAULT_MODEL, ModelError, ProgressFn, resolve


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "auto",
    progress: ProgressFn | None = None,
    kv_cache_bytes: int = 1 << 30,
) -> Any:
    """Resolve and load a model as an ``HFModel``; an ``http(s)://`` spec connects a ``RemoteModel``
    (an OpenAI-compatible server, see search/model/remote.py) instead."""
    if spec.startswith(("http://", "https://")):
        from search.model.remote import RemoteModel, RemoteModelError

        try:
            return RemoteModel.from_spec(spec)
        except RemoteModelError as e:
            raise ModelError(str(e)) from e
    from search.model.hf import HFModel  # torch is imported only for a model run in process

    resolved = resolve(spec, progress)
    try:
        return HFModel.load(
            resolved.path,
            name=resolved.name,
            revision=resolved.revision,
            device=device,
            dtype=dtype,
            kv_cache_bytes=kv_cache_bytes,
        )
    except OSError as e:
        raise ModelError(f"cannot load model {spec!r}: {str(e).splitlines()[0]}") from e
