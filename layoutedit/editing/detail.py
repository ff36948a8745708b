"""The objects' fine detail carried from the source into the edit (`EditConfig.object_detail`).

With the paste start the objects arrive at their targets with their own pixels, but what the
edit shows has been through the VAE twice and the model's last steps: fine patterns (a
heart's dots, a triangle's 2-pixel stripes, a photo's texture) come back washed out. Detail
transfer splits each object into coarse and fine by a Gaussian of `sigma` pixels: the coarse
part stays the model's (its colours, shading, harmonisation with the new surroundings), the
fine part is the source object's own, moved and scaled with the same placement as the paste.
Both splits are taken inside the object alone (a blur weighted by its mask), so neither the
old nor the new surroundings leak into the detail. Pure numpy, at the source's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.editing.compositing import gaussian_blur
from layoutedit.editing.paste import warp_objects
from layoutedit.scenes.layout_ops import Placement
from layoutedit.scenes.masks import bounding_box


def masked_low_pass(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """(N, 3) float64 at the N pixels of a non-empty `mask` (row-major, as `image[mask]`):
    a Gaussian blur of `image` (`sigma` in pixels) averaged over the mask's pixels only.

    Computed in the mask's bounding box grown by the kernel's reach, which gives the mask's
    pixels what a blur of the whole frame gives them at a fraction of the cost on a large
    photo with small objects."""
    bounds = bounding_box(mask)
    if bounds is None:
        return np.zeros((0, 3), dtype=np.float64)
    x0, y0, x1, y1 = bounds
    reach = int(np.ceil(3 * sigma)) + 1
    h, w = mask.shape
    box = (
        slice(max(0, y0 - reach), min(h, y1 + reach)),
        slice(max(0, x0 - reach), min(w, x1 + reach)),
    )
    inside = mask[box]
    m = inside.astype(np.float64)
    weight = gaussian_blur(m, sigma)
    blurred = gaussian_blur(image[box].astype(np.float64) * m[..., None], sigma)
    return blurred[inside] / np.maximum(weight[inside], 1e-6)[:, None]


def source_detail(source: np.ndarray, masks: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 3) float64 each object's fine detail: its pixels minus their masked low pass
    (0 outside every object). `masks`: (K, H, W) bool visible source pixels per object."""
    detail = np.zeros(source.shape, dtype=np.float64)
    for mask in masks:
        detail[mask] = source[mask].astype(np.float64) - masked_low_pass(source, mask, sigma)
    return detail


def moved_detail(
    source: np.ndarray,
    source_masks: np.ndarray,
    placements: Sequence[Placement],
    order: Sequence[int] | None,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The source objects' fine detail moved to their targets, once per layout.

    Args:
        source: (H, W, 3) uint8 source image.
        source_masks: (K, H, W) bool visible source pixels per object (drawing order).
        placements: K placements, as the paste start used them.
        order: object indices back to front, as the paste start used them.
        sigma: the split between coarse and fine, in pixels.

    Returns:
        (H, W, 3) float64 detail where an object landed (a shrunk object's pre-filtered
        against aliasing), and (K, H, W) bool its footprints.
    """
    detail = source_detail(source, source_masks, sigma)
    for mask, placement in zip(source_masks, placements, strict=True):
        # A pattern shrunk by the placement would alias into moire at the target's pixel
        # spacing: blur it first by what the shrink leaves unresolvable.
        aa = anti_alias_sigma(placement.scale)
        if aa > 0:
            detail[mask] = masked_low_pass(detail, mask, aa)
    return warp_objects(detail, source_masks, placements, order)


def anti_alias_sigma(scale: float) -> float:
    """Gaussian sigma (source pixels) before shrinking by `scale`: (1/scale - 1) / 2, the
    usual rescaling pre-filter; 0 for scale >= 1."""
    return max(0.0, (1.0 / scale - 1.0) / 2.0)


def apply_detail(
    image: np.ndarray,
    detail: np.ndarray,
    footprints: np.ndarray,
    sigma: float,
    strength: float = 1.0,
) -> np.ndarray:
    """Replace the fine detail of each footprint of `image` by `detail` (`moved_detail`).

    Args:
        image: (H, W, 3) uint8 edit.
        detail: (H, W, 3) float64 the moved source detail.
        footprints: (K, H, W) bool where each object is in the edit.
        sigma: the split between coarse and fine, in pixels.
        strength: share of the edit's fine detail replaced (1: all of it).

    Returns:
        (H, W, 3) uint8; pixels outside every footprint unchanged.
    """
    if sigma <= 0 or strength <= 0:
        return image
    out = image.astype(np.float64)
    for footprint in footprints:
        low = masked_low_pass(out, footprint, sigma)
        fine = out[footprint] - low
        out[footprint] = low + fine * (1 - strength) + detail[footprint] * strength
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def transfer_detail(
    image: np.ndarray,
    source: np.ndarray,
    source_masks: np.ndarray,
    placements: Sequence[Placement],
    order: Sequence[int] | None,
    sigma: float,
    strength: float = 1.0,
) -> np.ndarray:
    """`apply_detail` of `moved_detail`: one edit's objects given their source's detail
    ((H, W, 3) uint8 in and out; `sigma` in pixels)."""
    if sigma <= 0 or strength <= 0:
        return image
    detail, footprints = moved_detail(source, source_masks, placements, order, sigma)
    return apply_detail(image, detail, footprints, sigma, strength)
