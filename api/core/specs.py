"""The one builder of a ``SolveSpec`` (and of its ``Budget``) from what a surface received.

The CLI, the REST and OpenAI routes, the harness plugin and ``Engine.solve`` all describe a search
the same way: a problem, a planner and its parameters, a budget, whether to keep the tree and run
the hidden tests, and a prompt style. ``build_solve_spec`` turns that into the ``SolveSpec`` a job
backend stores and ``Engine.run`` runs; ``budget_of`` turns loose limits (options, model arguments)
into a ``Budget``.

>>> budget_of({"max_tokens": 64, "max_seconds": None, "max_rollouts": ""})
Budget(max_tokens=64, max_forward_passes=None, max_executions=None, max_rollouts=None, max_seconds=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.core.contracts import SolveSpec
from search.limits.budget import Budget
from search.problems.problem import Problem


def budget_of(limits: Mapping[str, Any]) -> Budget:
    """The budget of ``limits`` (``Budget``'s field names): a limit that is None or "" is unlimited;
    a value out of range raises ``ValidationError`` naming the field."""
    return Budget.model_validate({name: value for name, value in limits.items() if value not in (None, "")})


def build_solve_spec(
    problem: Problem,
    planner: str = "greedy",
    params: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    *,
    include_tree: bool,
    evaluate_hidden: bool,
    prompt_style: str,
) -> SolveSpec:
    """One search to run: ``problem`` with ``planner`` (its ``params``: none means its defaults)
    within ``budget`` (none: unlimited), the problem rendered in ``prompt_style``; the report keeps
    the search tree when ``include_tree`` and judges the answer on the hidden tests too when
    ``evaluate_hidden``."""
    return SolveSpec(
        problem=problem,
        planner=planner,
        params=dict(params or {}),
        budget=budget or Budget(),
        include_tree=include_tree,
        evaluate_hidden=evaluate_hidden,
        prompt_style=prompt_style,
    )
