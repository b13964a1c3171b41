"""The judge and the wire parser against a scripted sandbox that says anything: no sandbox, no mocks of
the judge itself. Whatever comes back, the judge decides every verdict and never raises."""

from __future__ import annotations

import ast
import json
import marshal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.executor import ExecutionResult, Limits, TestLike
from sandbox.framing import ChannelClosed, StartFn
from sandbox.host import Verdicts, judge_payload
from sandbox.judge import Judge
from sandbox.protocol import JUDGE_BOOT, JUDGE_MODULE_NAMES
from sandbox.wire import WireError, decode_value, parse_frame
from search.problems.problem import FunctionTest, IOTest

LIMITS = Limits(wall_per_test=1.0, wall_total=5.0, grace=0.1)
LOADED = b'{"t": "loaded", "ok": true}'
SECRET = "expected-value-the-program-never-sees-7f3a9c"
Reply = Callable[[dict[str, Any]], list[bytes]]


class ScriptedChannel:
    """A 'sandbox' whose every reply line comes from ``reply(request)``."""

    def __init__(self, reply: Reply, first: list[bytes] | None = None) -> None:
        self.lines = list(first if first is not None else [LOADED])
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.killed = False

    def send(self, data: bytes, deadline: float) -> bool:
        (n,) = struct.unpack(">I", data[:4])
        req = marshal.loads(data[4 : 4 + n])
        self.requests.append(req)
        self.lines += self.reply(req)
        return True

    def read_line(self, deadline: float, max_bytes: int) -> bytes | None:
        if not self.lines:
            raise ChannelClosed()
        line = self.lines.pop(0)
        return line if len(line) <= max_bytes else b"<oversized frame>"

    def exit_signal(self, wait: float) -> tuple[int | None, int | None]:
        return 1, None

    def kill(self) -> None:
        self.killed = True


def judge(tests: list[TestLike], start: StartFn) -> tuple[ExecutionResult, int]:
    """The judge's logic in this process, its frames checked by the host's parser as on the wire."""
    verdicts = Verdicts(len(tests), LIMITS)

    def emit(frame: dict[str, Any]) -> None:
        verdicts.take(json.loads(json.dumps(frame)))

    payloads = [judge_payload(t) for t in tests]
    starts = Judge(payloads, LIMITS.model_dump(), "f").run(
        start, range(len(tests)), time.monotonic() + 5.0, emit
    )
    return verdicts.result(False, None), starts


def run(tests: list[Any], reply: Reply, first: list[bytes] | None = None) -> tuple[ExecutionResult, int]:
    channels: list[ScriptedChannel] = []

    def start(load: bool) -> ScriptedChannel:
        channels.append(ScriptedChannel(reply, first))
        return channels[-1]

    return judge(tests, start)


def value(v: Any) -> Reply:
    return lambda req: [json.dumps({"t": "v", "q": req["q"], "v": v}).encode()]


def statuses(result: ExecutionResult) -> list[str]:
    return [v.status for v in result.verdicts]


CALL = FunctionTest(call="f(1)", expected="[1, 'a']")
CODE = FunctionTest(code="def check(candidate):\n    assert candidate(1) == [1, 'a']\n")


def test_a_decoded_value_equal_to_the_expected_one_passes() -> None:
    result, starts = run([CALL, CODE], value(["L", 1, "a"]))
    assert statuses(result) == ["passed", "passed"] and starts == 1


def test_a_tuple_is_not_the_expected_list() -> None:
    result, _ = run([CALL, CODE], value(["T", 1, "a"]))
    assert statuses(result) == ["failed", "failed"]
    assert result.verdicts[1].exc_type == "AssertionError"


