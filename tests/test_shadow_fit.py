"""One light's cast shadows fitted to a scene (`editing/shadow_fit.py`), and an edit that
moves an object keeping the shadow it lifted and cast (not the source's pixels there)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edit_support import fast_config, load_tiny

from layoutedit.backend import get_backend
from layoutedit.bench.cases_v2 import make_cases_v2
from layoutedit.bench.metrics_v2 import hidden_moved, revealed_mask
from layoutedit.editing.paste import paste_edit
from layoutedit.editing.session import EditSession
from layoutedit.editing.shadow_fit import (
    SHADOW_ORDER,
    CastShadow,
    cast_fitted_shadows,
    fit_cast_shadow,
    lift_object_shadows,
    shadow_cuts,
    shift,
)
from layoutedit.scenes.layout_ops import Placement
from layoutedit.scenes.occlusion_fit import WEAK_ORDER, hull_cuts
from layoutedit.scenes.scene import layout_from_labels, scene_from_arrays
from layoutedit.shapes.lighting import Light
from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE, moved, sample_scene
from layoutedit.shapes.world_v2 import render_lit


def _lit(cxs: list[float], light: Light, background: str = "gray") -> Any:
    base = sample_scene(3).objects[0]
    specs = [
        moved(replace(base, shape="circle", pattern="plain", size=12.0), cx, 30.0) for cx in cxs
    ]
    return render_lit(specs, background, 1, light)


def test_shift_moves_by_fractions_of_a_pixel_and_lets_nothing_wrap() -> None:
    a = np.zeros((8, 8))
    a[2, 2] = 1.0
    moved_by = shift(a, 1.5, -1.0)
    assert moved_by[1, 3] == pytest.approx(0.5) and moved_by[1, 4] == pytest.approx(0.5)
    assert moved_by.sum() == pytest.approx(1.0)
    assert shift(a, 7.0, 0.0).sum() == 0.0


def test_the_fit_finds_the_lights_shift_and_strength_from_two_objects() -> None:
    light = Light(angle=200.0, gain=0.0, offset=3.5, softness=1.0, strength=0.5)
    scene = _lit([18.0, 44.0], light)
    fit = fit_cast_shadow(scene.image, scene.masks, band_px=10, rim_px=1)
    assert fit is not None
    want_dx, want_dy = light.shadow_shift
    assert abs(fit.dx - want_dx) <= 0.5 and abs(fit.dy - want_dy) <= 0.5
    assert abs(fit.strength - light.strength) < 0.12
    assert fit.explained > 0.6


def test_the_object_a_shadow_falls_on_reads_as_the_one_behind() -> None:
    # A square beside a disc below and right of it, touching along the square's straight
    # edge (no outline says which is in front); the light from the upper left.
    base = sample_scene(3).objects[0]
    square = moved(replace(base, shape="square", pattern="plain", size=14.0), 26.0, 26.0)
    disc = moved(replace(base, shape="circle", pattern="plain", size=14.0), 34.0, 36.0)
    light = Light(angle=225.0, gain=0.0, offset=3.0, softness=1.0, strength=0.5)
    dx, dy = light.shadow_shift
    fit = CastShadow(dx, dy, light.softness, light.strength, 1.0)
    both = np.ones((2, 2), dtype=bool)
    # Drawn back to front: the square over the disc casts its shadow on it.
    behind = render_lit([disc, square], "gray", 1, light)
    cuts = shadow_cuts(behind.image, np.stack(behind.masks), fit, both)
    assert cuts[0, 1] >= SHADOW_ORDER and cuts[1, 0] == -cuts[0, 1]
    # The disc over the square: the square's shadow lies under the disc, and the disc's
    # falls on the floor: no order read.
    front = render_lit([square, disc], "gray", 1, light)
    cuts = shadow_cuts(front.image, np.stack(front.masks), fit, both)
    assert abs(cuts[0, 1]) < SHADOW_ORDER
    # Pairs not asked about are left at 0.
    assert not shadow_cuts(behind.image, np.stack(behind.masks), fit, ~both).any()


def test_a_scene_without_shadows_gets_no_fit() -> None:
    light = Light(angle=200.0, gain=0.0, offset=3.5, softness=1.0, strength=0.0)
    scene = _lit([18.0, 44.0], light)
    assert fit_cast_shadow(scene.image, scene.masks, band_px=10, rim_px=1) is None


def test_a_fitted_shadow_cast_from_the_new_footprint_matches_the_truths() -> None:
    light = Light(angle=20.0, gain=0.0, offset=3.5, softness=1.0, strength=0.5)
    source, truth = _lit([20.0], light), _lit([44.0], light)
    fit = fit_cast_shadow(source.image, source.masks, band_px=10, rim_px=1)
    assert fit is not None
    clean = _lit([20.0], replace(light, strength=0.0))  # the same, casting nothing
    placement = Placement(20.0, 30.0, 44.0, 30.0, 1.0)
    pasted, footprints = paste_edit(clean.image, clean.masks, [placement], None)
    cast = cast_fitted_shadows(pasted, fit, footprints, [0])
    error_cast = np.abs(cast.astype(float) - truth.image).mean()
    error_none = np.abs(pasted.astype(float) - truth.image).mean()
    assert error_cast < error_none * 0.5


def test_a_shadow_cast_on_an_object_behind_is_lifted_by_the_inverse_of_the_cast() -> None:
    # A back square under a front disc's shadow: cast onto the square only, then lifted.
    fit = CastShadow(dx=3.0, dy=2.0, sigma=1.0, strength=0.5, explained=1.0)
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    back = np.zeros((32, 32), dtype=bool)
    back[4:28, 4:28] = True
    front = np.zeros((32, 32), dtype=bool)
    front[8:16, 8:16] = True
    image[back] = (90, 160, 220)
    image[front] = (30, 30, 30)
    masks = np.stack([back & ~front, front])
    shaded = cast_fitted_shadows(image, fit, masks, [1], (0, 1), onto=masks[0])
    assert (shaded[~masks[0]] == image[~masks[0]]).all()  # only onto the back square
    assert shaded[17, 17].sum() < image[17, 17].sum() - 60  # its core, past the front
    pairs = np.array([[False, True], [False, False]])  # lift the disc's shadow off the square
    lifted = lift_object_shadows(shaded, fit, masks, pairs)
    assert np.abs(lifted.astype(int) - image.astype(int)).max() <= 2  # rounding only
    assert np.array_equal(lift_object_shadows(shaded, fit, masks, pairs & False), shaded)


def test_a_shadow_cast_from_the_whole_shape_covers_what_the_hidden_part_casts() -> None:
    # The front square hides the disc's top; the disc's whole shape casts the longer shadow.
    fit = CastShadow(dx=0.0, dy=-6.0, sigma=0.6, strength=0.5, explained=1.0)
    image = np.full((40, 40, 3), 200, dtype=np.uint8)
    yy, xx = np.mgrid[:40, :40]
    disc = (xx - 20) ** 2 + (yy - 22) ** 2 <= 36
    square = np.zeros((40, 40), dtype=bool)
    square[12:20, 14:26] = True
    footprints = np.stack([disc & ~square, square])
    plain = cast_fitted_shadows(image, fit, footprints, [0], (0, 1))
    whole = cast_fitted_shadows(
        image, fit, footprints, [0], (0, 1), silhouettes=np.stack([disc, square])
    )
    assert whole[11, 20].sum() < plain[11, 20].sum() - 100  # above the square: the top's
    assert (whole[square] == image[square]).all()  # the square in front stays lit


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    return load_tiny(tiny_model_dir)


def _scene_and_layout(case: Any) -> tuple[Any, Any]:
    """A world v2 case's source as a `Scene` and its target layout."""
    k = case.n_objects
    scene = scene_from_arrays(
        case.source.image, case.source_labels, case.names, MASK_PALETTE[:k], MASK_BACKGROUND
    )
    return scene, layout_from_labels(case.layout, scene)


