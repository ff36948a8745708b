"""`layoutedit backends`: every registered backend, whether it is usable here, and why not."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from layoutedit.backend import BackendInfo, list_backends
from layoutedit.cli.common import console, state, user_errors

HELP = """List the backends, best first, and mark the one `--backend auto` picks.

Example:

  layoutedit backends

  layoutedit --json backends
"""


def auto_choice(infos: list[BackendInfo]) -> str | None:
    """Name of the backend `--backend auto` takes: the usable one of highest priority."""
    for info in infos:  # list_backends() sorts best first
        if info.available:
            return info.name
    return None


def backends_report(infos: list[BackendInfo]) -> list[dict[str, Any]]:
    """JSON-ready rows: name, description, priority, usable, reason, auto."""
    auto = auto_choice(infos)
    return [
        {
            "name": i.name,
            "description": i.description,
            "priority": i.priority,
            "usable": i.available,
            "reason": i.unavailable_reason,
            "auto": i.name == auto,
        }
        for i in infos
    ]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("backends", help=HELP)
    @user_errors
    def backends_command(ctx: typer.Context) -> None:
        rows = backends_report(list_backends())
        if state(ctx).json:
            state(ctx).emit_json(rows)
            return
        table = Table(title="Backends (best first)", title_justify="left")
        table.add_column("auto", justify="center")
        table.add_column("name")
        table.add_column("priority", justify="right")
        table.add_column("usable")
        table.add_column("reason / description")
        for row in rows:
            table.add_row(
                "[bold green]*[/]" if row["auto"] else "",
                escape(row["name"]),
                str(row["priority"]),
                "[green]yes[/]" if row["usable"] else "[red]no[/]",
                escape(row["reason"] or row["description"]),
            )
        console.print(table)
        if not any(row["auto"] for row in rows):
            console.print("[red]No usable backend[/]: install one of the above (see reasons).")
        else:
            console.print("* = what `--backend auto` uses")
