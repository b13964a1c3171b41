"""The OpenAPI document of one server: what its request models say, plus what only the server
knows, so that every request the schema allows is accepted and every other one refused.

The models (``api/http/schemas.py``, ``api/http/openai_routes.py``) state the fixed rules: non-blank
prompts, function tests with an entry point, unsupported OpenAI options. This module adds, per
server: its limits (``ServerSettings``: prompt length, tests, token budget, ``n``, prompts per
call), the model's vocabulary (token-id prompts), and the planners: ``planner`` (or ``model``)
is one of the registered ones and ``params`` follows that planner's parameter schema (no planner
needs public tests: without any it answers without a test reward). ``schemathesis``
checks the server against this document (tests/test_contract.py).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import planners
from api.http.errors import ERROR_DESCRIPTIONS
from api.http.schemas import ServerSettings

REF = "#/components/schemas/{model}"
DEFAULT_PLANNER = "greedy"


def server_openapi(app: FastAPI, settings: ServerSettings, lm: Any) -> dict[str, Any]:
    """The app's OpenAPI document with this server's limits, model (``lm``: its vocabulary, the
    planner parameters it needs) and planners (cached on the app)."""
    if app.openapi_schema is None:
        from api.http.openai_routes import vocab_size

        vocab = vocab_size(lm)
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = doc["components"]["schemas"]
        use_error_model(doc)
        add_limits(schemas, settings, vocab)
        add_planners(schemas, lm, settings.prm_models)
        add_problem_kinds(schemas)
        app.openapi_schema = doc
    return app.openapi_schema


def use_error_model(doc: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body; this server answers every error in ``ErrorResponse``."""
    ours = {"$ref": REF.format(model="ErrorResponse")}
    for operations in doc["paths"].values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is not None:
                response["description"] = ERROR_DESCRIPTIONS[422]
                response["content"] = {"application/json": {"schema": ours}}
    for name in ("HTTPValidationError", "ValidationError"):
        doc["components"]["schemas"].pop(name, None)


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas a property may take (its anyOf branches, or itself)."""
    return list(prop.get("anyOf", [prop]))


def _cap(prop: dict[str, Any], key: str, value: int) -> None:
    """Lower ``key`` (maximum, maxLength, maxItems) to ``value`` on the branches where it applies."""
    kind = {"maximum": "integer", "maxLength": "string", "maxItems": "array"}[key]
    for branch in _branches(prop):
        if branch.get("type") == kind:
            branch[key] = min(value, branch.get(key, value))


def add_limits(schemas: dict[str, Any], settings: ServerSettings, vocab: int | None) -> None:
    """The server's limits (a request beyond them gets a 413 or 422 that names the field)."""
    _cap(schemas["Budget"]["properties"]["max_tokens"], "maximum", settings.max_budget_tokens)
    problem = schemas["ProblemIn"]["properties"]
    _cap(problem["prompt"], "maxLength", settings.max_prompt_chars)
    for name in ("public_tests", "hidden_tests"):
        _cap(problem[name], "maxItems", settings.max_tests)
    for request in ("CompletionRequest", "ChatRequest"):
        props = schemas[request]["properties"]
        _cap(props["n"], "maximum", settings.max_n)
        _cap(props["tests"], "maxItems", settings.max_tests)
    for branch in _branches(schemas["CompletionRequest"]["properties"]["prompt"]):
        if branch.get("type") == "string":
            branch["maxLength"] = settings.max_prompt_chars
            continue
        items = branch["items"]
        if items.get("type") == "array":  # lists of token-id lists: one prompt each
            branch["maxItems"] = settings.max_prompts
            items = items["items"]
        elif items.get("type") == "string":
            branch["maxItems"] = settings.max_prompts
            items["maxLength"] = settings.max_prompt_chars
        if items.get("type") == "integer" and vocab is not None:
            items["maximum"] = vocab - 1


def _prm_rule(params: dict[str, Any], allowed: list[str]) -> None:
    """A planner's ``prm`` is one of the server's process reward models (none: scorer=code only)."""
    props = params["properties"]
    if "prm" not in props:
        return
    props["prm"] = {"anyOf": [{"type": "null"}, *[{"const": m} for m in allowed]], "default": None}
    if "scorer" not in props:  # a planner that takes a PRM without choosing a scorer (beam, best_of_n)
        return
    if not allowed:
        props["scorer"] = {"const": "code", "default": "code"}
        return
    params["anyOf"] = [
        {"properties": {"scorer": {"const": "code"}}},
        {"required": ["scorer", "prm"], "properties": {"prm": {"type": "string"}}},
    ]


def _params_schemas(schemas: dict[str, Any], lm: Any, prm_models: list[str]) -> dict[str, str]:
    """Each planner's parameter schema as a component, with the parameters it needs on this model
    required and not null; planner name -> its $ref."""
    refs = {}
    for name in planners.names():
        cls = planners.get(name)
        params = cls.Params.model_json_schema(ref_template=REF)
        _prm_rule(params, prm_models)
        for needed in cls.required_params(lm):
            prop = params["properties"][needed]
            prop.pop("default", None)
            prop["anyOf"] = [b for b in _branches(prop) if b.get("type") != "null"]
            params["required"] = sorted({*params.get("required", []), needed})
        for def_name, definition in params.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        component = f"PlannerParams_{name}"
        params["title"] = f"parameters of {name}"
        schemas[component] = params
        refs[name] = REF.format(model=component)
    return refs


