"""Process scorers: a number r in [0, 1] for a *partial* solution (how likely it leads to a good one).

A*-decoding (planners/astar.py) sets its heuristic ``h = 1 - r`` from one of these. All share the
``ProcessScorer`` protocol, batched over states::

    score_steps(problem, states, ctx) -> list[float]     # one r per PartialState
    evaluate(problem, states, ctx, lookahead) -> list[StepScore]   # r with its parts (A* calls this)

Two implementations:

``HFProcessRewardModel`` — any process reward model loadable with transformers, given by a local
path or hub id. The input is the question followed by the steps, each step followed by a *step
tag*; the step scores are read at the tags' positions, either

- ``mode="tag"`` (Math-Shepherd style, a causal LM): the logits of a *good* and a *bad* token
  (``"+"`` / ``"-"``) at the tag position, softmaxed over the pair: ``P(good)``; or
- ``mode="token_classification"`` (a token-classification head): the softmax of the head's logits
  at the tag position, class ``positive_label`` (sigmoid when the head has one label);
- ``mode="value_head"`` (Skywork-o1-Open-PRM style: a causal LM with a linear value head whose
  weights, ``v_head.summary.weight`` and ``.bias``, sit in the checkpoint beside the model's and
  which transformers does not load): the sigmoid of the head over the last hidden state at the
  tag (by default the newline that ends each step, after the question and a newline);
- ``mode="reward_head"`` (Qwen2.5-Math-PRM style: the model's own code, loaded with
  ``trust_remote_code``, ending in a reward head with two labels): the softmax's
  ``positive_label`` at the tag (by default ``<extra_0>`` after each step, the question put in the
  tokenizer's chat template under Qwen's math system prompt).

The input is assembled from token pieces (question, then each step's tokens and the tag's tokens)
so a tag is never merged with its neighbours by the tokenizer, and the position read is the last
token of each tag. ``step_scores`` gives every step's score; ``score_steps`` aggregates them into
one r per state (``aggregate``: ``last`` (default), ``min`` or ``mean``).

``CodeAwareScorer`` — works offline with the bundled model. For a partial program::

    r = 0                                                  if prompt + partial cannot be completed
    r = (w_lp * exp(mean_lp) + w_pass * pass_rate) / (w_lp + w_pass)      otherwise

- *completable*: ``codeop.compile_command`` on prompt + partial either compiles or says "incomplete"
  (a valid prefix), or it compiles once an open block is closed with ``pass``;
- ``mean_lp``: the mean log-probability of the partial's own tokens (1.0 for the empty partial);
- ``pass_rate``: the public-test pass rate of a greedy completion of the state (*lookahead*, at most
  ``lookahead_tokens`` tokens), run through ``ctx.lm`` and ``ctx.reward`` (execution cache). A
  greedy rollout from a prefix also fixes the greedy continuation of every prefix along it, so a
  child whose step is what greedy would have written gets its lookahead for free: ``MeteredLM``
  reads it off the earlier path (``spend.path_hits``), and the scorer keeps the pass rate of every
  lookahead program it ran. Without a sandbox or public tests the term is dropped (``w_pass`` = 0).

A *complete* program is judged by its tests alone: ``r = pass_rate`` when there are public tests
(its likelihood says nothing more), else ``exp(mean_lp)``.

``evaluate(..., lookahead=False)`` is the cheap, *lazy* form used by A* for newly generated states:
the pass term is borrowed from the parent's lookahead (``PartialState.prior_pass``) unless the
state's own lookahead lies on an earlier greedy path (``MeteredLM.path_rollout``), and the returned
``StepScore.exact`` says which. A* evaluates the
exact score only when such a state reaches the top of its queue (lazy A*).
"""

from __future__ import annotations

import codeop
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from search.limits.steps import context_tail, in_context
from search.model.lm import GenerationParams
from search.problems.problem import Problem
from search.problems.prompting import REASONING_SYSTEM, template_text
from search.state.context import stops_for

if TYPE_CHECKING:
    from search.state.context import SearchContext


@dataclass
class PartialState:
    """What a process scorer sees of one search state (text and tokens after the prompt)."""

    completion: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    complete: bool = False
    reward: float | None = None  # public-test pass rate, when the planner already knows it
    prior_pass: float | None = None  # the parent's lookahead pass rate (lazy scoring)

    @property
    def mean_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


