"""The planner registry: one place that feeds the CLI, the REST API and the harness plugin.

>>> "greedy" in names()
True
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from planners.base import Planner, PlannerError

_MODULES = [
    "planners.baselines",
    "planners.pgtd",
    "planners.adadec",
    "planners.astar",
    "planners.vstar",
    "planners.styles",
    "planners.cascade",
]
_REGISTRY: dict[str, type[Planner[Any]]] = {}
_loaded = False
_load_lock = threading.Lock()


def register(cls: type[Planner[Any]]) -> type[Planner[Any]]:
    """Class decorator: make a planner available everywhere under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:  # threads asking at once wait for the whole registry, not a part of it
        if _loaded:
            return
        for module in _MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:  # a real import error inside a planner is a bug: show it
                    raise
        _loaded = True


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> type[Planner[Any]]:
    _load()
    if name not in _REGISTRY:
        raise PlannerError(f"unknown planner {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, params: dict[str, Any] | None = None) -> Planner[Any]:
    """Instantiate a planner with validated parameters (errors name the field)."""
    cls = get(name)
    return cls(cls.Params.model_validate(params or {}))


def describe() -> list[dict[str, Any]]:
    _load()
    out = []
    for name in sorted(_REGISTRY):
        cls = _REGISTRY[name]
        schema = cls.Params.model_json_schema()
        params = {
            key: {
                "default": field.get_default(call_default_factory=True),
                "description": field.description or "",
                "type": schema.get("properties", {}).get(key, {}).get("type"),
            }
            for key, field in cls.Params.model_fields.items()
        }
        out.append(
            {
                "name": name,
                "description": cls.description,
                "needs_sandbox": cls.needs_sandbox,
                "accepts_answer_problems": cls.accepts_answer_problems,
                "params": params,
            }
        )
    return out


__all__ = ["Planner", "PlannerError", "create", "describe", "get", "names", "register"]
