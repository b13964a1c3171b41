"""Selection by behaviour: run every candidate on the same extra inputs in the sandbox, group the
candidates that behave alike (``scorers/agreement.py``) and choose from the best group.

The inputs are the public examples' calls, type-aware mutations of them (``scorers/inputs.py``)
and calls the model wrote (``scorers/written_inputs.py``). Calls written as text, the examples'
and the model's, are untrusted code: they are built into values only inside the sandbox, by one
execution of a *capture* program (the prompt, with the entry point replaced by a function that
returns its arguments); a call that raises, runs out of time or builds something that is not plain
values is dropped. Each candidate then runs once over all the inputs (one execution, a
``CallProbe`` per input, each with its own time limit), and the judge sends back each call's value,
which is compared on the host by the judge's rules. Given a cache, every execution (the build and
each program's run) is kept under ``NS_EXECUTION`` by program, probed calls and limits, as
``TestScorer`` keeps test runs, so a second selection over the same programs runs nothing.

>>> probe = BehaviourProbe(SandboxPool(open_executor()))  # doctest: +SKIP
>>> selection = select_by_behaviour(probe, problem, completions, public_rates)  # doctest: +SKIP
>>> selection.chosen, [g.size for g in selection.groups]  # doctest: +SKIP
(2, [5, 2, 1])
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.executor import CallProbe, ExecutionResult, Limits, TestVerdict
from sandbox.pool import Job, SandboxPool
from sandbox.protocol import HARNESS_VERSION
from sandbox.wire import WireError, decode_value
from scorers.agreement import Behaviour, Group, Outcome, Raised, Returned, best_member, rank_behaviours
from scorers.execution_cache import cached_results, store_results
from scorers.group_scores import DEFAULT_SCORE, GroupScore
from scorers.inputs import CallInput, call_source, entry_calls, literal, mutate_inputs
from search.cache.store import Cache, cache_key
from search.problems.problem import FunctionTest, Problem

CAPTURE_MARK = "__treedec_input__"
PER_INPUT_SECONDS = 1.0


@dataclass(frozen=True)
class Digest:
    """A value too large to send back whole, known by its sha256 (equal only to the same digest)."""

    sha256: str


def probe_limits(n_inputs: int, per_input: float = PER_INPUT_SECONDS) -> Limits:
    """Limits for one execution over ``n_inputs`` calls: ``per_input`` seconds each."""
    return Limits(wall_per_test=per_input, wall_total=min(2.0 + per_input * max(n_inputs, 1), 600.0))


def capture_program(problem: Problem) -> str:
    """The prompt's code with the entry point replaced by a function that returns its arguments."""
    head = problem.prompt.rstrip() + "\n\n\n" if problem.prompt_is_code and _compiles(problem.prompt) else ""
    return f"{head}def {problem.entry_point}(*args, **kwargs):\n    return ({CAPTURE_MARK!r}, args, kwargs)\n"


def public_calls(problem: Problem) -> list[str]:
    """The calls of the entry point in the public tests' text (parsed, not run)."""
    entry = problem.entry_point
    if not entry:
        return []
    calls: list[str] = []
    for test in problem.public_tests:
        if isinstance(test, FunctionTest):
            for call in entry_calls(test.call or test.code or "", entry):
                if call not in calls:
                    calls.append(call)
    return calls


def outcome_of(verdict: TestVerdict) -> Outcome:
    """What one probed call did: the value it returned, else how it ended."""
    if verdict.status == "passed":
        if verdict.value_digest is not None:
            return Returned(Digest(verdict.value_digest))
        try:
            return Returned(decode_value(verdict.value))
        except WireError:
            return Raised("BadValue")
    return Raised(verdict.exc_type or verdict.status)


def behaviour_of(result: ExecutionResult) -> Behaviour:
    """A candidate's outcome on every input of one execution (a program that did not load raised
    the same thing everywhere)."""
    if result.program_status != "ok":
        return tuple(Raised(result.program_status) for _ in result.verdicts)
    return tuple(outcome_of(v) for v in result.verdicts)


def probe_key(job: Job) -> str:
    """The execution cache key of one probe run: its program, its calls, its limits."""
    digest = hashlib.sha256()
    for part in (
        job.program,
        job.entry_point or "",
        *(p.call for p in job.tests if isinstance(p, CallProbe)),
    ):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return cache_key("probe", HARNESS_VERSION, digest.hexdigest(), (job.limits or Limits()).model_dump_json())


