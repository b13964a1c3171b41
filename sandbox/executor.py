"""The sandbox contract: ``Limits`` in, ``ExecutionResult`` out, through an ``Executor``.

An executor runs **one program against a list of tests** (``FunctionTest`` and ``IOTest`` from
``search/problems/problem.py``): the program runs in a sandboxed interpreter that only answers requests
with plain values, and the verdict of each test is decided by the judge on the host
(``sandbox/judge.py``), never by what the program prints, sends or its exit code:

- ``call``/``expected`` tests: the sandbox only sends back the *value* the call returned; the judge
  compares it with the expected value, which never enters the sandbox;
- ``IOTest``: the sandbox sends back the captured stdout; the judge compares it with
  ``expected_stdout``, which never enters the sandbox;
- assert-style ``code`` tests run in the judge, never in the sandbox: the entry point (and any other
  program name the test uses) is a proxy that calls the program and returns decoded built-in
  values, so every comparison is between values the program never touched; a program that exits
  early leaves its remaining tests ``not_run``/``error``, never ``passed``;
- ``CallProbe``: not a test but a question, what does this call return? The program server
  evaluates the call and the judge sends its decoded value back in the verdict (``value``, tagged
  JSON: decode it with ``sandbox.wire.decode_value``); a raise, a timeout or a value that is not
  plain is the verdict's status, as for a test.

>>> Limits(wall_per_test=2.0).wall_per_test
2.0
>>> TestVerdict(index=0, status="passed").ok
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from search.problems.problem import FunctionTest, IOTest

MiB = 1024 * 1024

Status = Literal["passed", "failed", "error", "timeout", "memory", "signal", "not_run"]
ProgramStatus = Literal["ok", "compile_error", "load_error", "load_timeout", "sandbox_error"]


class CallProbe(BaseModel):
    """A call expression evaluated in the program's sandbox, its value sent back (``passed`` with
    ``TestVerdict.value``), never judged: selection by behaviour compares such values on the host.

    >>> CallProbe(call="f(1)").kind
    'probe'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["probe"] = "probe"
    call: str = Field(min_length=1)


TestLike = FunctionTest | IOTest | CallProbe


class SandboxUnavailable(RuntimeError):
    """The requested sandbox cannot run on this machine; the message is one line saying what to do."""


class Limits(BaseModel):
    """What one execution may use. Invalid values fail at construction, naming the field.

    ``wall_per_test`` is enforced twice: by a timer inside the sandbox (the test gets ``timeout``
    and the next test runs in the same process) and by the host, which kills the sandbox
    ``grace`` seconds later and restarts it for the remaining tests.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    wall_per_test: float = Field(default=3.0, gt=0, le=600, description="wall seconds per test")
    wall_total: float = Field(default=30.0, gt=0, le=3600, description="wall seconds for the whole execution")
    cpu_seconds: int = Field(default=10, ge=1, le=3600, description="CPU seconds per sandbox process")
    memory_bytes: int = Field(
        default=1024 * MiB,
        ge=64 * MiB,
        description="memory of the whole execution (a cgroup's memory.max, else one process's address space)",
    )
    output_bytes: int = Field(
        default=64 * 1024, ge=1024, description="stdout/stderr kept per stream and per test"
    )
    file_bytes: int = Field(
        default=16 * MiB, ge=1024, description="largest file (and captured stdout) it may write"
    )
    processes: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="processes/threads it may run at once (with a cgroup; else the execution is one process)",
    )
    open_files: int = Field(default=64, ge=16, le=65536, description="open file descriptors")
    grace: float = Field(default=0.5, ge=0.05, le=30, description="host backstop after the in-sandbox timer")


class TestVerdict(BaseModel):
    """The outcome of one test."""

    model_config = ConfigDict(extra="forbid")
    index: int
    status: Status
    exc_type: str | None = None
    message: str | None = None
    duration: float = 0.0
    stdout: str | None = Field(default=None, description="captured stdout of an IO test (truncated)")
    signal: int | None = None
    value: Any = Field(default=None, description="a probed call's value, tagged JSON (sandbox/wire.py)")
    value_digest: str | None = Field(
        default=None, description="sha256 of a probed value too large to send back whole"
    )

    @property
    def ok(self) -> bool:
        return self.status == "passed"


class ExecutionResult(BaseModel):
    """Per-test verdicts of one program plus what the sandbox saw."""

    model_config = ConfigDict(extra="forbid")
    verdicts: list[TestVerdict]
    program_status: ProgramStatus = "ok"
    exc_type: str | None = Field(default=None, description="exception of a compile/load failure")
    message: str | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    layer: str = Field(default="", description="isolation used: bwrap | unshare | plain | docker")
    starts: int = Field(default=1, description="sandbox processes started (restarts after a hard timeout)")
    resource_scope: str = Field(
        default="", description="what bounds memory and processes: cgroup | process | container"
    )

    @property
    def total(self) -> int:
        return len(self.verdicts)

    @property
    def passed(self) -> int:
        return sum(v.ok for v in self.verdicts)

    @property
    def all_passed(self) -> bool:
        return self.program_status == "ok" and self.passed == self.total

    @property
    def compile_error(self) -> bool:
        return self.program_status == "compile_error"


@runtime_checkable
class Executor(Protocol):
    """Runs a program against tests in a sandbox. Implementations are safe to call from threads."""

    name: str

    @property
    def layer(self) -> str: ...

    def run(
        self,
        program: str,
        tests: Sequence[TestLike],
        limits: Limits | None = None,
        *,
        entry_point: str | None = None,
    ) -> ExecutionResult: ...
