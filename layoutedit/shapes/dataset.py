"""Generated training sets for the shapes-tiny recipe, cached as .npz + captions JSON.

Seed ranges keep the splits apart: training scenes use seeds from `TRAIN_SEED_BASE`,
the quality gate uses `HELDOUT_SEED_BASE`; tests and the benchmark use small seeds.
"""

from __future__ import annotations

import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from layoutedit.shapes.attention_loss import pooled_covers
from layoutedit.shapes.world import sample_scene

TRAIN_SEED_BASE = 10_000_000
HELDOUT_SEED_BASE = 20_000_000
MAX_OBJECTS = 3
COVER_SIDE = 16  # the latent side of shapes-tiny: one cover cell per latent cell


def _one(seed: int) -> tuple[np.ndarray, str]:
    scene = sample_scene(seed)
    return scene.image, scene.caption


def _one_truth(seed: int) -> tuple[np.ndarray, list[str]]:
    scene = sample_scene(seed)
    covers = np.zeros((MAX_OBJECTS, COVER_SIDE, COVER_SIDE), dtype=np.float16)
    covers[: len(scene.objects)] = pooled_covers(scene.masks, COVER_SIDE)
    return covers, [o.phrase for o in scene.objects]


def generate(first_seed: int, count: int, workers: int = 2) -> tuple[np.ndarray, list[str]]:
    """(count, 64, 64, 3) uint8 images and their captions, seeds first_seed.. in order."""
    seeds = range(first_seed, first_seed + count)
    with Pool(workers) as pool:
        pairs = pool.map(_one, seeds, chunksize=64)
    images = np.stack([p[0] for p in pairs])
    return images, [p[1] for p in pairs]


def load_or_generate(path: Path, first_seed: int, count: int) -> tuple[np.ndarray, list[str]]:
    """The cached set at `path` (.npz with a .json beside it), generated on first use."""
    captions_path = path.with_suffix(".json")
    if path.exists() and captions_path.exists():
        images = np.load(path)["images"]
        captions = json.loads(captions_path.read_text())
        if len(images) == count == len(captions):
            return images, captions
    images, captions = generate(first_seed, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, images=images)
    tmp.replace(path)
    captions_path.write_text(json.dumps(captions))
    return images, captions


def load_or_generate_truth(
    path: Path, first_seed: int, count: int
) -> tuple[np.ndarray, list[list[str]]]:
    """Object covers and phrases of the same scenes as `load_or_generate(..., first_seed,
    count)`, cached at `path` (.npz with a .json of phrases beside it).

    Returns:
        covers: (count, MAX_OBJECTS, COVER_SIDE, COVER_SIDE) float16 share of each latent
            cell that each object covers (rows past a scene's object count are zero).
        phrases: per scene, each object's caption phrase in drawing order.
    """
    phrases_path = path.with_suffix(".json")
    if path.exists() and phrases_path.exists():
        covers = np.load(path)["covers"]
        phrases = json.loads(phrases_path.read_text())
        if len(covers) == count == len(phrases):
            return covers, phrases
    with Pool(2) as pool:
        pairs = pool.map(_one_truth, range(first_seed, first_seed + count), chunksize=64)
    covers = np.stack([p[0] for p in pairs])
    phrases = [p[1] for p in pairs]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, covers=covers)
    tmp.replace(path)
    phrases_path.write_text(json.dumps(phrases))
    return covers, phrases
