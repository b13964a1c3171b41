"""TestScorer, the pool, the Docker backend's offline behaviour and the run-tests command."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from api.cli.run_tests import run_tests_main
from sandbox import SandboxUnavailable, open_executor
from sandbox.docker import DockerExecutor, container_options
from sandbox.executor import ExecutionResult, Limits
from sandbox.isolation import layer_available
from sandbox.pool import Job, SandboxPool
from sandbox.process import ProcessExecutor
from scorers.tests import TestScorer
from search.cache.store import NS_EXECUTION, MemoryCache
from search.problems.problem import FunctionTest, Problem

FAST = Limits(wall_per_test=1.0, wall_total=10.0, grace=0.3)


@pytest.fixture(scope="module")
def executor() -> ProcessExecutor:
    return ProcessExecutor("bwrap" if layer_available("bwrap") else "plain")


def add_problem() -> Problem:
    return Problem(
        id="add",
        prompt="def add(a, b):\n",
        entry_point="add",
        public_tests=[
            FunctionTest(call="add(1, 2)", expected="3"),
            FunctionTest(call="add(-1, 1)", expected="0"),
            FunctionTest(code="def check(candidate):\n    assert candidate(2, 2) == 4\n"),
            FunctionTest(call="add(0, 0)", expected="0"),
        ],
        hidden_tests=[FunctionTest(call="add(10, 5)", expected="15")],
    )


def test_reward_is_pass_rate_with_compile_and_runtime_errors_distinguished(executor: ProcessExecutor) -> None:
    scorer = TestScorer(executor, limits=FAST)
    good, half, broken, crash = scorer.score_many(
        add_problem(),
        ["    return a + b\n", "    return abs(a) + b\n", "    return a +\n", "    raise ValueError('x')\n"],
    )
    assert (good.pass_rate, good.kind, good.shaped) == (1.0, "passed", 1.0)
    assert (half.passed, half.total, half.kind) == (3, 4, "failed") and half.pass_rate == 0.75
    assert (
        broken.compile_error
        and not broken.runtime_error
        and broken.pass_rate == 0.0
        and broken.shaped == -1.0
    )
    assert (
        crash.runtime_error
        and not crash.compile_error
        and crash.kind == "runtime_error"
        and crash.shaped == -0.6
    )
    assert scorer.executions == 4


def test_hidden_tests_are_used_only_when_asked(executor: ProcessExecutor) -> None:
    scorer = TestScorer(executor, limits=FAST)
    reward = scorer.score(add_problem(), "    return a + b\n", hidden=True)
    assert (reward.passed, reward.total) == (1, 1)


def test_cache_hits_never_execute_and_store_json(executor: ProcessExecutor) -> None:
    cache = MemoryCache()
    scorer = TestScorer(executor, cache=cache, limits=FAST)
    first = scorer.score_many(add_problem(), ["    return a + b\n", "    return a - b\n"])
    assert [r.cached for r in first] == [False, False] and scorer.executions == 2
    again = TestScorer(executor, cache=cache, limits=FAST)
    second = again.score_many(
        add_problem(), ["    return a - b\n", "    return a + b\n", "    return a + b\n"]
    )
    assert [r.cached for r in second] == [True, True, True] and again.executions == 0
    assert [r.pass_rate for r in second] == [first[1].pass_rate, 1.0, 1.0]
    key = scorer.key(add_problem().program("    return a + b\n"), add_problem(), hidden=False)
    raw = cache.get_many(NS_EXECUTION, [key])[0]
    assert raw is not None and json.loads(raw)["verdicts"][0]["status"] == "passed"
    other_limits = TestScorer(executor, cache=cache, limits=FAST.model_copy(update={"wall_per_test": 2.0}))
    assert other_limits.score(add_problem(), "    return a + b\n").cached is False


def test_pool_runs_jobs_in_order_sync_and_async(executor: ProcessExecutor) -> None:
    jobs = [
        Job(f"def f():\n    return {k}\n", [FunctionTest(call="f()", expected=str(k))], FAST, "f")
        for k in range(6)
    ]
    with SandboxPool(executor) as pool:
        results = pool.run_many(jobs)
        assert [r.all_passed for r in results] == [True] * 6
        wrong = Job("def f():\n    return 0\n", [FunctionTest(call="f()", expected="1")], FAST, "f")
        got = asyncio.run(pool.arun_many([jobs[0], wrong]))
        assert [r.all_passed for r in got] == [True, False]


def test_docker_without_engine_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxUnavailable) as info:
        DockerExecutor()
    message = str(info.value)
    assert "\n" not in message
    url = "unix:///nonexistent/docker.sock"
    assert message == f"Docker engine not reachable at {url}: start Docker or use --sandbox process"
    with pytest.raises(SandboxUnavailable):
        open_executor("docker")


def test_docker_container_options_isolate_and_limit() -> None:
    limits = Limits(memory_bytes=512 * 1024 * 1024, processes=8, cpu_seconds=5)
    opts = container_options("python:3.12-slim", limits, cpus=1.5)
    host = opts["host_config"]
    assert opts["image"] == "python:3.12-slim" and opts["network_disabled"] is True
    assert opts["command"][:4] == ["python3", "-I", "-S", "-B"] and "_main()" in opts["command"][-1]
    assert opts["stdin_open"] is True and opts["user"] == "65534:65534"
    assert host["network_mode"] == "none" and host["read_only"] is True
    assert host["mem_limit"] == host["memswap_limit"] == 512 * 1024 * 1024
    assert host["pids_limit"] == 12 and host["nano_cpus"] == 1_500_000_000
    assert host["cap_drop"] == ["ALL"] and "no-new-privileges" in host["security_opt"]
    assert set(host["tmpfs"]) == {"/work", "/tmp"}
    assert {"Name": "cpu", "Soft": 5, "Hard": 6} in host["ulimits"]


def test_open_executor_names() -> None:
    assert open_executor("auto").layer in ("bwrap", "unshare", "plain")
    with pytest.raises(SandboxUnavailable, match="unknown sandbox"):
        open_executor("vm")


def _problem_file(tmp_path: Path) -> Path:
    path = tmp_path / "add.json"
    path.write_text(add_problem().model_dump_json())
    return path


def test_run_tests_command_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problem = _problem_file(tmp_path)
    good = tmp_path / "good.py"
    good.write_text("def add(a, b):\n    return a + b\n")
    bad = tmp_path / "bad.py"
    bad.write_text("def add(a, b):\n    return a - b\n")
    assert run_tests_main(str(good), str(problem), hidden=False, as_json=True, sandbox="auto") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["all_passed"] is True and [v["status"] for v in out["verdicts"]] == ["passed"] * 4
    assert out["resource_scope"] in ("cgroup", "process")
    assert run_tests_main(str(bad), str(problem), hidden=True, as_json=False, sandbox="auto") == 1
    assert "failed" in capsys.readouterr().out


def test_run_tests_command_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    problem = _problem_file(tmp_path)
    assert run_tests_main(str(tmp_path / "missing.py"), str(problem), False, False, "auto") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read program") and err.count("\n") == 1
    prog = tmp_path / "p.py"
    prog.write_text("x = 1\n")
    assert run_tests_main(str(prog), str(tmp_path / "nope.json"), False, False, "auto") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load problem") and err.count("\n") == 1 and "Traceback" not in err


def test_execution_result_round_trips_as_json(executor: ProcessExecutor) -> None:
    result = executor.run(
        "def f():\n    return 1\n", [FunctionTest(call="f()", expected="1")], FAST, entry_point="f"
    )
    again = ExecutionResult.model_validate_json(result.model_dump_json())
    assert again == result and again.all_passed


def test_run_tests_shows_program_text_literally_never_as_markup_or_terminal_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    problem = _problem_file(tmp_path)
    evil = tmp_path / "evil.py"
    message = "[bold]PASS[/bold] [link=https://evil.example]x[/link] \x1b[32mok\x1b[0m\r"
    evil.write_text(f"def add(a, b):\n    raise ValueError({message!r})\n")
    assert run_tests_main(str(evil), str(problem), hidden=True, as_json=False, sandbox="auto") == 1
    out = capsys.readouterr().out
    assert "ValueError [bold]PASS[/bold] [link=https://evil.example]x[/link]" in out
    assert "\\x1b[32mok" in out and "\x1b" not in out and "\r" not in out
