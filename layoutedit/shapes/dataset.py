"""Generated training sets for the shapes-tiny recipe, cached as .npz + captions JSON.

Seed ranges keep the splits apart: training scenes use seeds from `TRAIN_SEED_BASE`,
the quality gate uses `HELDOUT_SEED_BASE`; tests and the benchmark use small seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.shapes.world import sample_scene

TRAIN_SEED_BASE = 10_000_000
HELDOUT_SEED_BASE = 20_000_000
MAX_OBJECTS = 3
COVER_SIDE = 16  # the latent side of shapes-tiny: one cover cell per latent cell


def _one(seed: int) -> tuple[np.ndarray, str]:
    scene = sample_scene(seed)
    return scene.image, scene.caption


def pooled_covers(masks: np.ndarray, side: int) -> np.ndarray:
    """(K, S, S) bool object masks -> (K, side, side) float32 share of each cell covered."""
    k, s, _ = masks.shape
    f = s // side
    return masks.reshape(k, side, f, side, f).mean(axis=(2, 4)).astype(np.float32)


def _one_truth(seed: int) -> tuple[np.ndarray, list[str]]:
    scene = sample_scene(seed)
    covers = np.zeros((MAX_OBJECTS, COVER_SIDE, COVER_SIDE), dtype=np.float16)
    covers[: len(scene.objects)] = pooled_covers(scene.masks, COVER_SIDE)
    return covers, [o.phrase for o in scene.objects]


def _cached_pairs(
    path: Path,
    name: str,
    first_seed: int,
    count: int,
    one: Callable[[int], tuple[Any, Any]],
    workers: int = 2,
) -> tuple[np.ndarray, list[Any]]:
    """`one(seed)` for seeds first_seed.. as (stacked arrays, list of JSON values), cached at
    `path` (.npz holding `name`, with a .json beside it) and made on first use by `workers`
    processes."""
    json_path = path.with_suffix(".json")
    if path.exists() and json_path.exists():
        arrays = np.load(path)[name]
        values = json.loads(json_path.read_text())
        if len(arrays) == count == len(values):
            return arrays, values
    with Pool(workers) as pool:
        pairs = pool.map(one, range(first_seed, first_seed + count), chunksize=64)
    arrays = np.stack([p[0] for p in pairs])
    values = [p[1] for p in pairs]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, allow_pickle=False, **{name: arrays})
    tmp.replace(path)
    json_path.write_text(json.dumps(values))
    return arrays, values


def load_or_generate(
    path: Path, first_seed: int, count: int, workers: int = 2
) -> tuple[np.ndarray, list[str]]:
    """(count, 64, 64, 3) uint8 images and their captions, seeds first_seed.. in order,
    cached at `path` (.npz with a .json of captions beside it)."""
    return _cached_pairs(path, "images", first_seed, count, _one, workers)


def load_or_generate_truth(
    path: Path, first_seed: int, count: int, workers: int = 2
) -> tuple[np.ndarray, list[list[str]]]:
    """Object covers and phrases of the same scenes as `load_or_generate(..., first_seed,
    count)`, cached at `path` (.npz with a .json of phrases beside it).

    Returns:
        covers: (count, MAX_OBJECTS, COVER_SIDE, COVER_SIDE) float16 share of each latent
            cell that each object covers (rows past a scene's object count are zero).
        phrases: per scene, each object's caption phrase in drawing order.
    """
    return _cached_pairs(path, "covers", first_seed, count, _one_truth, workers)
