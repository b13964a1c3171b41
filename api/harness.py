"""Evaluation-harness plugin: treedec's planners as an lm-evaluation-harness model named ``treedec``.

lm-eval has no entry-point discovery for models, so the plugin is registered by importing this
module. Two ways to use it:

- ``treedec eval --harness lm-eval --model_args planner=pgtd,max_seconds=60 --tasks treedec_humaneval
  --confirm_run_unsafe_code --limit 10`` (planner parameters need the JSON form of model_args:
  ``--model_args '{"planner": "pgtd", "params": {"rollouts": 8}}'``) imports the plugin, adds
  ``--model treedec`` and ``--include_path`` of the offline task configs (``api/lm_eval_tasks/``)
  unless given, and runs lm-eval's own CLI with the remaining arguments (``run_harness_cli``).
- From Python: ``import api.harness`` then ``lm_eval.simple_evaluate(model="treedec",
  model_args="planner=greedy", tasks=["treedec_humaneval"], task_manager=api.harness.task_manager(),
  confirm_run_unsafe_code=True)``, or pass ``model=TreedecLM(engine=...)``.

``generate_until`` runs the chosen planner on each request: the context becomes a ``Problem``
(entry point = the last ``def``, or the document's ``entry_point``; public tests from the
docstring examples), ``until`` its stop strings, ``max_gen_toks`` the planner's
``max_new_tokens``. A document that carries an ``answer_type`` (the offline ``treedec_gsm8k``
task's rows) is a question with a final answer instead: it is searched as one, rendered in a
reasoning style (``prompt_style``: ``auto``, ``chain-of-thought`` or ``program-aided``), not as the
harness's prompt, and the text returned is the reasoning (a program-aided answer: its code, then
``#### `` and the value its ``solution()`` returned, GSM8K's answer line). Log-likelihood requests
raise ``NotImplementedError``: a search decoder returns completions, not scores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from api.core.contracts import SolveReport
from api.core.engine import Engine
from api.core.prompts import problem_from_prompt
from api.core.specs import budget_of, build_solve_spec
from search.problems.answer_problems import answer_problem, gsm8k_record, is_answer_record
from search.problems.problem import Problem
from search.problems.prompt_styles import AS_SENT_STYLE, DEFAULT_STYLE, REASONING_STYLES
from search.problems.prompting import parse_any_style

TASKS_DIR = Path(__file__).with_name("lm_eval_tasks")
HARNESSES = ("lm-eval", "lm_eval")


@register_model("treedec")
class TreedecLM(LM):
    """lm-eval model arguments: ``planner``, ``model``, ``cache``, ``sandbox``, ``params`` (JSON
    object), budget fields ``max_tokens``, ``max_forward_passes``, ``max_executions``,
    ``max_rollouts``, ``max_seconds`` (limits for one whole search: ``max_tokens`` counts every
    token it generates, while a task's ``max_gen_toks`` caps one completion), ``prompt_style`` (how
    a code prompt is put to the model; the answer returned always continues the harness's prompt),
    ``device`` and ``dtype`` (the weights: bf16, int8, int4...); from Python also ``engine``."""

    def __init__(
        self,
        planner: str = "greedy",
        model: str = "bundled-default",
        cache: str | None = None,
        sandbox: str = "auto",
        params: str | dict[str, Any] | None = None,
        max_tokens: int | None = None,
        max_forward_passes: int | None = None,
        max_executions: int | None = None,
        max_rollouts: int | None = None,
        max_seconds: float | None = None,
        prompt_style: str = DEFAULT_STYLE,
        device: str = "auto",
        dtype: str = "auto",
        engine: Engine | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        import planners

        self.planner = str(planner)
        self.prompt_style = parse_any_style(str(prompt_style))
        self.params = json.loads(params) if isinstance(params, str) else dict(params or {})
        planners.create(self.planner, self.params)  # fail now, naming the bad parameter
        self.budget = budget_of(
            {
                "max_tokens": max_tokens,
                "max_forward_passes": max_forward_passes,
                "max_executions": max_executions,
                "max_rollouts": max_rollouts,
                "max_seconds": max_seconds,
            }
        )
        self.engine = engine or Engine(
            model_spec=str(model),
            cache_spec=cache,
            sandbox=str(sandbox),
            device=str(device),
            dtype=str(dtype),
        )
        self.reports: list[dict[str, Any]] = []

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, gen_kwargs = req.args
            doc = req.doc if isinstance(getattr(req, "doc", None), dict) else {}
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            problem = question_of(doc) or problem_from_prompt(
                context,
                entry_point=doc.get("entry_point"),
                stop=until,
                problem_id=str(doc.get("task_id") or "") or None,
            )
            params = dict(self.params)
            if "max_gen_toks" in gen_kwargs:  # one completion's length: every planner's max_new_tokens
                params.setdefault("max_new_tokens", int(gen_kwargs["max_gen_toks"]))
            spec = build_solve_spec(
                problem,
                self.planner,
                params,
                self.budget,
                evaluate_hidden=False,
                include_tree=False,
                prompt_style=self._style_for(problem),
            )
            report = self.engine.run(spec)
            public = report.public.model_dump() if report.public is not None else None
            row = {"task_id": problem.id, "spend": report.spend.to_dict(), "public": public}
            if report.final_answer is not None:
                row["final_answer"] = report.final_answer.model_dump()
            self.reports.append(row)
            text = harness_text(report)
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out

    def _style_for(self, problem: Problem) -> str:
        """A question's reasoning style (a code style asked for: ``auto``), a code prompt's style,
        or a prose prompt as sent."""
        if problem.final_answer is not None:
            return self.prompt_style if self.prompt_style in REASONING_STYLES else "auto"
        if self.prompt_style in REASONING_STYLES or not problem.prompt_is_code:
            return AS_SENT_STYLE
        return self.prompt_style

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "treedec is a search decoder: it answers generate_until tasks only, not "
            "log-likelihood (multiple-choice) tasks"
        )

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "treedec is a search decoder: it answers generate_until tasks only, not "
            "rolling log-likelihood (perplexity) tasks"
        )


def question_of(doc: dict[str, Any]) -> Problem | None:
    """The question with a final answer a harness document holds (a row with an ``answer_type``
    and a question, as the offline ``treedec_gsm8k`` task's), else None."""
    if "answer_type" not in doc or not is_answer_record(doc):
        return None
    pid = str(doc.get("id") or "harness")
    if isinstance(doc.get("answer"), str) and "####" in doc["answer"]:  # a GSM8K row: its worked answer
        return gsm8k_record(doc, pid).to_problem(pid)
    return answer_problem(doc, pid)


def harness_text(report: SolveReport) -> str:
    """What the harness scores: the text that continues its prompt; for a question, the reasoning,
    and for a program-aided one its code with ``#### `` and the value ``solution()`` returned."""
    if report.final_answer is None:
        return report.prompt_completion
    text = report.completion or ""
    if report.prompt_style != "program-aided":
        return text
    value = report.final_answer.answer.text
    return text.rstrip() + (f"\n#### {value}" if value is not None else "")


def task_manager(include_defaults: bool = True) -> Any:
    """An lm-eval TaskManager that also knows the offline task configs (``treedec_humaneval``);
    ``include_defaults=False`` indexes only those (much faster to build)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults)


def harness_args(args: list[str]) -> list[str]:
    """lm-eval CLI arguments with the treedec defaults filled in."""
    args = list(args[1:] if args[:1] == ["--"] else args)
    if not any(a == "--model" or a.startswith("--model=") for a in args):
        args = ["--model", "treedec", *args]
    if not any(a == "--include_path" or a.startswith("--include_path=") for a in args):
        args = [*args, "--include_path", str(TASKS_DIR)]
    return args


def run_harness_cli(harness: str, args: list[str]) -> int:
    """Run a harness's own CLI with treedec's plugin loaded; the exit code."""
    if harness not in HARNESSES:
        print(f"error: unknown harness {harness!r}; supported: lm-eval", file=sys.stderr)
        return 2
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *harness_args(args)]
    try:
        cli_evaluate()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0