def _no_model(**changes: Any) -> Any:
    """The v2 preset's paste start with no denoising step, with `changes`."""
    return fast_config(
        init="paste",
        denoise=False,
        model_pixels="hidden",
        placement="occlusion",
        hole_fill="repeat",
        **changes,
    )


def test_the_edit_keeps_the_moved_shadow_instead_of_the_sources_pixels(model: Any) -> None:
    case = make_cases_v2(4, seed=2000)[0]  # a triangle moves down a tiled floor
    k = case.n_objects
    scene, layout = _scene_and_layout(case)

    def edit(move_shadows: bool) -> np.ndarray:
        cfg = _no_model(
            redraw_strength=0.8,
            redraw_band=0.0,  # the preset's: no band around a moved object is redrawn
            background_composite=True,
            composite_feather=0.0,
            move_shadows=move_shadows,
        )
        session = EditSession(model, scene, cfg, get_backend("cpu"))
        return session.edit(layout).candidates[0].image.astype(float)

    source, truth = case.source, case.truth
    assert source.shadows is not None and truth.shadows is not None
    objects = (case.source_labels < k) | (case.target_labels < k)
    new = (truth.shadows.sum(axis=0) > 0.1) & (source.shadows.sum(axis=0) < 0.02) & ~objects
    old = (source.shadows.sum(axis=0) > 0.1) & (truth.shadows.sum(axis=0) < 0.02) & ~objects
    assert new.sum() > 20 and old.sum() > 20
    moved_shadows, kept = edit(True), edit(False)
    for where in (new, old):
        error_moved = np.abs(moved_shadows[where] - truth.image[where]).mean()
        error_kept = np.abs(kept[where] - truth.image[where]).mean()
        assert error_moved < error_kept * 0.5


