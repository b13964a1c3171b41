"""How a queued job is written in Redis and read back: its spec, its result, its events and its
record (the job hash), as JSON; reading never unpickles.

The JSON forms are those of ``api.core.contracts`` (``SolveSpec.to_json``, ``SolveReport.to_json``), so
records written before the typed contracts read the same.
"""

from __future__ import annotations

import json
import time
from typing import Any

from api.core.contracts import SolveReport, SolveSpec


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_record(raw: dict[Any, Any]) -> dict[str, str]:
    """A job hash as Redis returns it, as text."""
    return {text(k): text(v) for k, v in raw.items()}


def spec_to_json(spec: SolveSpec) -> dict[str, Any]:
    """A job spec in JSON form (a record's ``spec``)."""
    return spec.to_json()


def spec_from_json(data: dict[str, Any]) -> SolveSpec:
    return SolveSpec.from_json(data)


def encode_spec(spec: SolveSpec) -> str:
    return json.dumps(spec.to_json())


def decode_spec(raw: str) -> SolveSpec:
    return SolveSpec.from_json(json.loads(raw))


def encode_result(result: SolveReport | None) -> str:
    """A record's ``result`` ("" for none)."""
    return json.dumps(result.to_json(), default=str) if result is not None else ""


def decode_result(raw: str | None) -> SolveReport | None:
    return SolveReport.model_validate(json.loads(raw)) if raw else None


def encode_event(event: dict[str, Any], created: float) -> str:
    """One progress event as stored, stamped with ``t`` (seconds since the job was created)."""
    return json.dumps({"t": round(time.time() - created, 3), **event}, default=str)


def decode_events(raw: list[Any], start: int) -> list[dict[str, Any]]:
    """Stored events from index ``start`` on, each with its ``seq`` (its index in the list)."""
    return [{"seq": start + i, **json.loads(item)} for i, item in enumerate(raw)]
