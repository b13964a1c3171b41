"""The answer signal: each completion's final answer, and the votes the answers cast (agreement).

On an answer problem a planner has no tests to run; what it can check offline is whether sampled
answers agree (self-consistency). ``AnswerScorer`` is the search's view of that, one per search:

- ``read``: each completion's final answer, by the problem's reasoning style: the text's rules
  (``search/problems/extraction.py``: a text cut off by the token limit has only what an explicit
  rule finished) or, program-aided, the value ``solution()`` returns in the sandbox
  (``scorers/program_answers.py``; each run is charged as an execution), cached by completion;
- ``vote``: read and cast each as a vote (a weight: 1 for a plain majority vote). Answers are
  grouped by ``scorers/agreement.py``'s ``group_outcomes`` under the reference's own rules
  (``search/problems/verification.py``: "18", "18.0" and "$18" are one answer), the groups ranked
  by ``rank_votes``;
- ``agreement(answer)``: the share of every vote cast (answers or not) that went to ``answer``'s
  group: the reward PG-TD and V-STAR search with, and a result's ``confidence``;
- ``choice``: the ``AnswerChoice`` a result carries.

>>> votes = Votes("number")
>>> for text in ("18", "$18", "17", "18.0", None):
...     votes.add(Answer(text=text, rule="boxed") if text else Answer.none("no answer in the text"))
>>> votes.leader(), votes.share("18"), votes.share("17"), votes.share(None)
('18', 0.6, 0.2, 0.0)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from sandbox.pool import Job, SandboxPool
from scorers.agreement import Group, group_outcomes, rank_votes
from scorers.program_answers import ANSWER_LIMITS, answer_of, answer_program
from search.problems.extraction import Answer, extract_answer
from search.problems.problem import IOTest, Problem
from search.problems.verification import AnswerType, verify
from search.state.context import AnswerChoice, Signal

if TYPE_CHECKING:
    from search.state.context import SearchContext


class Votes:
    """Votes cast by final answers: each answer (or none) with its weight, grouped by the answer
    type's equality.

    A vote may name the *line* of reasoning it came from (a search's rollouts from one subtree
    share a prefix, so they are not independent evidence). With ``one_vote_per_line`` a line's
    later votes for an answer it already voted for weigh nothing: an answer's votes count the
    distinct lines that reach it, and a vote without a line is a line of its own.

    >>> votes = Votes("number", one_vote_per_line=True)
    >>> for text, line in (("18", "a"), ("18", "a"), ("18", None), ("17", "a"), ("17", "b")):
    ...     votes.add(Answer(text=text, rule="boxed"), line=line)
    >>> votes.votes_for("18"), votes.votes_for("17"), votes.total
    (2.0, 2.0, 4.0)
    """

    def __init__(
        self,
        answer_type: AnswerType = "number",
        choices: Sequence[str] | None = None,
        one_vote_per_line: bool = False,
    ) -> None:
        self.answer_type, self.choices = answer_type, choices
        self.one_vote_per_line = one_vote_per_line
        self.texts: list[str] = []  # the answers found, in the order cast
        self.weights: list[float] = []  # their weights
        self.lines: list[Hashable] = []  # the line each came from
        self.total = 0.0  # every vote's weight, answers or not
        self._equal: dict[tuple[str, str], bool] = {}

    def add(self, answer: Answer, weight: float = 1.0, line: Hashable | None = None) -> None:
        """Cast ``answer`` with ``weight``, from ``line`` (None: a line of its own)."""
        line = object() if line is None else line
        if self.one_vote_per_line and answer.text is not None and self._line_voted(line, answer.text):
            weight = 0.0
        self.total += weight
        if answer.text is not None:
            self.texts.append(answer.text)
            self.weights.append(weight)
            self.lines.append(line)

    def _line_voted(self, line: Hashable, text: str) -> bool:
        return any(ln == line and self.same(t, text) for t, ln in zip(self.texts, self.lines, strict=True))

    def same(self, a: str, b: str) -> bool:
        """Two answers are one answer by the reference's rules (either way round)."""
        if a == b:
            return True
        key = (a, b) if a < b else (b, a)
        if key not in self._equal:
            self._equal[key] = verify(a, b, self.answer_type, self.choices) or verify(
                b, a, self.answer_type, self.choices
            )
        return self._equal[key]

    def ranked(self) -> list[tuple[Group[str], float]]:
        """The answers' groups with their votes, the largest first."""
        return rank_votes(group_outcomes(self.texts, self.same), self.weights)

    def leader(self) -> str | None:
        """The answer with the most votes as first written (ties: the one drawn first)."""
        ranked = self.ranked()
        return ranked[0][0].key if ranked else None

    def votes_for(self, text: str | None) -> float:
        if text is None:
            return 0.0
        return next((w for g, w in self.ranked() if self.same(g.key, text)), 0.0)

    def share(self, text: str | None) -> float:
        """The share of every vote cast that went to ``text``'s answer (0 for no answer)."""
        return self.votes_for(text) / self.total if self.total else 0.0

    def agrees_with_leader(self, text: str | None) -> bool:
        leader = self.leader()
        return text is not None and leader is not None and self.same(leader, text)


