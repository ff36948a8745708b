"""`layoutedit cache`: list, show, remove, prune, verify, export and import cache entries.

The commands parse and print; the work is in `layoutedit_cache` (store, maintenance, transfer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from layoutedit.cli.common import AppState, console, err_console, state, user_errors
from layoutedit_cache.artifacts import ArtifactError, header
from layoutedit_cache.maintenance import check_entry, listing
from layoutedit_cache.maintenance import prune as prune_cache
from layoutedit_cache.maintenance import verify as verify_cache
from layoutedit_cache.store import CacheEntry, ConceptCache, OldFormatError, RecordError
from layoutedit_cache.transfer import export_entry, import_entry
from layoutedit_cache.units import (
    format_age,
    format_size,
    format_time,
    parse_duration,
    parse_size,
)

cache_app = typer.Typer(
    name="cache",
    help=(
        "Inspect and manage the concept cache (learned concepts, inversions, prior images).\n\n"
        "Example: layoutedit cache ls"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def register(app: typer.Typer) -> None:
    """Add the `cache` sub-app to the app."""
    app.add_typer(cache_app, name="cache")


def warn(line: str) -> None:
    """One warning line on stderr: the cache's `report` callback for the CLI."""
    err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _open(ctx: typer.Context) -> tuple[ConceptCache, AppState]:
    app_state = state(ctx)
    return ConceptCache(app_state.cache_dir, report=warn), app_state


def _objects(entry: CacheEntry) -> str:
    objects = entry.meta.get("objects")
    if isinstance(objects, list):
        return ", ".join(str(o) for o in objects)
    return "" if objects is None else str(objects)


def _short_model(spec: Any) -> str:
    """A model spec short enough for a table column: a path's last part (`show` has it all)."""
    if not spec:
        return ""
    text = str(spec)
    return text if text.startswith("builtin:") else Path(text).name or text


@cache_app.command("ls")
@user_errors
def ls_command(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only entries of this kind (concept, ...).")
    ] = None,
) -> None:
    """List cache entries, most recently used first; entries with missing or wrongly sized
    files, or an unreadable record, are marked DAMAGED (`cache verify` also checks every byte).

    Terminals under 100 columns omit the model and created columns; `--json` has everything.

    Example: layoutedit cache ls --kind concept     (or: layoutedit --json cache ls)
    """
    cache, app_state = _open(ctx)
    rows = [r for r in listing(cache) if kind is None or (r.entry and r.entry.kind == kind)]
    entries = [r.entry for r in rows if r.entry is not None]
    damaged = [r for r in rows if r.problem is not None]
    if app_state.json:
        app_state.emit_json(
            [
                {**(r.entry.to_json() if r.entry else {"key": r.key}), "problem": r.problem}
                for r in rows
            ]
        )
        return
    if not rows:
        console.print(f"no cache entries in {escape(str(cache.root))}", highlight=False)
        return
    # Narrow terminals (and pipes, at 80 columns) drop model and created; `--json` has all.
    wide = console.width >= 100
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("key", no_wrap=True, min_width=12)
    table.add_column("kind", no_wrap=True)
    table.add_column("scene", overflow="fold")
    table.add_column("objects")
    if wide:
        table.add_column("model", overflow="ellipsis", no_wrap=True, max_width=30)
    table.add_column("size", justify="right", no_wrap=True)
    if wide:
        table.add_column("created", no_wrap=True)
    table.add_column("last used", no_wrap=True)
    problems = {r.key: r.problem for r in damaged}
    for e in entries:
        kind_cell = e.kind if e.key not in problems else f"{e.kind} [red]DAMAGED[/]"
        cells = [e.key[:12], kind_cell, escape(str(e.meta.get("scene", ""))), escape(_objects(e))]
        if wide:
            cells.append(escape(_short_model(e.meta.get("model"))))
        cells.append(format_size(e.size))
        if wide:
            cells.append(format_time(e.created, date_only=True))
        cells.append(format_age(e.last_used))
        table.add_row(*cells)
    for r in damaged:
        if r.entry is None:
            table.add_row(r.key[:12], "[red]DAMAGED[/]", *([""] * (len(table.columns) - 2)))
    console.print(table)
    noun = "entry" if len(rows) == 1 else "entries"
    total = format_size(sum(e.size for e in entries))
    console.print(f"{len(rows)} {noun}, {total} in {escape(str(cache.root))}", highlight=False)
    for r in damaged:
        console.print(f"[red]DAMAGED[/] {r.key[:12]}: {escape(str(r.problem))}", highlight=False)
    if damaged:
        console.print(
            "run `layoutedit cache verify --fix` to evict damaged entries", highlight=False
        )


