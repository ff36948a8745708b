"""The start image an edit denoises (init `paste`): each object cut out and pasted at its
target, holes filled, shadows lifted and cast, hidden parts painted, re-lit, and with
`refine` corrected by the model's refiner.

`StartBuilder` holds what every layout of one scene shares (the source's cast shadow, the
objects' whole shapes and their order) and builds the start of each layout
(`StartBuilder.build`); `EditSession` owns one per scene.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from layoutedit.config import EditConfig
from layoutedit.counting import UNetCounter
from layoutedit.editing.complete import complete_wholes
from layoutedit.editing.low_memory import decode_seeds
from layoutedit.editing.noise import seeded_normal
from layoutedit.editing.paste import grow, paste_edit, rim_width
from layoutedit.editing.redraw import (
    cells_touched,
    complete_hidden_parts,
    hidden_parts,
    hidden_zones,
    painted_margin,
    redraw_mask,
    unshadowed_pixels,
)
from layoutedit.editing.refine import (
    changed_zone,
    refine_latents,
    refine_timesteps,
    refined_change,
)
from layoutedit.editing.relight import apply_gains, light_gains
from layoutedit.editing.shadow_fit import (
    SHADOW_ORDER,
    CastShadow,
    cast_fitted_shadows,
    fit_cast_shadow,
    fitted_darkening,
    lift_object_shadows,
    shadow_cuts,
)
from layoutedit.editing.shadows import cast_shadows, remove_shadows, shadow_darkening
from layoutedit.editing.texture_fill import floor_grain_rms, repeat_fill
from layoutedit.out_of_memory import phase
from layoutedit.scenes.grids import square_pad
from layoutedit.scenes.layout_ops import (
    Placement,
    estimate_placements,
    paint_order,
    snap_still,
    warp_mask,
)
from layoutedit.scenes.morphology import disk, erode
from layoutedit.scenes.occlusion_fit import (
    amodal_estimate,
    hull_cuts,
    occlusion_placements,
    touching,
    weakly_ordered,
)

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel
    from layoutedit.precision import Precision
    from layoutedit.scenes.scene import Layout, Scene

SHADOW_REACH = 2.5
"""Latent cells from an object within which its shadow is looked for (`move_shadows`)."""
RELIGHT_CLEARANCE = 1.0
"""Latent cells around the objects that the light fit leaves out (`relight`)."""

SHADOW_FLOOR = 0.02
"""Darkening under which a background pixel counts as unshadowed (`hole_fill` repeat)."""
SHADOW_CHANGE = 2
"""Grey levels: a shadow lifted or cast by less leaves the source's pixel in place (the
fitted shadow's faint tail over unshadowed background is not worth the source's pixel)."""

REFINE_SEED = 7_000
"""Seed of the refiner's first sample (`refine_samples` seeds from here): the refinement
is the same for every candidate seed of an edit and on every device."""

PAINTED_MARGIN = 1.25
"""Latent cells: the widest margin a painted region leaves around an object that stays put
(placement `occlusion`; 5 px at shapes-tiny's 64, where the development cases' brush
strokes reach 4)."""


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) bool where two (H, W, 3) uint8 images differ by more than `SHADOW_CHANGE`."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1) > SHADOW_CHANGE


def _moves(p: Placement) -> bool:
    """Whether a placement moves or scales its object (by a tenth of a pixel or more)."""
    return (
        abs(p.dst_cx - p.src_cx) > 0.1 or abs(p.dst_cy - p.src_cy) > 0.1 or abs(p.scale - 1) > 1e-3
    )


@dataclass(frozen=True)
class PasteStart:
    """The cut-and-paste start at the source's size."""

    image: np.ndarray
    """(H, W, 3) uint8 the objects pasted at their targets, holes filled."""
    footprints: np.ndarray
    """(K, H, W) bool where each object was pasted (visible pixels)."""
    placements: tuple[Placement, ...]
    """Where each object went (source and target centre, scale)."""
    order: tuple[int, ...]
    """Object indices back to front, as they were pasted."""
    redraw: np.ndarray | None = None
    """(H, W) bool where the model redraws at `redraw_strength` (`redraw.redraw_mask`)."""
    hidden: np.ndarray | None = None
    """(H, W) bool where a part the source hid may show (`redraw.hidden_zones`)."""
    painted: np.ndarray | None = None
    """(H, W) bool the hidden parts the start painted in their objects' colours
    (`redraw.hidden_parts`, with `complete_hidden`): guessed pixels. None: none painted."""
    gains: np.ndarray | None = None
    """(K,) each object's light gain at its new place (`relight`), None: not re-lit."""
    shadows: np.ndarray | None = None
    """(H, W) bool where `move_shadows` lifted a shadow or cast one, None: not moved."""
    grain: np.ndarray | None = None
    """(H, W) bool the holes (where objects were, rims included) when they lie on a grainy
    background that no repeat continues (`texture_fill.floor_grain_rms`): their smooth fill lacks
    the grain. None: no such holes, or `hole_fill` is not `repeat`."""
    grain_rms: float = 0.0
    """With `grain`: the background's own grain (`texture_fill.floor_grain_rms`, RMS,
    0-255 levels)."""


