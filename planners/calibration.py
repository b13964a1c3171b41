"""Learning AdaDec's entropy threshold ``H*`` for a model (``treedec calibrate``).

1. Teacher-force the model over reference functions (prompt = signature + docstring, target =
   the body) and log, at every target position, the entropy of the next-token distribution and
   whether the true token is the model's argmax (``rank 1``).
2. Fit a logistic regression ``P(rank 1 | H) = sigmoid(a + b H)`` (class-balanced), choose the
   probability cut-off ``p*`` that maximises balanced accuracy, and solve the logistic for the
   entropy: ``H* = (logit(p*) - a) / b``. Below ``H*`` the argmax is probably right; at or above it
   AdaDec pauses.

No leakage: the default data are functions with docstrings parsed from the Python standard
library on this machine, disjoint from any benchmark; ``humaneval:A-B`` is offered for a split
that an evaluation must then exclude (the entry records the source).

The ``chain-of-thought`` style is calibrated on GSM8K's train split instead (``gsm8k-train:A-B``):
the question under the style's chat turn, and as the target the worked answer the dataset gives,
its calculator notes (``<<48/2=24>>``) dropped and its ``#### N`` written as the boxed answer the
style asks for. As with functions, the reference is a correct text that is not the model's own,
and the fit learns how far the model's entropy tells where its argmax leaves it. The
``program-aided`` style has no reference programs to teacher-force and is refused.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import random
import re
import sysconfig
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from planners.base import PlannerError
from search.model.lm import LanguageModel
from search.problems.prompt_styles import REASONING_STYLES


@dataclass(frozen=True)
class Example:
    """One reference text: the model sees ``prompt`` and is scored on ``target``; a ``function``
    (prompt = signature and docstring) or an ``answer`` (prompt = a question, target = a worked
    answer)."""

    id: str
    prompt: str
    target: str
    kind: Literal["function", "answer"] = "function"


WORKED_ANSWER_STYLES = ("chain-of-thought",)
"""The prompt styles a worked-answer source (``gsm8k-train:A-B``) calibrates."""


# ----- data sources ---------------------------------------------------------------------------


def _function_example(
    source_lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef, name: str
) -> Example | None:
    """Split a top-level function into prompt (decorators, signature, docstring) and body."""
    body = node.body
    if len(body) < 2 or not (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return None
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    doc_end = body[0].end_lineno
    end = node.end_lineno
    if doc_end is None or end is None:
        return None
    prompt = "".join(source_lines[start:doc_end])
    target = "".join(source_lines[doc_end:end])
    if not target.strip() or not target.startswith((" ", "\t")):
        return None
    return Example(name, prompt, target.rstrip() + "\n")


def stdlib_examples(directory: Path | None = None, max_target_lines: int = 40) -> list[Example]:
    """Top-level functions with docstrings from the standard library's ``*.py`` files, in file order.

    ``directory`` defaults to this interpreter's stdlib; bodies longer than ``max_target_lines``
    are skipped (they dominate the positions and cost the most)."""
    root = Path(directory) if directory is not None else Path(sysconfig.get_paths()["stdlib"])
    out: list[Example] = []
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                ex = _function_example(lines, node, f"stdlib:{path.stem}.{node.name}")
                if ex is not None and ex.target.count("\n") <= max_target_lines:
                    out.append(ex)
    return out


def humaneval_examples(spec: str) -> list[Example]:
    """HumanEval problems ``humaneval:A-B`` with their canonical solutions."""
    from search.problems.loaders import load_problems

    return [
        Example(p.id, p.prompt, p.canonical_solution or "")
        for p in load_problems(spec)
        if p.canonical_solution
    ]


def worked_answer_text(answer: str) -> str:
    """A GSM8K worked answer as the chain-of-thought style ends one: the calculator notes dropped
    and ``#### N`` written as a boxed final answer.

    >>> print(worked_answer_text("She sold 48/2 = <<48/2=24>>24 clips.\\n#### 24"))
    She sold 48/2 = 24 clips.
    The final answer is $\\boxed{24}$.
    <BLANKLINE>
    """
    body, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise PlannerError("a GSM8K worked answer ends with '#### N'; this one does not")
    text = re.sub(r"<<[^<>]*>>", "", body).rstrip()
    return f"{text}\nThe final answer is $\\boxed{{{final.strip()}}}$.\n"


def worked_answer_examples(spec: str) -> list[Example]:
    """GSM8K train problems ``gsm8k-train:A-B`` with their worked answers (the test split is
    refused: it is what results are reported on)."""
    from search.problems.gsm8k import SPLITS, gsm8k_rows
    from search.problems.index_lists import index_list

    name, _, ref = spec.partition(":")
    if name != "gsm8k-train":
        raise PlannerError(
            f"calibrate on GSM8K's train split (gsm8k-train:A-B), not {spec!r}: the test split is for results"
        )
    rows = gsm8k_rows(SPLITS[name])
    indices = index_list(ref, len(rows), name) if ref.strip() else range(len(rows))
    return [
        Example(f"{name}/{i}", rows[i]["question"], worked_answer_text(rows[i]["answer"]), "answer")
        for i in indices
    ]


def check_source_style(source: str, prompt_style: str) -> None:
    """Refuse a source that cannot calibrate the style, before any model is loaded: worked answers
    calibrate ``chain-of-thought`` only, functions the code styles only."""
    from search.problems.gsm8k import is_gsm8k_spec

    answers = is_gsm8k_spec(source)
    if answers and prompt_style not in WORKED_ANSWER_STYLES:
        raise PlannerError(
            f"a worked-answer source ({source}) calibrates the chain-of-thought style, not {prompt_style!r}"
        )
    if not answers and prompt_style in REASONING_STYLES:
        hint = (
            "use --source gsm8k-train:A-B"
            if prompt_style in WORKED_ANSWER_STYLES
            else "it has no reference texts to teacher-force"
        )
        raise PlannerError(f"functions ({source}) calibrate code styles, not {prompt_style!r}: {hint}")


def load_examples(source: str, limit: int | None, seed: int = 0) -> list[Example]:
    """``stdlib`` (a seeded random sample of ``limit`` functions), ``humaneval:A-B`` or
    ``gsm8k-train:A-B`` (all of it, or its first ``limit``)."""
    from search.problems.gsm8k import is_gsm8k_spec

    if source == "stdlib":
        examples = stdlib_examples()
        random.Random(seed).shuffle(examples)
    elif source.startswith("humaneval:"):
        examples = humaneval_examples(source)
    elif is_gsm8k_spec(source):
        examples = worked_answer_examples(source)
    else:
        raise PlannerError(
            f"unknown calibration source {source!r}: use stdlib, humaneval:A-B or gsm8k-train:A-B"
        )
    if not examples:
        raise PlannerError(f"calibration source {source!r} yielded no functions")
    return examples[:limit] if limit is not None else examples


# ----- teacher forcing ------------------------------------------------------------------------


def teacher_force(
    lm: LanguageModel, example: Example, max_target_tokens: int = 512
) -> list[tuple[float, bool]]:
    """(entropy, true token is argmax) at every target position of one example.

    The backend's ``position_stats``: one forward pass in process, the next-token distributions
    of every prefix over a server (``search.model.lm.position_stats_from_dists``)."""
    prompt = lm.encode(example.prompt)
    target = lm.encode(example.target)[:max_target_tokens]
    if not prompt or not target:
        return []
    return list(lm.position_stats(prompt + target, len(prompt)))


# ----- the fit --------------------------------------------------------------------------------


@dataclass
class Fit:
    """A fitted threshold and how good the rule ``H < H*  =>  argmax is right`` is."""

    entropy_threshold: float
    cutoff: float
    intercept: float
    coef: float
    balanced_accuracy: float
    accuracy: float
    train_positions: int
    test_positions: int
    rank1_rate: float


def entropy_at(cutoff: float, intercept: float, coef: float) -> float:
    """Solve ``sigmoid(intercept + coef * H) = cutoff`` for ``H``.

    >>> round(entropy_at(0.5, 2.0, -2.0), 6)
    1.0
    """
    if coef == 0:
        raise ValueError("the logistic has no entropy term (coef 0): entropy does not predict rank 1 here")
    p = min(max(cutoff, 1e-12), 1 - 1e-12)
    return (math.log(p / (1 - p)) - intercept) / coef


def best_cutoff(prob: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The probability cut-off (predict rank 1 when ``prob >= cutoff``) with the highest balanced
    accuracy, searched exactly over all distinct predicted values; returns (cutoff, balanced acc)."""
    order = np.argsort(-prob, kind="stable")
    p_sorted, y_sorted = prob[order], y[order].astype(float)
    pos, neg = y_sorted.sum(), (1 - y_sorted).sum()
    if pos == 0 or neg == 0:
        raise ValueError("calibration data has only one class (every token rank 1, or none)")
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]  # cut only between distinct values
    bal = 0.5 * (tp / pos + (neg - fp) / neg)
    bal = np.where(last_of_value, bal, -1.0)
    k = int(np.argmax(bal))
    nxt = p_sorted[k + 1] if k + 1 < len(p_sorted) else 0.0
    return float(0.5 * (p_sorted[k] + nxt)), float(bal[k])