@cache_app.command("show")
@user_errors
def show_command(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Key or unique key prefix (from `cache ls`).")],
) -> None:
    """Show one entry: meta, artifacts and their tensors.

    Example: layoutedit cache show 3fa9c2
    """
    cache, app_state = _open(ctx)
    full = cache.resolve(key)
    raw = cache.raw_record(full)
    try:
        entry = cache.parse(full, raw or "")
    except OldFormatError as exc:
        console.print(f"{full}: unusable, {exc}", highlight=False)
        return
    except RecordError as exc:
        console.print(f"{full}: DAMAGED, {exc}", highlight=False)
        raise typer.Exit(1) from None
    problem = check_entry(cache, full)[1]  # every byte: one entry is cheap to check
    tensors = {a.name: _tensor_specs(entry, a.name) for a in entry.artifacts}
    if app_state.json:
        app_state.emit_json({**entry.to_json(), "tensors": tensors, "problem": problem})
        if problem is not None:
            raise typer.Exit(1)
        return
    console.print(f"[bold]{entry.key}[/] ({entry.kind})", highlight=False)
    if problem is not None:
        console.print(
            f"[red]DAMAGED[/]: {escape(problem)}; it will be evicted on use, or now with "
            "`layoutedit cache verify --fix`",
            highlight=False,
        )
    console.print(
        f"created {format_time(entry.created)}, last used {format_time(entry.last_used)}, "
        f"{format_size(entry.size)} in {escape(str(entry.directory))}",
        highlight=False,
    )
    console.print("meta:", escape(json.dumps(entry.meta, indent=2, sort_keys=True)))
    for a in entry.artifacts:
        console.print(f"artifact {a.name}: {format_size(a.size)}, sha256 {a.sha256[:16]}")
        specs = tensors[a.name]
        if isinstance(specs, str):
            console.print(f"  [red]{escape(specs)}[/]")
            continue
        for tname, spec in specs.items():
            console.print(f"  {escape(tname)}: {spec['dtype']} {spec['shape']}", highlight=False)
    if problem is not None:
        raise typer.Exit(1)


def _tensor_specs(entry: CacheEntry, artifact: str) -> dict[str, Any] | str:
    """Tensor name -> dtype and shape, read from the file's header (no torch)."""
    assert entry.directory is not None
    path = entry.directory / entry.info(artifact).filename
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            head = header(n.to_bytes(8, "little") + fh.read(min(n, 100_000_000)))
    except (OSError, ArtifactError) as exc:
        return f"unreadable: {exc}"
    return {
        k: {"dtype": v["dtype"], "shape": v["shape"]}
        for k, v in sorted(head.items())
        if k != "__metadata__"
    }


@cache_app.command("rm")
@user_errors
def rm_command(
    ctx: typer.Context,
    keys: Annotated[list[str], typer.Argument(help="Keys or unique key prefixes.")],
) -> None:
    """Remove entries and their files.

    Example: layoutedit cache rm 3fa9c2 81be07
    """
    cache, app_state = _open(ctx)
    full = [cache.resolve(k) for k in keys]  # every key checked before anything is removed
    for key in dict.fromkeys(full):
        cache.evict(key)
        if not app_state.quiet and not app_state.json:
            console.print(f"removed {key[:12]}", highlight=False)
    if app_state.json:
        app_state.emit_json({"removed": list(dict.fromkeys(full))})


