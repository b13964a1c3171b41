"""MBPP+: specs, the problem shape, the expected values' cache, EvalPlus's comparison rules in the
judge (set, tolerance, not-None, own oracles), base and plus verdicts, the evalplus prompt style."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import api  # noqa: F401  (sets the sandbox that computes expected values)
from api.core.evaluation import suite_verdicts
from sandbox.executor import Limits
from sandbox.isolation import layer_available
from sandbox.judge_checks import allclose, evalplus_match
from sandbox.process import ProcessExecutor
from sandbox.reference import ReferenceRunner
from scorers.tests import TestScorer
from search.problems import mbpp
from search.problems import problem as problem_module
from search.problems.literals import NotPlain, python_literal
from search.problems.loaders import ProblemError, load_problem, load_problems
from search.problems.mbpp import (
    DIGEST_WRAP,
    SUITES,
    CallOutcome,
    deserialize_inputs,
    is_floats,
    mbpp_problems,
    task_numbers,
    use_reference_runner,
)
from search.problems.problem import Comparison, FunctionTest, Problem
from search.problems.prompting import EVALPLUS_INSTRUCTION, EVALPLUS_RESPONSE, render, stops_for
from search.problems.sanitize import sanitize

LIMITS = Limits(wall_per_test=5.0, wall_total=60.0)


@pytest.fixture(scope="module")
def executor() -> ProcessExecutor:
    return ProcessExecutor("bwrap" if layer_available("bwrap") else "plain")


class CountingRunner:
    """The real sandbox runner, counting the jobs it is given."""

    def __init__(self, executor: ProcessExecutor) -> None:
        self.inner = ReferenceRunner(executor)
        self.jobs = 0

    def __call__(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> Sequence[Sequence[CallOutcome]]:
        self.jobs += len(jobs)
        return self.inner(jobs)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TREEDEC_HOME", str(tmp_path))
    return tmp_path


# ----- specs ------------------------------------------------------------------------------------


def test_specs_name_task_numbers_ranges_and_lists() -> None:
    assert task_numbers("2") == [2]
    assert task_numbers("2-7") == [2, 3, 4, 6, 7]  # 5 is not an MBPP+ task: a range takes what is in it
    assert task_numbers("7, 2-3") == [7, 2, 3]
    everything = task_numbers("")
    assert len(everything) == 378 and everything[0] == 2 and everything[-1] == 809


@pytest.mark.parametrize("ref", ["5", "1", "900", "810-900", "x", "2-"])
def test_unknown_task_numbers_fail_with_one_line_naming_the_range(ref: str) -> None:
    with pytest.raises(ProblemError) as e:
        load_problems(f"mbpp:{ref}")
    message = str(e.value)
    assert "\n" not in message and "2..809" in message and "378" in message


def test_load_problem_needs_one_problem(home: Path) -> None:
    with pytest.raises(ProblemError, match="holds 2 problems"):  # through the runner api set
        load_problem("mbpp:2-3")


def test_deserialisation_follows_evalplus() -> None:
    assert deserialize_inputs(2, [[[3, 4], [5]]]) == [[(3, 4), (5,)]]
    assert deserialize_inputs(115, [[[[1, 2], []]]]) == [[[{1, 2}, {}]]]
    assert deserialize_inputs(124, [[1, "1j"]]) == [(1.0, 1j)]
    assert deserialize_inputs(580, [[[1, [2, [3]]]]]) == [((1, (2, (3,))),)]
    assert deserialize_inputs(3, [[7]]) == [[7]]


# ----- the problems and the cache -----------------------------------------------------------------


def test_problem_shape_and_a_second_load_runs_nothing(home: Path, executor: ProcessExecutor) -> None:
    runner = CountingRunner(executor)
    first = mbpp_problems("2,3", runner=runner)
    assert runner.jobs == 2
    similar = first[0]
    assert similar.id == "Mbpp/2" and similar.entry_point == "similar_elements"
    assert similar.prompt.startswith('"""\nWrite a function') and "assert " in similar.prompt
    assert [t.code for t in similar.public_tests] == [
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"
    ]
    hidden = [t for t in similar.hidden_tests if isinstance(t, FunctionTest)]
    assert [t.suite for t in hidden[:3]] == ["base"] * 3 and hidden[-1].suite == "plus"
    assert hidden[0].call == "similar_elements((3, 4, 5, 6), (5, 7, 4, 10))"
    assert hidden[0].compare == Comparison(match="set")
    assert sorted(eval(hidden[0].expected or "")) == [4, 5]

    again = CountingRunner(executor)
    second = mbpp_problems("2,3", runner=again)
    assert again.jobs == 0
    assert [p.model_dump() for p in second] == [p.model_dump() for p in first]
    cached = json.loads(next((home / "mbppplus").glob("expected-*.json")).read_text())
    assert set(cached["tasks"]) == {"Mbpp/2", "Mbpp/3"}


