"""The typed contracts between the surfaces (api/core/contracts.py, api/jobs/backend.py): their JSON forms are
the wire format the REST answers, queued records and benchmark rows always had."""

from __future__ import annotations

import json

from api.core.contracts import CandidateReport, PublicTests, SolveReport, SolveSpec, terminal_event
from api.jobs.backend import MAX_EVENTS, admits_event
from search.limits.budget import Budget, Spend
from search.problems.problem import Problem
from search.state.context import Candidate, SearchResult


def _report(tree: dict | None = None, meta: dict | None = None) -> SolveReport:
    best = Candidate("x = 1\n", [1, 2], -0.5, reward=1.0, public_passed=1, public_total=1, meta=meta or {})
    spend = Spend(generated_tokens=2, seconds=0.01234567, extra={"iterations": 3})
    result = SearchResult("greedy", "p", best, [best], spend, "done", tree=tree)
    return SolveReport.of(
        result,
        include_tree=True,
        model="tiny",
        program="x = 1\n",
        prompt_style="completion",
        public_tests=PublicTests.model_validate({"from": "request", "tests": ["assert x == 1"]}),
        prompt_completion="x = 1\n",
        public=None,
        hidden=None,
    )


def test_the_report_json_has_the_keys_in_the_order_they_always_had() -> None:
    data = _report().to_json()
    assert list(data) == [
        "planner",
        "problem_id",
        "completion",
        "best",
        "candidates",
        "spend",
        "stop_reason",
        "model",
        "program",
        "prompt_style",
        "public_tests",
        "prompt_completion",
        "public",
        "hidden",
    ]  # no tree key without a tree
    assert data["public_tests"] == {"from": "request", "tests": ["assert x == 1"]}
    assert "meta" not in data["best"]  # as Candidate.to_dict: no meta key when it is empty
    assert data["spend"]["extra"] == {"iterations": 3}  # a count stays an int
    assert isinstance(data["spend"]["extra"]["iterations"], int)
    assert data["spend"]["seconds"] == 0.0123


def test_the_report_keeps_a_tree_and_meta_and_reads_back_from_its_json() -> None:
    report = _report(tree={"root": 0, "nodes": [{"id": 0}]}, meta={"style": "chat"})
    data = report.to_json()
    assert list(data)[7] == "tree" and data["best"]["meta"] == {"style": "chat"}
    assert "tree" not in report.to_json(tree=False)
    back = SolveReport.model_validate(json.loads(json.dumps(data)))
    assert back == report and back.to_json() == data


def test_a_candidate_report_is_its_candidate_dict() -> None:
    c = Candidate("y", [3], -1.0, reward=None, meta={"finish": "stop"})
    assert CandidateReport.of(c).model_dump() == c.to_dict()


def test_a_spec_round_trips_through_its_json_form() -> None:
    spec = SolveSpec(problem=Problem(id="p", prompt="x = "), planner="beam", budget=Budget(max_tokens=5))
    assert SolveSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.evaluate_hidden is False and spec.include_tree is True


def test_the_terminal_event_and_the_event_limit() -> None:
    report = _report()
    assert terminal_event("succeeded", report) == {
        "event": "succeeded",
        "spend": report.spend.to_dict(),
        "stop_reason": "done",
        "public": None,
    }
    assert terminal_event("failed", error="E: x", error_id="id1") == {
        "event": "failed",
        "error": "E: x",
        "error_id": "id1",
    }
    assert admits_event({"event": "step"}, lambda: MAX_EVENTS - 1)
    assert not admits_event({"event": "step"}, lambda: MAX_EVENTS)
    assert admits_event({"event": "cancelled"}, lambda: MAX_EVENTS)
    assert admits_event({"event": "started"}, lambda: 10 * MAX_EVENTS)