def fit_threshold(
    entropy: np.ndarray,
    rank1: np.ndarray,
    groups: np.ndarray | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Fit:
    """Fit ``P(rank 1 | H)`` and turn the best balanced-accuracy cut-off into ``H*``.

    Positions are split into train/test by ``groups`` (whole functions, so the test set is
    unseen text); the cut-off is chosen on train, the reported accuracies are on test."""
    from sklearn.linear_model import LogisticRegression

    entropy = np.asarray(entropy, dtype=float)
    rank1 = np.asarray(rank1, dtype=bool)
    if entropy.shape != rank1.shape or entropy.ndim != 1 or len(entropy) < 10:
        raise ValueError("fit_threshold needs two 1-D arrays of equal length (at least 10 positions)")
    groups = np.arange(len(entropy)) if groups is None else np.asarray(groups)
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    test_groups = (
        rng.choice(uniq, size=max(1, int(round(test_fraction * len(uniq)))), replace=False)
        if len(uniq) > 1 and test_fraction > 0
        else np.array([], dtype=uniq.dtype)
    )
    is_test = np.isin(groups, test_groups)
    train = ~is_test if is_test.any() and (~is_test).any() else np.ones_like(is_test)
    test = is_test if is_test.any() and (~is_test).any() else np.ones_like(is_test)
    model = LogisticRegression(class_weight="balanced", max_iter=1000)
    model.fit(entropy[train, None], rank1[train])
    intercept, coef = float(model.intercept_[0]), float(model.coef_[0, 0])
    if coef >= 0:
        raise ValueError(f"entropy does not predict a wrong argmax on this data (coef {coef:.3f} >= 0)")
    cutoff, _ = best_cutoff(model.predict_proba(entropy[train, None])[:, 1], rank1[train])
    threshold = entropy_at(cutoff, intercept, coef)
    pred = entropy[test] < threshold
    truth = rank1[test]
    tpr = float((pred & truth).sum() / max(1, truth.sum()))
    tnr = float((~pred & ~truth).sum() / max(1, (~truth).sum()))
    return Fit(
        threshold,
        cutoff,
        intercept,
        coef,
        0.5 * (tpr + tnr),
        float((pred == truth).mean()),
        int(train.sum()),
        int(test.sum()),
        float(rank1.mean()),
    )


# ----- the whole procedure --------------------------------------------------------------------


@dataclass
class Calibration:
    fit: Fit
    source: str
    functions: int
    positions: int
    seconds: float
    prompt_style: str = "completion"

    def entry(self) -> dict[str, Any]:
        """The JSON entry stored for the model (see planners/thresholds.py)."""
        f = self.fit
        return {
            "entropy_threshold": round(f.entropy_threshold, 4),
            "prompt_style": self.prompt_style,
            "source": self.source,
            "functions": self.functions,
            "positions": self.positions,
            "accuracy": round(f.accuracy, 4),
            "balanced_accuracy": round(f.balanced_accuracy, 4),
            "cutoff": round(f.cutoff, 4),
            "logistic": {"intercept": round(f.intercept, 4), "coef": round(f.coef, 4)},
            "rank1_rate": round(f.rank1_rate, 4),
            "test_positions": f.test_positions,
            "method": "teacher forcing; class-balanced logistic P(rank1|entropy); cut-off maximising "
            "balanced accuracy on 80% of functions; accuracies on the other 20%",
            "date": dt.date.today().isoformat(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.fit),
            "source": self.source,
            "prompt_style": self.prompt_style,
            "functions": self.functions,
            "positions": self.positions,
            "seconds": round(self.seconds, 1),
        }


def in_style(example: Example, lm: LanguageModel, prompt_style: str) -> Example:
    """The example as the model sees it in a prompt style: the prompt rendered (see
    search/problems/prompting.py); in the chat style the model writes the whole function, so the target
    is the signature and docstring followed by the body. A worked answer is put as a question in
    its reasoning style."""
    from search.problems.problem import Problem
    from search.problems.prompting import render, render_reasoning

    if example.kind == "answer":
        turn = render_reasoning(Problem(id=example.id, prompt=example.prompt), prompt_style, lm)
        return Example(example.id, turn.model_text, example.target, example.kind)
    if prompt_style == "completion":
        return example

    rendered = render(Problem(id=example.id, prompt=example.prompt), prompt_style, lm)
    target = example.prompt + example.target if rendered.prompt_style == "chat" else example.target
    return Example(example.id, rendered.model_text, target)


def calibrate(
    lm: LanguageModel,
    source: str = "stdlib",
    limit: int | None = 120,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    prompt_style: str = "completion",
) -> Calibration:
    """Teacher-force ``lm`` over the source's functions, put to it in ``prompt_style``, and fit
    its entropy threshold."""
    import time

    started = time.monotonic()
    check_source_style(source, prompt_style)
    examples = [in_style(ex, lm, prompt_style) for ex in load_examples(source, limit, seed)]
    entropies: list[float] = []
    rank1: list[bool] = []
    groups: list[int] = []
    used = 0
    for i, ex in enumerate(examples):
        stats = teacher_force(lm, ex)
        if stats:
            used += 1
        for h, top in stats:
            entropies.append(h)
            rank1.append(top)
            groups.append(i)
        if progress is not None:
            progress(i + 1, len(examples))
    fit = fit_threshold(np.array(entropies), np.array(rank1), np.array(groups), seed=seed)
    return Calibration(fit, source, used, len(entropies), time.monotonic() - started, prompt_style)


def source_problem_ids(source: str) -> set[str]:
    """HumanEval task ids a calibration source used (an evaluation must leave them out)."""
    if not source.startswith("humaneval:"):
        return set()
    from search.problems.loaders import load_problems

    return {p.id for p in load_problems(source)}


def summarise(cal: Calibration, path: Path, model_name: str) -> str:
    f = cal.fit
    worked = cal.prompt_style in WORKED_ANSWER_STYLES
    return (
        f"{model_name} ({cal.prompt_style} style): H* = {f.entropy_threshold:.4f} nats "
        f"(cut-off p = {f.cutoff:.3f}; "
        f"logistic a = {f.intercept:.3f}, b = {f.coef:.3f})\n"
        f"  data: {cal.source}, {cal.functions} {'worked answers' if worked else 'functions'}, "
        f"{cal.positions} positions "
        f"(rank-1 rate {f.rank1_rate:.3f}); held-out accuracy {f.accuracy:.3f}, "
        f"balanced accuracy {f.balanced_accuracy:.3f} on {f.test_positions} positions\n"
        f"  wrote {path} ({cal.seconds:.0f} s)"
    )


def run(
    model: str,
    source: str,
    limit: int | None,
    out: Path | None,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    prompt_style: str = "completion",
) -> tuple[Calibration, Path, Any]:
    """What ``treedec calibrate`` does: load, calibrate, store. Returns the calibration, the file
    written and the model identity."""
    from planners.thresholds import user_file, write_entry
    from search.model.loader import load_model

    check_source_style(source, prompt_style)
    lm = load_model(model, device=device, dtype=dtype)
    cal = calibrate(lm, source, limit, seed, progress, prompt_style)
    path = out if out is not None else user_file()
    write_entry(path, lm.identity, cal.entry())
    return cal, path, lm.identity
