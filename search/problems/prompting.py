"""Prompt styles: how a problem becomes the text a model continues, and its answer a program.

A style owns three things at the engine's edge, so that planners stay in token ids:

- ``model_text``: what the model continues (the prompt itself, or a chat turn);
- where a continuation ends (its stop conditions);
- how a continuation becomes the program that is run.

``completion`` continues the code as it is (right for base models). ``chat`` wraps the problem in
the model's chat template: the user asks for the function, the answer is prefilled with a Python
fence, the model writes the whole function and stops at the closing fence. ``chat-prefill`` is
the same chat turn with the prompt's code already written in the answer, so the model continues
the body inside its own turn (chat-mode wording at completion-mode token cost).

An answer problem (a question with a checked final answer, ``Problem.final_answer``) is rendered
in a reasoning style instead: ``chain-of-thought`` puts the question in the chat template under
Qwen's math system prompt (reason step by step, the final answer in ``\\boxed{}``) and the whole
text is the answer's reasoning; ``program-aided`` asks for a Python function ``solution()`` that
returns the answer, prefills the code fence like ``chat``, and ends at the closing fence (the
sandbox runs ``solution()``: ``scorers/program_answers.py``). ``auto`` is chain of thought.

>>> p = Problem(id="t", prompt="def f(x):\\n    \\"\\"\\"Twice x.\\"\\"\\"\\n", entry_point="f")
>>> p.program("    return 2 * x\\n").endswith("return 2 * x\\n")
True
>>> chat = p.model_copy(update={"prompt_style": "chat"})
>>> chat.program("def f(x):\\n    return 2 * x\\n```").endswith("return 2 * x\\n")
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, cast

from search.limits.stops import StopCondition, StopStrings, TopLevelStop
from search.problems.problem import Problem, defines
from search.problems.prompt_styles import (
    ALL_STYLES,
    DEFAULT_REASONING_STYLE,
    REASONING_STYLES,
    STYLES,
    AnyStyle,
    PromptStyle,
    ReasoningStyle,
    RenderedStyle,
)
from search.problems.verification import labels

FENCE = "```"
CLOSING_FENCE = "\n" + FENCE
CODE_INSTRUCTION = "Can you complete the following Python function?"
# EvalPlus's instruction for chat models and the start of the answer (evalplus/codegen.py)
EVALPLUS_INSTRUCTION = (
    "Please provide a self-contained Python script that solves the following problem in a markdown "
    "code block:"
)
EVALPLUS_RESPONSE = (
    "Below is a Python script with a self-contained function that solves the problem and passes "
    "corresponding tests:"
)
# EvalPlus's stop strings for a chat model (evalplus/provider/utility.py: EOS, and the fence)
EVALPLUS_STOPS = (
    "<|endoftext|>",
    "<|endofmask|>",
    "</s>",
    "\nif __name__",
    "\ndef main(",
    "\nprint(",
    "\n```\n",
)
_SPLITTER = "-[[]]-this-is-really-our-highest-priority-[[]]-"
PROGRAM_INSTRUCTION = (
    "Write a complete Python program that solves the following task. "
    "Read the input from standard input and print the answer to standard output."
)
REASONING_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
"""Qwen's math system prompt (Qwen2.5-Math), for chain of thought."""
PROGRAM_AIDED_INSTRUCTION = (
    "Write a Python function `solution()` that solves the following problem and returns the final "
    "answer. Do not print the answer: return it. Put the whole function in one ```python code block."
)


class PromptStyleError(ValueError):
    """A style cannot be used with this model (for example chat without a chat template)."""


class ChatModel(Protocol):
    """What rendering needs from a model: its chat template (``None`` when it has none)."""

    def chat_text(self, messages: Sequence[dict[str, str]]) -> str | None: ...


