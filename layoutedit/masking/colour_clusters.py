"""Object masks from colour clusters: no model, made for flat-coloured scenes (the shapes world).

The steps, for K objects:

1. k-means on the pixels' RGB colours with 2K + 3 clusters (room for two-tone objects and a
   textured or graded background); deterministic (seeded k-means++).
2. Clusters whose colour is a blend of two other clusters and that lie along region borders
   are anti-aliased rims, not regions: their pixels go to the nearer of the other colours.
3. Clusters that touch the frame's edge are background (objects lie inside the frame).
4. The remaining clusters are merged into K regions, the pair that shares the most border
   (relative to its size) first: a striped or dotted object's two tones interleave, so they
   share far more border than two objects that merely touch.
5. Each region keeps its largest component (after a 1-pixel closing that bridges stripes);
   holes not made of background colours are filled (dots, stripes), background-coloured
   holes stay (a ring's middle).
6. Border pixels are decided by local colour: a pixel joins the object when its colour is at
   least half way from the nearby background colour to the nearby object colour (for a
   linear blend, a coverage of at least one half); overlaps go to the higher share.

Large photos are clustered at `WORK_SIDE` pixels on their long side and the masks are
resized back (nearest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from layoutedit.errors import UserError
from layoutedit.scenes.morphology import (
    box,
    close,
    components,
    dilate,
    erode,
    fill_holes,
    largest_component,
)

WORK_SIDE = 256  # long side (px) of the image the clusters are computed on
_KMEANS_ITERATIONS = 40
_RING = box(1)  # one pixel around, diagonals included: the border the clean-up works on
_RIM_BORDER_SHARE = 0.6  # a rim cluster: at least this share of its pixels touch another cluster
_MIN_BLEND_DISTANCE = 40.0  # RGB distance: colours closer than this are not blended
_BACKGROUND_EDGE_FACTOR = 0.25  # edge share (vs. the frame ring's share) that marks background
_REFINE_RADIUS = 3  # window (px) for the local colours of border pixels


@dataclass(frozen=True)
class Regions:
    """Unnamed object regions of an image."""

    masks: np.ndarray
    """(K, H, W) bool, disjoint, at the image's size."""
    colours: np.ndarray
    """(K, 3) float64: each region's main colour (median RGB of its inner pixels)."""


def kmeans(pixels: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding.

    Args:
        pixels: (N, 3) float64 colours.
        k: number of clusters (at most N).
        seed: seed of the k-means++ draws.

    Returns:
        centres (k, 3) float64 and assignment (N,) int64.
    """
    rng = np.random.default_rng(seed)
    centres = [pixels[rng.integers(len(pixels))]]
    for _ in range(1, k):
        dist = np.min(((pixels[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = dist.sum()
        pick = rng.integers(len(pixels)) if total == 0 else rng.choice(len(pixels), p=dist / total)
        centres.append(pixels[pick])
    c = np.array(centres, dtype=np.float64)
    assign = np.zeros(len(pixels), dtype=np.int64)
    for _ in range(_KMEANS_ITERATIONS):
        assign = ((pixels[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.array(
            [pixels[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)]
        )
        if np.allclose(new, c):
            break
        c = new
    return c, assign


def _border_share(assign: np.ndarray, j: int) -> float:
    """Share of cluster j's pixels that have a 4-neighbour in another cluster."""
    mine = assign == j
    padded = np.pad(assign, 1, mode="edge")
    h, w = assign.shape
    differs = np.zeros_like(mine)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + h, dx : dx + w] != assign
    return float((differs & mine).sum() / max(int(mine.sum()), 1))


def _is_blend(colour: np.ndarray, centres: np.ndarray) -> bool:
    """Whether `colour` lies between two of `centres` (15-85 % of the way, near the line)."""
    for a in range(len(centres)):
        for b in range(a + 1, len(centres)):
            d = centres[b] - centres[a]
            length = float(np.linalg.norm(d))
            if length < _MIN_BLEND_DISTANCE:
                continue
            t = float((colour - centres[a]) @ d) / length**2
            off_line = float(np.linalg.norm(colour - centres[a] - t * d))
            if 0.15 <= t <= 0.85 and off_line <= max(10.0, 0.15 * length):
                return True
    return False


def _drop_rims(pixels: np.ndarray, centres: np.ndarray, assign: np.ndarray) -> list[int]:
    """Reassign anti-aliased rim clusters (step 2) in place; returns the clusters kept."""
    alive = [j for j in range(len(centres)) if (assign == j).any()]
    changed = True
    while changed:
        changed = False
        for j in sorted(alive, key=lambda j: int((assign == j).sum())):
            others = [i for i in alive if i != j]
            if _border_share(assign, j) < _RIM_BORDER_SHARE or not _is_blend(
                centres[j], centres[others]
            ):
                continue
            alive = others
            rim = assign == j
            colours = pixels.reshape(*assign.shape, 3)[rim]
            nearest = ((colours[:, None] - centres[alive][None]) ** 2).sum(-1).argmin(1)
            assign[rim] = np.array(alive)[nearest]
            changed = True
            break
    return alive


def _shared_border(a: np.ndarray, b: np.ndarray) -> int:
    """Number of 4-neighbour pixel pairs with one pixel in `a` and the other in `b`."""
    return int(
        (a[:, 1:] & b[:, :-1]).sum()
        + (a[:, :-1] & b[:, 1:]).sum()
        + (a[1:] & b[:-1]).sum()
        + (a[:-1] & b[1:]).sum()
    )


