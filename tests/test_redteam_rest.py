"""The red team's attacks through the REST API: every attack of ``tests/test_redteam.py``, appended
to a wrong HumanEval solution, comes back from a search as its answer and is judged by the real
server's verdict path (public and hidden tests sent in the request) in the real bwrap sandbox.

The planner here is a test double that answers with the attacked program, so the request reaches
the verdicts exactly as a model's program would; the server, engine, scorer and sandbox are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import planners
from api.core.engine import Engine
from api.http.schemas import ServerSettings
from api.http.server import BackgroundServer, create_app
from planners.base import Outcome, Planner, PlannerParams, Search
from sandbox.isolation import layer_available
from search.problems.problem import Problem
from search.state.context import Candidate, SearchContext
from tests.test_redteam import ATTACKS, CASES, WRONG, problem

pytestmark = pytest.mark.bwrap

_ANSWER: dict[str, str] = {}  # the completion the attacker planner answers with, per entry point


class _AttackSearch(Search[PlannerParams]):
    def run(self) -> str:
        self.candidates.append(Candidate(_ANSWER[self.problem.entry_point or ""], [], 0.0))
        return "answered"

    def outcome(self, reason: str) -> Outcome:
        return Outcome(self.candidates[0], list(self.candidates), reason, None)


class _Attacker(Planner[PlannerParams]):
    name = "test-attacker"
    description = "answers with a program written against the harness"
    Params = PlannerParams

    def start(self, problem: Problem, ctx: SearchContext) -> _AttackSearch:
        return _AttackSearch(self.params, problem, ctx)


@pytest.fixture(scope="module")
def client(tiny_lm: Any) -> Iterator[httpx.Client]:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    planners.register(_Attacker)
    engine = Engine(lm=tiny_lm, sandbox="bwrap")
    try:
        with BackgroundServer(create_app(engine, ServerSettings(max_seconds=60))) as url:
            with httpx.Client(base_url=url, timeout=120) as c:
                yield c
    finally:
        planners._REGISTRY.pop("test-attacker", None)


def _request(k: int, completion: str) -> dict[str, Any]:
    p = problem(k)
    assert p.entry_point is not None
    _ANSWER[p.entry_point] = completion
    return {
        "problem": {
            "prompt": p.prompt,
            "entry_point": p.entry_point,
            "public_tests": [t.model_dump(exclude_none=True) for t in p.public_tests],
            "hidden_tests": [t.code for t in p.hidden_tests],
        },
        "planner": "test-attacker",
        "prompt_style": "completion",
        "options": {"include_tree": False},
    }


def _verdicts(client: httpx.Client, k: int, completion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    r = client.post("/v1/solve", json=_request(k, completion))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded", body
    return body["public"], body["hidden"]


def test_the_canonical_solutions_pass_through_rest(client: httpx.Client) -> None:
    """The verdict path is live: the right answers pass both suites (so the attacks' fails count)."""
    for k in WRONG:
        solution = problem(k).canonical_solution
        assert solution is not None
        public, hidden = _verdicts(client, k, solution)
        assert public["passed"] == public["total"] > 0 and hidden["passed"] == hidden["total"] == 1


@pytest.mark.parametrize(("attack", "k"), CASES, ids=[f"{a}-humaneval{k}" for a, k in CASES])
def test_an_attack_through_rest_forges_no_pass(client: httpx.Client, attack: str, k: int) -> None:
    bare_public, bare_hidden = _verdicts(client, k, WRONG[k])
    p = problem(k)
    assert p.entry_point is not None
    public, hidden = _verdicts(client, k, WRONG[k] + ATTACKS[attack].replace("ENTRY", p.entry_point))
    assert public["passed"] <= bare_public["passed"] < public["total"], (public, bare_public)
    assert hidden["passed"] == bare_hidden["passed"] == 0, hidden
    assert client.get("/healthz").json()["status"] == "ok"
