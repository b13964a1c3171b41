"""OpenAI-compatible routes: any harness that speaks the API becomes a client of search decoding.

``model`` selects the planner (``treedec-greedy``, ``treedec-pgtd``...; ``GET /v1/models`` lists
them). Extra body fields carry what a search needs: ``tests`` (public tests: assert strings or
test objects), ``entry_point``, ``budget`` and ``params`` (the planner's). ``max_tokens`` caps the
completion (the planner's ``max_new_tokens``; the whole search's token budget is
``budget.max_tokens``), ``stop`` strings end it, ``n`` asks for that many
searches per prompt (seeded differently when the planner has a ``seed``), ``temperature`` and
``top_p`` reach planners that have them. Answers follow the OpenAI schema, plus a ``treedec``
field per response with each choice's job id, spend and public-test result (and, with best-of-N's
``selector=behaviour``, the behaviour groups and their sizes).

Chat: the prompt is the tokenizer's chat template over the messages, unless the last message is
code to continue (a function prefix), which is then completed as is. When the last user message
holds a Python function (in a code fence, as evaluation harnesses send HumanEval), that function
becomes the problem: its name the entry point, its docstring examples the public tests (unless
``tests`` are given), and the answer turn is primed with a Python fence, so search planners have a
reward; each choice's content is one fenced program. Without a function but with ``tests``, the
templated prompt is primed the same way.

A chat request with ``answer_type`` (``number``, ``math``, ``choice`` or ``string``; with
``answer``, an optional reference that only judges, and ``choices``) is a question with a final
answer: its last user message is the question, rendered in a reasoning style (``prompt_style``:
``auto``, ``chain-of-thought`` or ``program-aided``), and each choice's content is the reasoning
with its final answer; ``treedec`` then holds each choice's ``final_answer`` (the answer, the rule
that found it, the verdict). Without ``answer_type``, a message holding no Python function is
answered in prose as sent, never run in the sandbox; a search planner then has nothing to steer by
and its ``treedec`` entry says so (``no_signal``).

``prompt_style``: a request that names none is continued as sent (``AS_SENT_STYLE``, completion),
where REST and the harness default to the model's measured style: an OpenAI client sends the very
text to continue (a raw prompt, or its own messages), and it gets that text continued.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import JsonValue

from api.core.contracts import SolveReport
from api.core.prompts import code_in_message, last_function, looks_like_code, problem_from_prompt
from api.core.specs import build_solve_spec
from api.http.errors import APIError, error_responses
from api.http.schemas import IO_TESTS_ONLY, NonBlank, strict_body
from api.jobs.backend import JobView
from search.limits.budget import Budget
from search.problems.answer_problems import AnswerRecord
from search.problems.problem import Problem, TestCase, answer_code, with_kind
from search.problems.prompt_styles import AS_SENT_STYLE, DEFAULT_STYLE, REASONING_STYLES, AnyStyle
from search.problems.verification import AnswerType

if TYPE_CHECKING:
    from api.http.state import ServerState

MODEL_PREFIX = "treedec-"
FENCE = "```python\n"


# Function tests need an entry point (given, or the prompt's last top-level def when it is code);
# the schema asks for it whenever a test is not an IO test.
_ENTRY_POINT_RULE: list[JsonValue] = [
    {"required": ["entry_point"], "properties": {"entry_point": {"type": "string"}}},
    {"properties": {"tests": {"anyOf": [{"type": "null"}, IO_TESTS_ONLY]}}},
]
TokenId = Annotated[int, Field(ge=0, description="a token id of the model's vocabulary")]


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": _ENTRY_POINT_RULE})
    model: str = Field(description="treedec-<planner> (GET /v1/models)")
    max_tokens: int | None = Field(None, ge=1, le=8192)  # one completion's length: max_new_tokens
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, description="searches per prompt (at most the server's max_n)")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = Field(
        False,
        description="not supported (searches answer when done; follow a job's events instead): false only",
        json_schema_extra={"enum": [False]},
    )
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    # treedec extensions
    tests: list[TestCase | NonBlank] | None = Field(
        None, description="public tests for test-driven planners (a string: assert-style code)"
    )
    entry_point: str | None = Field(None, min_length=1, description="the function the tests call")
    budget: Budget = Field(default_factory=Budget)
    params: dict[str, Any] = Field(default_factory=dict, description="the planner's parameters")
    prompt_style: AnyStyle | None = Field(
        None,
        description="render a code prompt in this style (completions: default completion, the prompt "
        "is continued as sent; chat: default the client's own messages); a chat question with "
        "answer_type: auto (default), chain-of-thought or program-aided",
    )

    @field_validator("tests", mode="before")
    @classmethod
    def _test_kinds(cls, value: Any) -> Any:
        return [with_kind(t) for t in value] if isinstance(value, list) else value

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_Common):
    prompt: (
        NonBlank
        | Annotated[list[NonBlank], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
    ) = Field(
        description="text, texts, token ids, or lists of token ids (at most the server's max_prompts); "
        "not blank: token ids must be in the model's vocabulary and decode to some non-blank text"
    )
    echo: bool = Field(
        False,
        description="not supported (no log-likelihood scoring): false only",
        json_schema_extra={"enum": [False]},
    )
    logprobs: int | None = Field(
        None,
        description="not supported (no log-likelihood scoring): null only",
        json_schema_extra={"enum": [None]},
    )
    best_of: int | None = None
    suffix: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return self.content or ""


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    answer_type: AnswerType | None = Field(
        None,
        description="makes the request a question with a final answer of this type: the last user "
        "message is the question, searched as one (no code, no tests)",
    )
    choices: list[NonBlank] | None = Field(
        None, min_length=2, max_length=26, description="a choice question's options (with answer_type)"
    )
    answer: NonBlank | int | float | None = Field(
        None, description="a reference answer (with answer_type): it only judges, the search never sees it"
    )
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    logprobs: bool | None = Field(
        None, description="not supported: false or null only", json_schema_extra={"enum": [False, None]}
    )
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None


def _planner_of(state: ServerState, model: str) -> str:
    name = model.removeprefix(MODEL_PREFIX)
    import planners

    if name not in planners.names():
        raise APIError(
            404,
            f"unknown model {model!r}; models are {', '.join(MODEL_PREFIX + n for n in planners.names())}"
            " (GET /v1/models)",
            "model",
        )
    return name


def _check_common(state: ServerState, req: _Common) -> None:
    if req.stream:
        raise APIError(
            400,
            "'stream' is not supported: searches answer when done; follow progress with "
            "POST /v1/jobs and GET /v1/jobs/{id}/events",
            "stream",
        )
    if req.n > state.settings.max_n:
        raise APIError(
            422, f"invalid value for 'n': {req.n} is above this server's limit of {state.settings.max_n}", "n"
        )


def _search_params(cls: Any, req: _Common, max_new_tokens: int | None, choice: int) -> dict[str, Any]:
    """The planner's parameters for one choice: the request's ``max_tokens`` (a completion's length)
    is every planner's ``max_new_tokens``; sampling settings reach the planners that have them."""
    params = dict(req.params)
    fields = cls.Params.model_fields
    if max_new_tokens is not None:
        params["max_new_tokens"] = max_new_tokens
    if req.temperature is not None and req.temperature > 0 and "temperature" in fields:
        params["temperature"] = req.temperature
    if req.top_p is not None and "top_p" in fields:
        params["top_p"] = req.top_p
    if "seed" in fields and (req.seed is not None or choice):
        params["seed"] = (req.seed if req.seed is not None else int(params.get("seed", 0))) + choice
    return params


async def _run(
    state: ServerState, req: _Common, problems: list[Problem], max_new_tokens: int | None, prefix: str
) -> tuple[list[tuple[JobView, SolveReport]], str]:
    """Run the searches; each job with its report (a search that did not succeed is a 500)."""
    planner = _planner_of(state, req.model)
    cls = state.check_planner(
        planner, _search_params(planners_get(planner), req, max_new_tokens, 0), "model", "params"
    )
    budget = state.effective_budget(req.budget)
    specs = []
    for problem in problems:
        state.check_problem(problem, prefix)
        style = req.prompt_style or (DEFAULT_STYLE if problem.final_answer is not None else AS_SENT_STYLE)
        if problem.final_answer is not None or req.prompt_style in REASONING_STYLES:
            state.check_fit(planner, problem, style, "model")
        for choice in range(req.n):
            specs.append(
                build_solve_spec(
                    problem,
                    planner,
                    _search_params(cls, req, max_new_tokens, choice),
                    budget,
                    include_tree=False,
                    evaluate_hidden=False,
                    prompt_style=style,
                )
            )
    jobs = state.submit(specs)
    await state.wait(jobs)
    failed = [j for j in jobs if j.status != "succeeded"]
    if failed:
        raise APIError(
            500,
            f"a search {failed[0].status} (error id {failed[0].error_id}): {failed[0].error}",
            None,
            "internal_error",
        )
    done = [(j, j.result) for j in jobs]
    missing = [j for j, r in done if r is None]
    if missing:
        raise APIError(500, f"search {missing[0].id} succeeded without a result", None, "internal_error")
    return [(j, r) for j, r in done if r is not None], planner


def planners_get(name: str) -> Any:
    import planners

    return planners.get(name)


def _finish_reason(lm: Any, text: str, max_new_tokens: int | None, report: SolveReport) -> str:
    if report.stop_reason == "length":
        return "length"
    if max_new_tokens is not None and len(lm.encode(text)) >= max_new_tokens:
        return "length"
    return "stop"


def _extras(job: JobView, report: SolveReport) -> dict[str, Any]:
    extras = {
        "job_id": job.id,
        "spend": report.spend.to_dict(),
        "stop_reason": report.stop_reason,
        "public": report.public.model_dump() if report.public is not None else None,
        **({"groups": [g.model_dump() for g in report.groups]} if report.groups is not None else {}),
    }
    if report.final_answer is not None:
        extras["final_answer"] = report.final_answer.model_dump()
    if report.no_signal is not None:
        extras["no_signal"] = report.no_signal
    return extras


def add_openai_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        import planners

        created = int(time.time())
        # every planner searches over one model: name it and its weight format (a bf16 and an
        # int8 server give different answers)
        served = {"model": state.engine.model_spec, "weights": state.engine.weights()}
        return {
            "object": "list",
            "data": [
                {
                    "id": MODEL_PREFIX + p["name"],
                    "object": "model",
                    "created": created,
                    "owned_by": "treedec",
                    "description": p["description"],
                    "treedec": served,
                }
                for p in planners.describe()
            ],
        }

    @app.post("/v1/completions", responses=error_responses(400, 404, 413, 422, 429, 500, 504))
    async def completions(req: CompletionRequest, request: Request) -> dict[str, Any]:
        req = await strict_body(request, CompletionRequest)
        _check_common(state, req)
        if req.echo or req.logprobs is not None:
            raise APIError(
                400,
                "'echo'/'logprobs' (log-likelihood scoring) are not supported: treedec returns "
                "searched completions",
                "logprobs" if req.logprobs is not None else "echo",
            )
        lm = state.engine.model()
        prompts = _prompts(lm, req.prompt)
        if len(prompts) > state.settings.max_prompts:
            raise APIError(
                413, f"'prompt' has {len(prompts)} prompts; at most {state.settings.max_prompts}", "prompt"
            )
        problems = [_problem(prompt, req, None, f"prompt-{i}") for i, prompt in enumerate(prompts)]
        jobs, planner = await _run(state, req, problems, req.max_tokens, "prompt")
        choices, completion_tokens = [], 0
        for i, (_, report) in enumerate(jobs):
            text = report.completion or ""
            completion_tokens += len(lm.encode(text))
            choices.append(
                {
                    "index": i,
                    "text": report.prompt_completion,
                    "logprobs": None,
                    "finish_reason": _finish_reason(lm, text, req.max_tokens, report),
                }
            )
        prompt_tokens = sum(len(lm.encode(p)) for p in prompts)
        return _response(
            "cmpl-", "text_completion", req.model, choices, prompt_tokens, completion_tokens, jobs
        )

    @app.post("/v1/chat/completions", responses=error_responses(400, 404, 413, 422, 429, 500, 504))
    async def chat(req: ChatRequest, request: Request) -> dict[str, Any]:
        req = await strict_body(request, ChatRequest)
        _check_common(state, req)
        if req.logprobs:
            raise APIError(
                400, "'logprobs' is not supported: treedec returns searched completions", "logprobs"
            )
        lm = state.engine.model()
        max_new_tokens = req.max_completion_tokens or req.max_tokens
        if req.answer_type is not None:
            return await _answer_chat(state, req, lm, max_new_tokens)
        if req.answer is not None or req.choices is not None:
            field = "answer" if req.answer is not None else "choices"
            raise APIError(422, f"invalid value for '{field}': it needs answer_type (a question)", field)
        problem = _function_problem(lm, req)
        primed: str | None = FENCE if problem is not None else None
        prompt = problem.model_text if problem is not None else ""
        if problem is None:
            prompt, primed = _chat_prompt(lm, req)
            problem = _problem(prompt, req, primed, "chat")
            if primed is None and not problem.prompt_is_code and not req.tests:
                problem = problem.model_copy(update={"answer_is_text": True})  # prose: nothing to run
            if primed is not None:
                stops = list(problem.stop or []) + ["```"]
                problem = problem.model_copy(update={"stop": stops})
        jobs, planner = await _run(state, req, [problem], max_new_tokens, "messages")
        choices, completion_tokens = [], 0
        for i, (_, report) in enumerate(jobs):
            text = report.completion or ""
            completion_tokens += len(lm.encode(text))
            if problem.model_prompt is not None and problem.prompt_is_code:
                text = answer_code(text)
            content = f"{FENCE}{text.rstrip()}\n```" if primed is not None else text
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": _finish_reason(lm, text, max_new_tokens, report),
                }
            )
        prompt_tokens = len(lm.encode(prompt))
        return _response(
            "chatcmpl-", "chat.completion", req.model, choices, prompt_tokens, completion_tokens, jobs
        )