def template_text(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str | None:
    """A tokenizer's chat template over ``messages``, ready for the assistant's turn (``None``
    when the tokenizer has no template)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return str(text)


class TokenizerText:
    """The text edges of a backend with a transformers tokenizer (``self.tokenizer``): special
    tokens are never added on encode and kept on decode, so text and ids round-trip."""

    tokenizer: Any

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=False))

    def chat_text(self, messages: Sequence[dict[str, str]]) -> str | None:
        return template_text(self.tokenizer, messages)


def user_message(problem: Problem) -> str:
    """The chat request: an instruction and the problem (code in a fence, or the task text)."""
    if problem.prompt_is_code:
        return f"{CODE_INSTRUCTION}\n{FENCE}python\n{problem.prompt.rstrip()}\n{FENCE}"
    return f"{PROGRAM_INSTRUCTION}\n\n{problem.prompt.strip()}"


def evalplus_turn(problem: Problem, lm: ChatModel) -> str | None:
    """EvalPlus's chat prompt (``evalplus/provider/utility.py``: ``make_raw_chat_prompt``): its
    instruction and the task in a fence as the user's turn, the answer opened with its response
    prefix and a Python fence (None when the model has no chat template)."""
    task = f"{EVALPLUS_INSTRUCTION}\n{FENCE}\n{problem.prompt.strip()}\n{FENCE}\n"
    answer = f"{EVALPLUS_RESPONSE}\n{FENCE}python\n{_SPLITTER}\n{FENCE}\n"
    text = lm.chat_text([{"role": "user", "content": task}, {"role": "assistant", "content": answer}])
    if text is None:
        return None
    if _SPLITTER in text:
        return text.split(_SPLITTER)[0]
    turn = lm.chat_text([{"role": "user", "content": task}])  # a template that drops the answer
    return None if turn is None else f"{turn}{EVALPLUS_RESPONSE}\n{FENCE}python\n"


def render(
    problem: Problem, style: str, lm: ChatModel, default: str | None = None, name: str = ""
) -> Problem:
    """The problem as the model will see it in ``style``; ``auto`` takes ``default`` (a model's
    measured style), else chat for an instruct model (by ``name``) with a template, else completion.
    An answer problem is rendered in a reasoning style (``auto``: chain of thought)."""
    if problem.final_answer is not None:
        return render_reasoning(problem, style, lm)
    if style in REASONING_STYLES:
        raise PromptStyleError(
            f"prompt style {style!r} is for questions with a final answer (answer problems); "
            f"a code problem takes one of {', '.join(STYLES)}"
        )
    chosen = resolve(style, lm, default, name)
    if chosen == "completion":
        return problem.model_copy(update={"prompt_style": chosen, "model_prompt": None})
    if chosen == "evalplus":
        turn = evalplus_turn(problem, lm)
        if turn is None:
            raise PromptStyleError(
                "prompt style 'evalplus' needs a chat template and this model has none; "
                "use --prompt-style completion"
            )
        return problem.model_copy(update={"prompt_style": chosen, "model_prompt": turn})
    turn = lm.chat_text([{"role": "user", "content": user_message(problem)}])
    if turn is None:
        raise PromptStyleError(
            f"prompt style {chosen!r} needs a chat template and this model has none; "
            "use --prompt-style completion"
        )
    prefill = f"{FENCE}python\n"
    if chosen == "chat-prefill" and problem.prompt_is_code:
        prefill += problem.prompt
    return problem.model_copy(update={"prompt_style": chosen, "model_prompt": turn + prefill})


def question_text(problem: Problem) -> str:
    """An answer problem's question as the model reads it, with its options when it has some.

    >>> from search.problems.answers import FinalAnswer
    >>> choice = FinalAnswer(type="choice", choices=["sun", "sky"])
    >>> p = Problem(id="q", prompt="Which is blue?", final_answer=choice)
    >>> print(question_text(p))
    Which is blue?
    <BLANKLINE>
    A) sun
    B) sky
    """
    question = problem.prompt.strip()
    choices = problem.final_answer.choices if problem.final_answer else None
    if not choices:
        return question
    options = "\n".join(
        f"{label}) {choice}" for label, choice in zip(labels(len(choices)), choices, strict=True)
    )
    return f"{question}\n\n{options}"


def reasoning_messages(problem: Problem, style: ReasoningStyle) -> list[dict[str, str]]:
    """The chat turn of an answer problem in a reasoning style (never its reference answer)."""
    if style == "chain-of-thought":
        return [
            {"role": "system", "content": REASONING_SYSTEM},
            {"role": "user", "content": question_text(problem)},
        ]
    return [{"role": "user", "content": f"{PROGRAM_AIDED_INSTRUCTION}\n\n{question_text(problem)}"}]


def parse_reasoning_style(style: str) -> ReasoningStyle:
    """A reasoning style by name (``auto``: the default one); any other name fails with the names."""
    if style == "auto":
        return DEFAULT_REASONING_STYLE
    if style not in REASONING_STYLES:
        raise PromptStyleError(
            f"prompt style {style!r} is not one for a question with a final answer; "
            f"use one of auto, {', '.join(REASONING_STYLES)}"
        )
    return cast(ReasoningStyle, style)


def render_reasoning(problem: Problem, style: str, lm: ChatModel) -> Problem:
    """An answer problem in a reasoning style: the chat turn, and for program-aided answers the
    opened code fence."""
    chosen = parse_reasoning_style(style)
    turn = lm.chat_text(reasoning_messages(problem, chosen))
    if turn is None:
        raise PromptStyleError(f"prompt style {chosen!r} needs a chat template and this model has none")
    prefill = f"{FENCE}python\n" if chosen == "program-aided" else ""
    return problem.model_copy(update={"prompt_style": chosen, "model_prompt": turn + prefill})


def parse_style(style: str) -> PromptStyle:
    """A style by name; an unknown name fails with the names that exist."""
    if style not in STYLES:
        raise PromptStyleError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    return cast(PromptStyle, style)


def parse_any_style(style: str) -> AnyStyle:
    """A style of either kind by name (what a surface accepts before it knows the problem); an
    unknown name fails with every name that exists."""
    if style not in ALL_STYLES:
        raise PromptStyleError(f"unknown prompt style {style!r}; use one of {', '.join(ALL_STYLES)}")
    return cast(AnyStyle, style)


def check_style(problem: Problem, style: str) -> None:
    """Refuse a style that does not fit the problem's kind, naming the styles that do: a code
    style for a question with a final answer, or a reasoning style for a code problem.

    >>> from search.problems.answers import FinalAnswer
    >>> question = Problem(id="q", prompt="2 + 3?", final_answer=FinalAnswer())
    >>> try:
    ...     check_style(question, "chat")
    ... except PromptStyleError as e:
    ...     print(str(e)[:59])
    prompt style 'chat' is for code problems; a question with a
    """
    parse_any_style(style)
    if problem.final_answer is not None and style not in ("auto", *REASONING_STYLES):
        raise PromptStyleError(
            f"prompt style {style!r} is for code problems; a question with a final answer takes one "
            f"of auto, {', '.join(REASONING_STYLES)}"
        )
    if problem.final_answer is None and style in REASONING_STYLES:
        raise PromptStyleError(
            f"prompt style {style!r} is for questions with a final answer; a code problem takes one "
            f"of {', '.join(STYLES)}"
        )


def resolve(style: str, lm: ChatModel, default: str | None = None, name: str = "") -> RenderedStyle:
    """The concrete style ``style`` stands for with this model (``name``: its name, which tells an
    instruct model from a base model that merely ships a template)."""
    chosen = parse_style(style)
    if chosen == "auto" and default is not None:
        chosen = parse_style(default)
    if chosen != "auto":
        return chosen
    if not _INSTRUCT.search(name):
        return "completion"
    has_template = lm.chat_text([{"role": "user", "content": "hi"}]) is not None
    return "chat" if has_template else "completion"


_INSTRUCT = re.compile(r"instruct|chat|(?:^|[-_])it(?:$|[-_])", re.I)


def stops_for(problem: Problem) -> list[StopCondition]:
    """Where a continuation of this problem ends. Continuing a function (a code prompt that
    defines its entry point): at a new top-level statement, which also catches a closing fence. A
    whole answer in a chat turn (a program-aided one too), or code written after a prompt that does
    not define the entry point (MBPP+'s docstring) inside one: at the closing fence. Reasoning in
    prose: at the model's end of turn only. Plus the problem's own stop strings. The ``evalplus``
    style stops where EvalPlus stops a chat model, and nowhere else."""
    if problem.prompt_style == "evalplus":
        return [StopStrings(EVALPLUS_STOPS)]
    stops: list[StopCondition] = []
    whole_answer = problem.prompt_style in ("chat", "program-aided") or (
        problem.prompt_style == "chat-prefill" and not problem.prompt_is_code
    )
    continues_function = (
        problem.prompt_is_code
        and problem.entry_point is not None
        and defines(problem.prompt, problem.entry_point)
    )
    if whole_answer or (problem.prompt_style == "chat-prefill" and not continues_function):
        stops.append(StopStrings((CLOSING_FENCE,)))
    elif continues_function:
        stops.append(TopLevelStop())
    if problem.stop:
        stops.append(StopStrings(problem.stop))
    return stops
