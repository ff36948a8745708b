"""Training samples of the completer (`editing.complete`): world v2 scenes rendered with
their whole (amodal) masks, one sample per object that another object over it touches.

`python -m layoutedit.shapes.completer_data --out DIR --shards N` writes shards of
`SCENES_PER_SHARD` scenes (`samples-NNN.safetensors`: the input planes and the whole
mask, bit-packed), skipping shards already written, each written whole. Scenes come from
their own block of the training seed range, never the bench's case seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.editing.complete import completer_inputs, needs_completion
from layoutedit.scenes.occlusion_fit import in_front
from layoutedit.shapes.dataset import TRAIN_SEED_BASE
from layoutedit.shapes.world import masks_to_labels
from layoutedit.shapes.world_v2 import sample_world_scene

COMPLETER_SEED_BASE = TRAIN_SEED_BASE + 7_000_000
"""First scene seed of the samples: inside the training range, apart from the base model's
scenes and the refiner's pairs."""

SCENES_PER_SHARD = 2000


def scene_samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The samples of world v2 scene `seed`: (N, 4, S, S) bool input planes
    (`complete.COMPLETER_CHANNELS`) and (N, S, S) bool whole masks. The depth order is read
    from the visible masks as an edit reads it (`occlusion_fit.in_front`), so the net learns
    from the order it will be given, right or wrong."""
    scene = sample_world_scene(seed, None, world="v2")
    assert scene.amodal is not None
    masks = scene.masks
    k = masks.shape[0]
    labels = masks_to_labels(masks)
    over = in_front(masks)
    planes, wholes = [], []
    for i in range(k):
        inputs = completer_inputs(labels, i, k, over)
        if needs_completion(inputs):
            planes.append(inputs > 0)
            wholes.append(scene.amodal[i] | masks[i])
    size = masks.shape[1:]
    if not planes:
        return np.zeros((0, 4, *size), bool), np.zeros((0, *size), bool)
    return np.stack(planes), np.stack(wholes)


def write_shard(out: Path, index: int) -> int:
    """Shard `index` (`SCENES_PER_SHARD` scenes) into `out`; the samples written."""
    import torch

    first = COMPLETER_SEED_BASE + index * SCENES_PER_SHARD
    planes, wholes = [], []
    for seed in range(first, first + SCENES_PER_SHARD):
        p, w = scene_samples(seed)
        planes.append(p)
        wholes.append(w)
    p_all, w_all = np.concatenate(planes), np.concatenate(wholes)
    tensors = {
        "planes": torch.from_numpy(np.packbits(p_all, axis=-1)),
        "wholes": torch.from_numpy(np.packbits(w_all, axis=-1)),
    }
    meta = {"first_seed": str(first), "scenes": str(SCENES_PER_SHARD), "side": str(w_all.shape[-1])}
    write_safetensors_atomic(out / f"samples-{index:03d}.safetensors", tensors, metadata=meta)
    return int(w_all.shape[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the completer's training samples.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--first-shard", type=int, default=0)
    args = parser.parse_args(argv)
    if args.shards < 1 or not 0 <= args.first_shard < args.shards:
        parser.error("--shards must be at least 1 and --first-shard below it")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"{args.out}: not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(args.first_shard, args.shards):
        if (args.out / f"samples-{index:03d}.safetensors").exists():
            continue
        n = write_shard(args.out, index)
        print(f"shard {index}: {n} samples", flush=True)


if __name__ == "__main__":
    main()
