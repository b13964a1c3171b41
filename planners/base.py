"""The planner template: a name, a validated ``Params`` model, and one search's loop.

A planner class owns the frame every search shares; a planner module writes only its loop.
``Planner.solve`` starts a ``Search`` (the state of one search: its tree, queue, candidates),
runs its loop, turns a spent budget (``BudgetExhausted``) into the stop reason, asks the search
for its ``Outcome`` (the answer, the candidates, the tree) and builds the ``SearchResult`` with
the finished spend::

    class Greedy(Planner[GreedyParams]):
        Params = GreedyParams

        def start(self, problem, ctx):
            return GreedySearch(self.params, problem, ctx)

>>> class EchoParams(PlannerParams):
...     text: str = "x"
>>> class Echo(Search[EchoParams]):
...     def run(self) -> str:
...         self.candidates.append(Candidate(self.p.text, [], 0.0))
...         return "done"
>>> class EchoPlanner(Planner[EchoParams]):
...     name = "echo"
...     Params = EchoParams
...
...     def start(self, problem, ctx):
...         return Echo(self.params, problem, ctx)
>>> EchoPlanner().params.text, EchoPlanner(EchoParams(text="y")).params.text
('x', 'y')

On an answer problem (a question with a checked final answer) every result carries the chosen
answer and its vote share among the answers the search drew (``SearchResult.choice``, from
``Search.choose_answer``; ``scorers/answers.py``), and says what steered the search
(``Search.signal``: ``none`` when nothing did). A planner that can only choose by public tests
sets ``accepts_answer_problems = False`` and refuses such a problem in one line. Unless the
request set ``max_new_tokens``, an answer problem gets its reasoning style's room
(``REASONING_MAX_NEW_TOKENS``, measured on GSM8K train).
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from planners.selection import BehaviourSelector, SelectorParams
from scorers.answers import AnswerScorer
from search.limits.budget import BudgetExhausted
from search.problems.extraction import Answer
from search.problems.problem import Problem
from search.problems.prompt_styles import REASONING_MAX_NEW_TOKENS, RenderedStyle
from search.state.context import (
    AnswerChoice,
    Candidate,
    SearchContext,
    SearchResult,
    Signal,
    best_candidate,
)


class PlannerError(ValueError):
    """A planner was asked for something it cannot do (unknown name, missing requirement)."""


class PlannerParams(BaseModel):
    """What every planner's parameters share: ``max_new_tokens``, the cap on one completion's
    tokens (the OpenAI ``max_tokens`` and the harness's ``max_gen_toks`` set it; the whole search's
    token budget is ``Budget.max_tokens``). It is declared here once; a planner that needs another
    default, or says what the cap means for it, sets ``max_new_tokens_default`` and
    ``max_new_tokens_help`` in its class.

    >>> class LongParams(PlannerParams):
    ...     max_new_tokens_default = 512
    >>> LongParams().max_new_tokens, PlannerParams().max_new_tokens
    (512, 384)
    """

    model_config = ConfigDict(extra="forbid")
    max_new_tokens_default: ClassVar[int] = 384
    max_new_tokens_help: ClassVar[str] = "tokens per completion"
    max_new_tokens: int = Field(max_new_tokens_default, ge=1, le=8192, description=max_new_tokens_help)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Give a subclass's ``max_new_tokens`` its own default and description."""
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.__pydantic_fields__["max_new_tokens"]
        if (field.default, field.description) == (cls.max_new_tokens_default, cls.max_new_tokens_help):
            return
        own = copy(field)
        own.default, own.description = cls.max_new_tokens_default, cls.max_new_tokens_help
        cls.__pydantic_fields__["max_new_tokens"] = own
        cls.model_rebuild(force=True)


P = TypeVar("P", bound=PlannerParams)


@dataclass
class Outcome:
    """What a search hands back: its answer, every complete candidate, why it stopped, its tree."""

    best: Candidate | None
    candidates: list[Candidate]
    stop_reason: str
    tree: dict[str, Any] | None = None
    answer_style: RenderedStyle | None = None  # the style the completions are in, if not the problem's