def _response(
    id_prefix: str,
    kind: str,
    model: str,
    choices: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    jobs: list[tuple[JobView, SolveReport]],
) -> dict[str, Any]:
    """The OpenAI response envelope shared by completions and chat, plus treedec's own extras."""
    return {
        "id": id_prefix + uuid.uuid4().hex[:24],
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "treedec": [_extras(j, r) for j, r in jobs],
    }


def vocab_size(lm: Any) -> int | None:
    """Token ids the model's tokenizer knows (None: the backend does not say)."""
    tokenizer = getattr(lm, "tokenizer", None)
    try:
        return len(tokenizer) if tokenizer is not None else None
    except TypeError:
        return None


def _prompts(lm: Any, prompt: Any) -> list[str]:
    """The prompt texts; token ids must be in the vocabulary and decode to some non-blank text."""
    if isinstance(prompt, str):
        return [prompt]
    if all(isinstance(p, str) for p in prompt):
        return list(prompt)
    id_lists = [prompt] if all(isinstance(x, int) for x in prompt) else prompt
    vocab = vocab_size(lm)
    texts = []
    for ids in id_lists:
        outside = [t for t in ids if vocab is not None and t >= vocab]
        if outside:
            raise APIError(
                422,
                f"invalid value for 'prompt': token id {outside[0]} is outside the model's vocabulary "
                f"(0..{vocab - 1 if vocab else 0})",
                "prompt",
            )
        try:
            text = lm.decode(ids)
        except (OverflowError, ValueError, IndexError) as e:
            message = f"invalid value for 'prompt': the token ids do not decode ({e})"
            raise APIError(422, message, "prompt") from e
        if not text.strip():
            raise APIError(422, "invalid value for 'prompt': the token ids decode to blank text", "prompt")
        texts.append(text)
    return texts


