"""Problem types, loaders and budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.limits.budget import Budget, Meter
from search.problems.loaders import (
    ProblemError,
    apps_problem,
    humaneval,
    load_problem,
    load_problems,
    parse_docstring_tests,
)
from search.problems.problem import FunctionTest, IOTest, Problem

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_humaneval_loads_all_problems_with_hidden_check_and_most_with_public_tests() -> None:
    problems = humaneval()
    assert len(problems) == 164
    assert all(len(p.hidden_tests) == 1 and "check(" in (p.hidden_tests[0].code or "") for p in problems)
    with_public = sum(1 for p in problems if p.public_tests)
    assert with_public >= 140


def test_docstring_examples_in_several_forms_become_call_tests() -> None:
    prompt = (
        "def f(x, y=0):\n"
        '    """Examples:\n'
        "    >>> f(1)\n"
        "    2\n"
        "    f(2) ➞ 3\n"
        "    f(3) ==> 4\n"
        "    For x = 4, the output should be 5\n"
        "    Input: x = 5, y = 1\n"
        "    Output: 7\n"
        "    f(6) # => 'no' (a remark)\n"
        '    """\n'
    )
    tests = parse_docstring_tests(prompt, "f")
    assert [(t.call, t.expected) for t in tests] == [
        ("f(1)", "2"),
        ("f(2)", "3"),
        ("f(3)", "4"),
        ("f(x = 4)", "5"),
        ("f(x = 5, y = 1)", "7"),
        ("f(6)", "'no'"),
    ]


def _described(prompt: str, entry: str) -> list[str]:
    return [t.describe() for t in parse_docstring_tests(prompt, entry)]


def test_equals_examples_count_below_the_last_examples_header_and_only_with_a_literal() -> None:
    prompt = (
        'def tri(n):\n    """A sequence defined by:\n    tri(1) = 3\n    tri(n) = 1 + n / 2, if n is even.\n'
        "    For example:\n    tri(4) = 3\n    tri(3) = tri(2) + tri(1)\n    Examples:\n"
        '    tri(3) = [1, 3, 2, 8]\n    """\n'
    )
    # the definitions (tri(1) = 3, tri(4) = 3) are not examples of what the function returns
    assert _described(prompt, "tri") == ["tri(3) == [1, 3, 2, 8]"]
    no_header = 'def f(x, y):\n    """Doc.\n\n    f("1/5", "5/1") = True\n    f(1, 2) = x + 1\n    """\n'
    assert _described(no_header, "f") == ['f("1/5", "5/1") == True']  # x + 1 is not a literal


def test_bulleted_examples_and_input_output_blocks() -> None:
    bullets = 'def g(a):\n    """\n    Examples:\n    * g([]) => []\n    - g([5]) -> [5]\n    """\n'
    assert _described(bullets, "g") == ["g([]) == []", "g([5]) == [5]"]
    one = 'def h(arr):\n    """\n    Example 1:\n        Input: [4,2,3]\n        Output: [2, 1]\n    """\n'
    assert _described(one, "h") == ["h([4,2,3]) == [2, 1]"]
    two = 'def h2(a, b):\n    """\n    Example 1:\n        Input: [4,2,3]\n        Output: [2, 1]\n    """\n'
    assert _described(two, "h2") == []  # a bare input is only unambiguous for one parameter
    block = (
        'def fill(grid, capacity):\n    import math\n    """\n    Example 1:\n        Input: \n'
        "            grid : [[0,1], [1,1]]\n            bucket_capacity : 1\n        Output: 3\n"
        '    Example 2:\n        Input: \n            grid : [[0]]\n        Output: 0\n    """\n'
    )
    # the docstring after `import math` is read; a block must give every parameter, in order
    assert _described(block, "fill") == ["fill([[0,1], [1,1]], 1) == 3"]


def test_examples_that_are_not_python_are_skipped() -> None:
    prompt = 'def g(s):\n    """\n    g("a b") -> a list of words like [a, b\n    """\n'
    assert parse_docstring_tests(prompt, "g") == []