def _nested_search_rule(schemas: dict[str, Any], refs: dict[str, str]) -> None:
    """A planner that runs another (``cascade``: ``search`` and ``search_params``) takes that
    planner's parameters in ``search_params``: one branch per planner ``search`` may name."""
    for ref in refs.values():
        params = schemas[ref.rsplit("/", 1)[1]]
        props = params.get("properties", {})
        if "search" not in props or "search_params" not in props:
            continue
        choices = props["search"].get("enum") or [props["search"].get("const")]
        default = props["search"].get("default")
        branches = []
        for s in choices:
            if s not in refs:
                continue
            fits = {"search": {"const": s}, "search_params": {"$ref": refs[s]}}
            branch: dict[str, Any] = {"properties": fits}
            if s != default:  # without ``search``, the default planner's parameters apply
                branch["required"] = ["search"]
            branches.append(branch)
        _add_rule(params, branches)


def _add_rule(schema: dict[str, Any], branches: list[dict[str, Any]]) -> None:
    """Require one of ``branches`` besides what the schema already requires."""
    rules = schema.pop("allOf", [])
    if "anyOf" in schema:
        rules.append({"anyOf": schema.pop("anyOf")})
    rules.append({"anyOf": branches})
    schema["allOf"] = rules


def add_planners(schemas: dict[str, Any], lm: Any, prm_models: list[str]) -> None:
    """``planner``/``model`` name a registered planner and ``params`` follow its parameters."""
    refs = _params_schemas(schemas, lm, prm_models)
    _nested_search_rule(schemas, refs)
    names = sorted(refs)

    solve = schemas["SolveRequest"]
    solve["properties"]["planner"]["enum"] = names
    variants = []
    for name in names:
        variant: dict[str, Any] = {
            "properties": {"planner": {"const": name}, "params": {"$ref": refs[name]}},
        }
        needs_params = bool(planners.get(name).required_params(lm))
        variant["required"] = (["planner"] if name != DEFAULT_PLANNER else []) + (
            ["params"] if needs_params else []
        )
        variants.append(variant)
    _add_rule(solve, variants)

    from api.http.openai_routes import MODEL_PREFIX

    for request in ("CompletionRequest", "ChatRequest"):
        schema = schemas[request]
        schema["properties"]["model"]["enum"] = [MODEL_PREFIX + n for n in names]
        variants = []
        for name in names:
            variant = {
                "properties": {"model": {"const": MODEL_PREFIX + name}, "params": {"$ref": refs[name]}},
            }
            variant["required"] = ["params"] if planners.get(name).required_params(lm) else []
            variants.append(copy.deepcopy(variant))
        _add_rule(schema, variants)


def add_problem_kinds(schemas: dict[str, Any]) -> None:
    """A question with a final answer takes a reasoning style (or auto) and a planner that accepts
    questions; a code problem takes a code style; on the chat route, ``answer_type`` makes the
    request a question (asked by a user message with text, no tests)."""
    from api.http.openai_routes import MODEL_PREFIX
    from search.problems.prompt_styles import REASONING_STYLES, STYLES

    fitting = [n for n in planners.names() if planners.get(n).accepts_answer_problems]
    reasoning = ["auto", *REASONING_STYLES]
    _add_rule(
        schemas["SolveRequest"],
        [
            {
                "properties": {
                    "problem": {"$ref": REF.format(model="ProblemIn")},
                    "prompt_style": {"enum": list(STYLES)},
                }
            },
            {
                "properties": {
                    "problem": {"$ref": REF.format(model="AnswerProblemIn")},
                    "prompt_style": {"enum": reasoning},
                    "planner": {"enum": fitting},
                }
            },
        ],
    )
    completion_style = schemas["CompletionRequest"]["properties"]["prompt_style"]
    completion_style["anyOf"] = [{"type": "null"}, {"enum": list(STYLES)}]  # a prompt is never a question
    asked = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"const": "user"}, "content": {"type": "string", "pattern": r"\S"}},
    }
    _add_rule(
        schemas["ChatRequest"],
        [
            {
                "properties": {
                    "answer_type": {"type": "null"},
                    "answer": {"type": "null"},
                    "choices": {"type": "null"},
                    "prompt_style": {"anyOf": [{"type": "null"}, {"enum": list(STYLES)}]},
                }
            },
            {
                "required": ["answer_type"],
                "properties": {
                    "answer_type": {"type": "string"},
                    "prompt_style": {"anyOf": [{"type": "null"}, {"enum": reasoning}]},
                    "model": {"enum": [MODEL_PREFIX + n for n in fitting]},
                    "tests": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]},
                    "messages": {"contains": asked},
                },
            },
        ],
    )