@dataclass
class Lookahead:
    """A greedy completion of a state, run by a scorer: a complete program A* can keep."""

    token_ids: list[int]  # tokens after the state's own
    logprobs: list[float]
    text: str  # text after the state's own completion, cut at the problem's stop
    finish_reason: str
    pass_rate: float | None


@dataclass
class StepScore:
    r: float
    exact: bool = True
    lookahead: Lookahead | None = None
    parts: dict[str, float] = field(default_factory=dict)
    rollouts: list[Lookahead] = field(default_factory=list)  # every complete solution the score ran


@runtime_checkable
class ProcessScorer(Protocol):
    """Scores partial solutions in [0, 1], batched.

    A search calls ``evaluate``: each state's score with its parts. With ``lookahead=False`` a
    scorer may answer with a cheap, *lazy* score (``StepScore.exact`` False: evaluate the state
    again with ``lookahead`` before relying on it). By default a scorer has no lazy form: every
    score is ``score_steps``' r, exact, without a lookahead.
    """

    def score_steps(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext
    ) -> list[float]: ...

    def evaluate(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext, lookahead: bool = True
    ) -> list[StepScore]:
        return [StepScore(r) for r in self.score_steps(problem, states, ctx)]


def has_public_tests(problem: Problem, ctx: SearchContext) -> bool:
    return ctx.scorer is not None and bool(problem.public_tests)


# ----- completability -------------------------------------------------------------------------

_OPEN_BLOCK = re.compile(r":\s*(#.*)?$")