def _problem(prompt: str, req: _Common, primed: str | None, pid: str) -> Problem:
    try:
        return problem_from_prompt(
            prompt,
            req.entry_point,
            req.tests,
            req.stops(),
            is_code=False if primed is not None else None,
            problem_id=pid,
        )
    except ValueError as e:
        errors = e.errors() if isinstance(e, ValidationError) else []
        text = str(errors[0].get("msg", "")) if errors else str(e)
        msg = text.removeprefix("Value error, ").splitlines()[0]
        param = "entry_point" if "entry_point" in msg else "tests" if "test" in msg else "prompt"
        raise APIError(422, f"invalid value for '{param}': {msg}", param) from e


def _function_problem(lm: Any, req: ChatRequest) -> Problem | None:
    """A problem for a chat request whose last user message holds a Python function: the code is
    the problem (entry point, docstring tests), the client's messages are the model's prompt."""
    if looks_like_code(req.messages[-1].text()):
        return None  # a code prefix to continue as is (see _chat_prompt)
    users = [m for m in req.messages if m.role == "user"]
    code = code_in_message(users[-1].text()) if users else None
    if code is None or (req.entry_point is None and last_function(code) is None):
        return None
    base = _problem(code, req, None, "chat")
    if not base.prompt_is_code or base.entry_point is None:
        return None
    style = req.prompt_style
    if style not in (None, "chat"):
        return base.model_copy(update={"id": "chat"})  # rendered by the engine in that style
    turn = lm.chat_text([{"role": m.role, "content": m.text()} for m in req.messages])
    if turn is None:
        return None
    return base.model_copy(update={"prompt_style": "chat", "model_prompt": turn + FENCE})


