"""`layoutedit bench`: score the method's variants on shapes-world cases with exact truth."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from layoutedit.cli.common import (
    DEFAULT_MODEL,
    WORLD_MODELS,
    AppState,
    ConfigOption,
    OverwriteOption,
    PresetOption,
    console,
    err_console,
    state,
    user_errors,
)

HELP = """Benchmark the editing method on generated scenes whose ground truth is exact.

Runs each variant on the same cases (scenes of 2-3 objects, target layouts that move, swap
or scale objects, handed over as rough regions), prints one table and writes bench.json,
bench.md and examples.png. `paste` needs no model.

Example: layoutedit bench --quick --out ./bench-out

         layoutedit bench --variants paste --scenes 8

         layoutedit bench --variants full --sweep sweep.toml --seed 2000 --scenes 4

A sweep file adds one row per TOML table, `full` with that table's scene/learn/edit changes,
e.g. `\\[res16]` with `edit = { attention_res = 16 }`.

--world v2 edits world v2 scenes (hidden parts, cast shadows, uneven light, structured
backgrounds; layouts that uncover, hide and relight objects) on builtin:shapes-tiny-v2
unless --model names another model, adds its metrics (whole image, revealed, shadow and
vacated PSNRs, vacated texture distance, seam error) and the rows `published` and
`no-model`.
"""

DEFAULT_VARIANTS = "full,no-guidance,no-steering,no-concepts,no-blend,identity,paste"
DEFAULT_VARIANTS_V2 = "full,published,no-model,no-guidance,no-steering,no-concepts,no-blend,paste"
WORLDS = ("v1", "v2")
DEFAULT_SCENES, DEFAULT_LAYOUTS = 8, 2
QUICK_SCENES, QUICK_LAYOUTS, QUICK_PRESET = 1, 1, "fast"


def progress_lines(app_state: AppState) -> Callable[[str], None]:
    """A `say(line)` for the bench's progress: dimmed on stderr, silent with --quiet/--json."""
    chatty = not (app_state.quiet or app_state.json)

    def say(line: str) -> None:
        if chatty:
            err_console.print(f"[dim]{line}[/]", highlight=False)

    return say


def run_backends_command(
    app_state: AppState,
    backends: str,
    *,
    scenes: int,
    layouts: int,
    seed: int,
    preset: str | None,
    config: Path | None,
    out: Path,
    overwrite: bool = False,
) -> None:
    """`bench --backends`: make the cases, compare, print the table, write backends.json."""
    import json

    from layoutedit.atomic import write_text_atomic
    from layoutedit.output_guard import check_output, staged_output

    check_output(out, overwrite=overwrite, cache_dir=app_state.cache_dir)
    from layoutedit.backend_speed import save_speeds, speeds_path
    from layoutedit.bench.backend_compare import (
        compare_backends,
        parse_backends,
        rich_backend_table,
        speed_records,
    )
    from layoutedit.bench.cases import make_cases
    from layoutedit.config import resolve_settings

    names = parse_backends(backends)
    settings = resolve_settings(preset, config, model=app_state.model)
    say = progress_lines(app_state)

    cases = make_cases(scenes, seed=seed, layouts_per_scene=layouts)
    comparison = compare_backends(names, app_state.model, settings, cases, say=say)
    payload = {
        "model": app_state.model,
        "scenes": scenes,
        "layouts": layouts,
        "seed": seed,
        "settings": settings.model_dump(mode="json"),
        "backends": comparison.rows(),
    }
    with staged_output(out, overwrite=overwrite) as stage:
        write_text_atomic(stage.unit("backends.json"), json.dumps(payload, indent=2))
    # What `--backend auto` reads to pick the fastest backend on this machine.
    speeds = speeds_path(app_state.cache_dir)
    recorded = True
    try:
        save_speeds(speeds, speed_records(comparison, app_state.model))
    except OSError as exc:  # the results are written; only `auto`'s record is missing
        err_console.print(f"warning: speeds not recorded in {speeds}: {exc.strerror}")
        recorded = False
    if app_state.json:
        print(json.dumps(payload, indent=2))
        return
    console.print(rich_backend_table(comparison))
    if not app_state.quiet:
        console.print(f"written: {out / 'backends.json'}", highlight=False)
        if recorded:
            console.print(f"recorded for --backend auto: {speeds}", highlight=False)