def _merge_groups(assign: np.ndarray, clusters: list[int], count: int) -> list[list[int]]:
    """Merge object clusters into `count` groups, most shared border first (step 4)."""
    groups = [[j] for j in clusters]
    while len(groups) > count:
        best, pair = -1.0, (0, 1)
        masks = [np.isin(assign, g) for g in groups]
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                smaller = max(min(int(masks[i].sum()), int(masks[j].sum())), 1)
                score = _shared_border(masks[i], masks[j]) / smaller
                if score > best:
                    best, pair = score, (i, j)
        i, j = pair
        groups[i] = groups[i] + groups.pop(j)
    return groups


def _refine_border(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decide the pixels along `mask`'s border by local colour (step 6).

    Returns:
        the refined mask and (H, W) float64 scores: the object share of each pixel (1 inside,
        0 outside, the blend fraction on the border) for resolving overlaps.
    """
    inner = erode(mask, _RING)
    outer = ~dilate(mask, _RING)
    score = inner.astype(np.float64)
    if not inner.any():
        return mask, mask.astype(np.float64)
    main = np.median(image[inner], axis=0)
    out = mask.copy()
    h, w = mask.shape
    r = _REFINE_RADIUS
    for y, x in zip(*np.nonzero(dilate(mask, _RING) & ~inner), strict=True):
        y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
        window = image[y0:y1, x0:x1]
        near_in, near_out = inner[y0:y1, x0:x1], outer[y0:y1, x0:x1]
        if near_out.sum() < 3:
            score[y, x] = float(mask[y, x])
            continue
        obj = np.median(window[near_in], axis=0) if near_in.sum() >= 3 else main
        bg = np.median(window[near_out], axis=0)
        d = obj - bg
        length2 = float(d @ d)
        if length2 < 1.0:
            score[y, x] = float(mask[y, x])
            continue
        share = float((image[y, x] - bg) @ d) / length2
        score[y, x] = share
        out[y, x] = share >= 0.5
    return out, score


def _resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    if masks.shape[1:] == (height, width):
        return masks
    return np.stack(
        [
            np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height), 0)) > 127
            for m in masks
        ]
    )


def colour_regions(image: np.ndarray, count: int, seed: int = 0) -> Regions:
    """Split `image` into `count` object regions by colour (module docstring, steps 1-6).

    Args:
        image: (H, W, 3) uint8 RGB.
        count: number of objects K (1 or more).
        seed: k-means++ seed.

    Returns:
        Regions with K disjoint masks at the image's size, in no particular order.

    Raises:
        UserError: fewer distinct colour regions than objects, or an image too small.
    """
    height, width = image.shape[:2]
    if min(height, width) < 8:
        raise UserError(f"image is too small to find objects in ({width}x{height} px)")
    work = image
    if max(height, width) > WORK_SIDE:
        factor = WORK_SIDE / max(height, width)
        size = (max(8, round(width * factor)), max(8, round(height * factor)))
        work = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    h, w = work.shape[:2]
    pixels = work.reshape(-1, 3).astype(np.float64)
    # 1. colour clusters
    k = min(2 * count + 3, len(np.unique(pixels, axis=0)))
    centres, flat = kmeans(pixels, k, seed)
    assign = flat.reshape(h, w)
    # 2. anti-aliased rims
    alive = _drop_rims(pixels, centres, assign)
    # 3. background: clusters on the frame's edge
    ring = np.zeros((h, w), dtype=bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    ring_share = ring.sum() / ring.size
    background: list[int] = []
    objects: list[int] = []
    for j in alive:
        mine = assign == j
        edge_share = (mine & ring).sum() / mine.sum()
        (background if edge_share >= _BACKGROUND_EDGE_FACTOR * ring_share else objects).append(j)
    if len(objects) < count:
        raise UserError(
            f"found {len(objects)} colour region(s) apart from the background, "
            f"not the {count} objects asked for (colour clusters need flat, distinct colours; "
            "try --method clipseg)"
        )
    # 4. two-tone objects: merge interleaved clusters
    groups = _merge_groups(assign, objects, count)
    is_background = np.isin(assign, background)
    work_f = work.astype(np.float64)
    masks, scores = [], []
    for group in groups:
        # 5. one piece, holes filled unless they are background-coloured
        region = largest_component(close(np.isin(assign, group), _RING))
        holes, count_holes = components(fill_holes(region) & ~region)
        for number in range(1, count_holes + 1):
            hole = holes == number
            if is_background[hole].mean() < 0.5:
                region |= hole
        # 6. border pixels by local colour
        refined, score = _refine_border(work_f, region)
        masks.append(refined)
        scores.append(np.where(refined, score, -np.inf))
    stack = np.stack(masks)
    winner = np.argmax(np.stack(scores), axis=0)
    stack &= np.arange(count)[:, None, None] == winner[None]
    colours = np.array(
        [
            np.median(work_f[erode(m, _RING)] if erode(m, _RING).any() else work_f[m], axis=0)
            if m.any()
            else np.zeros(3)
            for m in stack
        ]
    )
    return Regions(masks=_resize_masks(stack, height, width), colours=colours)