class BehaviourProbe:
    """Builds inputs and runs candidates on them through a sandbox pool, cache first when it has
    one; ``executions`` counts the sandbox executions it made, ``cache_hits`` the runs the cache
    answered."""

    def __init__(
        self, pool: SandboxPool, per_input: float = PER_INPUT_SECONDS, cache: Cache | None = None
    ) -> None:
        self.pool = pool
        self.per_input = per_input
        self.cache = cache
        self.executions = 0
        self.cache_hits = 0
        self._lock = threading.Lock()

    def run(self, jobs: Sequence[Job]) -> list[ExecutionResult]:
        """Each job's result, from the cache when it holds it, else run (and stored)."""
        keys = [probe_key(j) for j in jobs]
        results = cached_results(self.cache, keys)
        todo = {k: j for k, j in zip(keys, jobs, strict=True) if k not in results}
        fresh = dict(zip(todo, self.pool.run_many(list(todo.values())), strict=True)) if todo else {}
        with self._lock:
            self.executions += len(todo)
            self.cache_hits += len(jobs) - len(todo)
        results.update(fresh)
        store_results(self.cache, fresh)
        return [results[k] for k in keys]

    def build_inputs(self, problem: Problem, calls: Sequence[str]) -> list[CallInput | None]:
        """Each call's arguments as plain values, built in the sandbox (None: it did not build)."""
        if not calls or not problem.entry_point:
            return [None] * len(calls)
        probes = [CallProbe(call=c) for c in calls]
        job = Job(
            capture_program(problem), probes, probe_limits(len(probes), self.per_input), problem.entry_point
        )
        result = self.run([job])[0]
        if result.program_status != "ok":
            return [None] * len(calls)
        return [_captured(outcome_of(v)) for v in result.verdicts]

    def behaviours(
        self, problem: Problem, completions: Sequence[str], inputs: Sequence[CallInput]
    ) -> list[Behaviour]:
        """Every completion's behaviour on ``inputs``: one execution per distinct program."""
        if not inputs or not problem.entry_point:
            return [() for _ in completions]
        entry = problem.entry_point
        probes = [CallProbe(call=call_source(entry, i)) for i in inputs]
        limits = probe_limits(len(probes), self.per_input)
        programs = [problem.program(c) for c in completions]
        distinct = list(dict.fromkeys(programs))
        results = self.run([Job(p, probes, limits, entry) for p in distinct])
        by_program = {p: behaviour_of(r) for p, r in zip(distinct, results, strict=True)}
        return [by_program[p] for p in programs]


def _captured(outcome: Outcome) -> CallInput | None:
    if not isinstance(outcome, Returned):
        return None
    value = outcome.value
    if not (isinstance(value, tuple) and len(value) == 3 and value[0] == CAPTURE_MARK):
        return None  # the call did not call the entry point (or built something else)
    args, kwargs = value[1], value[2]
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        return None
    return CallInput(args, kwargs)


@dataclass
class Selection:
    """Which candidate selection by behaviour chose, the groups it saw (best first) and what it cost."""

    chosen: int | None
    groups: list[Group[Behaviour]]
    inputs: list[CallInput] = field(default_factory=list)
    written_built: int = 0
    executions: int = 0
    cache_hits: int = 0
    stated: int = 0  # the model's stated values that built, for calls among the inputs

    def group_of(self) -> dict[int, tuple[int, int]]:
        """Each candidate's group rank (0: the chosen group) and that group's size."""
        return {m: (rank, g.size) for rank, g in enumerate(self.groups) for m in g.members}

    def summary(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "groups": [g.summary() for g in self.groups],
            "inputs": len(self.inputs),
            "written_inputs_built": self.written_built,
            "stated_values": self.stated,
            "executions": self.executions,
            "cached_executions": self.cache_hits,
        }


@dataclass
class ExtraInputs:
    """The inputs every candidate runs on, how many of the model's calls built, and the values the
    model stated for its calls, as (input index, value)."""

    inputs: list[CallInput]
    written_built: int = 0
    expectations: list[tuple[int, Any]] = field(default_factory=list)


