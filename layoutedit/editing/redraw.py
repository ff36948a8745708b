"""Where the model redraws more than the pasted objects, and a start that differs by cell.

A paste start (`EditConfig.init="paste"`) keeps each object's own pixels by noising them
only part-way (`paste_strength`). What cut-and-paste cannot get right needs the model at a
higher strength: where an object left (the hole and the shadow it cast there), a band
around each object's new place (the shadow it casts there, the edge), and the part of a
target region that no pasted pixel covers (an object's hidden part, uncovered by the move).
`redraw_mask` says where, in pixels; `RegionalStart` makes every latent cell join the DDIM
loop at the step its own strength says (a differential start: until then the cell follows
the start latent noised to the current step), so one loop serves both strengths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

from layoutedit.editing.paste import grow
from layoutedit.editing.texture_fill import repeat_fill
from layoutedit.scenes.layout_ops import Placement, warp_mask
from layoutedit.scenes.morphology import bordering, disk, erode
from layoutedit.scenes.occlusion_fit import in_front, touching, weakly_ordered

EDGE_SHARE = 0.75
"""The share of an object's free edge that its region, eroded by the painted margin, still
holds (`painted_margin`): a quarter may lie where a rough region hugs the object closer."""
LIT_SHARE = 0.25
"""The least share of an object's pasted pixels that must be lit for their mean to colour
its hidden part (`complete_hidden_parts`); below it, all of its pixels."""
PATTERN_SPREAD = 0.08
"""`patterned`: the least luma spread (standard deviation over the mean) of an object's
pixels that reads as a pattern. World v2's stripes and dots spread 0.13-0.2 of their mean
(a second tone at 0.55 of the first, on a half or a fifth of the object); the light across
one plain object about 0.03."""


def redraw_mask(
    source_labels: np.ndarray,
    layout_labels: np.ndarray,
    source_masks: np.ndarray,
    footprints: np.ndarray,
    band_px: int,
    hidden: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels the model redraws at the higher strength.

    Args:
        source_labels: (H, W) int source labels, K = background.
        layout_labels: (H, W) int target regions, same coding (unused but for `hidden`).
        source_masks: (K, H, W) bool each object's visible source pixels.
        footprints: (K, H, W) bool where each object was pasted (visible pixels).
        band_px: width of the band around a moved object's old and new place, px.
        hidden: (H, W) bool where a hidden part may show (`hidden_zones`), or None.

    Returns:
        (H, W) bool: where an object left, the bands around every object that moved, and
        the hidden zones; never a pasted pixel.
    """
    del layout_labels  # the regions' margins are not redrawn: only their hidden zones
    k = source_masks.shape[0]
    occupied = footprints.any(axis=0)
    out = (source_labels < k) & ~occupied  # vacated
    if hidden is not None:
        out |= hidden
    for i in range(k):
        if np.array_equal(source_masks[i], footprints[i]):
            continue  # stayed where it was, whole
        if band_px > 0:
            out |= grow(source_masks[i], band_px) | grow(footprints[i], band_px)
    return out & ~occupied


def hidden_zones(
    source_masks: np.ndarray,
    placements: Sequence[Placement],
    layout_labels: np.ndarray,
    footprints: np.ndarray,
    region_size: bool = False,
    over: np.ndarray | None = None,
    unsure: np.ndarray | None = None,
) -> np.ndarray:
    """(K, H, W) bool where each object's part that the source hid may show after the edit
    (their union: where a hidden part may show).

    An object's hidden part lies under the objects that covered it in the source, next to
    its visible pixels: those pixels (within half the object's size), moved with the object
    to its target, inside its target region and not covered by anything pasted there.
    The object's size is that of its visible pixels, or with `region_size` the larger of
    those and its target region (a back object mostly hidden shows a sliver of itself,
    while the region the user paints for it holds all of it).

    With `region_size`, two touching objects with no hull overlap either way (a part cut off
    along a straight edge, which no hull reads) may each hide the other, and so may a pair
    whose order is `unsure` ((K, K) bool; default `occlusion_fit.weakly_ordered`: hull cuts
    a few anti-aliased pixels apart): which part shows is then the region's to say
    (`hidden_parts`). `over` is `occlusion_fit.in_front` of `source_masks` when the caller
    has it, or an order the caller read otherwise (`shadow_fit.shadow_cuts`).
    """
    k = source_masks.shape[0]
    occupied = footprints.any(axis=0)
    out = np.zeros(source_masks.shape, dtype=bool)
    # Only an object in front can hide another.
    over = in_front(source_masks) if over is None else over
    if region_size:
        over = over | _touching_unordered(source_masks, over, unsure)  # never the caller's
    for i in range(k):
        if not over[i].any():
            continue
        others = source_masks[over[i]].any(axis=0)
        area = int(source_masks[i].sum())
        if region_size:
            area = max(area, int((layout_labels == i).sum()))
        reach = max(1, round(0.5 * float(np.sqrt(area))))
        near = grow(source_masks[i], reach) & others
        if not near.any():
            continue
        # A back object's painted region is cut by the regions painted over it: with
        # `region_size` any painted pixel may hold its uncovered part.
        allowed = (layout_labels < k) if region_size else (layout_labels == i)
        out[i] = warp_mask(near, placements[i]) & allowed & ~occupied
    return out