@cache_app.command("prune")
@user_errors
def prune_command(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Remove entries not used for this long: 12h, 30d, 2w."),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size", help="Then remove least recently used entries down to: 500MB, 5GB."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
) -> None:
    """Remove old entries, keep the cache under a size; always clears stale and half-written
    leftovers.

    Example: layoutedit cache prune --older-than 30d --max-size 5GB
    """
    seconds = parse_duration(older_than) if older_than is not None else None
    limit = parse_size(max_size) if max_size is not None else None
    cache, app_state = _open(ctx)
    report = prune_cache(cache, older_than=seconds, max_size=limit, dry_run=dry_run)
    if app_state.json:
        app_state.emit_json(
            {
                "removed": [e.key for e in report.removed],
                "freed": report.freed,
                "kept": report.kept,
                "kept_size": report.kept_size,
                "stale_removed": report.stale_removed,
                "leftovers_removed": report.leftovers_removed,
                "dry_run": dry_run,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for e in report.removed:
        console.print(f"{verb} {e.key[:12]} {e.kind} {format_size(e.size)}", highlight=False)
    line = (
        f"{verb} {len(report.removed)} entries ({format_size(report.freed)}); "
        f"kept {report.kept} ({format_size(report.kept_size)})"
    )
    if report.stale_removed or report.leftovers_removed:
        line += (
            f"; cleared {report.stale_removed} old-format entries and "
            f"{report.leftovers_removed} leftovers of interrupted writes"
        )
    console.print(line, highlight=False)


@cache_app.command("verify")
@user_errors
def verify_command(
    ctx: typer.Context,
    fix: Annotated[
        bool, typer.Option("--fix", help="Evict bad entries and clear leftovers.")
    ] = False,
) -> None:
    """Check every artifact of every entry (size and SHA-256). Exits 1 if bad entries remain.

    The summary counts bad entries, and with --fix says they were evicted.

    Example: layoutedit cache verify --fix
    """
    cache, app_state = _open(ctx)
    report = verify_cache(cache, fix=fix)
    rebuilt = report.rebuilt
    if app_state.json:
        app_state.emit_json(
            {
                "rebuilt": None
                if rebuilt is None
                else {"restored": rebuilt[0], "not_restorable": rebuilt[1]},
                "checked": report.checked,
                "problems": [vars(p) for p in report.problems],
                "leftovers": [str(p) for p in report.leftovers],
                "leftovers_removed": report.leftovers_removed,
                "ok": report.ok,
            }
        )
    else:
        if rebuilt is not None:
            err_console.print(
                f"the index was damaged: rebuilt from the artifacts, {rebuilt[0]} entries "
                f"restored, {rebuilt[1]} not restorable (their folders are cleared below)",
                highlight=False,
                markup=False,
            )
        for p in report.problems:
            state_word = "evicted" if p.fixed else ("old format" if p.stale else "BAD")
            err_console.print(
                f"{p.key[:12]}: {p.message} [{state_word}]",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        evicted = [p for p in report.problems if p.fixed and not p.stale]
        stale = [p for p in report.problems if p.stale]
        summary = f"checked {report.checked} entries: "
        if not report.ok:
            summary += f"{len(report.bad)} bad"
        elif evicted:
            summary += f"{len(evicted)} bad, evicted (they will be recomputed); the others are good"
        else:
            summary += "all good"
        if stale:
            summary += f"; {len(stale)} of an old cache format" + (", removed" if fix else "")
        if report.leftovers:
            done = f", {report.leftovers_removed} removed" if fix else ""
            summary += f"; {len(report.leftovers)} leftovers of interrupted writes{done}"
        if not report.ok:
            summary += " (run `layoutedit cache verify --fix` to evict them)"
        console.print(summary, highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@cache_app.command("path")
@user_errors
def path_command(ctx: typer.Context) -> None:
    """Print the cache folder.

    Example: du -sh "$(layoutedit cache path)"
    """
    print(state(ctx).cache_dir)


@cache_app.command("export")
@user_errors
def export_command(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Key or unique key prefix.")],
    file: Annotated[Path, typer.Argument(help="Output file: .tar or .safetensors.")],
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace FILE even if it is not a layoutedit export (an export is replaced "
            "without it).",
        ),
    ] = False,
) -> None:
    """Write one entry (artifacts and meta) to a .tar or .safetensors file; no pickle.

    FILE may not lie inside the cache folder.

    Example: layoutedit cache export 3fa9c2 cat-scene.tar
    """
    cache, app_state = _open(ctx)
    entry = export_entry(cache, cache.resolve(key), file, overwrite=overwrite)
    if app_state.json:
        app_state.emit_json({"key": entry.key, "file": str(file)})
    elif not app_state.quiet:
        console.print(f"exported {entry.key[:12]} ({entry.kind}) to {escape(str(file))}")


@cache_app.command("import")
@user_errors
def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file written by `cache export`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an entry of the same key.")
    ] = False,
) -> None:
    """Add an entry from a file written by `layoutedit cache export`.

    Example: layoutedit cache import cat-scene.tar
    """
    cache, app_state = _open(ctx)
    key, stored = import_entry(cache, file, force=force)
    if app_state.json:
        app_state.emit_json({"key": key, "stored": stored})
    elif not stored:
        console.print(f"{key[:12]} is already in the cache (use --force to replace it)")
    elif not app_state.quiet:
        console.print(f"imported {key[:12]}")