class StartBuilder:
    """The paste starts of one scene's layouts, with what they share found once."""

    def __init__(
        self,
        model: LoadedModel,
        scene: Scene,
        config: EditConfig,
        precision: Precision,
        sampler: Any,
        plain_prompt: str,
        to_source_size: Callable[[np.ndarray], list[np.ndarray]],
        latent_side: int,
    ) -> None:
        """`sampler`: the edit's DDIM scheduler (its noise schedule); `plain_prompt`: the
        scene's prompt in plain words; `to_source_size`: (B, S, S, 3) model-size images to
        the source's size; `latent_side`: side of the latent grid."""
        self.model, self.scene, self.config = model, scene, config
        self.precision, self.sampler = precision, sampler
        self.plain_prompt, self.to_source_size = plain_prompt, to_source_size
        self.latent_side = latent_side
        self._shadows: tuple[CastShadow | None, np.ndarray] | None = None
        self._wholes: np.ndarray | None = None
        self._over: np.ndarray | None = None
        self._cast: CastShadow | Literal[False] | None = False  # False: not fitted yet
        self._unsure: np.ndarray | None = None
        self._refiner_text: torch.Tensor | None = None

    def cells(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W) bool at the source's size -> (h, w) bool latent cells touching it."""
        square, _ = square_pad(pixels.astype(np.uint8), 0)
        return cells_touched(square.astype(bool), self.latent_side)

    def source_shadows(self, reach: int, rim: int) -> tuple[CastShadow | None, np.ndarray]:
        """The source's cast shadow (None: no one light explains it) and (K, H, W) each
        object's darkening; found once per session, since every layout of the scene moves
        the same shadows."""
        if self._shadows is None:
            masks, image = self.scene.object_masks(), self.scene.image
            repeat = self.config.hole_fill == "repeat"
            cast = self.cast_fit(reach, rim)
            if cast is not None:
                shapes = self.whole_shapes() if self.config.shadow_from_whole else masks
                darkening = fitted_darkening(cast, shapes, reach, rim)
            else:  # no one light explains the surroundings: each pixel read on its own
                darkening = shadow_darkening(image, masks, reach, rim, repeat=repeat)
            self._shadows = (cast, darkening)
        return self._shadows

    def cast_fit(self, reach: int, rim: int) -> CastShadow | None:
        """The source's cast shadow (`shadow_fit.fit_cast_shadow`; None: no one light
        explains it), found once per session."""
        if self._cast is False:
            repeat = self.config.hole_fill == "repeat"
            masks, image = self.scene.object_masks(), self.scene.image
            self._cast = fit_cast_shadow(image, masks, reach, rim, repeat=repeat)
        return self._cast

    def whole_shapes(self) -> np.ndarray:
        """(K, H, W) bool each object's estimated whole source shape
        (`occlusion_fit.amodal_estimate` under the objects `in_front` reads over it, or the
        model's completer: `editing.complete`), found once per session."""
        if self._wholes is None:
            labels, k, over = self.scene.labels, len(self.scene.objects), self.in_front()
            if self.completes():
                self._wholes = complete_wholes(self.model.completer, labels, k, over)
            else:
                ellipse, holes = self.config.whole_from_ellipse, self.config.whole_keeps_holes
                self._wholes = np.stack(
                    [amodal_estimate(labels, i, k, over, ellipse, holes) for i in range(k)]
                )
        return self._wholes

    def completes(self) -> bool:
        """Whether the whole shapes come from the model's completer (`whole_from_model` and
        a grid of the side it learned); else from the shape rules."""
        completer = self.model.completer
        return bool(
            self.config.whole_from_model
            and completer is not None
            and self.scene.labels.shape == (completer.side, completer.side)
        )

    def in_front(self) -> np.ndarray:
        """(K, K) bool: [i, j] when object j lies over object i in the source, found once
        per session: from the objects' outlines (`occlusion_fit.hull_cuts`), and for two
        touching objects whose outlines say next to nothing (`occlusion_fit.WEAK_ORDER`),
        from which one the other's fitted shadow darkens (`shadow_fit.shadow_cuts`)."""
        if self._over is None:
            masks = self.scene.object_masks()
            cuts = hull_cuts(masks)
            over = cuts > 0
            unsure = touching(masks) & weakly_ordered(masks, cuts)
            if unsure.any():
                cell = max(self.scene.size) / self.model.latent_size
                cast = self.cast_fit(round(SHADOW_REACH * cell), rim_width(masks.shape[1:]))
                if cast is not None:
                    shade = shadow_cuts(self.scene.image, masks, cast, unsure)
                    read = unsure & (np.abs(shade) >= SHADOW_ORDER)
                    over = np.where(read, shade > 0, over)
                    unsure &= ~read
            self._over, self._unsure = over, unsure
        return self._over

    def unsure(self) -> np.ndarray:
        """(K, K) bool symmetric: touching pairs whose order neither the outlines nor the
        shadows read (`in_front`); the search for uncovered parts looks under either."""
        self.in_front()
        assert self._unsure is not None
        return self._unsure

    def build(
        self, layout: Layout, counter: UNetCounter | None = None
    ) -> tuple[int, torch.Tensor, PasteStart]:
        """The first step, the clean latent and the cut-and-paste start image.

        With `move_shadows` each moved object's shadow is lifted where it was and cast where
        it goes; with `relight` each moved object is brightened or darkened by the light
        around its new place; with `redraw_strength` the start says where the model redraws.

        Returns:
            (start step i, (1, C, h, w) scaled latent of the source with every object moved
            to its region and the holes filled from the surrounding background, the pasted
            image and where each object was pasted, at the source's size).
        """
        cfg = self.config
        k = len(self.scene.objects)
        cell = max(self.scene.size) / self.model.latent_size  # px of one latent cell
        if cfg.placement == "occlusion":
            placements = occlusion_placements(
                self.scene.labels,
                layout.labels,
                k,
                margin=PAINTED_MARGIN * cell,
                scale_snap=cfg.scale_snap,
                painted=not layout.exact,
                wholes=self.whole_shapes() if self.completes() else None,
            )
        else:
            placements = estimate_placements(
                self.scene.labels, layout.labels, k, fit=cfg.placement == "fit"
            )
        if cfg.still_tolerance > 0:
            placements = [snap_still(p, cfg.still_tolerance * cell) for p in placements]
        order = paint_order(self.scene.labels, layout.labels, placements)
        masks = self.scene.object_masks()
        moved = [i for i, p in enumerate(placements) if _moves(p)]
        image, darkening, cast, shadows = self.scene.image, None, None, None
        rim = rim_width(masks.shape[1:])
        if cfg.move_shadows and moved:
            cast, darkening = self.source_shadows(round(SHADOW_REACH * cell), rim)
            image = remove_shadows(image, darkening, moved)
            if cfg.object_shadows and cast is not None:
                went = np.array([i in moved for i in range(k)])
                pairs = self.in_front() & (went[:, None] | went[None, :])
                image = lift_object_shadows(image, cast, masks, pairs)
            shadows = _changed(image, self.scene.image)
        filled = grain = None
        grain_rms = 0.0  # the floor's grain where the fill needs one (`floor_grain_rms`)
        if cfg.hole_fill == "repeat":
            objects = np.asarray(masks.any(axis=0), dtype=bool)
            known = ~grow(objects, rim + 1)
            if darkening is not None:  # a shadow that stays is no pattern to copy
                known &= darkening.sum(axis=0) < SHADOW_FLOOR
            holes = grow(objects, rim)
            filled = repeat_fill(image, holes, known)
            grain_rms = floor_grain_rms(image, known) if cfg.model_grain else 0.0
            if grain_rms > 0:
                grain = holes
        pasted, footprints = paste_edit(image, masks, placements, None, order, filled)
        gains = None
        if cfg.relight and moved:
            background = self.scene.labels == self.scene.background_index
            clearance = round(RELIGHT_CLEARANCE * cell)
            gains = light_gains(self.scene.image, background, masks, footprints, clearance)
            pasted = apply_gains(pasted, footprints, gains)
        if darkening is not None and shadows is not None:
            unshadowed = pasted
            if cast is not None:
                pasted = self._cast_fitted(pasted, cast, footprints, placements, moved, order)
            else:
                pasted = cast_shadows(pasted, darkening, placements, footprints, moved, order)
            shadows |= _changed(pasted, unshadowed)
        redraw = hidden = painted = None
        if cfg.redraw_strength > 0:
            band = round(cfg.redraw_band * cell)
            zones = hidden_zones(
                masks,
                placements,
                layout.labels,
                footprints,
                region_size=cfg.hidden_from_region,
                over=self.in_front(),
                unsure=self.unsure(),
            )  # (K, H, W)
            hidden = np.asarray(zones.any(axis=0), dtype=bool)
            redraw = redraw_mask(self.scene.labels, layout.labels, masks, footprints, band, hidden)
            if cfg.complete_hidden or cfg.hidden_margin is not None:
                regions = None
                if cfg.hidden_from_region:
                    regions = self._inner_regions(layout, footprints, cell)
                parts = hidden_parts(
                    self.whole_shapes(), masks, placements, footprints, order, zones, regions
                )
                if cfg.complete_hidden:
                    pasted = self._paint_parts(pasted, parts, footprints, placements, order, cast)
                    painted = np.asarray(parts.any(axis=0), dtype=bool)
                if cfg.hidden_margin is not None:
                    # Beyond an object's estimated whole shape the zone is background: the
                    # model paints it unguided, and the start's fill stays there.
                    grown = grow(
                        np.asarray(parts.any(axis=0), dtype=bool), round(cfg.hidden_margin * cell)
                    )
                    hidden &= grown
        latent = self._encode(pasted)
        if cfg.refine and cfg.denoise:
            pasted = self._refine(pasted, latent, redraw, footprints, counter)
            latent = self._encode(pasted)
        steps = cfg.steps
        strength = max(cfg.paste_strength, cfg.redraw_strength if redraw is not None else 0.0)
        start = steps - max(1, round(strength * steps))
        paste_start = PasteStart(
            pasted,
            footprints,
            tuple(placements),
            tuple(order),
            redraw=redraw,
            hidden=hidden,
            painted=painted,
            gains=gains,
            shadows=shadows,
            grain=grain,
            grain_rms=grain_rms,
        )
        return start, latent, paste_start

    def _encode(self, pasted: np.ndarray) -> torch.Tensor:
        """(1, C, h, w) the scaled latent of the image ((H, W, 3) uint8), padded square."""
        square, _ = square_pad(pasted, None)
        with torch.no_grad():
            return self.model.encode_image(square).float()

    def _refine(
        self,
        pasted: np.ndarray,
        latent: torch.Tensor,
        redraw: np.ndarray | None,
        footprints: np.ndarray,
        counter: UNetCounter | None,
    ) -> np.ndarray:
        """(H, W, 3) uint8 the start corrected by the model's refiner (`editing.refine`)
        where the edit changed it: the mean of `refine_samples` refined images less the
        start's own VAE round trip, added to the start. `latent`: (1, C, h, w) the start's."""
        cfg, refiner = self.config, self.model.refiner
        assert refiner is not None  # `refine.require_extra_models`, when the session began
        zone = changed_zone(self.scene.image, pasted, redraw)
        cells = torch.from_numpy(self.cells(zone))[None, None].float().to(latent.device)
        noises = [
            seeded_normal(REFINE_SEED + i, latent.shape, latent.device)
            for i in range(cfg.refine_samples)
        ]
        if self._refiner_text is None:  # one prompt per scene: encoded once
            # The refiner learned plain-word prompts: a concept's placeholders are not for it.
            with torch.no_grad(), self.precision.autocast():
                self._refiner_text = self.model.encode_prompts([self.plain_prompt]).float()
        text = self._refiner_text
        with phase("refine"):
            steps = refine_timesteps(cfg.refine_strength, cfg.refine_steps)
            abar = self.sampler.alphas_cumprod
            refined = refine_latents(refiner, abar, latent, cells, text, steps, noises, counter)
            decoded = decode_seeds(self.model, [latent, *refined], cfg.low_memory)
        round_trip, *samples = self.to_source_size(np.stack(decoded))
        where = zone
        if not cfg.refine_objects:
            # A pasted object's own pixels are right but for the light; its outermost pixel
            # (anti-aliased against its old surroundings) is a guess like the rest.
            inner = erode(np.asarray(footprints.any(axis=0), dtype=bool), disk(1))
            where = zone & ~inner
        change = refined_change(samples, round_trip) * where[..., None]
        return np.clip(np.round(pasted + change), 0, 255).astype(np.uint8)

    def _cast_fitted(
        self,
        pasted: np.ndarray,
        cast: CastShadow,
        footprints: np.ndarray,
        placements: Sequence[Placement],
        moved: Sequence[int],
        order: Sequence[int],
    ) -> np.ndarray:
        """(H, W, 3) uint8 the pasted image with the scene's fitted light casting each moved
        object's shadow at its new place, and with `object_shadows` each still object's on
        the moved objects behind it (and with `shadows_on_uncovered` on the filled holes
        the moved objects left)."""
        cfg, masks = self.config, self.scene.object_masks()
        shapes = None
        if cfg.shadow_from_whole:  # (K, H, W): hidden parts cast shadows too
            wholes = self.whole_shapes()
            shapes = np.stack(
                [
                    f | warp_mask(w, p)
                    for f, w, p in zip(footprints, wholes, placements, strict=True)
                ]
            )
        pasted = cast_fitted_shadows(pasted, cast, footprints, moved, order, silhouettes=shapes)
        stay = [i for i in range(len(masks)) if i not in moved]
        if not (cfg.object_shadows and stay):
            return pasted
        onto = np.asarray(footprints[list(moved)].any(axis=0), dtype=bool)
        if cfg.shadows_on_uncovered:
            # The fill of a hole is unshadowed background: a still object's shadow that fell
            # on the object that left falls on it now.
            left = grow(
                np.asarray(masks[list(moved)].any(axis=0), dtype=bool), rim_width(masks.shape[1:])
            )
            onto |= left & ~footprints.any(axis=0)
        return cast_fitted_shadows(pasted, cast, footprints, stay, order, onto, silhouettes=shapes)

    def _paint_parts(
        self,
        pasted: np.ndarray,
        parts: np.ndarray,
        footprints: np.ndarray,
        placements: Sequence[Placement],
        order: Sequence[int],
        cast: CastShadow | None,
    ) -> np.ndarray:
        """(H, W, 3) uint8 the pasted image with each object's hidden part (`hidden_parts`)
        in its object's colour (`hidden_colour`) and, with `shadows_on_uncovered`, shaded by
        the objects over it."""
        cfg, masks = self.config, self.scene.object_masks()
        lit = None
        if cfg.hidden_colour == "lit" and cast is not None:
            still = [not _moves(p) for p in placements]
            lit = unshadowed_pixels(footprints, masks, still, order, cast.darkening, SHADOW_FLOOR)
        pasted = complete_hidden_parts(
            pasted, parts, footprints, lit, cfg.hidden_pattern, cfg.hidden_rim
        )
        shade = cfg.shadows_on_uncovered and cfg.object_shadows
        if shade and cast is not None and parts.any():
            # A part is painted in its lit colour: the objects over it shade it.
            covered = footprints | parts
            onto = np.asarray(parts.any(axis=0), dtype=bool)
            pasted = cast_fitted_shadows(pasted, cast, covered, range(len(masks)), order, onto)
        return pasted

    def _inner_regions(self, layout: Layout, footprints: np.ndarray, cell: float) -> np.ndarray:
        """(K, H, W) bool each target region less the margin a painted one leaves around its
        object: the widest (`PAINTED_MARGIN`), or with `region_margin` "measured" each
        object's own (`redraw.painted_margin`); none for an exact layout."""
        k = len(self.scene.objects)
        widest = 0 if layout.exact else round(PAINTED_MARGIN * cell)
        if self.config.region_margin == "widest" or widest == 0:
            return np.stack([~grow(layout.labels != i, widest) for i in range(k)])
        free = ~np.asarray(footprints.any(axis=0), dtype=bool)
        out = []
        for i in range(k):
            region = layout.labels == i
            margin = painted_margin(region, footprints[i], free, widest)
            out.append(erode(region, disk(margin)))
        return np.stack(out)
