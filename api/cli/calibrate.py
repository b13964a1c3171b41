"""``treedec calibrate``: learn AdaDec's entropy threshold for a model and prompt style."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from api.cli.display import out, progress_display
from api.cli.errors import UserError, user_errors
from api.cli.options import Device, Dtype, Model


def calibrate(
    model: Model = "bundled-default",
    source: str = typer.Option(
        "stdlib",
        "--source",
        help="stdlib, humaneval:A-B (exclude it in evals), or gsm8k-train:A-B (for chain-of-thought)",
    ),
    limit: int | None = typer.Option(120, "--limit", "-n", help="at most this many functions"),
    out_path: Path | None = typer.Option(None, "--out", "-o", help="default: $TREEDEC_HOME/thresholds.json"),
    device: Device = "auto",
    dtype: Dtype = "auto",
    prompt_style: str = typer.Option(
        "completion",
        "--prompt-style",
        help="completion | chat | chat-prefill | chain-of-thought: the style to calibrate for",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the fit as JSON"),
) -> None:
    """Learn AdaDec's entropy threshold for a model by teacher forcing; store it and print the fit."""
    from planners.calibration import run, summarise
    from search.problems.prompting import parse_any_style

    with user_errors():
        if parse_any_style(prompt_style) == "auto":
            raise UserError(
                "calibrate for one prompt style: completion, chat, chat-prefill or chain-of-thought"
            )

    with user_errors(), progress_display(not as_json) as progress:
        task = progress.add_task("teacher forcing", total=None) if progress else None

        def on_progress(done: int, total: int) -> None:
            if progress is not None and task is not None:
                progress.update(task, completed=done, total=total, description=f"functions {done}/{total}")

        cal, path, identity = run(
            model, source, limit, out_path, device, dtype, progress=on_progress, prompt_style=prompt_style
        )
    if as_json:
        print(json.dumps({**cal.to_dict(), "file": str(path), "model": identity.name, "key": identity.key()}))
        return
    out.print(summarise(cal, path, identity.name), highlight=False)