def test_humaneval_spec_forms() -> None:
    assert load_problem("humaneval:0").id == "HumanEval/0"
    assert load_problem("humaneval:HumanEval/5").id == "HumanEval/5"
    assert [p.id for p in load_problems("humaneval:3-5")] == ["HumanEval/3", "HumanEval/4", "HumanEval/5"]
    ids = [p.id for p in load_problems("humaneval:7,3-4,HumanEval/0")]
    assert ids == ["HumanEval/7", "HumanEval/3", "HumanEval/4", "HumanEval/0"]  # a list, in its order
    with pytest.raises(ProblemError, match="no HumanEval problem 999"):
        load_problem("humaneval:999")
    with pytest.raises(ProblemError, match="no HumanEval problem 999"):
        load_problems("humaneval:1,999")


def test_example_files_load_in_both_test_formats() -> None:
    fn = load_problem(str(EXAMPLES / "two_sum_function.json"))
    assert fn.public_tests and all(isinstance(t, FunctionTest) for t in fn.public_tests)
    io = load_problem(str(EXAMPLES / "sum_of_squares_stdio.json"))
    assert io.public_tests and all(isinstance(t, IOTest) for t in io.public_tests)
    assert io.program("print(1)") == "print(1)"
    assert len(load_problems(str(EXAMPLES / "problems.jsonl"))) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("{not json", "malformed JSON"),
        ('{"id": "x", "prompt": "   "}', "prompt"),
        (
            '{"id": "x", "prompt": "def f(): pass", "public_tests": [{"kind": "function", "call": "f()", '
            '"expected": "1"}]}',
            "entry_point",
        ),
        ('{"id": "x", "prompt": "p", "public_tests": [{"kind": "sql", "query": "1"}]}', "public_tests"),
        ("[1, 2]", "expected a problem object"),
    ],
)
def test_bad_problem_files_give_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ProblemError, match=message):
        load_problems(str(path))


def test_missing_problem_file_is_a_clear_error() -> None:
    with pytest.raises(ProblemError, match="no such problem file"):
        load_problems("does/not/exist.json")


def test_apps_records_become_io_or_call_tests() -> None:
    io = apps_problem(
        {
            "question": "Echo.",
            "input_output": json.dumps({"inputs": ["1\n", "2\n"], "outputs": ["1\n", "2\n"]}),
        }
    )
    assert isinstance(io.public_tests[0], IOTest) and len(io.hidden_tests) == 1
    call = apps_problem(
        {"question": "Add.", "input_output": {"fn_name": "add", "inputs": [[1, 2]], "outputs": [[3]]}}
    )
    assert call.public_tests[0].describe() == "add(*[1, 2]) == 3"
    with pytest.raises(ProblemError, match="equally many"):
        apps_problem({"question": "x", "input_output": {"inputs": [1], "outputs": []}})


def test_a_function_test_needs_exactly_one_form() -> None:
    with pytest.raises(ValueError, match="either 'code' or both"):
        FunctionTest(call="f()")
    with pytest.raises(ValueError, match="either 'code' or both"):
        FunctionTest(code="assert f()", call="f()", expected="1")


def test_problem_program_joins_prompt_and_completion() -> None:
    p = Problem(id="p", prompt="def f():\n", entry_point="f")
    assert p.program("    return 1\n") == "def f():\n    return 1\n"


def test_budget_rejects_out_of_range_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        Budget(max_tokens=0)
    with pytest.raises(ValueError, match="max_seconds"):
        Budget(max_seconds=-1)
    with pytest.raises(ValueError, match="extra"):
        Budget.model_validate({"max_tokenz": 5})


def test_meter_reports_the_first_limit_reached() -> None:
    meter = Meter(budget=Budget(max_tokens=10, max_executions=2))
    assert meter.exhausted_reason() is None
    meter.charge(generated_tokens=4, executions=2)
    assert meter.exhausted_reason() == "max_executions"
    meter.cancelled.set()
    assert meter.exhausted_reason() == "cancelled"