def test_a_cold_load_without_a_sandbox_says_what_to_do(home: Path) -> None:
    set_by_api = mbpp._runner
    use_reference_runner(None)
    try:
        with pytest.raises(ProblemError, match="no sandbox"):
            mbpp_problems("2")
    finally:
        use_reference_runner(set_by_api)


def test_every_canonical_solution_of_a_slice_passes_base_and_plus(
    home: Path, executor: ProcessExecutor
) -> None:
    problems = mbpp_problems("2-20,82,581,630,787", runner=CountingRunner(executor))
    scorer = TestScorer(
        executor, limits=Limits(wall_per_test=10.0, wall_total=120.0, memory_bytes=4096 << 20)
    )
    for problem in problems:
        reward = scorer.score(problem, problem.canonical_solution or "", hidden=True)
        assert reward.passed == reward.total > 100, (problem.id, reward.result.verdicts[:1])
        assert scorer.score(problem, problem.canonical_solution or "").passed == 1  # the public assert


def test_a_value_too_large_to_send_is_judged_by_its_digest(home: Path, executor: ProcessExecutor) -> None:
    (problem,) = mbpp_problems("255", runner=CountingRunner(executor))
    digested = [
        t for t in problem.hidden_tests if isinstance(t, FunctionTest) and DIGEST_WRAP in (t.call or "")
    ]
    assert len(digested) >= 1 and all(t.compare == Comparison() for t in digested)
    wrong = (
        "from itertools import combinations_with_replacement\ndef combinations_colors(l, n):\n"
        "    return [list(c) for c in combinations_with_replacement(l, n)]\n"
    )
    scorer = TestScorer(
        executor, limits=Limits(wall_per_test=30.0, wall_total=300.0, memory_bytes=4096 << 20)
    )
    verdicts = scorer.score(problem, wrong, hidden=True).result.verdicts
    assert not any(verdicts[problem.hidden_tests.index(t)].ok for t in digested)


# ----- judging ------------------------------------------------------------------------------------


def judge(executor: ProcessExecutor, program: str, tests: list[FunctionTest]) -> list[bool]:
    result = executor.run(program, tests, LIMITS, entry_point="f")
    return [v.ok for v in result.verdicts]


def test_set_rule_ignores_order_and_container_but_not_members(executor: ProcessExecutor) -> None:
    test = FunctionTest(call="f()", expected="(4, 5)", compare=Comparison(match="set"))
    assert judge(executor, "def f():\n    return [5, 4, 4]\n", [test]) == [True]
    assert judge(executor, "def f():\n    return (4, 6)\n", [test]) == [False]
    assert judge(executor, "def f():\n    return 45\n", [test]) == [False]  # set(45) raises: failed


def test_exact_rule_has_no_float_tolerance_without_atol(executor: ProcessExecutor) -> None:
    exact = FunctionTest(call="f()", expected="3", compare=Comparison())
    assert judge(executor, "def f():\n    return 3.0\n", [exact]) == [True]  # 3.0 == 3, as in EvalPlus
    assert judge(executor, "def f():\n    return 3.0000001\n", [exact]) == [False]
    plain = FunctionTest(call="f()", expected="3")  # treedec's own rule is unchanged
    assert judge(executor, "def f():\n    return 3.0000001\n", [plain]) == [True]


def test_atol_rule_wants_type_length_and_allclose(executor: ProcessExecutor) -> None:
    test = FunctionTest(call="f()", expected="[1.0, 2.0]", compare=Comparison(atol=1e-4))
    assert judge(executor, "def f():\n    return [1.00005, 2.0]\n", [test]) == [True]
    assert judge(executor, "def f():\n    return [1.001, 2.0]\n", [test]) == [False]
    assert judge(executor, "def f():\n    return (1.00005, 2.0)\n", [test]) == [False]  # a tuple
    assert judge(executor, "def f():\n    return [1.00005]\n", [test]) == [False]  # shorter


def test_not_none_rule_takes_bools_as_they_are(executor: ProcessExecutor) -> None:
    wrap = "(lambda r: r if r is True or r is False else r is not None)"
    test = FunctionTest(call=f"{wrap}(f())", expected="True", compare=Comparison(match="not_none"))
    assert judge(executor, "import re\ndef f():\n    return re.match('a', 'a')\n", [test]) == [True]
    assert judge(executor, "def f():\n    return True\n", [test]) == [True]
    assert judge(executor, "def f():\n    return False\n", [test]) == [False]
    assert judge(executor, "def f():\n    return None\n", [test]) == [False]


