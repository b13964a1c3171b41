"""The ``treedec`` command: solve | eval | planners | models | run-tests | calibrate | serve | worker.

This module is the command table: each command lives in its own module of ``api/cli/`` and is
registered here. User mistakes (a missing file, an unknown planner, a bad budget) print one line
and exit 2 (``api/cli/errors.py``); a traceback means a bug.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from api.cli.calibrate import calibrate
from api.cli.catalog import list_planners, models_install, models_list
from api.cli.evaluate import EVAL_CONTEXT, evaluate
from api.cli.options import Sandbox
from api.cli.serve import serve, worker
from api.cli.solve import solve

app = typer.Typer(add_completion=False, no_args_is_help=True, help="treedec: search-based code decoding.")
models_app = typer.Typer(no_args_is_help=True, help="Bundled and local models.")
app.add_typer(models_app, name="models")

app.command()(solve)
app.command("eval", context_settings=EVAL_CONTEXT)(evaluate)
app.command("planners")(list_planners)
models_app.command("list")(models_list)
models_app.command("install")(models_install)
app.command()(serve)
app.command()(worker)


@app.command("run-tests")
def run_tests(
    program: Path = typer.Argument(..., help="the Python program to run"),
    problem: str = typer.Option(..., "--problem", help="problem file or dataset reference"),
    hidden: bool = typer.Option(False, "--hidden", help="run the hidden tests instead of the public ones"),
    as_json: bool = typer.Option(False, "--json"),
    sandbox: Sandbox = "auto",
) -> None:
    """Run a program against a problem's tests in the sandbox; exit 0 only when all pass."""
    from api.cli.run_tests import run_tests_main

    raise typer.Exit(run_tests_main(str(program), problem, hidden, as_json, sandbox))


app.command()(calibrate)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("TREEDEC_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_transformers()
    app()


def _quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", message=".*GGUF.*")


if __name__ == "__main__":
    main()