def _touching_unordered(
    source_masks: np.ndarray, over: np.ndarray, unsure: np.ndarray | None = None
) -> np.ndarray:
    """(K, K) bool: [i, j] where j touches i and `over` has neither way, or the pair is
    `unsure` (default `occlusion_fit.weakly_ordered`): either may hide the other
    (`hidden_zones`)."""
    unsure = weakly_ordered(source_masks) if unsure is None else unsure
    unordered = ~over & ~over.T
    return np.asarray(touching(source_masks) & (unsure | unordered), dtype=bool)


def painted_margin(region: np.ndarray, footprint: np.ndarray, free: np.ndarray, cap: int) -> int:
    """The margin a painted region leaves around its object, px (0..`cap`): the widest disk
    that `region` can be eroded by and still hold `EDGE_SHARE` of the object's free edge
    (its pasted pixels next to `free` ones, where no other object was pasted).

    Args:
        region: (H, W) bool the object's target region.
        footprint: (H, W) bool where the object was pasted.
        free: (H, W) bool pixels no object was pasted on.
        cap: the widest margin to consider, px; returned when the object has no free edge.
    """
    edge = footprint & grow(free, 1)
    if not edge.any():
        return cap
    margin = 0
    for m in range(1, cap + 1):
        if (erode(region, disk(m)) & edge).sum() < EDGE_SHARE * edge.sum():
            break
        margin = m
    return margin


def hidden_parts(
    wholes: np.ndarray,
    source_masks: np.ndarray,
    placements: Sequence[Placement],
    footprints: np.ndarray,
    order: Sequence[int],
    zones: np.ndarray,
    regions: np.ndarray | None = None,
) -> np.ndarray:
    """(K, H, W) bool each object's hidden part that may show, where the edit puts it.

    An object's hidden part is its whole estimated shape (`occlusion_fit.amodal_estimate`:
    its visible source pixels completed to their convex hull under the objects that covered
    them) less the visible pixels, moved with the object, inside `hidden` only; front objects
    claim first (a part both may claim is the front one's), and an object that was not
    pasted has none.

    Args:
        wholes: (K, H, W) bool each object's estimated whole source shape.
        source_masks: (K, H, W) bool each object's visible source pixels.
        placements: K placements.
        footprints: (K, H, W) bool where each object was pasted.
        order: object indices back to front.
        zones: (K, H, W) bool where each object's hidden part may show (`hidden_zones`).
        regions: (K, H, W) bool each object's target region shrunk by the margin a painted
            region leaves around its object, or None. Its pixels in the object's own zone
            count as the object's too: the convex completion misses what lies beyond the
            chord of a sliver (a disc hidden but for a crescent). Only its own: a region
            fills its object's hollows (between a star's arms), which another's zone may
            hold.
    """
    parts = np.zeros_like(source_masks, dtype=bool)
    free = zones.any(axis=0)
    for i in reversed(list(order)):
        if not footprints[i].any() or not free.any():
            continue
        part = warp_mask(wholes[i] & ~source_masks[i], placements[i])
        if regions is not None:
            part |= regions[i] & zones[i]
        parts[i] = part & free
        free &= ~parts[i]
    return parts


def complete_hidden_parts(
    image: np.ndarray,
    parts: np.ndarray,
    footprints: np.ndarray,
    lit: np.ndarray | None = None,
    pattern: bool = False,
    rim: bool = False,
) -> np.ndarray:
    """The pasted image with each object's hidden part (`hidden_parts`) painted in the mean
    colour of the object's pasted pixels (re-lit and shaded as pasted).

    Args:
        image: (H, W, 3) uint8 pasted image.
        parts: (K, H, W) bool each object's hidden part (`hidden_parts`).
        footprints: (K, H, W) bool where each object was pasted.
        lit: (K, H, W) bool each object's pasted pixels that no other object's shadow
            darkens (`unshadowed_pixels`), or None. An object's colour is their mean when
            they hold at least a quarter of its pixels: the part that shows now is out of
            the shadow the objects over it cast on the sliver that showed.
        pattern: continue a patterned object's repeat (stripes, dots) into its part from
            those pixels, less their anti-aliased rim (`texture_fill.repeat_fill`, under
            the light fitted to them); the mean colour stays where no repeat is found or
            reaches. A flat part across stripes is wrong on every pixel by half their
            contrast.
        rim: repaint the object's pasted pixels along its part too (4-neighbours of it):
            in the source they were its anti-aliased mix with the object over it, specks
            of that object's colour inside the completed shape.

    Returns:
        (H, W, 3) uint8.
    """
    out = image.copy()
    for i, (part, footprint) in enumerate(zip(parts, footprints, strict=True)):
        if part.any() and footprint.any():
            pixels = footprint
            if lit is not None and lit[i].sum() >= LIT_SHARE * footprint.sum():
                pixels = lit[i]
            paint = part
            if rim:
                cut = bordering(footprint, part)
                if (pixels & ~cut).any():
                    paint, pixels = part | cut, pixels & ~cut
            colour = image[pixels].astype(np.float64).mean(axis=0)
            out[paint] = np.rint(colour).astype(np.uint8)
            if pattern:
                known = erode(pixels, disk(1)) & ~paint
                if patterned(image, known):
                    flat = out.astype(np.float64)
                    filled = repeat_fill(image, paint, known, fallback=flat)
                    out[paint] = np.rint(filled[paint]).astype(np.uint8)
    return out


