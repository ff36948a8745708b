"""Generated training sets for the shapes-tiny recipe, cached as .npz + captions JSON.

Seed ranges keep the splits apart: training scenes use seeds from `TRAIN_SEED_BASE`,
the quality gate uses `HELDOUT_SEED_BASE`; tests and the benchmark use small seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.shapes.world_v2 import sample_world_scene

TRAIN_SEED_BASE = 10_000_000
HELDOUT_SEED_BASE = 20_000_000
MAX_OBJECTS = 3
COVER_SIDE = 16  # the latent side of shapes-tiny: one cover cell per latent cell


def _one(seed: int, world: str = "v1") -> tuple[np.ndarray, str]:
    scene = sample_world_scene(seed, world=world)
    return scene.image, scene.caption


def pooled_covers(masks: np.ndarray, side: int) -> np.ndarray:
    """(K, S, S) bool object masks -> (K, side, side) float32 share of each cell covered."""
    k, s, _ = masks.shape
    f = s // side
    return masks.reshape(k, side, f, side, f).mean(axis=(2, 4)).astype(np.float32)


def _load_pairs(path: Path, name: str, count: int) -> tuple[np.ndarray, list[Any]] | None:
    """A cache written by `_save_pairs` holding `count` items, else None."""
    json_path = path.with_suffix(".json")
    if path.exists() and json_path.exists():
        arrays = np.load(path)[name]
        values = json.loads(json_path.read_text())
        if len(arrays) == count == len(values):
            return arrays, values
    return None


def _save_pairs(path: Path, name: str, arrays: np.ndarray, values: list[Any]) -> None:
    """`path` (.npz holding `name`) and a .json of `values` beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, allow_pickle=False, **{name: arrays})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(values))


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
    cached = _load_pairs(path, name, count)
    if cached is not None:
        return cached
    with Pool(workers) as pool:
        pairs = pool.map(one, range(first_seed, first_seed + count), chunksize=64)
    arrays = np.stack([p[0] for p in pairs])
    values = [p[1] for p in pairs]
    _save_pairs(path, name, arrays, values)
    return arrays, values


def _one_both(seed: int, world: str = "v1") -> tuple[np.ndarray, str, np.ndarray, list[str]]:
    scene = sample_world_scene(seed, world=world)  # rendered once for both caches
    covers = np.zeros((MAX_OBJECTS, COVER_SIDE, COVER_SIDE), dtype=np.float16)
    covers[: len(scene.objects)] = pooled_covers(scene.masks, COVER_SIDE)
    return scene.image, scene.caption, covers, [o.phrase for o in scene.objects]


def load_or_generate_both(
    images_path: Path,
    truth_path: Path,
    first_seed: int,
    count: int,
    workers: int = 2,
    world: str = "v1",
) -> tuple[tuple[np.ndarray, list[str]], tuple[np.ndarray, list[list[str]]]]:
    """Images and captions (`load_or_generate`) and the truth of the same scenes, from their
    caches, or made in one pass when either is missing (each scene rendered once).

    Args:
        world: the shapes world's version (`v1`, `v2`) the scenes come from.

    Returns:
        (images, captions) as `load_or_generate`'s, and (covers, phrases): covers (count,
        MAX_OBJECTS, COVER_SIDE, COVER_SIDE) float16, the share of each latent cell that each
        object covers (rows past a scene's object count are zero); phrases per scene, each
        object's caption phrase in drawing order.
    """
    images = _load_pairs(images_path, "images", count)
    truth = _load_pairs(truth_path, "covers", count)
    if images is not None and truth is not None:
        return images, truth
    with Pool(workers) as pool:
        one = partial(_one_both, world=world)
        rows = pool.map(one, range(first_seed, first_seed + count), chunksize=64)
    images = (np.stack([r[0] for r in rows]), [r[1] for r in rows])
    truth = (np.stack([r[2] for r in rows]), [r[3] for r in rows])
    _save_pairs(images_path, "images", *images)
    _save_pairs(truth_path, "covers", *truth)
    return images, truth


def load_or_generate(
    path: Path, first_seed: int, count: int, workers: int = 2, world: str = "v1"
) -> tuple[np.ndarray, list[str]]:
    """(count, 64, 64, 3) uint8 images and their captions, seeds first_seed.. in order, of
    the shapes world's version `world` (`v1`, `v2`), cached at `path` (.npz with a .json of
    captions beside it)."""
    one = partial(_one, world=world)
    return _cached_pairs(path, "images", first_seed, count, one, workers)
