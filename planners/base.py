"""The planner interface: a name, a validated ``Params`` model, and ``solve``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from search.context import SearchContext, SearchResult
from search.problem import Problem


class PlannerError(ValueError):
    """A planner was asked for something it cannot do (unknown name, missing requirement)."""


class PlannerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Planner:
    """Subclasses set ``name``, ``description``, ``Params`` and implement ``solve``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_sandbox: ClassVar[bool] = False
    # True when the planner renders the problem in prompt styles itself (it is handed the problem
    # in completion style and returns completions that continue the prompt).
    renders_problem: ClassVar[bool] = False

    @classmethod
    def required_params(cls, lm: Any) -> list[str]:
        """Parameters without a usable default on this model (None: not known yet), which a request
        must give (the REST API refuses it without them, and says so in its schema)."""
        return []

    Params: ClassVar[type[PlannerParams]] = PlannerParams

    def __init__(self, params: PlannerParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        raise NotImplementedError
