"""The ``treedec`` command (``api/cli/app.py`` holds the command table)."""


def main() -> None:
    """The console entry point; imported lazily so ``python -m api.cli.app`` runs the module once."""
    from api.cli.app import main as run

    run()


__all__ = ["main"]
