"""The error a problem spec, file or record is refused with: one line that says why."""

from __future__ import annotations


class ProblemError(ValueError):
    """A problem spec or file that cannot be used; the message says why."""