def _chat_prompt(lm: Any, req: ChatRequest) -> tuple[str, str | None]:
    """The prompt, and the priming text appended to it (None when none was)."""
    last = req.messages[-1].text()
    if looks_like_code(last):
        return last, None
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    prompt = lm.chat_text(messages)
    if prompt is None:
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    if req.tests:
        if req.entry_point is None:
            req.entry_point = last_function(
                "\n".join(m["content"] for m in messages).replace("```python", "\n")
            )
        return prompt + FENCE, FENCE
    return prompt, None


def _question(req: ChatRequest) -> Problem:
    """The question with a final answer a chat request asks: its last user message with text."""
    asked = [m.content for m in req.messages if m.role == "user" and isinstance(m.content, str)]
    asked = [text for text in asked if text.strip()]
    if not asked:
        raise APIError(
            422,
            "invalid value for 'messages': a question needs a user message whose text asks it",
            "messages",
        )
    if req.tests:
        raise APIError(422, "invalid value for 'tests': a question with a final answer has no tests", "tests")
    try:
        record = AnswerRecord(
            id="chat",
            question=asked[-1],
            answer=None if req.answer is None else str(req.answer),
            answer_type=req.answer_type or "number",
            choices=req.choices,
        )
    except ValidationError as e:
        msg = str(e.errors()[0].get("msg", "")).removeprefix("Value error, ")
        field = "answer" if msg.startswith("answer: ") else "messages"
        raise APIError(422, f"invalid value for '{field}': {msg.removeprefix('answer: ')}", field) from e
    return record.to_problem("chat")