def extra_inputs(
    probe: BehaviourProbe,
    problem: Problem,
    written: Sequence[str],
    mutations: int,
    seed: int = 0,
    stated: Sequence[tuple[str, str]] = (),
) -> ExtraInputs:
    """The public examples' inputs, their mutations and the written calls that build, distinct;
    how many of the written calls built; and ``stated``'s values (the model's ``(call, expected)``
    sources, ``entry_expectations``) for the calls among the inputs. Everything builds in one
    sandbox execution: a stated value ``v`` builds as the call ``entry(v)``."""
    examples = public_calls(problem)
    entry = problem.entry_point or ""
    values = [f"{entry}({expected})" for _, expected in stated]
    built = probe.build_inputs(problem, [*examples, *written, *values])
    n_examples, n_written = len(examples), len(written)
    built_written = built[n_examples : n_examples + n_written]
    from_examples = [b for b in built[:n_examples] if b is not None]
    from_written = [b for b in built_written if b is not None]
    inputs: dict[str, CallInput] = {}
    for item in [*from_examples, *mutate_inputs(from_examples, mutations, seed), *from_written]:
        inputs.setdefault(literal((item.args, item.kwargs)), item)
    index = {key: j for j, key in enumerate(inputs)}
    by_call = dict(zip(written, built_written, strict=True))
    expectations: list[tuple[int, Any]] = []
    for (call, _), value in zip(stated, built[n_examples + n_written :], strict=True):
        args = by_call.get(call)
        if args is None or value is None or len(value.args) != 1 or value.kwargs:
            continue
        j = index.get(literal((args.args, args.kwargs)))
        if j is not None:
            expectations.append((j, value.args[0]))
    return ExtraInputs(list(inputs.values()), len(from_written), expectations)


def select_by_behaviour(
    probe: BehaviourProbe,
    problem: Problem,
    completions: Sequence[str],
    public_rates: Sequence[float],
    written: Sequence[str] = (),
    mutations: int = 12,
    seed: int = 0,
    likelihoods: Sequence[float] | None = None,
    score: GroupScore = DEFAULT_SCORE,
    stated: Sequence[tuple[str, str]] = (),
) -> Selection:
    """Group ``completions`` by behaviour on the extra inputs, rank the groups by ``score`` (ties
    by likelihood) and choose from the best group the member with the best public pass rate, then
    the most likely (``likelihoods``: each completion's mean log-probability per token)."""
    if not completions:
        return Selection(None, [])
    before, hits = probe.executions, probe.cache_hits
    extra = extra_inputs(probe, problem, written, mutations, seed, stated)
    behaviours = probe.behaviours(problem, completions, extra.inputs)
    chosen, groups = choose_by_behaviour(behaviours, public_rates, likelihoods, score, extra.expectations)
    executions, cache_hits = probe.executions - before, probe.cache_hits - hits
    return Selection(
        chosen, groups, extra.inputs, extra.written_built, executions, cache_hits, len(extra.expectations)
    )


def choose_by_behaviour(
    behaviours: Sequence[Behaviour],
    public_rates: Sequence[float],
    likelihoods: Sequence[float] | None = None,
    score: GroupScore = DEFAULT_SCORE,
    expectations: Sequence[tuple[int, Any]] = (),
) -> tuple[int | None, list[Group[Behaviour]]]:
    """The chosen candidate and the groups, best first, of candidates already probed."""
    if not behaviours:
        return None, []
    groups = rank_behaviours(behaviours, public_rates, likelihoods, score, expectations)
    return best_member(groups[0], public_rates, likelihoods), groups


@dataclass(frozen=True)
class Dominance:
    """A stop rule for sampling: after at least ``after`` samples, the best group holds at least
    ``min_size`` of them and at least ``min_share`` of all.

    >>> rule = Dominance(min_size=3, min_share=0.5, after=4)
    >>> rule([Group([0, 1, 2], "a"), Group([3], "b")]), rule([Group([0, 1], "a"), Group([2], "b")])
    (True, False)
    """

    min_size: int
    min_share: float
    after: int = 1

    def __call__(self, groups: Sequence[Group[Any]]) -> bool:
        drawn = sum(g.size for g in groups)
        if not groups or drawn < self.after:
            return False
        best = groups[0].size
        return best >= self.min_size and best >= self.min_share * drawn


def _compiles(code: str) -> bool:
    try:
        compile(code, "<prompt>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True