@pytest.mark.parametrize(
    "line",
    [
        b'{"t": "v", "q": 1, "s": "passed"}',
        b'{"t": "r", "i": 0, "n": "x", "s": "passed"}',
        b'{"t": "v", "q": 1, "v": ["L", 1, "a"], "d": "fast"}',
        b'{"t": "v", "q": 1, "v": ["L", 1, "a"], "s": "passed"}',
        b'{"t": "v", "q": 2, "v": ["L", 1, "a"]}',
        b'{"t": "v", "q": true, "v": ["L", 1, "a"]}',
        b'{"t": "v", "q": 1, "v": ["L", 1.0, "a"]}',
        b'{"t": "v", "q": 1, "v": ["L", NaN, "a"]}',
        b'{"t": "v", "q": 1, "v": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        b'{"t": "v", "q": 1, "v": ' + b'["L", ' * 100 + b"1" + b"]" * 100 + b"}",
        b'{"t": "x", "q": 1, "s": "passed", "et": "E", "em": ""}',
        b'{"t": "x", "q": 1, "s": "error", "et": "[red]Evil", "em": ""}',
        b'{"t": "v", "q": 1, "v": ["S", ["L"]]}',
        b'{"t": "v", "q": 1, "v": ["I", "12"]}',
        b'{"t": "v", "q": 1, "v": ["O", "Eq"]}',
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b"<oversized frame>",
    ],
    ids=lambda b: b[:40].decode("utf-8", "replace"),
)
def test_a_malformed_or_mistyped_reply_is_a_protocol_violation(line: bytes) -> None:
    result, starts = run([CALL, CODE], lambda req: [line])
    assert statuses(result) == ["error", "error"]
    assert [v.exc_type for v in result.verdicts] == ["ProtocolViolation", "ProtocolViolation"]
    assert starts == 2  # the lying sandbox is killed and a fresh one runs the next test


def test_a_bad_loaded_frame_fails_the_load_without_raising() -> None:
    result, _ = run([CALL], value(1), first=[b'{"t": "loaded", "ok": "yes"}'])
    assert result.program_status == "load_error" and result.exc_type == "ProtocolViolation"
    assert statuses(result) == ["error"]


def test_a_program_exception_reaches_the_test_as_the_builtin_type() -> None:
    code = FunctionTest(
        code="def check(candidate):\n    try:\n        candidate(-1)\n    except ValueError:\n        pass\n"
        "    else:\n        raise AssertionError('no ValueError')\n"
    )
    raised = b'{"t": "x", "q": 1, "s": "error", "et": "ValueError", "em": "negative"}'
    result, _ = run([code], lambda req: [raised])
    assert statuses(result) == ["passed"]


def test_an_assertion_error_raised_by_the_program_is_an_error_not_a_failure() -> None:
    raised = b'{"t": "x", "q": %d, "s": "error", "et": "AssertionError", "em": "x > 0"}'
    result, _ = run([CODE, CALL], lambda req: [raised % req["q"]])
    assert [(v.status, v.exc_type, v.message) for v in result.verdicts] == [
        ("error", "AssertionError", "x > 0"),
        ("error", "AssertionError", "x > 0"),
    ]


def test_a_non_plain_value_fails_even_when_the_test_swallows_it() -> None:
    code = FunctionTest(
        code="def check(candidate):\n    try:\n        candidate(1)\n    except BaseException:\n"
        "        pass\n"
    )
    unplain = b'{"t": "x", "q": 1, "s": "unencodable", "et": "NotPlainValue", "em": "an Eq"}'
    result, _ = run([code], lambda req: [unplain])
    assert [(v.status, v.exc_type) for v in result.verdicts] == [("failed", "NotPlainValue")]


def test_a_dead_sandbox_errors_the_test_and_the_next_test_gets_a_new_one() -> None:
    calls: list[int] = []

    def reply(req: dict[str, Any]) -> list[bytes]:
        calls.append(req["q"])
        return [] if len(calls) == 1 else [json.dumps({"t": "v", "q": req["q"], "v": ["L", 1, "a"]}).encode()]

    result, starts = run([CALL, CALL], reply)
    assert statuses(result) == ["error", "passed"] and starts == 2
    assert result.verdicts[0].exc_type == "ProgramExit"


def test_names_the_test_takes_from_the_program_become_proxies_values_or_stdlib_modules() -> None:
    code = FunctionTest(code="assert helper(2) == 4 and LIMIT == 10 and math.floor(math.pi) == 3")
    seen: dict[str, Any] = {}

    def reply(req: dict[str, Any]) -> list[bytes]:
        if req["op"] == "names":
            seen["names"] = req["names"]
            frame = {"t": "n", "q": req["q"], "f": ["helper"], "v": {"LIMIT": 10}, "m": ["math"]}
            return [json.dumps(frame).encode()]
        seen["call"] = (req["name"], req["args"])
        return [json.dumps({"t": "v", "q": req["q"], "v": 4}).encode()]

    result, _ = run([code], reply)
    assert statuses(result) == ["passed"]
    assert seen == {"names": ["LIMIT", "helper", "math"], "call": ("helper", (2,))}


def test_expected_values_and_test_code_never_reach_the_sandbox() -> None:
    tests: list[TestLike] = [
        FunctionTest(call="f(1)", expected=repr(SECRET)),
        FunctionTest(code=f"def check(candidate):\n    assert candidate(1) == {SECRET!r}\n"),
        IOTest(stdin="1\n", expected_stdout=SECRET),
    ]
    channels: list[ScriptedChannel] = []

    def start(load: bool) -> ScriptedChannel:
        def reply(req: dict[str, Any]) -> list[bytes]:
            if req["op"] == "io":
                return [json.dumps({"t": "o", "q": req["q"], "s": "ok", "o": "no", "ot": False}).encode()]
            return [json.dumps({"t": "v", "q": req["q"], "v": "no"}).encode()]

        channels.append(ScriptedChannel(reply))
        return channels[-1]

    result, _ = judge(tests, start)
    assert statuses(result) == ["failed", "failed", "failed"]
    sent = repr([c.requests for c in channels])
    assert SECRET not in sent and "check" not in sent and "assert" not in sent


def test_proxies_refuse_arguments_that_are_not_plain_values() -> None:
    code = FunctionTest(code="assert f(lambda: 1) == 1")
    result, _ = run([code], value(1))
    v = result.verdicts[0]
    assert (v.status, v.exc_type) == ("error", "TypeError")
    assert "cannot pass a function to the program" in (v.message or "")


# --- fuzzing -----------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_tree = st.recursive(
    json_leaf | st.sampled_from(["L", "T", "S", "Z", "D", "F", "I", "B", "C", "R"]),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=3), kids, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parse_frame_raises_only_wire_errors_on_any_bytes(data: bytes) -> None:
    try:
        frame = parse_frame(data)
    except WireError:
        return
    assert isinstance(frame, dict)


@settings(max_examples=400, deadline=None)
@given(json_tree)
def test_decode_value_raises_only_wire_errors_on_any_json(tree: Any) -> None:
    try:
        decode_value(tree)
    except WireError:
        pass


def _frames() -> st.SearchStrategy[bytes]:
    tagged = st.fixed_dictionaries(
        {"t": st.sampled_from(["v", "x", "n", "o", "r", "loaded"]), "q": st.integers(0, 3)},
        optional={
            "v": json_tree,
            "s": st.sampled_from(["ok", "passed", "error", "timeout", "memory", "unencodable"]),
            "et": st.text(max_size=10),
            "em": json_tree,
            "o": st.text(max_size=10),
            "ot": st.booleans(),
            "f": json_tree,
            "m": json_tree,
            "d": json_tree,
        },
    )
    return tagged.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames(), max_size=8))
