"""schemathesis hooks for tests/test_contract.py (``SCHEMATHESIS_HOOKS=schemathesis_hooks``).

A question's reference answer must parse as its ``answer_type`` says (a number, LaTeX math math-verify
reads, a choice's label or text): a rule about a string's meaning that JSON Schema cannot state.
The OpenAPI document says it in words; here, schema-valid cases (positive generation) whose
reference the server's own rule (``reference_error``) refuses are dropped, so the check "no
schema-valid request refused" is not asked to pass requests the documented rule refuses.
Negative cases are kept as they are.
"""

from __future__ import annotations

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


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    fields = _question(case.body)
    if not fields or not isinstance(fields.get("answer"), str):
        return True
    answer_type = fields.get("answer_type") or "number"
    choices = fields.get("choices") if isinstance(fields.get("choices"), list) else None
    if answer_type not in ("number", "math", "choice", "string"):
        return True
    return reference_error(fields["answer"], answer_type, choices) is None