class Search(Generic[P]):
    """The state of one search. ``run`` is the planner's loop (it returns why it stopped; a spent
    budget raises ``BudgetExhausted`` out of it); ``outcome`` reads the answer off the state, also
    after the loop was cut short. The default outcome: the best of ``candidates``."""

    signal: Signal = "none"  # what steers this search on an answer problem

    def __init__(self, p: P, problem: Problem, ctx: SearchContext) -> None:
        self.p, self.problem, self.ctx = p, problem, ctx
        self.candidates: list[Candidate] = []
        self._answers: AnswerScorer | None = None
        self._selector: BehaviourSelector | None = None

    @property
    def answer_problem(self) -> bool:
        return self.problem.final_answer is not None

    def answers(self) -> AnswerScorer:
        """This search's answers and votes (an answer problem only), made on first use."""
        if self._answers is None:
            self._answers = AnswerScorer.for_search(self.problem, self.ctx)
        return self._answers

    @property
    def by_behaviour(self) -> bool:
        """Whether this search chooses its program by behaviour (``selector=behaviour``, a code problem)."""
        return getattr(self.p, "selector", None) == "behaviour" and not self.answer_problem

    def behaviour_selector(self) -> BehaviourSelector:
        """This search's selection by behaviour (its inputs, probes and choice), made on first use."""
        if self._selector is None:
            assert isinstance(self.p, SelectorParams)
            self._selector = BehaviourSelector(self.p, self.problem, self.ctx, getattr(self.p, "seed", 0))
        return self._selector

    def finished(self, c: Candidate) -> bool:
        """Whether a candidate's text ended on its own (not cut off by ``max_new_tokens``)."""
        return c.meta.get("finish") != "length" and len(c.token_ids) < self.p.max_new_tokens

    def run(self) -> str:
        raise NotImplementedError

    def outcome(self, reason: str) -> Outcome:
        return Outcome(best_candidate(self.candidates), list(self.candidates), reason)

    def choose_answer(self, out: Outcome) -> AnswerChoice:
        """The answer of ``out.best`` and its share of the votes: those the search cast, or when it
        cast none, one vote per candidate."""
        answers = self.answers()
        if not answers.votes.total:
            ended = [self.finished(c) for c in out.candidates]
            answers.vote([c.completion for c in out.candidates], ended, self.ctx)
        if out.best is None:
            return answers.choice(Answer.none("no candidate"), self.signal)
        best = answers.read([out.best.completion], [self.finished(out.best)], self.ctx)[0]
        return answers.choice(best, self.signal)