def completable(program_prefix: str) -> bool:
    """Whether some continuation can make ``program_prefix`` valid Python.

    >>> completable("def f(x):\\n    if x > 1:\\n")
    True
    >>> completable("def f(x):\\n    return (x +\\n")
    True
    >>> completable("def f(x):\\n    return x)\\n")
    False
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            codeop.compile_command(program_prefix, "<partial>", "exec")
            return True  # compiled, or None: a valid but incomplete prefix
        except (SyntaxError, ValueError, OverflowError):
            pass
        closed = close_open_block(program_prefix)
        if closed == program_prefix:
            return False
        try:
            compile(closed, "<partial>", "exec", dont_inherit=True)
            return True
        except (SyntaxError, ValueError, OverflowError):
            return False


def close_open_block(source: str) -> str:
    """``source`` with a ``pass`` body added when its last code line opens a block."""
    lines = source.rstrip().splitlines()
    if not lines or not _OPEN_BLOCK.search(lines[-1]):
        return source
    indent = len(lines[-1]) - len(lines[-1].lstrip())
    return source.rstrip() + "\n" + " " * (indent + 4) + "pass\n"


# ----- the code-aware scorer ------------------------------------------------------------------


class CodeAwareScorer(ProcessScorer):
    """Offline step scorer for code: completability, likelihood and a greedy lookahead's pass rate
    (formula in the module docstring)."""

    def __init__(self, w_lp: float = 0.3, w_pass: float = 0.7, lookahead_tokens: int = 256) -> None:
        if w_lp < 0 or w_pass < 0 or w_lp + w_pass <= 0:
            raise ValueError("w_lp and w_pass must be >= 0 and not both 0")
        if lookahead_tokens < 1:
            raise ValueError("lookahead_tokens must be >= 1")
        self.w_lp, self.w_pass, self.lookahead_tokens = w_lp, w_pass, lookahead_tokens
        self.pass_rates: dict[str, float] = {}  # lookahead program -> its public pass rate
        self.calls = 0

    def score_steps(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext
    ) -> list[float]:
        return [s.r for s in self.evaluate(problem, states, ctx)]

    def completable(self, problem: Problem, state: PartialState) -> bool:
        return completable(problem.program(state.completion))

    def evaluate(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext, lookahead: bool = True
    ) -> list[StepScore]:
        """Scores with their parts; with ``lookahead`` the pass term is each state's own."""
        self.calls += len(states)
        ctx.meter.charge(scorer_calls=len(states))
        ctx.count("process_scorer_calls", len(states))
        tests = has_public_tests(problem, ctx) and self.w_pass > 0
        ok = [self.completable(problem, s) for s in states]
        lookaheads: list[Lookahead | None] = [None] * len(states)
        if tests:
            prompt = ctx.lm.encode(problem.model_text)
            todo = [
                i
                for i, s in enumerate(states)
                if ok[i] and not s.complete and (lookahead or self._on_path(problem, s, prompt, ctx))
            ]
            if todo:
                fresh = self._lookaheads(problem, [states[i] for i in todo], prompt, ctx)
                for i, la in zip(todo, fresh, strict=True):
                    lookaheads[i] = la
            complete_missing = [i for i, s in enumerate(states) if ok[i] and s.complete and s.reward is None]
            if complete_missing:
                rewards = ctx.reward(problem, [states[i].completion for i in complete_missing])
                for i, rw in zip(complete_missing, rewards, strict=True):
                    states[i].reward = float(rw.pass_rate)
        return [self._combine(s, ok[i], lookaheads[i], tests) for i, s in enumerate(states)]

    def _combine(self, s: PartialState, ok: bool, la: Lookahead | None, tests: bool) -> StepScore:
        mlp = s.mean_logprob
        lik = math.exp(mlp) if mlp is not None else 1.0
        parts = {"completable": float(ok), "likelihood": lik}
        if not ok:
            return StepScore(0.0, True, la, parts)
        if s.complete:
            r = float(s.reward) if tests and s.reward is not None else lik
            parts["pass_rate"] = r if tests else float("nan")
            return StepScore(min(1.0, max(0.0, r)), True, None, parts)
        if not tests:
            return StepScore(lik, True, None, parts)
        exact = la is not None and la.pass_rate is not None
        pass_rate = la.pass_rate if exact and la is not None else s.prior_pass
        if pass_rate is None:
            pass_rate = 0.0
        parts["pass_rate"] = float(pass_rate)
        r = (self.w_lp * lik + self.w_pass * float(pass_rate)) / (self.w_lp + self.w_pass)
        return StepScore(min(1.0, max(0.0, r)), exact, la, parts)

    def _params(self) -> GenerationParams:
        return GenerationParams(max_new_tokens=self.lookahead_tokens)

    def _on_path(self, problem: Problem, s: PartialState, prompt: list[int], ctx: SearchContext) -> bool:
        """Whether the state's greedy lookahead lies on an earlier greedy path (it costs nothing)."""
        stops = in_context(stops_for(problem), s.completion)
        return ctx.lm.path_rollout(prompt + s.token_ids, self._params(), stops) is not None

    def _lookaheads(
        self, problem: Problem, states: Sequence[PartialState], prompt: list[int], ctx: SearchContext
    ) -> list[Lookahead]:
        """Greedy completions, batched per stop context (the stops depend on the text's tail); a
        lookahead read off an earlier greedy path keeps the pass rate its program had."""
        base = stops_for(problem)
        params = self._params()
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(states):
            groups.setdefault(context_tail(s.completion), []).append(i)
        out: list[Lookahead | None] = [None] * len(states)
        for idxs in groups.values():
            ctx_text = states[idxs[0]].completion
            sources: list[str] = []
            rolls = ctx.lm.rollouts(
                [prompt + states[i].token_ids for i in idxs],
                params,
                in_context(base, ctx_text),
                sources=sources,
            )
            run = [r for r, src in zip(rolls, sources, strict=True) if src != "path"]
            ctx.count("lookahead_tokens", sum(len(r.token_ids) for r in run))
            ctx.count("lookaheads", len(run))
            programs = [states[i].completion + r.text for i, r in zip(idxs, rolls, strict=True)]
            known = [
                src == "path" and prog in self.pass_rates for src, prog in zip(sources, programs, strict=True)
            ]
            judge = [prog for prog, k in zip(programs, known, strict=True) if not k]
            rewards = iter(ctx.reward(problem, judge) if judge else [])
            for i, r, prog, k in zip(idxs, rolls, programs, known, strict=True):
                if not k:
                    self.pass_rates[prog] = float(next(rewards).pass_rate)
                out[i] = Lookahead(
                    list(r.token_ids), list(r.logprobs), r.text, r.finish_reason, self.pass_rates[prog]
                )
        return [la for la in out if la is not None]