def test_a_still_objects_shadow_falls_on_the_hole_a_moved_object_left(model: Any) -> None:
    # World v2 dev scene 7001009: a still object's shadow lay on an object that moves away;
    # the truth has that shadow on the background the move uncovers.
    case = make_cases_v2(8, seed=2001)[14]
    k = case.n_objects
    scene, layout = _scene_and_layout(case)

    def start(on_uncovered: bool) -> np.ndarray:
        cfg = _no_model(
            redraw_strength=0.6,
            move_shadows=True,
            object_shadows=True,
            shadows_on_uncovered=on_uncovered,
        )
        session = EditSession(model, scene, cfg, get_backend("cpu"))
        return session._paste_start(layout)[2].image.astype(float)

    source, truth = case.source, case.truth
    assert truth.shadows is not None
    went = [i for i in range(k) if source.objects[i] != truth.objects[i]]
    stay = [i for i in range(k) if i not in went]
    hole = np.isin(case.source_labels, went) & (case.target_labels == k)
    shaded = hole & (truth.shadows[stay].sum(axis=0) > 0.1)
    assert shaded.sum() > 50
    error_on = np.abs(start(True)[shaded] - truth.image[shaded]).mean()
    error_off = np.abs(start(False)[shaded] - truth.image[shaded]).mean()
    assert error_on < error_off * 0.5


def test_a_part_cut_off_along_a_straight_edge_comes_back_when_the_shadow_orders_the_pair(
    model: Any,
) -> None:
    # World v2 case 6000002 (seed 1000): a square's straight edge hid a triangle's apex, and
    # a few anti-aliased pixels in the square's hull read the triangle as in front. The
    # square's shadow on the triangle says otherwise, so the square's move uncovers the apex.
    case = make_cases_v2(8, seed=1000)[4]
    scene, layout = _scene_and_layout(case)
    masks = scene.object_masks()
    assert abs(hull_cuts(masks)[0, 1]) < WEAK_ORDER
    cfg = _no_model(
        redraw_strength=0.6,
        complete_hidden=True,
        hidden_from_region=True,
        hidden_margin=0.5,
        region_margin="measured",
    )
    session = EditSession(model, scene, cfg, get_backend("cpu"))
    over = session.starts.in_front()
    assert over[0, 1] and not over[1, 0]  # the square (1) over the triangle (0)
    assert not session.starts.unsure().any()
    start = session.start_image(layout)
    assert case.source.amodal is not None
    hidden = hidden_moved(case.source.amodal, case.source.masks, case.placements)
    revealed = revealed_mask(hidden, case.truth.masks)
    assert start.hidden is not None and revealed.sum() > 20
    assert (start.hidden & revealed).sum() >= 0.6 * revealed.sum()
    # The part painted in the triangle's colour (what the corrector may only shade) is the
    # apex, inside the zone.
    assert start.painted is not None and not (start.painted & ~start.hidden).any()
    assert (start.painted & revealed).sum() >= 0.5 * revealed.sum()