def test_the_judge_never_raises_and_never_passes_on_replies_that_do_not_know_the_answer(
    lines: list[bytes],
) -> None:
    pool = list(lines)
    tests: list[TestLike] = [
        FunctionTest(call="f(1)", expected=repr(SECRET)),
        FunctionTest(code=f"def check(candidate):\n    assert candidate(1) == {SECRET!r}\n"),
        FunctionTest(code=f"assert helper(1) == {SECRET!r}"),
        IOTest(stdin="", expected_stdout=SECRET),
    ]

    def start(load: bool) -> ScriptedChannel:
        return ScriptedChannel(lambda req: [pool.pop(0)] if pool else [], first=[LOADED])

    result, _ = judge(tests, start)
    assert len(result.verdicts) == 4 and "passed" not in statuses(result)


# --- what is shipped into the judge's sandbox ----------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
JUDGE_ONLY = {f"sandbox.{name}" for name in JUDGE_MODULE_NAMES} - {"sandbox.framing", "sandbox.wire"}


def imported_modules(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def test_each_judge_module_imports_the_standard_library_and_judge_modules_shipped_before_it() -> None:
    for k, name in enumerate(JUDGE_MODULE_NAMES):
        earlier = {f"sandbox.{n}" for n in JUDGE_MODULE_NAMES[:k]}
        for module in imported_modules(ROOT / "sandbox" / f"{name}.py"):
            top = module.split(".")[0]
            assert module in earlier or (top != "sandbox" and top in sys.stdlib_module_names), (name, module)


def test_the_boot_calls_main_of_the_last_judge_module() -> None:
    last = JUDGE_MODULE_NAMES[-1]
    assert f'sys.modules["sandbox.{last}"].main()' in JUDGE_BOOT
    assert "def main() -> None:" in (ROOT / "sandbox" / f"{last}.py").read_text()


def test_no_host_module_imports_the_judge_s_own_modules() -> None:
    """Only the judge (in its sandbox) and the tests load the judge's code; the host ships it as text."""
    bad = []
    for package in ("search", "sandbox", "scorers", "planners", "api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if module in JUDGE_ONLY:
                continue
            bad += [f"{module} imports {m}" for m in imported_modules(path) if m in JUDGE_ONLY]
    assert bad == []
