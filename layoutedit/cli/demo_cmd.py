"""`layoutedit demo`."""

from __future__ import annotations

import typer

from layoutedit.cli.common import not_yet, user_errors


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("demo")
    @user_errors
    def demo_command() -> None:
        """Not yet available."""
        raise not_yet("demo")
