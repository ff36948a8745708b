"""`layoutedit batch`: many scenes from a JSONL manifest, on one or many processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from layoutedit.cli.common import (
    ConfigOption,
    PresetOption,
    console,
    err_console,
    state,
    user_errors,
    warn,
)
from layoutedit.errors import UserError

HELP = """Run a manifest of scenes and their edits; write a dataset of the edited images.

MANIFEST is JSONL, one scene a line (paths relative to the manifest):

  {"scene": "photos/kitchen", "edits": [{"move": ["cat=+20,0"]}, {"layout": "k/l1.png"}]}

  {"image": "a.jpg", "mask": "a.png", "labels": "a.json", "edits": [{"swap": "a,b"}]}

Every row is checked before the model loads (a bad row: one line naming its line number,
exit 2; --skip-bad-rows reports it and goes on). OUT receives rows/<id>/ (source.png and
the edited PNGs), metadata.jsonl (Hugging Face imagefolder), coco.json (boxes and RLE
masks of every object) and summary.json. Run it again to finish an interrupted batch: rows
already done under the same settings are skipped. Exit 1 when a row failed.

Examples:

  layoutedit batch scenes.jsonl --out dataset --preset fast

  accelerate launch --num_processes 8 -m layoutedit batch scenes.jsonl --out dataset

See docs/batch.md.
"""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("batch", help=HELP)
    @user_errors
    def batch_command(
        ctx: typer.Context,
        manifest: Annotated[
            Path,
            typer.Argument(metavar="MANIFEST", help="JSONL manifest.", show_default=False),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output (dataset) folder.")],
        preset: PresetOption = None,
        config: ConfigOption = None,
        best: Annotated[
            bool | None,
            typer.Option("--best/--all", help="Keep only each edit's best seed (or all)."),
        ] = None,
        skip_bad_rows: Annotated[
            bool,
            typer.Option("--skip-bad-rows", help="Report bad rows and run the others."),
        ] = False,
        overwrite: Annotated[
            bool,
            typer.Option(
                "--overwrite",
                help="Write into an --out that holds files layoutedit did not write "
                "(they stay; only the batch's own files are replaced).",
            ),
        ] = False,
        split: Annotated[
            str,
            typer.Option(
                "--split",
                metavar="steal|static",
                help="How processes share scenes: each takes its own share, then (steal) "
                "what others have not started; static: its share only.",
            ),
        ] = "steal",
    ) -> None:
        from layoutedit.batch.manifest import BadRow, load_manifest
        from layoutedit.batch.runner import SPLITS
        from layoutedit.batch.workspace import check_out
        from layoutedit.editing.sharding import claim_shard

        app_state = state(ctx)
        if split not in SPLITS:
            raise UserError(f"--split {split!r}: choose {' or '.join(SPLITS)}")
        try:
            shard = claim_shard()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        chatty = not (app_state.quiet or app_state.json)

        def on_bad(row: BadRow) -> None:
            if shard.is_main:
                warn(f"{manifest}: line {row.line}: {row.reason} (skipped)")

        checked = load_manifest(
            manifest,
            model=app_state.model,
            preset=preset,
            config=config,
            skip_bad=skip_bad_rows,
            cache_dir=app_state.cache_dir,
            on_bad=on_bad,
            edit_overrides={"best": best},
        )
        check_out(out, overwrite=overwrite, cache_dir=app_state.cache_dir)
        if chatty and shard.is_main:
            err_console.print(
                f"{escape(str(manifest))}: {len(checked.rows)} rows checked "
                f"({len(checked.groups())} scenes), {len(checked.bad)} bad; "
                f"{shard.world} process{'es' if shard.world > 1 else ''}, split {split}",
                highlight=False,
            )
        code = run_batch_process(app_state, checked, out, shard, split, chatty=chatty)
        if code:
            raise typer.Exit(code)


def run_batch_process(
    app_state: Any, manifest: Any, out: Path, shard: Any, split: str, *, chatty: bool
) -> int:
    """This process's part of the batch, then, if it is the last one, the merge.

    Returns:
        The exit code: 1 when this process merged and some row failed or was bad, else 0.
    """
    from layoutedit.batch.dataset import collect, dataset_files, summary
    from layoutedit.batch.runner import BatchProcess
    from layoutedit.batch.workspace import Workspace
    from layoutedit.cli.common import Terminated
    from layoutedit.cli.edit_cmd import make_editor

    def say(line: str) -> None:
        if chatty:
            err_console.print(escape(line), highlight=False)

    workspace = Workspace(out, lambda line: warn(line))
    workspace.open({"manifest": str(manifest.path.absolute()), "sha256": manifest.digest})
    process = None
    try:
        editor = make_editor(
            app_state, manifest.rows[0].settings, expected_edits=len(manifest.rows)
        )
        process = BatchProcess(manifest, editor, workspace, shard, split, say=say)
        tally = process.run()
    except KeyboardInterrupt as exc:
        import signal

        done = process.tally.done if process is not None else 0
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        workspace.abandon()
        kept = (
            f"rows this process finished: {done}, kept in {escape(str(workspace.stage))} "
            "(the row it was running is not); run the same command again to finish the batch"
            if workspace.stage.exists()
            else "nothing was written"
        )
        err_console.print(
            f"[yellow]interrupted[/] ({signal.Signals(signum).name}): {kept}", highlight=False
        )
        raise typer.Exit(128 + int(signum)) from None
    except BaseException:
        workspace.abandon()
        raise
    if not workspace.finish():
        say(
            f"[{shard.rank}/{shard.world}] done: {tally.done} rows run, {tally.failed} failed; "
            "the last process to finish writes the dataset files"
        )
        return 0
    fingerprint = editor.model.fingerprint
    merged = collect(manifest, workspace, fingerprint)
    if not merged.complete:
        workspace.close()
        raise UserError(
            f"{len(merged.missing)} rows are not done (e.g. {merged.missing[0]!r}: another "
            "process holds it); run the same command again to finish",
            path=out,
            exit_code=1,
        )
    payload = summary(
        merged,
        manifest,
        workspace.ranks(shard.world),
        model=app_state.model,
        fingerprint=fingerprint,
        world=shard.world,
        split=split,
    )
    workspace.commit({r.id for r in manifest.rows}, dataset_files(merged, manifest, payload))
    if app_state.json:
        app_state.emit_json(payload)
    elif not app_state.quiet:
        rows = payload["rows"]
        console.print(
            f"{rows['done']} rows done, {rows['skipped']} skipped (done before), "
            f"{rows['failed']} failed, {rows['bad']} bad; {payload['images']['edited']} "
            f"edited images in {payload['seconds']:.1f} s -> {out}",
            highlight=False,
        )
        for failure in payload["failures"]:
            err_console.print(
                f"[red]failed:[/] line {failure['line']} {escape(failure['id'])}: "
                f"{escape(str(failure['reason']))}",
                highlight=False,
            )
    return 1 if payload["failures"] or payload["bad_rows"] else 0