class Planner(Generic[P]):
    """Subclasses set ``name``, ``description``, ``Params`` and implement ``start``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_sandbox: ClassVar[bool] = False
    accepts_answer_problems: ClassVar[bool] = True
    """False for a planner that searches programs only (it picks one by public tests): it refuses a
    question with a final answer (``refusal``)."""
    selects_while_searching: ClassVar[bool] = False  # True: selector=behaviour is the search's own loop

    @classmethod
    def refusal(cls, problem: Problem) -> str | None:
        """Why this planner cannot search ``problem`` (one line naming what can), or None."""
        if problem.final_answer is None or cls.accepts_answer_problems:
            return None
        import planners

        able = [n for n in planners.names() if planners.get(n).accepts_answer_problems]
        return (
            f"planner {cls.name!r} searches code problems only; for a question with a final answer "
            f"use one of {', '.join(able)}"
        )

    def no_signal(
        self, problem: Problem, ctx: SearchContext, choice: AnswerChoice | None = None
    ) -> str | None:
        """Why a search of ``problem`` had nothing to steer by, or None when it had a signal or needs
        none. A test-driven planner (``needs_sandbox``) on a code problem needs public tests to run;
        on an answer problem it needs the signal its search reports (``choice.signal``)."""
        if choice is not None:
            if self.needs_sandbox and choice.signal == "none":
                return "nothing scored the answers: the search had no signal to steer by"
            return None
        if not self.needs_sandbox:
            return None
        by_behaviour = getattr(self.params, "selector", None) == "behaviour"  # programs' agreement
        if ctx.scorer is not None and (problem.public_tests or by_behaviour):
            return None
        return "no public tests to run: the answer is not chosen by any test or score"

    @classmethod
    def required_params(cls, lm: Any) -> list[str]:
        """Parameters without a usable default on this model (None: not known yet), which a request
        must give (the REST API refuses it without them, and says so in its schema)."""
        return []

    Params: type[P]

    def __init__(self, params: P | None = None) -> None:
        self.params: P = params if params is not None else self.Params()

    def start(self, problem: Problem, ctx: SearchContext) -> Search[P]:
        """A new search of ``problem`` (validation that needs the problem or context goes here)."""
        raise NotImplementedError

    def reselects(self, problem: Problem) -> bool:
        """Whether the answer is chosen by behaviour once the search ends (``selector=behaviour`` on
        a code problem, for a planner that does not select while it searches)."""
        p = self.params
        return (
            isinstance(p, SelectorParams)
            and p.selector == "behaviour"
            and problem.final_answer is None
            and not self.selects_while_searching
        )

    def for_problem(self, problem: Problem) -> P:
        """This planner's parameters for ``problem``: an answer problem gets its reasoning style's
        room unless the request set ``max_new_tokens``."""
        room = REASONING_MAX_NEW_TOKENS.get(str(problem.prompt_style))
        if problem.final_answer is None or room is None or "max_new_tokens" in self.params.model_fields_set:
            return self.params
        return self.params.model_copy(update={"max_new_tokens": room})

    def solve(self, problem: Problem, ctx: SearchContext) -> SearchResult:
        """Run one search: its loop until it stops or the budget is spent, then its outcome."""
        refused = self.refusal(problem)
        if refused is not None:
            raise PlannerError(refused)
        if problem.final_answer is not None and getattr(self.params, "selector", None) == "behaviour":
            raise PlannerError(
                "selector=behaviour runs programs on inputs; a question with a final answer is chosen "
                "by its answers' agreement"
            )
        self.params = self.for_problem(problem)  # the engine reads the cap the search ran with
        search = self.start(problem, ctx)
        try:
            reason = search.run()
        except BudgetExhausted as e:
            reason = str(e)
        out = search.outcome(reason)
        if self.reselects(problem):
            out = reselect(out, search.behaviour_selector())
        choice = search.choose_answer(out) if problem.final_answer is not None else None
        return SearchResult(
            self.name,
            problem.id,
            out.best,
            out.candidates,
            ctx.meter.finish(),
            out.stop_reason,
            out.tree,
            out.answer_style,
            self.no_signal(problem, ctx, choice),
            choice,
        )


def reselect(out: Outcome, selector: BehaviourSelector) -> Outcome:
    """A tree search's outcome with its answer chosen by behaviour among its complete programs
    (``selector``: the search's own, so programs its stop rule probed are not probed again).

    Kept as it was when there is nothing to choose between. A search that stopped on its budget
    writes no inputs (that would spend tokens past it): the examples and their mutations, which cost
    only executions, are the inputs, and the stop reason says so."""
    ctx = selector.ctx
    programs = [c for c in out.candidates if c.meta.get("kind") != "best_partial"]
    if len(programs) < 2 or ctx.scorer is None:
        return out
    if selector.inputs is None and selector.p.written_inputs and ctx.meter.exhausted():
        selector.p = selector.p.model_copy(update={"written_inputs": 0})
        out.stop_reason = f"{out.stop_reason}; selection by behaviour without written inputs (budget spent)"
    if (
        selector.behaviours
        and [c.completion for c in programs[: len(selector.behaviours)]] != selector.probed
    ):
        selector.reset()  # the outcome lists its programs in another order than the search probed them
    selection = selector.select(programs)
    selector.mark(programs, selection)
    if selection.chosen is None:
        return out
    chosen = programs[selection.chosen]
    if chosen is not out.best:
        chosen.meta["selected_by"] = "behaviour"
    out.best = chosen
    return out
