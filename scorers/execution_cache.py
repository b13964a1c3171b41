"""Sandbox execution results kept in the partial-state cache (``NS_EXECUTION``), by a key that names
the program, what it ran against and the limits: read before a run, stored after it. A result
that does not parse (written by another build) is a miss; a sandbox failure is never stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sandbox.executor import ExecutionResult
from search.cache.store import NS_EXECUTION, Cache


def cached_results(cache: Cache | None, keys: Sequence[str]) -> dict[str, ExecutionResult]:
    """The results ``cache`` holds for ``keys`` (each key once)."""
    if cache is None or not keys:
        return {}
    unique = list(dict.fromkeys(keys))
    found: dict[str, ExecutionResult] = {}
    for key, raw in zip(unique, cache.get_many(NS_EXECUTION, unique), strict=True):
        if raw is not None:
            try:
                found[key] = ExecutionResult.model_validate_json(raw)
            except ValueError:
                pass
    return found


def store_results(cache: Cache | None, fresh: Mapping[str, ExecutionResult]) -> None:
    """Keep ``fresh`` results in ``cache``, all but the sandbox's own failures."""
    if cache is None:
        return
    storable = {
        k: r.model_dump_json().encode() for k, r in fresh.items() if r.program_status != "sandbox_error"
    }
    if storable:
        cache.set_many(NS_EXECUTION, storable)
