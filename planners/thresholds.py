"""Where AdaDec's learned entropy thresholds live, keyed by model identity and prompt style.

A thresholds file is a JSON object ``{identity.key(): entry}`` (completion style) or
``{identity.key() + ":" + style: entry}`` (other prompt styles: a chat turn shifts the model's
entropies, so each style is calibrated on its own); an entry holds the threshold
(``entropy_threshold``, nats) plus how it was made (``name``, ``revision``, ``source``,
``functions``, ``positions``, ``accuracy``, ``cutoff``, ``date`` ...), so a person can read it.

Lookup order: the user's file (``$TREEDEC_HOME/thresholds.json``, written by
``treedec calibrate``), then the file shipped with treedec (``planners/data/thresholds.json``).
An exact identity match wins; otherwise an entry for the same model name and revision (e.g.
calibrated in bf16, used in fp32) is taken.

>>> from search.model.lm import ModelIdentity
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

from search.model.lm import ModelIdentity

SHIPPED = Path(__file__).resolve().parent / "data" / "thresholds.json"


def user_file() -> Path:
    """The file ``treedec calibrate`` writes by default."""
    from search.model.bundled import treedec_home

    return treedec_home() / "thresholds.json"


def read_entries(path: Path) -> dict[str, dict[str, Any]]:
    """All entries of one thresholds file ({} if it does not exist)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a thresholds file must hold a JSON object keyed by model identity")
    return {k: v for k, v in data.items() if isinstance(v, dict) and "entropy_threshold" in v}


def entry_key(identity: ModelIdentity, prompt_style: str = "completion") -> str:
    return identity.key() if prompt_style == "completion" else f"{identity.key()}:{prompt_style}"


def find_entry(
    entries: dict[str, dict[str, Any]], identity: ModelIdentity, prompt_style: str = "completion"
) -> dict[str, Any] | None:
    """The entry for this model and style: exact identity, else same name and revision (another
    dtype)."""
    key = entry_key(identity, prompt_style)
    if key in entries:
        return entries[key]
    for entry in entries.values():
        if (
            entry.get("name") == identity.name
            and entry.get("revision") == identity.revision
            and entry.get("prompt_style", "completion") == prompt_style
        ):
            return entry
    return None


def lookup(
    identity: ModelIdentity, paths: list[Path] | None = None, prompt_style: str = "completion"
) -> dict[str, Any] | None:
    """The stored entry for a model and style, searching the user's file first, then the shipped one."""
    for path in paths if paths is not None else [user_file(), SHIPPED]:
        entry = find_entry(read_entries(path), identity, prompt_style)
        if entry is not None:
            return {**entry, "file": str(path)}
    return None


def write_entry(path: Path, identity: ModelIdentity, entry: dict[str, Any]) -> None:
    """Add or replace this model's entry (for the entry's ``prompt_style``), keeping the others;
    the file is replaced atomically."""
    entries = read_entries(path)
    entries[entry_key(identity, str(entry.get("prompt_style", "completion")))] = {
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