def run_command(
    app_state: AppState,
    *,
    scenes: int | None,
    layouts: int | None,
    seed: int,
    variants: str | None,
    quick: bool,
    out: Path,
    preset: str | None,
    config: Path | None,
    sweep: Path | None = None,
    overwrite: bool = False,
    world: str = "v1",
) -> dict[str, Path]:
    """The command's work: options -> cases -> variants -> table and files (`out` checked
    before any work, written whole at the end: `layoutedit.output_guard`)."""
    from layoutedit.output_guard import check_output, staged_output

    check_output(out, overwrite=overwrite, cache_dir=app_state.cache_dir)
    from layoutedit.bench.cases import MAX_SEED_OFFSET, make_cases
    from layoutedit.bench.report import (
        attention_share_line,
        rich_comparisons,
        rich_comparisons_v2,
        rich_table,
        write_reports,
    )
    from layoutedit.bench.run import run_bench
    from layoutedit.bench.sweep import load_sweep
    from layoutedit.bench.variants import build_variants, parse_variants
    from layoutedit.config import resolve_settings
    from layoutedit.errors import UserError

    if world not in WORLDS:
        raise UserError(f"--world must be one of {', '.join(WORLDS)}, got {world!r}")
    if app_state.model == DEFAULT_MODEL:  # the world's own embedded model
        app_state.model = WORLD_MODELS[world]
    if variants is None:  # the world's default rows
        variants = DEFAULT_VARIANTS_V2 if world == "v2" else DEFAULT_VARIANTS
    names = parse_variants(variants) if variants.strip() or sweep is None else []
    n_scenes = scenes if scenes is not None else (QUICK_SCENES if quick else DEFAULT_SCENES)
    n_layouts = layouts if layouts is not None else (QUICK_LAYOUTS if quick else DEFAULT_LAYOUTS)
    if not 0 <= seed <= MAX_SEED_OFFSET:
        raise UserError(f"--seed must lie in 0..{MAX_SEED_OFFSET}")
    preset_name = preset if preset is not None else (QUICK_PRESET if quick else None)
    settings = resolve_settings(preset_name, config, model=app_state.model)
    rows = load_sweep(sweep, settings, taken=names) if sweep is not None else []
    diffusion = bool(rows) or any(n != "paste" for n in names)
    if diffusion:
        from layoutedit.logs import configure_library_logging

        configure_library_logging(app_state.verbose)
    say = progress_lines(app_state)

    options: dict[str, Any] = {
        "scenes": n_scenes,
        "layouts": n_layouts,
        "seed": seed,
        "variants": ",".join([*names, *(r.name for r in rows)]),
        "sweep": str(sweep) if sweep is not None else None,
        "quick": quick,
        "world": world,
        "preset": preset_name,
        "model": app_state.model if diffusion else None,
        "backend": app_state.backend if diffusion else None,
    }
    with tempfile.TemporaryDirectory(prefix="layoutedit-bench-") as work:

        def runtime() -> Any:
            from layoutedit.bench.diffusion import DiffusionRuntime

            return DiffusionRuntime(
                app_state.model,
                app_state.backend,
                settings,
                app_state.cache_dir,
                Path(work),
                say=say,
            )

        # Loads the model: a bad --model fails here.
        built = build_variants(names, runtime, rows, preset=preset_name)
        say(f"making {n_scenes} scenes x {n_layouts} layouts (seed {seed}, world {world})")
        cases = make_cases(n_scenes, seed=seed, layouts_per_scene=n_layouts, world=world)
        result = run_bench(cases, built, options=options, say=say)
    if diffusion:
        result.options["settings"] = settings.model_dump(mode="json")
    with staged_output(out, overwrite=overwrite) as stage:
        staged = write_reports(result, stage.path)
    paths = {name: stage.final(path) for name, path in staged.items()}
    if app_state.json:
        from layoutedit.bench.report import JSON_NAME

        print((out / JSON_NAME).read_text(), end="")
        return paths
    console.print(rich_table(result))
    share = attention_share_line(result)
    if share is not None:
        console.print(share)
    for comparisons in (rich_comparisons(result), rich_comparisons_v2(result)):
        if comparisons is not None:
            console.print(comparisons)
    if not result.segmenter["passed"]:
        err_console.print(
            "[yellow]warning:[/] the colour segmenter missed the 0.9 IoU check on these cases; "
            "treat the layout metrics with care"
        )
    if not app_state.quiet:
        console.print(f"written: {', '.join(str(p) for p in paths.values())}", highlight=False)
    return paths


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("bench", help=HELP)
    @user_errors
    def bench_command(
        ctx: typer.Context,
        scenes: Annotated[
            int | None,
            typer.Option(
                "--scenes",
                min=1,
                help=f"Number of scenes. [default: {DEFAULT_SCENES}; {QUICK_SCENES} with --quick]",
                show_default=False,
            ),
        ] = None,
        layouts: Annotated[
            int | None,
            typer.Option(
                "--layouts",
                min=1,
                help=f"Target layouts per scene. [default: {DEFAULT_LAYOUTS}; "
                f"{QUICK_LAYOUTS} with --quick]",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[
            int, typer.Option("--seed", help="Case seed: another seed gives other scenes.")
        ] = 0,
        variants: Annotated[
            str | None,
            typer.Option(
                "--variants",
                help=f"Comma-separated rows of the table. [default: {DEFAULT_VARIANTS}; "
                f"with --world v2: {DEFAULT_VARIANTS_V2}]",
                show_default=False,
            ),
        ] = None,
        quick: Annotated[
            bool,
            typer.Option(
                "--quick",
                help=f"A small run for CI: {QUICK_SCENES} scene, {QUICK_LAYOUTS} layout, "
                f"the `{QUICK_PRESET}` preset unless --preset is given.",
            ),
        ] = False,
        out: Annotated[
            Path, typer.Option("--out", help="Folder for bench.json, bench.md, examples.png.")
        ] = Path("bench-out"),
        preset: PresetOption = None,
        config: ConfigOption = None,
        sweep: Annotated[
            Path | None,
            typer.Option(
                "--sweep",
                help="TOML file of extra rows: each table is `full` with its scene/learn/edit "
                "changes. With --variants '' only the sweep rows run.",
            ),
        ] = None,
        world: Annotated[
            str,
            typer.Option(
                "--world",
                help="Shapes world of the cases: v1, or v2 (hidden parts, shadows, light, "
                "structured backgrounds; its own layouts, metrics and rows).",
            ),
        ] = "v1",
        backends: Annotated[
            str | None,
            typer.Option(
                "--backends",
                help="Instead of the table: seconds per learn and per edit of each backend "
                "(e.g. cpu,cpu-fast) on the same cases, with the ratio; writes backends.json.",
            ),
        ] = None,
        overwrite: OverwriteOption = False,
    ) -> None:
        if backends is not None:
            quick_default = (QUICK_SCENES, QUICK_LAYOUTS) if quick else (2, 1)
            run_backends_command(
                state(ctx),
                backends,
                scenes=scenes or quick_default[0],
                layouts=layouts or quick_default[1],
                seed=seed,
                preset=preset if preset is not None or not quick else QUICK_PRESET,
                config=config,
                out=out,
                overwrite=overwrite,
            )
            return
        run_command(
            state(ctx),
            scenes=scenes,
            layouts=layouts,
            seed=seed,
            variants=variants,
            quick=quick,
            out=out,
            preset=preset,
            config=config,
            sweep=sweep,
            overwrite=overwrite,
            world=world,
        )
