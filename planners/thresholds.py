"""Where AdaDec's learned entropy thresholds live, keyed by model identity.

A thresholds file is a JSON object ``{identity.key(): entry}``; an entry holds the threshold
(``entropy_threshold``, nats) plus how it was made (``name``, ``revision``, ``source``,
``functions``, ``positions``, ``accuracy``, ``cutoff``, ``date`` ...), so a person can read it.

Lookup order: the user's file (``$TREEDEC_HOME/thresholds.json``, written by
``treedec calibrate``), then the file shipped with treedec (``search/data/thresholds.json``).
An exact identity match wins; otherwise an entry for the same model name and revision (e.g.
calibrated in bf16, used in fp32) is taken.

>>> from search.lm import ModelIdentity
>>> ident = ModelIdentity("m", "r1", "tok", "bfloat16")
>>> entries = {ident.key(): {"name": "m", "revision": "r1", "entropy_threshold": 1.2}}
>>> find_entry(entries, ident)["entropy_threshold"]
1.2
>>> find_entry(entries, ModelIdentity("m", "r1", "tok", "float32"))["entropy_threshold"]
1.2
>>> find_entry(entries, ModelIdentity("other", "r1", "tok", "bfloat16")) is None
True
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from search.lm import ModelIdentity

SHIPPED = Path(__file__).resolve().parent.parent / "search" / "data" / "thresholds.json"


def user_file() -> Path:
    """The file ``treedec calibrate`` writes by default."""
    from search.models import treedec_home

    return treedec_home() / "thresholds.json"


def read_entries(path: Path) -> dict[str, dict[str, Any]]:
    """All entries of one thresholds file ({} if it does not exist)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a thresholds file must hold a JSON object keyed by model identity")
    return {k: v for k, v in data.items() if isinstance(v, dict) and "entropy_threshold" in v}


def find_entry(entries: dict[str, dict[str, Any]], identity: ModelIdentity) -> dict[str, Any] | None:
    """The entry for this model: exact identity, else same name and revision (another dtype)."""
    if identity.key() in entries:
        return entries[identity.key()]
    for entry in entries.values():
        if entry.get("name") == identity.name and entry.get("revision") == identity.revision:
            return entry
    return None


def lookup(identity: ModelIdentity, paths: list[Path] | None = None) -> dict[str, Any] | None:
    """The stored entry for a model, searching the user's file first, then the shipped one."""
    for path in paths if paths is not None else [user_file(), SHIPPED]:
        entry = find_entry(read_entries(path), identity)
        if entry is not None:
            return {**entry, "file": str(path)}
    return None


def write_entry(path: Path, identity: ModelIdentity, entry: dict[str, Any]) -> None:
    """Add or replace this model's entry, keeping the others; the file is replaced atomically."""
    entries = read_entries(path)
    entries[identity.key()] = {
        "name": identity.name,
        "revision": identity.revision,
        "dtype": identity.dtype,
        **entry,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".thresholds-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(entries, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
