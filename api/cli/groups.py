"""``option_groups``: a command takes its shared options as one typed group (``RunOptions``,
``EngineOptions``) while typer still sees, and ``--help`` still lists, each option on its own."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints


def _option_fields(group: type) -> list[inspect.Parameter]:
    """A group's options as command parameters, a nested group's in its place."""
    hints = get_type_hints(group, include_extras=True)
    out: list[inspect.Parameter] = []
    for f in fields(group):
        if is_dataclass(hints[f.name]):
            out.extend(_option_fields(hints[f.name]))
        else:
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            out.append(inspect.Parameter(f.name, kind, default=f.default, annotation=hints[f.name]))
    return out


def _take_group(group: type, values: dict[str, Any]) -> Any:
    """The group built from (and taken out of) the parsed ``values``."""
    hints = get_type_hints(group)
    return group(
        **{
            f.name: _take_group(hints[f.name], values) if is_dataclass(hints[f.name]) else values.pop(f.name)
            for f in fields(group)
        }
    )


def option_groups(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with each parameter typed as an option group (``RunOptions``, ``EngineOptions``)
    shown to typer as the group's options, in that parameter's place (so ``--help`` lists them
    where they stand); the command is called with the group built from them."""
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type] = {
        p.name: p.annotation
        for p in signature.parameters.values()
        if isinstance(p.annotation, type) and is_dataclass(p.annotation)
    }
    parameters = [
        q
        for p in signature.parameters.values()
        for q in (_option_fields(p.annotation) if p.name in groups else [p])
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        built = {name: _take_group(group, kwargs) for name, group in groups.items()}
        command(**built, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
