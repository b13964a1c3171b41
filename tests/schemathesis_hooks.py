"""schemathesis hooks for tests/test_contract.py (``SCHEMATHESIS_HOOKS=schemathesis_hooks``).

Two rules about a value's meaning that JSON Schema cannot state, and the OpenAPI document states in
words:

- a question's reference answer must parse as its ``answer_type`` says (a number, LaTeX math
  math-verify reads, a choice's label or text): the server's own rule is ``reference_error``;
- a completion prompt given as token ids must decode to some non-blank text (a blank text prompt
  is refused by the schema itself): decoded here with the test model's tokenizer, the bundled one.

Schema-valid cases (positive generation) that break either rule are dropped, so the check "no
schema-valid request refused" is not asked to pass requests the documented rules refuse. Negative
cases are kept as they are.
"""

from __future__ import annotations

import functools
from typing import Any

import schemathesis
from schemathesis import GenerationMode

from search.problems.verification import reference_error


def _question(body: Any) -> dict[str, Any] | None:
    """The fields of a question in a request body: ``problem`` (REST) or the body itself (chat)."""
    if not isinstance(body, dict):
        return None
    inner = body.get("problem")
    return inner if isinstance(inner, dict) else body


@functools.cache
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from search.model.bundled import tokenizer_dir

    return AutoTokenizer.from_pretrained(str(tokenizer_dir("bundled-default")))


def _token_prompts_decode_blank(body: Any) -> bool:
    """Whether a completion request's token-id prompt (or one of its lists) decodes to blank text."""
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, list) or not prompt or isinstance(prompt[0], str):
        return False
    id_lists = [prompt] if all(isinstance(x, int) for x in prompt) else prompt
    tokenizer = _tokenizer()
    for ids in id_lists:
        if isinstance(ids, list) and all(isinstance(x, int) and 0 <= x < len(tokenizer) for x in ids):
            if not tokenizer.decode(ids, skip_special_tokens=False).strip():
                return True
    return False


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    if _token_prompts_decode_blank(case.body):
        return False
    fields = _question(case.body)
    if not fields or not isinstance(fields.get("answer"), str):
        return True
    answer_type = fields.get("answer_type") or "number"
    choices = fields.get("choices") if isinstance(fields.get("choices"), list) else None
    if answer_type not in ("number", "math", "choice", "string"):
        return True
    return reference_error(fields["answer"], answer_type, choices) is None
