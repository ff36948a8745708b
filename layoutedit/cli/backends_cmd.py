"""`layoutedit backends`: every registered backend, whether it is usable here, and why not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from layoutedit.backend import BackendInfo, list_backends
from layoutedit.backend_speed import (
    SERVE_EXPECTED_EDITS,
    SpeedRecord,
    choose_auto,
    load_speeds,
    machine_key,
    speeds_path,
)
from layoutedit.cli.common import console, state, user_errors

HELP = """List the backends, best first, and mark the one `--backend auto` picks.

Where `layoutedit bench --backends` measured them on this machine (with the same --model),
their seconds per edit and warm-up (compile included) are shown, and `auto` takes the one
fastest over the edits a command makes: one `edit` of a layout, or a `serve` session.

Example:

  layoutedit backends

  layoutedit --json backends
"""


def auto_choice(
    infos: list[BackendInfo],
    speeds: Sequence[SpeedRecord] = (),
    model: str = "",
    edits: int = 1,
) -> str | None:
    """Name of the backend `--backend auto` takes for `edits` edits of `model`: the fastest
    measured one (`backend_speed.choose_auto`), else the usable one of highest priority."""
    usable = [i.name for i in infos if i.available]  # list_backends() sorts best first
    if not usable:
        return None
    return choose_auto(usable, speeds, model, machine_key(), edits).name


def backends_report(
    infos: list[BackendInfo], speeds: Sequence[SpeedRecord] = (), model: str = ""
) -> list[dict[str, Any]]:
    """JSON-ready rows: name, description, priority, usable, reason, the measured seconds
    per edit and warm-up (None where not measured here), and whether `auto` takes it for
    one edit and for a `serve` session."""
    auto = auto_choice(infos, speeds, model)
    auto_serve = auto_choice(infos, speeds, model, SERVE_EXPECTED_EDITS)
    here = machine_key()
    measured = {r.backend: r for r in speeds if r.model == model and r.machine == here}
    return [
        {
            "name": i.name,
            "description": i.description,
            "priority": i.priority,
            "usable": i.available,
            "reason": i.unavailable_reason,
            "edit_s": measured[i.name].edit_s if i.name in measured else None,
            "warm_up_s": measured[i.name].warm_up_s if i.name in measured else None,
            "auto": i.name == auto,
            "auto_serve": i.name == auto_serve,
        }
        for i in infos
    ]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("backends", help=HELP)
    @user_errors
    def backends_command(ctx: typer.Context) -> None:
        app = state(ctx)
        speeds = load_speeds(speeds_path(app.cache_dir))
        rows = backends_report(list_backends(), speeds, app.model)
        if state(ctx).json:
            state(ctx).emit_json(rows)
            return
        table = Table(title="Backends (best first)", title_justify="left")
        table.add_column("auto", justify="center")
        table.add_column("name")
        table.add_column("priority", justify="right")
        table.add_column("usable")
        table.add_column("edit s", justify="right")
        table.add_column("warm-up s", justify="right")
        table.add_column("reason / description")
        for row in rows:
            table.add_row(
                "[bold green]*[/]" if row["auto"] else "",
                escape(row["name"]),
                str(row["priority"]),
                "[green]yes[/]" if row["usable"] else "[red]no[/]",
                "-" if row["edit_s"] is None else f"{row['edit_s']:.2f}",
                "-" if row["warm_up_s"] is None else f"{row['warm_up_s']:.1f}",
                escape(row["reason"] or row["description"]),
            )
        console.print(table)
        if not any(row["auto"] for row in rows):
            console.print("[red]No usable backend[/]: install one of the above (see reasons).")
        else:
            console.print("* = what `--backend auto` uses for one edit")
            serve = next((r["name"] for r in rows if r["auto_serve"]), None)
            if serve is not None and not any(r["auto"] and r["auto_serve"] for r in rows):
                console.print(
                    f"over {SERVE_EXPECTED_EDITS} edits (`serve`) it uses {escape(serve)}",
                    highlight=False,
                )
            if not any(r["edit_s"] is not None for r in rows):
                console.print(
                    "no speeds measured here: `layoutedit bench --backends cpu,cpu-fast` "
                    "measures them",
                    highlight=False,
                )
