"""Find each object's pixels in an output image by colour.

Each object gets a few prototype colours (k-means on its interior source pixels: a striped
or dotted object has two tones), and the background gets several prototypes sampled from
the source's background (textures and gradients are not one colour). A pixel of the output
is explained as the blend of two prototypes whose RGB segment lies nearest to it; it goes to
the owner with the larger share of that blend, and to nobody when even the best blend is
farther than `threshold` (RGB distance). Then specks are dropped and pin-holes filled.

Why blends: an anti-aliased edge pixel at half coverage is half object, half background,
far from both pure colours, and a blend of one object with the background can lie nearer
to another object's colour than to either of its own. Explaining it as a blend splits edges
near half coverage (where the world's exact masks put their edge) and keeps the threshold
for colours that belong to no blend at all (a wrong hue, a smear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layoutedit.scenes.morphology import disk, erode, fill_small_holes, remove_small


@dataclass(frozen=True)
class ColourModel:
    """Prototype colours learned from a source image and its labels."""

    object_prototypes: tuple[np.ndarray, ...]
    """Per object, (P_k, 3) float64 RGB prototypes."""
    background_prototypes: np.ndarray
    """(P_b, 3) float64 RGB prototypes of the background."""
    threshold: float
    """Largest RGB distance from a prototype for a pixel to count as that object."""
    min_pixels: int
    """Found components smaller than this are dropped (noise)."""
    max_hole: int
    """Holes up to this many pixels inside a found object are filled."""
    object_bias: float = 1.15
    """Object distances are divided by this before the nearest-prototype vote: a blend of
    object share c wins for the object when c >= 1 / (1 + bias) (0.465 for 1.15)."""

    @property
    def n_objects(self) -> int:
        """Number of objects K."""
        return len(self.object_prototypes)


def kmeans(points: np.ndarray, k: int, iterations: int = 12) -> np.ndarray:
    """Deterministic k-means of (N, 3) float colours -> (min(k, N), 3) centres.

    Farthest-point initialisation from the mean, so equal inputs give equal prototypes.
    """
    points = points.astype(np.float64)
    k = max(1, min(k, len(points)))
    centres = [points.mean(axis=0)]
    while len(centres) < k:
        d = np.min([np.linalg.norm(points - c, axis=1) for c in centres], axis=0)
        if d.max() <= 1e-9:  # fewer distinct colours than k
            break
        centres.append(points[int(np.argmax(d))])
    c = np.stack(centres)
    for _ in range(iterations):
        assign = np.argmin(np.linalg.norm(points[:, None] - c[None], axis=2), axis=1)
        new = np.stack(
            [
                points[assign == j].mean(axis=0) if (assign == j).any() else c[j]
                for j in range(len(c))
            ]
        )
        if np.allclose(new, c):
            break
        c = new
    return c


def _interior(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    # Edge pixels (diagonal neighbours too) are blends with the neighbours; prototypes come
    # from the inside when it is large enough (a thin small ring keeps its edge pixels).
    for footprint in (np.ones((3, 3), dtype=bool), disk(1)):
        inner = erode(mask, footprint)
        if inner.sum() >= min_pixels:
            return inner
    return mask


def fit_colour_model(
    image: np.ndarray,
    labels: np.ndarray,
    n_objects: int,
    *,
    object_clusters: int = 2,
    background_clusters: int = 8,
    threshold: float = 60.0,
    min_pixels: int = 3,
    max_hole: int = 2,
    object_bias: float = 1.15,
) -> ColourModel:
    """Learn the prototypes from a source image.

    Args:
        image: (H, W, 3) uint8 source image.
        labels: (H, W) int source labels, i < K objects, K = `n_objects` background.
        n_objects: K.
        object_clusters / background_clusters: prototypes per object / for the background.
        threshold, min_pixels, max_hole, object_bias: see `ColourModel`.
    """
    pixels = image.reshape(-1, 3).astype(np.float64)
    protos = []
    for k in range(n_objects):
        mask = _interior(labels == k, min_pixels=8)
        protos.append(kmeans(pixels[mask.ravel()], object_clusters))
    bg = _interior(labels == n_objects, min_pixels=16)
    bg_pixels = pixels[bg.ravel()]
    if len(bg_pixels) == 0:
        raise ValueError("the source has no background pixels to learn from")
    return ColourModel(
        object_prototypes=tuple(protos),
        background_prototypes=kmeans(bg_pixels, background_clusters),
        threshold=threshold,
        min_pixels=min_pixels,
        max_hole=max_hole,
        object_bias=object_bias,
    )


def _best_blends(
    pixels: np.ndarray, protos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For (N, 3) pixels, the prototype pair whose blend segment lies nearest.

    Returns:
        (N,) index a, (N,) index b of the pair, (N,) share of b in the blend (0-1),
        (N,) RGB distance to the segment.
    """
    ia, ib = np.triu_indices(len(protos), k=1)
    a, b = protos[ia], protos[ib]  # (Q, 3) each
    ab = b - a
    denom = np.maximum((ab * ab).sum(axis=1), 1e-12)  # (Q,)
    rel = pixels[:, None, :] - a[None]  # (N, Q, 3)
    t = np.clip((rel * ab[None]).sum(axis=2) / denom[None], 0.0, 1.0)  # (N, Q)
    resid = np.linalg.norm(rel - t[..., None] * ab[None], axis=2)  # (N, Q)
    best = np.argmin(resid, axis=1)
    rows = np.arange(len(pixels))
    return ia[best], ib[best], t[rows, best], resid[rows, best]


def segment(image: np.ndarray, model: ColourModel) -> np.ndarray:
    """(K, H, W) bool: each object's pixels in `image` ((H, W, 3) uint8), disjoint."""
    h, w = image.shape[:2]
    k_bg = model.n_objects
    pixels = image.reshape(-1, 3).astype(np.float64)
    protos = np.concatenate([*model.object_prototypes, model.background_prototypes])
    owner = np.concatenate(
        [np.full(len(p), k) for k, p in enumerate(model.object_prototypes)]
        + [np.full(len(model.background_prototypes), k_bg)]
    )
    ia, ib, share_b, resid = _best_blends(pixels, protos)
    oa, ob = owner[ia], owner[ib]
    # Exact masks keep pixels of coverage >= 0.5, so a blend at exactly half belongs to the
    # object: an object's share gets a small head start over the background's.
    wa = (1.0 - share_b) * np.where((oa < k_bg) & (ob == k_bg), model.object_bias, 1.0)
    wb = share_b * np.where((ob < k_bg) & (oa == k_bg), model.object_bias, 1.0)
    who = np.where(wa >= wb, oa, ob)
    who = np.where(resid <= model.threshold, who, k_bg).reshape(h, w)
    out = np.zeros((model.n_objects, h, w), dtype=bool)
    for k in range(model.n_objects):
        out[k] = fill_small_holes(remove_small(who == k, model.min_pixels), model.max_hole)
    # Hole filling may claim a pixel that another object owns by colour; that one keeps it.
    for k in range(model.n_objects):
        out[k] &= (who == k) | (who == k_bg)
    return out
