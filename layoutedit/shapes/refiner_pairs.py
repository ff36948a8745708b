"""Training pairs of the refiner: what the edit's start image is for a world v2 case, and
what the case's truth is.

The refiner (`refiner_train.py`) learns to turn the cut-and-paste start (objects pasted and
re-lit, holes filled, hidden parts painted flat, shadows moved by a fitted light) into the
re-rendered truth, so each pair is made by the edit pipeline itself with the settings of the
preset it serves and `denoise` off. Scenes come from the training seed range
(`dataset.TRAIN_SEED_BASE`), never the bench's case seeds. Pairs are written in shards of
safetensors, each complete or absent, so an interrupted run resumes at the next shard.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import safe_open

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.editing.correct import guide_masks
from layoutedit.editing.refine import changed_zone
from layoutedit.shapes.dataset import TRAIN_SEED_BASE

if TYPE_CHECKING:
    from layoutedit.bench.cases import Case
    from layoutedit.bench.diffusion import DiffusionRuntime

REFINER_SEED_BASE = TRAIN_SEED_BASE + 5_000_000
"""First scene seed of the pairs: inside the training range, apart from the scenes that the
base model trained on (which start at `TRAIN_SEED_BASE`)."""

SHARD = 400
"""Scenes per shard (2 layouts each)."""


def pair_runtime(preset: str, model_spec: str, scratch: Path) -> DiffusionRuntime:
    """The bench's runtime over `model_spec` with `preset`'s settings: the model loaded and
    warmed once for every shard (`scratch`: its memo and work folder, nothing kept)."""
    from layoutedit.bench.diffusion import DiffusionRuntime
    from layoutedit.config import resolve_settings

    return DiffusionRuntime(model_spec, "cpu", resolve_settings(preset), scratch, scratch)


STAGES = ("start", "final", "full")
"""What a pair's input is: the edit's start image (the refiner's), the `no-model` row's
finished image, post-passes included (the corrector's: `editing.correct`), or the `full`
row's finished image before its corrector (the scene's concept learned, the model's steps
run: what the corrector sees in a shipped edit)."""


def shard_pairs(
    runtime: DiffusionRuntime, first_seed: int, scenes: int, stage: str = "start"
) -> tuple[dict[str, np.ndarray], list[str]]:
    """One shard: `scenes` scenes from `first_seed` on, 2 layouts each, their starts (or
    with `stage` "final" their finished images) as the `no-model` row builds them, or with
    `stage` "full" the `full` row's finished images with the corrector off.

    Returns:
        `start`, `truth` (N, S, S, 3) uint8 and `zone` (N, S, S) uint8 (`changed_zone`) by
        name (with `stage` "final" or "full" also `masks` (N, 4, S, S) uint8,
        `correct.guide_masks`), and the N prompts (the edit session's).
    """
    from layoutedit.bench.cases_v2 import cases_from_scene_seeds
    from layoutedit.bench.variants import DIFFUSION_SPECS
    from layoutedit.editing.session import EditSession
    from layoutedit.scenes.scene import layout_from_labels

    # `full`'s start: the `no-model` row's with the preset's completer (whole shapes); the
    # rows differ only after it.
    config = runtime.edit_config(DIFFUSION_SPECS["no-model"]).model_copy(
        update={"whole_from_model": runtime.settings.edit.whole_from_model}
    )
    model = runtime.load_model()
    seeds = range(first_seed, first_seed + 4 * scenes)  # some seeds take no layouts
    starts, truths, zones, prompts = [], [], [], []
    masks: list[np.ndarray] = []
    session, scene, scene_seed = None, None, None
    cases = cases_from_scene_seeds(seeds, scenes)
    full = full_images(runtime, cases) if stage == "full" else None
    for j, case in enumerate(cases):
        if session is None or case.scene_seed != scene_seed:
            scene, scene_seed = runtime.scene(case), case.scene_seed
            session = EditSession(model, scene, config, runtime.backend)
        assert scene is not None
        layout = layout_from_labels(case.layout, scene)
        start = session.start_image(layout)
        if full is not None:
            image = full[j]
        else:
            image = start.image if stage == "start" else session.edit(layout).best().image
        starts.append(image)
        truths.append(case.truth.image)
        zone = changed_zone(case.source.image, image, start.redraw)
        zones.append(zone)
        if stage != "start":
            masks.append(guide_masks(zone, start))
        prompts.append(session.prompt)
    arrays = {
        "start": np.stack(starts),
        "truth": np.stack(truths),
        "zone": np.stack(zones).astype(np.uint8),
    }
    if masks:  # the corrector's `GUIDE_MASKS` (N, 4, S, S)
        arrays["masks"] = np.stack(masks).astype(np.uint8)
    return arrays, prompts


def full_images(runtime: DiffusionRuntime, cases: Sequence[Case]) -> list[np.ndarray]:
    """(S, S, 3) uint8 the `full` row's finished image of each case, its corrector off: one
    concept learned per scene, as the bench does, then forgotten."""
    from dataclasses import replace

    from layoutedit.bench.variants import DIFFUSION_SPECS

    base = DIFFUSION_SPECS["full"]
    spec = replace(base, edit_overrides={**base.edit_overrides, "correct": False})
    out: list[np.ndarray] = []
    for _seed, group in groupby(cases, key=lambda c: c.scene_seed):
        scene_cases = list(group)
        out.extend(edit.image for edit in runtime.run_scene(scene_cases, spec).edits)
        runtime.forget_scenes()
    return out


def shard_metadata(out: Path) -> dict[Path, dict[str, str]]:
    """Each shard of `out` and its header metadata, a missing `stage` read as "start" and a
    missing `scenes` as `SHARD` (shards written before either was recorded)."""
    found = {}
    for path in sorted(out.glob("pairs-*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            found[path] = {"stage": "start", "scenes": str(SHARD), **(fh.metadata() or {})}
    return found


def foreign_shard(
    out: Path, preset: str, model_spec: str, stage: str = "start", scenes: int = SHARD
) -> Path | None:
    """The first shard in `out` written for another preset, model, stage or shard size
    (resuming into it would mix two kinds of pairs, or with another size repeat scenes), or
    None."""
    wanted = (preset, model_spec, stage, str(scenes))
    for path, meta in shard_metadata(out).items():
        if (meta.get("preset"), meta.get("model"), meta["stage"], meta["scenes"]) != wanted:
            return path
    return None


def shard_stages(out: Path) -> set[str]:
    """The stages (`STAGES`) of the shards in `out`."""
    return {meta["stage"] for meta in shard_metadata(out).values()}


def add_training_options(
    parser: argparse.ArgumentParser, *, steps: int, batch: int, lr: float
) -> None:
    """The options that both recipes over these pairs take (`refiner_train`,
    `corrector_train`): the pairs, the run folder, the schedule (with each recipe's
    defaults), threads, a time budget, the export."""
    from layoutedit.shapes.training_io import pipeline_folder

    parser.add_argument("--pairs", type=Path, required=True, help="refiner_pairs output")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument(
        "--export", type=pipeline_folder, default=None, help="model folder to add it to"
    )


def require_pairs(parser: argparse.ArgumentParser, folder: Path, *stages: str) -> None:
    """A usage error (exit 2) unless `folder` holds shards, all of one of `stages`."""
    if not any(folder.glob("pairs-*.safetensors")):
        parser.error(f"{folder}: no pairs-*.safetensors (run refiner_pairs first)")
    found = shard_stages(folder)
    if len(found) != 1 or not found <= set(stages):
        wanted = " or ".join(stages)
        parser.error(f"{folder}: not {wanted}-image pairs (write them with --stage {stages[0]})")


def write_shards(
    out: Path,
    shards: int,
    preset: str,
    model_spec: str,
    stage: str = "start",
    first: int = 0,
    scenes: int = SHARD,
) -> None:
    """Shards `first`..shards-1 of `scenes` scenes each into `out`
    (`pairs-NNN.safetensors`), skipping those written; nothing else in `out` is touched.
    Two runs over disjoint shard ranges may write one folder at once."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        runtime = None
        for i in range(first, shards):
            path = out / f"pairs-{i:03d}.safetensors"
            if path.exists():
                continue
            began = time.monotonic()
            if runtime is None:  # only when a shard is missing
                runtime = pair_runtime(preset, model_spec, Path(scratch))
            # Each shard's seeds lie in a block of their own: a shard's content never
            # depends on how many shards came before it.
            seed = REFINER_SEED_BASE + i * 4 * scenes
            arrays, prompts = shard_pairs(runtime, seed, scenes, stage)
            tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
            meta = {
                "prompts": json.dumps(prompts),
                "preset": preset,
                "model": model_spec,
                "stage": stage,
                "scenes": str(scenes),
            }
            write_safetensors_atomic(path, tensors, metadata=meta)
            print(f"{path}: {len(prompts)} pairs in {time.monotonic() - began:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the refiner's training pairs.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--preset", default="shapes-tiny-v2")
    parser.add_argument("--model", default="builtin:shapes-tiny-v2")
    parser.add_argument(
        "--stage", choices=STAGES, default="start", help="the refiner's or the corrector's pairs"
    )
    parser.add_argument(
        "--first-shard", type=int, default=0, help="start at this shard (a second run's share)"
    )
    parser.add_argument(
        "--shard-scenes",
        type=int,
        default=SHARD,
        help="scenes per shard (2 pairs each); smaller shards save more often",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.shard_scenes < 1:
        parser.error(f"--shard-scenes {args.shard_scenes}: must be at least 1")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"{args.out}: not a folder")
    other = None
    if args.out.is_dir():
        other = foreign_shard(args.out, args.preset, args.model, args.stage, args.shard_scenes)
    if other is not None:
        parser.error(
            f"{other}: pairs of another preset, model, stage or shard size; give another --out"
        )
    if not 0 <= args.first_shard < args.shards:
        parser.error(f"--first-shard {args.first_shard}: must lie in 0..{args.shards - 1}")
    torch.set_num_threads(args.threads)
    write_shards(
        args.out,
        args.shards,
        args.preset,
        args.model,
        args.stage,
        args.first_shard,
        args.shard_scenes,
    )


if __name__ == "__main__":
    main()
