"""`layoutedit edit`."""

from __future__ import annotations

import typer

from layoutedit.cli.common import not_yet, user_errors


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("edit")
    @user_errors
    def edit_command() -> None:
        """Not yet available."""
        raise not_yet("edit")
