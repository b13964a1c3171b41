"""User mistakes as one line: ``user_errors()`` maps the errors a user can cause (a missing file, an
unknown planner, a bad budget) to ``error: ...`` on stderr and exit code 2; a traceback means a bug."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError

from api.cli.display import err


class UserError(Exception):
    """Shown as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from planners.base import PlannerError
    from search.cache.store import CacheConfigError
    from search.model.bundled import ModelError
    from search.problems.loaders import ProblemError
    from search.problems.prompting import PromptStyleError

    errors: list[type[BaseException]] = [
        UserError,
        PlannerError,
        CacheConfigError,
        ProblemError,
        ModelError,
        PromptStyleError,
        FileNotFoundError,
    ]
    try:
        from sandbox.executor import SandboxUnavailable

        errors.append(SandboxUnavailable)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or e.title
        _fail(f"invalid value for '{where}': {first['msg']}")
    except _user_errors() as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        _fail("interrupted")