# ----- model-based PRM ------------------------------------------------------------------------

PRMMode = Literal["tag", "token_classification", "value_head", "reward_head"]
PRM_MODES: tuple[PRMMode, ...] = ("tag", "token_classification", "value_head", "reward_head")
Aggregate = Literal["last", "min", "mean"]
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tag": {"step_tag": "ки"},
    "token_classification": {"step_tag": "ки"},
    "value_head": {"step_tag": "\n"},
    "reward_head": {"step_tag": "<extra_0>", "chat_question": True},
}
"""Each mode's input format as its reference models were trained on (a caller's keyword wins)."""
V_HEAD = ("v_head.summary.weight", "v_head.summary.bias")


class HFProcessRewardModel(ProcessScorer):
    """A transformers process reward model; step scores read at the step tags (module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        mode: PRMMode = "tag",
        step_tag: str = "ки",
        good_token: str = "+",
        bad_token: str = "-",
        positive_label: int = 1,
        aggregate: Aggregate = "last",
        question_suffix: str = "\n",
        batch_size: int = 8,
        value_head: Any = None,
        chat_question: bool = False,
    ) -> None:
        if mode not in PRM_MODES:
            raise ValueError(f"unknown PRM mode {mode!r}: use {', '.join(PRM_MODES)}")
        if (mode == "value_head") != (value_head is not None):
            raise ValueError("a value head is given with mode=value_head, and only then")
        if aggregate not in ("last", "min", "mean"):
            raise ValueError(f"unknown aggregate {aggregate!r}: use last, min or mean")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mode, self.aggregate, self.positive_label = mode, aggregate, positive_label
        self.question_suffix, self.batch_size = question_suffix, batch_size
        self.value_head = value_head.eval() if value_head is not None else None
        self.chat_question = chat_question
        self.tag_ids = self._encode(step_tag)
        if not self.tag_ids:
            raise ValueError("step_tag encodes to no tokens")
        self.good_id = self.bad_id = -1
        if mode == "tag":
            good, bad = self._encode(good_token), self._encode(bad_token)
            if len(good) != 1 or len(bad) != 1:
                raise ValueError(
                    f"good/bad tokens must be single tokens; got {good_token!r}->{good}, {bad_token!r}->{bad}"
                )
            self.good_id, self.bad_id = good[0], bad[0]
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.forward_passes = 0

    @classmethod
    def load(
        cls, path_or_id: str | Path, mode: PRMMode = "tag", device: str = "cpu", **kwargs: Any
    ) -> HFProcessRewardModel:
        """Load a PRM from a local directory or a hub id (hub ids need network access); the mode's
        input format (``MODE_DEFAULTS``) unless ``kwargs`` say otherwise."""
        from transformers import (
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        if mode not in PRM_MODES:
            raise ValueError(f"unknown PRM mode {mode!r}: use {', '.join(PRM_MODES)}")
        where = str(path_or_id)
        kwargs = {**MODE_DEFAULTS[mode], **kwargs}
        remote = mode == "reward_head"  # the model's own code (Qwen2.5-Math-PRM's reward head)
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=remote)
        if mode == "value_head":
            kwargs["value_head"] = load_value_head(where).to(device)
        auto = {
            "tag": AutoModelForCausalLM,
            "token_classification": AutoModelForTokenClassification,
            "value_head": AutoModelForCausalLM,
            "reward_head": AutoModel,
        }[mode]
        model = auto.from_pretrained(where, trust_remote_code=remote).to(device)  # type: ignore[attr-defined]
        return cls(model, tok, mode=mode, **kwargs)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def question_text(self, question: str) -> str:
        """What precedes the steps: the question and ``question_suffix``, or with ``chat_question``
        the question as a user turn under Qwen's math system prompt, the assistant's turn opened."""
        if self.chat_question:
            messages = [
                {"role": "system", "content": REASONING_SYSTEM},
                {"role": "user", "content": question},
            ]
            turn = template_text(self.tokenizer, messages)
            if turn is not None:
                return turn
        return question + self.question_suffix

    def build_input(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of question + tagged steps, and the position of each step's (last) tag token."""
        ids = self._encode(self.question_text(question))
        positions = []
        for step in steps:
            ids += self._encode(step) + self.tag_ids
            positions.append(len(ids) - 1)
        return ids, positions

    def step_scores(self, question: str, steps_batch: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each solution, one score in [0, 1] per step."""
        import torch

        out: list[list[float]] = []
        for start in range(0, len(steps_batch), self.batch_size):
            chunk = steps_batch[start : start + self.batch_size]
            built = [self.build_input(question, steps) for steps in chunk]
            width = max(len(ids) for ids, _ in built)
            device = next(self.model.parameters()).device
            input_ids = torch.full((len(built), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(built), width), dtype=torch.long)
            for b, (ids, _) in enumerate(built):
                input_ids[b, : len(ids)] = torch.tensor(ids)
                mask[b, : len(ids)] = 1
            with torch.inference_mode():
                logits = self._scores(input_ids.to(device), mask.to(device)).float()
            self.forward_passes += 1
            for b, (_, positions) in enumerate(built):
                out.append([self._read(logits[b, pos]) for pos in positions])
        return out

    def _scores(self, input_ids: Any, mask: Any) -> Any:
        """The per-position scores the mode reads: LM or head logits, or the value head's output."""
        if self.value_head is not None:
            out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states[-1]
            return self.value_head(hidden.to(self.value_head.weight.dtype))
        out = self.model(input_ids=input_ids, attention_mask=mask)
        logits = getattr(out, "logits", None)
        return logits if logits is not None else out[0]  # own model code may return a tuple

    def _read(self, row: Any) -> float:
        import torch

        if self.mode == "tag":
            pair = torch.stack([row[self.good_id], row[self.bad_id]])
            return float(torch.softmax(pair, -1)[0])
        if row.shape[-1] == 1:
            return float(torch.sigmoid(row[0]))
        return float(torch.softmax(row, -1)[self.positive_label])

    def score_steps(
        self, problem: Problem, states: Sequence[PartialState], ctx: SearchContext
    ) -> list[float]:
        before = self.forward_passes
        per_step = self.step_scores(problem.prompt, [s.steps or [s.completion] for s in states])
        ctx.meter.charge(scorer_calls=len(states))
        ctx.count("prm_forward_passes", self.forward_passes - before)
        ctx.count("process_scorer_calls", len(states))
        return [self.aggregate_scores(scores) for scores in per_step]

    def aggregate_scores(self, scores: list[float]) -> float:
        """One score for a solution from its step scores (``aggregate``: last, min or mean)."""
        if not scores:
            return 0.5
        if self.aggregate == "min":
            return min(scores)
        if self.aggregate == "mean":
            return sum(scores) / len(scores)
        return scores[-1]


def load_value_head(path_or_id: str) -> Any:
    """The linear value head (``V_HEAD``'s weight and bias) stored in a checkpoint's safetensors
    files (a hub id is downloaded first)."""
    import torch
    from safetensors import safe_open

    folder = Path(path_or_id)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(path_or_id, allow_patterns=["*.safetensors", "*.json"]))
    found: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safetensors handle is not a mapping)
                name = next((v for v in V_HEAD if key.endswith(v)), None)
                if name is not None:
                    found[name] = f.get_tensor(key)
    if V_HEAD[0] not in found:
        raise ValueError(f"{path_or_id}: no value head ({V_HEAD[0]}) in its safetensors files")
    weight = found[V_HEAD[0]].reshape(1, -1)
    head = torch.nn.Linear(weight.shape[1], 1, bias=V_HEAD[1] in found, dtype=weight.dtype)
    with torch.no_grad():
        head.weight.copy_(weight)
        if head.bias is not None:
            head.bias.copy_(found[V_HEAD[1]].reshape(1))
    return head.requires_grad_(False)


_PRM_CACHE: dict[tuple[str, str, str], HFProcessRewardModel] = {}


def load_prm(path_or_id: str, mode: PRMMode = "tag", **kwargs: Any) -> HFProcessRewardModel:
    """A PRM loaded once per process (keyed by path and mode)."""
    key = (str(path_or_id), mode, repr(sorted(kwargs.items())))
    if key not in _PRM_CACHE:
        _PRM_CACHE[key] = HFProcessRewardModel.load(path_or_id, mode=mode, **kwargs)
    return _PRM_CACHE[key]
