"""Prompt styles: rendering, stops, program extraction, and every planner in every style."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from api.core.engine import Engine
from api.http.schemas import ProblemIn
from sandbox import open_executor
from scorers.tests import TestScorer
from search.cache.store import MemoryCache
from search.problems.problem import FunctionTest, Problem
from search.problems.prompting import PromptStyleError, parse_style, render, resolve, stops_for

PROMPT = (
    "import math\n\n\n"
    "def helper(x):\n    return x + 1\n\n\n"
    'def double(x):\n    """Return 2 * x.\n    >>> double(2)\n    4\n    """\n'
)
PROBLEM = Problem(
    id="t/double",
    prompt=PROMPT,
    entry_point="double",
    public_tests=[FunctionTest(call="double(2)", expected="4")],
    hidden_tests=[FunctionTest(code="assert double(5) == 10")],
)


class NoTemplate:
    def chat_text(self, messages: Sequence[dict[str, str]]) -> str | None:
        return None


def run(program: str, call: str) -> object:
    namespace: dict[str, object] = {}
    exec(program, namespace)  # noqa: S102 - the test's own program
    return eval(call, namespace)  # noqa: S307


def test_completion_style_continues_the_prompt_as_is(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    p = render(PROBLEM, "completion", tiny_lm)
    assert p.model_text == PROMPT
    assert p.program("    return 2 * x\n") == PROMPT + "    return 2 * x\n"
    assert [s.key() for s in stops_for(p)] == ["toplevel"]


def test_chat_style_asks_in_the_template_and_primes_a_python_fence(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    p = render(PROBLEM, "chat", tiny_lm)
    assert "<|im_start|>user\nCan you complete the following Python function?\n```python\n" in p.model_text
    assert p.model_text.endswith("<|im_start|>assistant\n```python\n")
    assert [s.key() for s in stops_for(p)] == ["strings:('\\n```',)"]


def test_chat_prefill_writes_the_prompt_code_in_the_answer(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    p = render(PROBLEM, "chat-prefill", tiny_lm)
    assert p.model_text.endswith("<|im_start|>assistant\n```python\n" + PROMPT)
    assert p.program("    return 2 * x\n") == PROMPT + "    return 2 * x\n"
    assert [s.key() for s in stops_for(p)] == ["toplevel"]


def test_chat_answer_function_wins_and_prompt_helpers_stay() -> None:
    p = PROBLEM.model_copy(update={"prompt_style": "chat"})
    answer = "def double(x):\n    return helper(x) + x - 1 + math.floor(0.5)\n```\nThis doubles x."
    program = p.program(answer)
    assert program.startswith(PROMPT)
    assert "This doubles" not in program
    assert run(program, "double(21)") == 42
    assert PROMPT + p.prompt_completion(answer) == program


def test_chat_answer_with_only_a_body_continues_the_prompt() -> None:
    p = PROBLEM.model_copy(update={"prompt_style": "chat"})
    assert run(p.program("    return 2 * x\n```"), "double(4)") == 8


def test_chat_answer_to_an_uncompilable_prompt_gets_the_prompt_imports() -> None:
    p = Problem(id="t", prompt="import math\ndef f(x):\n", entry_point="f", prompt_style="chat")
    program = p.program("def f(x):\n    return math.sqrt(x)\n")
    assert program == "import math\ndef f(x):\n    return math.sqrt(x)\n"
    assert run(program, "f(9)") == 3.0


def test_unknown_style_names_the_styles_that_exist() -> None:
    with pytest.raises(PromptStyleError, match="use one of auto, completion, chat, chat-prefill"):
        parse_style("fancy")


def test_chat_styles_need_a_chat_template() -> None:
    with pytest.raises(PromptStyleError, match="needs a chat template"):
        render(PROBLEM, "chat", NoTemplate())
    assert render(PROBLEM, "auto", NoTemplate(), name="x-Instruct").prompt_style == "completion"


def test_auto_takes_the_measured_default_then_the_template(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    assert resolve("auto", tiny_lm, default="chat-prefill") == "chat-prefill"
    assert resolve("auto", tiny_lm, name="Qwen2.5-Coder-1.5B-Instruct") == "chat"
    assert resolve("auto", tiny_lm, name="Qwen2.5-Coder-1.5B") == "completion"


def test_rest_problem_gets_docstring_tests_and_kindless_call_tests() -> None:
    derived = ProblemIn(prompt=PROMPT).to_problem()
    assert derived.entry_point == "double"
    assert derived.public_tests_from == "docstring"
    assert [t.describe() for t in derived.public_tests] == ["double(2) == 4"]
    given = ProblemIn.model_validate(
        {"prompt": PROMPT, "public_tests": [{"call": "double(3)", "expected": "6"}]}
    ).to_problem()
    assert given.public_tests_from == "request"
    assert [t.describe() for t in given.public_tests] == ["double(3) == 6"]


@pytest.fixture
def engine(tiny_lm):  # type: ignore[no-untyped-def]
    cache = MemoryCache()
    return Engine(lm=tiny_lm, cache=cache, _scorer=TestScorer(open_executor(), cache=cache))


@pytest.mark.parametrize("style", ["completion", "chat", "chat-prefill"])
@pytest.mark.parametrize(
    ("planner", "params"),
    [
        ("greedy", {"max_new_tokens": 12}),
        ("beam", {"max_new_tokens": 8, "num_beams": 2}),
        ("best_of_n", {"max_new_tokens": 8, "n": 3, "batch_size": 2}),
        ("pgtd", {"max_new_tokens": 8, "rollouts": 3, "width": 2}),
        ("adadec", {"max_new_tokens": 8, "entropy_threshold": 0.5}),
        ("astar", {"max_new_tokens": 12, "max_expansions": 2, "k": 2}),
        ("vstar", {"max_new_tokens": 12, "rollouts": 2}),
        ("styles", {"max_new_tokens": 12}),
        ("cascade", {"max_new_tokens": 12, "search_params": {"rollouts": 2, "max_new_tokens": 12}}),
    ],
)
def test_every_planner_runs_in_every_style(engine, planner, params, style) -> None:  # type: ignore[no-untyped-def]
    report = engine.solve(PROBLEM, planner, params, include_tree=False, prompt_style=style)
    assert report.prompt_style == ("completion" if planner in ("styles", "cascade") else style)
    assert report.program == PROBLEM.prompt + report.prompt_completion
    assert report.hidden is not None and report.hidden.total == 1
    assert report.spend.generated_tokens > 0


def test_styles_planner_keeps_the_first_style_whose_program_passes(engine, tiny_lm) -> None:  # type: ignore[no-untyped-def]
    report = engine.solve(PROBLEM, "styles", {"max_new_tokens": 12, "early_stop": False}, include_tree=False)
    tried = [(c.meta or {})["style"] for c in report.candidates]
    assert tried == ["chat-prefill", "completion", "chat"]
    rewards = [c.reward for c in report.candidates]
    winner = report.candidates[rewards.index(max(rewards))]
    assert report.completion == winner.completion
    assert report.spend.executions + report.spend.cached_executions == 3


def test_styles_planner_answer_is_the_styles_own_program(engine, tiny_lm) -> None:  # type: ignore[no-untyped-def]
    styled = engine.solve(PROBLEM, "styles", {"max_new_tokens": 12, "styles": ["chat"]}, include_tree=False)
    plain = engine.solve(PROBLEM, "greedy", {"max_new_tokens": 12}, include_tree=False, prompt_style="chat")
    assert styled.program == plain.program


def test_problem_files_derive_docstring_tests_and_take_kindless_tests(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from search.problems.loaders import load_problem

    path = tmp_path / "p.json"
    path.write_text(
        '{"id": "d", "prompt": ' + json.dumps(PROMPT) + ', "entry_point": "double", '
        '"hidden_tests": [{"call": "double(5)", "expected": "10"}]}'
    )
    p = load_problem(str(path))
    assert p.public_tests_from == "docstring"
    assert [t.describe() for t in p.public_tests] == ["double(2) == 4"]
    assert [t.describe() for t in p.hidden_tests] == ["double(5) == 10"]


def test_cascade_searches_only_when_no_greedy_style_passes(engine) -> None:  # type: ignore[no-untyped-def]
    params = {"max_new_tokens": 12, "search_params": {"rollouts": 2, "max_new_tokens": 12}}
    report = engine.solve(PROBLEM, "cascade", params, include_tree=False)
    greedy = [c for c in report.candidates if "iteration" not in (c.meta or {})][:3]
    assert [(c.meta or {})["style"] for c in greedy] == ["chat-prefill", "completion", "chat"]
    searched = report.spend.extra.get("searched", 0)
    assert searched == (0 if any(c.reward == 1.0 for c in greedy) else 1)
    if searched:  # the tiny random model solves nothing: PG-TD ran in chat-prefill after the greedy styles
        assert len(report.candidates) > 3
        assert (report.candidates[3].meta or {})["style"] == "chat-prefill"
    untested = PROBLEM.model_copy(update={"public_tests": []})
    plain = engine.solve(untested, "cascade", params, include_tree=False)
    assert plain.spend.extra.get("searched", 0) == 0  # nothing to tell answers apart: no search
    assert len(plain.candidates) == 3


def test_styles_planner_renders_each_style_through_its_context(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    import planners
    from search.state.context import SearchContext

    asked: list[str] = []

    def renderer(problem: Problem, style: str) -> Problem:
        asked.append(style)
        return render(problem, style, tiny_lm)

    scorer = TestScorer(open_executor(), cache=MemoryCache())
    ctx = SearchContext.create(tiny_lm, scorer=scorer, renderer=renderer)
    params = {"max_new_tokens": 4, "early_stop": False}
    result = planners.create("styles", params).solve(render(PROBLEM, "chat", tiny_lm), ctx)
    assert asked == ["chat-prefill", "completion", "chat"]
    assert result.answer_style == "completion"  # every answer continues the prompt