def answer_content(report: SolveReport) -> str:
    """A question's choice: the reasoning as written, and for a program-aided answer (code) the
    value its ``solution()`` returned, or why there is none."""
    text = (report.completion or "").rstrip()
    if report.prompt_style != "program-aided" or report.final_answer is None:
        return text
    answer = report.final_answer.answer
    said = (
        f"The final answer is {answer.text}." if answer.text is not None else f"No answer: {answer.reason}."
    )
    return f"{FENCE}{answer_code(text).rstrip()}\n```\n\n{said}"


async def _answer_chat(
    state: ServerState, req: ChatRequest, lm: Any, max_new_tokens: int | None
) -> dict[str, Any]:
    """A question with a final answer: ``n`` searches, each choice the reasoning with its answer."""
    problem = _question(req)
    jobs, _ = await _run(state, req, [problem], max_new_tokens, "messages")
    choices, completion_tokens, prompt_tokens = [], 0, 0
    for i, (_, report) in enumerate(jobs):
        text = report.completion or ""
        completion_tokens += len(lm.encode(text))
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": answer_content(report)},
                "logprobs": None,
                "finish_reason": _finish_reason(lm, text, max_new_tokens, report),
            }
        )
    rendered = state.engine.render(problem, req.prompt_style or DEFAULT_STYLE)
    prompt_tokens = len(lm.encode(rendered.model_text))
    return _response(
        "chatcmpl-", "chat.completion", req.model, choices, prompt_tokens, completion_tokens, jobs
    )