def patterned(image: np.ndarray, known: np.ndarray) -> bool:
    """Whether an object's pixels (`known`, (H, W) bool, of the (H, W, 3) uint8 `image`)
    vary by more than the light over them could: their luma's spread is at least
    `PATTERN_SPREAD` of its mean. A plain object's near-constant pixels match themselves
    under any shift, and its repeat fill copied the specks of its rim."""
    luma = image[known].astype(np.float64).mean(axis=-1)
    if luma.size < 16:
        return False
    return bool(luma.std() >= PATTERN_SPREAD * max(luma.mean(), 1.0))


def unshadowed_pixels(
    footprints: np.ndarray,
    source_masks: np.ndarray,
    still: Sequence[bool],
    order: Sequence[int],
    shade: Callable[[np.ndarray], np.ndarray],
    floor: float,
) -> np.ndarray:
    """(K, H, W) bool each still object's pasted pixels that the shadows of the objects in
    front of it leave lit in the source (a moved object's: all of them).

    Args:
        footprints: (K, H, W) bool where each object was pasted.
        source_masks: (K, H, W) bool each object's visible source pixels.
        still: per object, whether it stayed where it was (its pasted pixels are its
            source pixels, with the shadows they had there).
        order: object indices back to front.
        shade: (H, W) bool object coverage -> (H, W) float darkening it casts (0..1), the
            scene's fitted light (`shadow_fit.CastShadow.darkening`).
        floor: darkening below which a pixel counts as lit.
    """
    out = footprints.copy()
    rank = {obj: n for n, obj in enumerate(order)}
    for i in range(footprints.shape[0]):
        front = [j for j in range(footprints.shape[0]) if rank[j] > rank[i]]
        if not still[i] or not front:
            continue
        dark = shade(np.asarray(source_masks[front].any(axis=0), dtype=bool))
        out[i] = footprints[i] & (dark < floor)
    return out


def cells_touched(mask: np.ndarray, side: int) -> np.ndarray:
    """(S, S) bool pixels of a square image -> (side, side) bool latent cells that hold
    any of them (any side S: each cell covers the pixels its span overlaps)."""
    s = mask.shape[0]
    edges = np.linspace(0, s, side + 1)
    lo, hi = np.floor(edges[:-1]).astype(int), np.ceil(edges[1:]).astype(int)
    rows = np.stack([mask[a:b].any(axis=0) for a, b in zip(lo, hi, strict=True)])
    return np.stack([rows[:, a:b].any(axis=1) for a, b in zip(lo, hi, strict=True)], axis=1)


def first_steps(strengths: np.ndarray, steps: int) -> np.ndarray:
    """(h, w) int64 the DDIM step at which each cell starts being denoised: a strength s
    runs the last max(1, round(s * steps)) of `steps`."""
    runs = np.maximum(1, np.rint(strengths * steps)).astype(np.int64)
    return steps - np.minimum(runs, steps)


@dataclass
class RegionalStart:
    """Cells that have not started yet follow the start latent, noised to the current step.

    Attributes:
        first: (1, 1, h, w) int64 each cell's first denoised step (`first_steps`).
        clean: (1, C, h, w) the start latent (the paste start, encoded).
        noise: (B, C, h, w) the noise each seed's start was drawn with.
        sampler: the DDIM scheduler, `set_timesteps` done.
    """

    first: torch.Tensor
    clean: torch.Tensor
    noise: torch.Tensor
    sampler: DDIMScheduler

    def apply(self, latents: torch.Tensor, step: int) -> torch.Tensor:
        """z_t <- where(step < first, add_noise(clean, noise, t_step), z_t)."""
        waiting = self.first.to(latents.device) > step
        if not bool(waiting.any()):
            return latents
        t = self.sampler.timesteps[step : step + 1]
        noised = self.sampler.add_noise(
            self.clean.to(latents), self.noise.to(latents), cast(torch.IntTensor, t)
        )
        return torch.where(waiting, noised, latents)


@dataclass
class BlendChain:
    """Several latent blends applied in order (later ones win where they overlap)."""

    blends: tuple[object, ...]

    def apply(self, latents: torch.Tensor, step: int) -> torch.Tensor:
        """Each blend's `apply(latents, step)` in turn."""
        for blend in self.blends:
            latents = blend.apply(latents, step)  # type: ignore[attr-defined]
        return latents