def test_any_rule_and_alternatives(executor: ProcessExecutor) -> None:
    anything = FunctionTest(call="f()", expected="1", compare=Comparison(match="any"))
    assert judge(executor, "def f():\n    return None\n", [anything]) == [True]
    assert judge(executor, "def f():\n    raise ValueError\n", [anything]) == [False]
    oracle = FunctionTest(call="f()", expected="7", compare=Comparison(alternatives=["9"]))
    assert judge(executor, "def f():\n    return 9\n", [oracle]) == [True]
    assert judge(executor, "def f():\n    return 8\n", [oracle]) == [False]


def test_evalplus_match_follows_evalplus_order_of_rules() -> None:
    assert evalplus_match(1.0000001, 1.0, "exact", 1e-6)
    assert not evalplus_match(1, 1.0000001, "exact", 1e-6)  # an int where a float is expected
    assert evalplus_match([1, 2], [1, 2], "exact", 0.0)
    assert not evalplus_match([1, 2], (1, 2), "exact", 1e-6)
    assert not evalplus_match(float("nan"), float("nan"), "exact", 1e-6)  # numpy: NaN is never close
    assert evalplus_match(5.0, 7, "exact", 0.0, alternatives=[5])


def test_allclose_agrees_with_numpy() -> None:
    rng = random.Random(0)
    values: list[object] = [0.0, 1.0, -1.0, 1e-9, 1e6, float("inf"), float("-inf"), float("nan"), 3, True]
    for _ in range(3000):
        shape = rng.choice([(), (1,), (2,), (3,), (1, 2), (2, 2), (2, 1)])

        def build(shape: tuple[int, ...]) -> object:
            if not shape:
                return rng.choice(values) if rng.random() < 0.5 else rng.uniform(-2, 2)
            return [build(shape[1:]) for _ in range(shape[0])]

        a = build(shape)
        b = a if rng.random() < 0.3 else build(rng.choice([shape, (1,), (2,), ()]))
        rtol, atol = rng.choice([(1e-7, 0.0), (1e-7, 1e-6), (1e-7, 0.5), (0.1, 0.0)])
        with np.errstate(all="ignore"):
            try:
                expected = bool(np.allclose(a, b, rtol=rtol, atol=atol))
            except (ValueError, TypeError):
                expected = False
        assert allclose(a, b, rtol, atol) == expected, (a, b, rtol, atol)
    assert not allclose(["a"], ["a"], 1e-7, 1e-6)
    assert not allclose([[1.0], [1.0, 2.0]], [[1.0], [1.0, 2.0]], 1e-7, 1e-6)  # ragged


def test_floats_set_evalplus_tolerance_from_the_first_float_on() -> None:
    assert is_floats(1.5) and is_floats([1.0, 2.0]) and not is_floats([1.0, 2]) and not is_floats([])


def test_tests_without_the_new_fields_hash_as_before() -> None:
    test = FunctionTest(call="f(1)", expected="2")
    before = json.dumps([{"kind": "function", "code": None, "call": "f(1)", "expected": "2"}], sort_keys=True)
    import hashlib

    assert problem_module.tests_hash([test]) == hashlib.sha256(before.encode()).hexdigest()[:32]
    hashed = problem_module.tests_hash
    assert hashed([test.model_copy(update={"suite": "base"})]) != hashed([test])


def test_a_comparison_is_read_from_json_lists_in_strict_mode() -> None:
    raw = {"call": "f()", "expected": "1", "compare": {"match": "set", "atol": 0.5, "alternatives": ["2"]}}
    test = FunctionTest.model_validate(raw, strict=True)
    assert test.compare == Comparison(match="set", atol=0.5, alternatives=["2"])
    with pytest.raises(ValueError, match="match"):
        FunctionTest.model_validate({**raw, "compare": {"match": "close"}})


# ----- base and plus ------------------------------------------------------------------------------


def test_base_and_plus_verdicts_are_reported_apart(home: Path, executor: ProcessExecutor) -> None:
    (problem,) = mbpp_problems("17", runner=CountingRunner(executor))
    scorer = TestScorer(executor, limits=LIMITS)
    wrong = "def square_perimeter(a):\n    return 4 * int(a)\n"  # right on the int base inputs only
    passes = [v.index for v in scorer.score(problem, wrong, hidden=True).result.verdicts if v.ok]
    assert suite_verdicts(problem, passes) == {"base_passed": True, "plus_passed": False}
    right = [
        v.index
        for v in scorer.score(problem, problem.canonical_solution or "", hidden=True).result.verdicts
        if v.ok
    ]
    assert suite_verdicts(problem, right) == {"base_passed": True, "plus_passed": True}
    assert suite_verdicts(problem, []) == {"base_passed": False, "plus_passed": False}
    humaneval_like = Problem(
        id="h", prompt="def f():\n", entry_point="f", hidden_tests=[FunctionTest(code="assert f()")]
    )
    assert suite_verdicts(humaneval_like, [0]) == {}
    assert SUITES == ("base", "plus")


