"""The benchmark's metrics as pure functions on numpy arrays (see docs/benchmark.md).

Conventions: masks are bool arrays, (H, W) for one object or (K, H, W) for K objects in the
scene's object order; images are (H, W, 3) uint8 RGB; colours are RGB in 0-255.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.scenes.grids import resize_nearest
from layoutedit.scenes.masks import bounding_box
from layoutedit.scenes.masks import iou as iou  # re-exported: the bench scores with it
from layoutedit.scenes.morphology import disk, erode

PSNR_CAP_DB = 100.0
"""PSNR reported for identical pixels (MSE 0), so that results stay finite numbers in JSON."""
SHAPE_SIDE = 32
"""Side, in pixels, that both masks are resized to for the shape IoU."""


def layout_iou(found: np.ndarray, target: np.ndarray) -> float:
    """Mean over objects of IoU(found_k, target_k).

    Args:
        found: (K, H, W) bool, each object's pixels as found in the output.
        target: (K, H, W) bool, each object's exact transformed mask.
    """
    return float(np.mean([iou(f, t) for f, t in zip(found, target, strict=True)]))


def in_region_share(found: np.ndarray, regions: np.ndarray) -> float:
    """Mean over objects of the share of found pixels inside the object's rough region.

    An object with no found pixels scores 0: nothing of it landed where it was asked.

    Args:
        found: (K, H, W) bool; regions: (K, H, W) bool rough target regions.
    """
    shares = []
    for f, r in zip(found, regions, strict=True):
        n = int(f.sum())
        shares.append(int((f & r).sum()) / n if n else 0.0)
    return float(np.mean(shares))


def mean_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(3,) float64 mean RGB of `image` over the True pixels of `mask` (NaN when empty)."""
    if not mask.any():
        return np.full(3, np.nan)
    return image[mask].astype(np.float64).mean(axis=0)


def colour_error(
    image: np.ndarray,
    found: np.ndarray,
    source_colours: np.ndarray | Sequence[Sequence[float]],
    fallback: np.ndarray | None = None,
) -> float:
    """Mean over objects of the RGB distance (0-255 units) between the object's mean colour
    in `image` and its source colour.

    Args:
        image: (H, W, 3) uint8 output.
        found: (K, H, W) bool pixels of each object in the output.
        source_colours: K mean source colours.
        fallback: (K, H, W) bool, used for an object with no found pixels (the benchmark
            passes the exact target masks: the colour of whatever is where the object should
            be); without it such an object scores the largest possible distance, 255*sqrt(3).
    """
    errors = []
    for k, colour in enumerate(source_colours):
        mask = found[k]
        if not mask.any() and fallback is not None:
            mask = fallback[k]
        if not mask.any():
            errors.append(255.0 * np.sqrt(3.0))
            continue
        diff = mean_colour(image, mask) - np.asarray(colour, dtype=np.float64)
        errors.append(float(np.linalg.norm(diff)))
    return float(np.mean(errors))


def crop_to_box(mask: np.ndarray) -> np.ndarray:
    """The (h, w) sub-array of an (H, W) bool mask inside its bounding box (mask non-empty)."""
    bounds = bounding_box(mask)
    if bounds is None:
        raise ValueError("an empty mask has no bounding box")
    x0, y0, x1, y1 = bounds
    return mask[y0:y1, x0:x1]


def shape_iou(output_mask: np.ndarray, source_mask: np.ndarray, side: int = SHAPE_SIDE) -> float:
    """IoU of two (H, W) bool masks after each is cropped to its bounding box and resized
    (nearest, pixel centres) to (side, side): same shape at any place and scale scores 1.

    An empty mask scores 0 (unless both are empty: 1).
    """
    a_any, b_any = bool(output_mask.any()), bool(source_mask.any())
    if not (a_any and b_any):
        return 1.0 if a_any == b_any else 0.0
    a = resize_nearest(crop_to_box(output_mask), side, side)
    b = resize_nearest(crop_to_box(source_mask), side, side)
    return iou(a, b)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (peak 255) between two (H, W, 3) images over the True pixels of `mask`.

    Identical pixels give `PSNR_CAP_DB`; an empty mask gives NaN (nothing to compare).
    """
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * float(np.log10(255.0**2 / mse)))


def background_psnr(
    output: np.ndarray,
    source: np.ndarray,
    source_labels: np.ndarray,
    target_labels: np.ndarray,
    background_index: int,
) -> float:
    """PSNR of `output` against `source` over pixels that are background in both the source
    labels and the (exact) target labels, (H, W) int grids with `background_index` = K.

    The bench passes the target image (the truth) as `source`: the same background, but
    without the moved objects' old anti-aliased rims, which the source image still holds."""
    keep = (source_labels == background_index) & (target_labels == background_index)
    return psnr(output, source, keep)


def vacated_psnr(
    output: np.ndarray,
    truth: np.ndarray,
    source_labels: np.ndarray,
    target_labels: np.ndarray,
    background_index: int,
) -> float:
    """PSNR of `output` against the target image `truth` over the pixels an object left:
    object in the source labels, background in the (exact) target labels.

    The editor must paint these from nothing (the source only shows the object there), so
    they show what `background_psnr` cannot: a trace of the object left where it was.
    NaN when no pixel was vacated (an object grown in place, an identity edit)."""
    vacated = (source_labels != background_index) & (target_labels == background_index)
    return psnr(output, truth, vacated)


def object_psnr(
    output: np.ndarray,
    truth: np.ndarray,
    target_labels: np.ndarray,
    background_index: int,
    inset: int = 1,
) -> float:
    """PSNR of `output` against the target image `truth` over the inside of the objects
    where the target has them: object pixels of the (exact) target labels, eroded by
    `inset` px so that anti-aliased rims do not count.

    Where the colour error compares mean colours, this sees what a mean hides: a pattern
    (stripes, dots) smoothed away or drawn at another phase, an uneven shade, a blob in
    place of a shape. NaN when no object pixel is left after the erosion."""
    inside = erode(target_labels != background_index, disk(inset))
    return psnr(output, truth, inside)
