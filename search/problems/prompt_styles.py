"""The prompt styles' names, declared once for every surface, and each surface's default.

``search/problems/prompting.py`` renders a problem in a style; the REST and OpenAI schemas, the
CLI, the harness plugin, ``SolveSpec``, ``Problem`` and the planners that decode in several styles
all use these types, so the names are spelled here alone.

>>> STYLES
('auto', 'completion', 'chat', 'chat-prefill', 'evalplus')
"""

from __future__ import annotations

from typing import Literal, get_args

RenderedStyle = Literal["completion", "chat", "chat-prefill", "evalplus"]
"""A style a problem is rendered in (``evalplus``: EvalPlus's own instruction prompt for chat models)."""
PromptStyle = Literal["auto", RenderedStyle]
"""What a request may ask for: a style, or ``auto`` (the model's measured style, resolved when the
problem is rendered)."""
STYLES: tuple[PromptStyle, ...] = get_args(PromptStyle)

ReasoningStyle = Literal["chain-of-thought", "program-aided"]
"""A style an answer problem (a question with a checked final answer) is rendered in: reasoning in
prose up to a boxed answer, or a ``solution()`` function whose return value is the answer."""
REASONING_STYLES: tuple[ReasoningStyle, ...] = get_args(ReasoningStyle)
DEFAULT_REASONING_STYLE: ReasoningStyle = "chain-of-thought"
"""What ``auto`` means for an answer problem (until a style is measured best on GSM8K train)."""
REASONING_MAX_NEW_TOKENS: dict[str, int] = {"chain-of-thought": 512, "program-aided": 256}
"""Each reasoning style's room (a planner's ``max_new_tokens`` on an answer problem unless the request
sets it), chosen on 40 GSM8K train problems with the bundled model (``bench/reasoning_room.py``;
greedy there: 264 tokens a chain of thought, 73 a program, the longest 502 and 188)."""

AnyStyle = Literal[PromptStyle, ReasoningStyle]
"""What a request on any surface may name: a code problem's style, an answer problem's reasoning
style, or ``auto`` (each kind's own default); which kind of problem a style fits is checked when the
problem is known (``search/problems/prompting.py``: ``check_style``)."""
ALL_STYLES: tuple[AnyStyle, ...] = (*STYLES, *REASONING_STYLES)

# A request's style when it names none, one default per kind of surface:
DEFAULT_STYLE: PromptStyle = "auto"
"""REST, the CLI, the harness plugin, a ``SolveSpec``: the model's measured style."""
AS_SENT_STYLE: RenderedStyle = "completion"
"""The OpenAI routes, and a prompt that is not code: a client there sends the text to continue
(a raw prompt, or the turn its own messages make), so it is continued as sent, never re-rendered."""