# ----- prompt style and sanitizer -------------------------------------------------------------------


def test_evalplus_style_is_evalplus_chat_prompt(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    problem = Problem(id="Mbpp/x", prompt='"""\nWrite f.\nassert f(1) == 2\n"""\n', entry_point="f")
    rendered = render(problem, "evalplus", tiny_lm)
    text = rendered.model_text
    assert f"{EVALPLUS_INSTRUCTION}\n```\n" in text and 'assert f(1) == 2\n"""\n```' in text
    assert text.endswith(f"{EVALPLUS_RESPONSE}\n```python\n")
    answer = "import math\ndef f(x):\n    return x + 1\n\nassert f(1) == 2\nprint(f(2))\n```\nDone."
    assert rendered.program(answer) == "import math\ndef f(x):\n    return x + 1"
    assert [s.find("x\n```\n") for s in stops_for(rendered)] == [1]


def test_a_docstring_prompt_is_not_cut_at_its_first_top_level_line() -> None:
    mbpp_like = Problem(id="m", prompt='"""\nWrite f.\n"""\n', entry_point="f", stop=["\nassert"])
    stops = stops_for(mbpp_like)
    assert [s.find("import re\ndef f(x):\n    return x\n") for s in stops] == [None]
    humaneval_like = Problem(id="h", prompt="def f(x):\n    ", entry_point="f")
    assert [s.find("return x\ndef g") for s in stops_for(humaneval_like)] == [8]


def test_sanitizer_keeps_what_the_entry_point_reaches() -> None:
    text = (
        "Here it is:\nimport re\nLIMIT = 3\n\ndef helper(x):\n    return x * LIMIT\n\n"
        "def unused():\n    return 0\n\ndef f(x):\n    return helper(x)\n\n"
        "if __name__ == '__main__':\n    print(f(2))\n"
    )
    assert (
        sanitize(text, "f")
        == "import re\nLIMIT = 3\ndef helper(x):\n    return x * LIMIT\ndef f(x):\n    return helper(x)"
    )
    assert (
        sanitize("def f(x):\n    print(x)\n", "f") == "def f(x):\n    print(x)\n"
    )  # no return: nothing kept
    assert sanitize("def f():\n    return 1\ndef f():\n    return 2\n", "f") == "def f():\n    return 1"


def test_python_literals_evaluate_back() -> None:
    values = [
        2**20000,
        -(2**14000),
        1.5,
        float("-inf"),
        complex(1, math.inf),
        (1,),
        frozenset({2}),
        set(),
        {},
        b"\x00",
        range(3),
    ]
    for value in values:
        assert eval(python_literal(value)) == value
    assert math.isnan(eval(python_literal(float("nan"))))
    with pytest.raises(NotPlain):
        python_literal(object())


def test_the_hidden_suite_gets_evalplus_time_allowance_and_never_less_than_the_scorer_limits(
    executor: ProcessExecutor,
) -> None:
    # EvalPlus allows an input 4x the reference's time (at least 1 s) and a task their sum (at most
    # 60 s) plus 2 s: Mbpp/599's reference sums ranges of 1e8 numbers, about a second each
    slow = mbpp.evalplus_time([{"seconds": 0.01}] * 10 + [{"seconds": 1.2}])
    assert (slow.per_test, slow.total) == (pytest.approx(4.8), pytest.approx(10 * 1.0 + 4.8 + 2.0))
    assert mbpp.evalplus_time([{"seconds": 5.0}] * 40).total == 62.0
    test = problem_module.FunctionTest(code="import time\ntime.sleep(1.5)\nassert f() == 1")
    problem = problem_module.Problem(
        id="slow",
        prompt="def f():\n",
        entry_point="f",
        public_tests=[test],
        hidden_tests=[test],
        hidden_time=problem_module.HiddenTime(per_test=4.0, total=8.0),
    )
    scorer = TestScorer(executor, limits=Limits(wall_per_test=1.0, wall_total=5.0))
    hidden = scorer.limits_for(problem, hidden=True)
    assert (hidden.wall_per_test, hidden.wall_total, hidden.cpu_seconds) == (4.0, 8.0, 10)
    assert scorer.limits_for(problem, hidden=False) == scorer.limits
    roomy = TestScorer(executor, limits=Limits(wall_per_test=9.0, wall_total=50.0))
    assert roomy.limits_for(problem, hidden=True).wall_per_test == 9.0  # never narrower
    program = "    return 1\n"
    assert scorer.score(problem, program, hidden=True).passed == 1
    assert scorer.score(problem, program, hidden=False).passed == 0  # the same test, 1 s allowed