class AnswerScorer:
    """One search's answers on an answer problem: reading them (cached), the votes cast, the
    agreement of an answer with them and the choice a result carries (module docstring)."""

    def __init__(self, problem: Problem, pool: SandboxPool | None = None) -> None:
        if problem.final_answer is None:
            raise ValueError(f"problem {problem.id!r} asks for no final answer")
        self.problem = problem
        self.program_aided = problem.prompt_style == "program-aided"
        if self.program_aided and pool is None:
            raise ValueError("program-aided answers are run in the sandbox and none is configured")
        self.pool = pool
        fa = problem.final_answer
        self.votes = Votes(fa.type, fa.choices)
        self._read: dict[tuple[str, bool], Answer] = {}

    @classmethod
    def for_search(cls, problem: Problem, ctx: SearchContext) -> AnswerScorer:
        """The scorer of a search, with its context's sandbox (program-aided answers run there)."""
        return cls(problem, getattr(ctx.scorer, "pool", None))

    def read(
        self, completions: Sequence[str], complete: Sequence[bool], ctx: SearchContext | None = None
    ) -> list[Answer]:
        """Each completion's final answer (``complete``: the text ended on its own, not at the
        token limit); programs not run before are run together, charged to ``ctx``."""
        keys = [(c, bool(done) or self.program_aided) for c, done in zip(completions, complete, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._read))
        if self.program_aided:
            self._run_programs([c for c, _ in todo], ctx)
        else:
            fa = self.problem.final_answer
            assert fa is not None
            for text, done in todo:
                self._read[(text, done)] = extract_answer(text, fa.type, done)
        return [self._read[k] for k in keys]

    def _run_programs(self, completions: list[str], ctx: SearchContext | None) -> None:
        programs = {c: answer_program(c) for c in completions}
        runnable = [c for c, prog in programs.items() if prog is not None]
        no_input = [IOTest(stdin="", expected_stdout="")]
        jobs = [Job(str(programs[c]), no_input, ANSWER_LIMITS) for c in runnable]
        assert self.pool is not None
        results = self.pool.run_many(jobs) if jobs else []
        if ctx is not None and jobs:
            ctx.meter.charge(executions=len(jobs))
            ctx.count("answer_executions", len(jobs))
        for c, result in zip(runnable, results, strict=True):
            self._read[(c, True)] = answer_of(result)
        for c, prog in programs.items():
            if prog is None:
                self._read[(c, True)] = Answer.none("the code defines no solution()")

    def vote(
        self,
        completions: Sequence[str],
        complete: Sequence[bool],
        ctx: SearchContext | None = None,
        weights: Sequence[float] | None = None,
        lines: Sequence[Hashable | None] | None = None,
    ) -> list[Answer]:
        """Read each completion's answer and cast it as a vote (``weights``: 1 each; ``lines``: the
        line of reasoning each came from, see ``Votes``)."""
        answers = self.read(completions, complete, ctx)
        for i, answer in enumerate(answers):
            line = None if lines is None else lines[i]
            self.votes.add(answer, 1.0 if weights is None else weights[i], line)
        return answers

    def agreement(self, answer: Answer) -> float:
        """The share of the votes cast so far that agree with ``answer`` (0 for no answer)."""
        return self.votes.share(answer.text)

    def reaches(self, answer: Answer) -> bool:
        """Whether a rollout's answer counts for its state's value: it is the current majority
        answer; program-aided, its program ran without error and returned an answer."""
        if self.program_aided:
            return answer.found
        return self.votes.agrees_with_leader(answer.text)

    def choice(self, answer: Answer, signal: Signal) -> AnswerChoice:
        """The result's account of the chosen ``answer``: its vote share among every vote cast."""
        v = self.votes
        return AnswerChoice(
            answer=answer.text,
            confidence=round(min(1.0, v.share(answer.text)), 6),
            votes=round(v.votes_for(answer.text), 6),
            samples=round(v.total, 6),
            answers=len(v.ranked()),
            signal=signal,
        )
