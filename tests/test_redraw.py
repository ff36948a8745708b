"""What cut-and-paste gets wrong, redrawn: the redraw mask, the differential start, the
re-lighting of a moved object and its shadow moved with it (pure functions, world v2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

import layoutedit.scenes.occlusion_fit as occlusion_fit
from layoutedit.editing.compositing import match_colours
from layoutedit.editing.paste import grow, paste_edit
from layoutedit.editing.redraw import (
    RegionalStart,
    cells_touched,
    complete_hidden_parts,
    first_steps,
    hidden_parts,
    hidden_zones,
    painted_margin,
    redraw_mask,
    unshadowed_pixels,
)
from layoutedit.editing.relight import apply_gains, light_gains
from layoutedit.editing.shadows import cast_shadows, remove_shadows, shadow_darkening
from layoutedit.scenes.layout_ops import Placement
from layoutedit.scenes.occlusion_fit import amodal_estimate, hull_cuts, in_front, weakly_ordered
from layoutedit.shapes.lighting import Light
from layoutedit.shapes.world import moved, sample_scene
from layoutedit.shapes.world_v2 import render_lit


def _disk(cx: int, cy: int, r: int, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_the_redraw_mask_holds_the_hole_and_the_bands_but_not_region_margins() -> None:
    a_src, a_dst = _disk(16, 16, 6), _disk(44, 16, 6)
    b = _disk(20, 44, 6)  # stays put
    source_masks, footprints = np.stack([a_src, b]), np.stack([a_dst, b])
    labels = np.full((64, 64), 2, dtype=np.int16)
    labels[a_src], labels[b] = 0, 1
    layout = np.full((64, 64), 2, dtype=np.int16)
    layout[_disk(44, 16, 8)] = 0  # a rough region, larger than the object
    layout[b] = 1
    layout[_disk(20, 52, 3)] = 1  # part of b's region its pasted pixels do not cover
    out = redraw_mask(labels, layout, source_masks, footprints, band_px=3)
    assert out[16, 16] and out[16, 16 - 8]  # the hole, and the band around it
    assert out[16, 44 + 8] and not out[16, 44]  # the band at the new place; never the object
    assert not out[54, 20]  # a region's margin that nothing hid is not redrawn
    assert not out[44, 20 - 9] and not out[32, 32]  # b did not move: no band; far: nothing
    assert not (out & footprints.any(axis=0)).any()


def test_a_hidden_zone_is_where_the_front_object_covered_the_back_one_after_the_move() -> None:
    back_whole, front = _disk(24, 32, 8), _disk(34, 32, 6)
    back = back_whole & ~front
    masks = np.stack([back, front])
    stay = Placement(24.0, 32.0, 24.0, 32.0, 1.0)
    away = Placement(34.0, 32.0, 34.0, 10.0, 1.0)
    footprints = np.stack([back, _disk(34, 10, 6)])
    layout = np.full((64, 64), 2, dtype=np.int16)
    layout[_disk(24, 32, 10)] = 0
    layout[_disk(34, 10, 7)] = 1
    zones = hidden_zones(masks, [stay, away], layout, footprints)
    assert not zones[1].any()  # the front disc hid nothing
    zone = zones.any(axis=0)
    revealed = back_whole & ~back
    assert (zone & revealed).sum() >= 0.8 * revealed.sum()  # the part that shows now
    assert not (zone & footprints.any(axis=0)).any()
    assert not zone[:, :20].any()  # nothing hid the back object's far side


def test_a_hidden_part_that_now_shows_starts_in_its_object_colour() -> None:
    # The back disc stays, the front one moves away: the bite it took out shows now.
    back_whole, front = _disk(24, 32, 8), _disk(34, 32, 6)
    back = back_whole & ~front
    labels = np.full((64, 64), 2, dtype=np.int16)
    labels[back], labels[front] = 0, 1
    stay = Placement(24.0, 32.0, 24.0, 32.0, 1.0)
    away = Placement(34.0, 32.0, 34.0, 10.0, 1.0)
    image = np.full((64, 64, 3), 200, dtype=np.uint8)  # background
    image[back] = (40, 90, 160)
    image[_disk(34, 10, 6)] = (220, 60, 30)  # the front disc pasted at its new place
    footprints = np.stack([back, _disk(34, 10, 6)])
    layout = np.full((64, 64), 2, dtype=np.int16)
    layout[_disk(24, 32, 10)] = 0
    layout[_disk(34, 10, 7)] = 1
    zones = hidden_zones(np.stack([back, front]), [stay, away], layout, footprints)
    zone = zones.any(axis=0)
    wholes = np.stack([amodal_estimate(labels, i, 2) for i in range(2)])
    visible = np.stack([back, front])
    parts = hidden_parts(wholes, visible, [stay, away], footprints, (0, 1), zones)
    assert not parts[1].any()  # the front disc hid nothing
    out = complete_hidden_parts(image, parts, footprints)
    bite = back_whole & ~back & zone
    # The convex completion holds most of the bite (its far rim lies beyond the hull).
    painted = bite & (out == (40, 90, 160)).all(axis=-1)
    assert painted.sum() >= 0.6 * bite.sum()
    assert (out[~zone] == image[~zone]).all()  # nothing outside the zone changes
    assert (out[zone & ~back_whole] == 200).all()  # the zone beyond the object stays


def test_cells_and_first_steps() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[5, 9] = True
    cells = cells_touched(mask, 16)
    assert cells.shape == (16, 16) and cells.sum() == 1 and cells[1, 2]
    steps = first_steps(np.array([[0.4, 0.8], [1.0, 0.01]]), 25)
    assert steps.tolist() == [[15, 5], [0, 24]]


def test_a_waiting_cell_follows_the_noised_start_and_a_running_one_is_left_alone() -> None:
    sampler = DDIMScheduler(num_train_timesteps=1000)
    sampler.set_timesteps(10)
    clean, noise = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    first = torch.full((1, 1, 4, 4), 2, dtype=torch.int64)
    first[..., 0, 0] = 6  # this cell starts late
    regional = RegionalStart(first=first, clean=clean, noise=noise, sampler=sampler)
    latents = torch.zeros(1, 4, 4, 4)
    out = regional.apply(latents, 3)
    t = sampler.timesteps[3:4]
    expected = sampler.add_noise(clean, noise, t)  # type: ignore[arg-type]
    torch.testing.assert_close(out[..., 0, 0], expected[..., 0, 0])
    assert not out[..., 1:, :].any() and not out[..., 0, 1:].any()
    assert torch.equal(regional.apply(latents, 6), latents)  # every cell running


def _lit_scene(cx: float, light: Light) -> tuple[np.ndarray, np.ndarray]:
    spec = replace(sample_scene(3).objects[0], shape="circle", pattern="plain", size=14.0)
    scene = render_lit([moved(spec, cx, 32.0)], "gray", 1, light)
    return scene.image, scene.masks


def test_an_object_moved_towards_the_light_is_brightened_by_about_the_light_ratio() -> None:
    light = Light(angle=0.0, gain=0.25, offset=0.1, softness=0.5, strength=0.0)
    image, masks = _lit_scene(16.0, light)
    truth, truth_masks = _lit_scene(48.0, light)
    placement = Placement(16.0, 32.0, 48.0, 32.0, 1.0)
    pasted, footprints = paste_edit(image, masks, [placement], None)
    gains = light_gains(image, ~masks[0], masks, footprints, clearance=4)
    want = truth[truth_masks[0]].mean() / image[masks[0]].mean()
    assert abs(gains[0] - want) < 0.1 * want and gains[0] > 1.1
    relit = apply_gains(pasted, footprints, gains)
    before = np.abs(pasted[truth_masks[0]].astype(float) - truth[truth_masks[0]]).mean()
    after = np.abs(relit[truth_masks[0]].astype(float) - truth[truth_masks[0]]).mean()
    assert after < before / 2
    matched = match_colours(relit, image, footprints, masks, gains)
    assert abs(matched[footprints[0]].mean() - relit[footprints[0]].mean()) < 3


def test_a_dark_patch_of_background_beside_the_new_place_is_not_read_as_shade() -> None:
    # Flat light; the background is darker (paint, not light) right around the new place.
    image = np.full((64, 64, 3), 150, dtype=np.uint8)
    image[36:60, 36:60] = 60
    masks = np.zeros((1, 64, 64), dtype=bool)
    masks[0, 8:16, 8:16] = True
    image[masks[0]] = (200, 40, 40)
    footprints = np.zeros_like(masks)
    footprints[0, 44:52, 44:52] = True
    gains = light_gains(image, ~masks[0], masks, footprints, clearance=4)
    assert abs(gains[0] - 1.0) < 0.05


def test_a_shadow_is_lifted_where_the_object_left_and_cast_where_it_went() -> None:
    light = Light(angle=20.0, gain=0.0, offset=3.5, softness=1.0, strength=0.5)
    image, masks = _lit_scene(20.0, light)
    truth, _ = _lit_scene(44.0, light)
    placement = Placement(20.0, 32.0, 44.0, 32.0, 1.0)
    darkening = shadow_darkening(image, masks, band_px=10, rim_px=1)
    assert darkening[0].max() > 0.3  # found
    assert darkening[0][:, 25:].sum() < darkening[0][:, :20].sum()  # away from the light
    plain, footprints = paste_edit(image, masks, [placement], None)
    lifted = remove_shadows(image, darkening, [0])
    start, _ = paste_edit(lifted, masks, [placement], None)
    start = cast_shadows(start, darkening, [placement], footprints, [0])
    err_plain = np.abs(plain.astype(float) - truth).mean()
    err_start = np.abs(start.astype(float) - truth).mean()
    assert err_start < err_plain * 0.6


def test_a_back_disc_shown_as_a_sliver_gets_its_uncovered_part_from_the_painted_regions() -> None:
    # A front disc hides all of a back disc (rows 20-40) but a crescent at its bottom, then
    # moves far away. The layout paints the back disc's region, and a third object's region
    # over the disc's top.
    disc = _disk(30, 30, 10)
    front = _disk(30, 25, 11)
    visible = disc & ~front
    gone = np.zeros((64, 64), dtype=bool)
    gone[50:60, 50:60] = True
    third = np.zeros((64, 64), dtype=bool)
    third[4:8, 4:8] = True  # stays, small, far from the disc
    source_masks = np.stack([visible, front, third])
    placements = [
        Placement(30.0, 36.0, 30.0, 36.0, 1.0),
        Placement(30.0, 22.0, 55.0, 55.0, 1.0),
        Placement(5.5, 5.5, 5.5, 5.5, 1.0),
    ]
    footprints = np.stack([visible, gone, third])
    layout = np.full((64, 64), 3, dtype=np.int16)
    layout[_disk(30, 30, 12)] = 0
    layout[:28, 10:50] = 2  # painted over the disc's top
    layout[third] = 2
    layout[gone] = 1
    own = hidden_zones(source_masks, placements, layout, footprints).any(axis=0)
    zones = hidden_zones(source_masks, placements, layout, footprints, region_size=True)
    wide = zones.any(axis=0)
    uncovered = disc & ~visible
    in_own_region, painted_over = uncovered & (layout == 0), uncovered & (layout == 2)
    assert not (own & painted_over).any()  # only the disc's own region
    assert (wide & painted_over).any()
    assert (wide & in_own_region).sum() > (own & in_own_region).sum()  # the region's size
    assert not (wide & (layout == 3)).any()  # never outside every painted region
    labels = np.full((64, 64), 3, dtype=np.int16)
    labels[visible], labels[front], labels[third] = 0, 1, 2
    wholes = np.stack([amodal_estimate(labels, i, 3) for i in range(3)])
    regions = np.stack([layout == i for i in range(3)])
    plain = hidden_parts(wholes, source_masks, placements, footprints, (0, 1, 2), zones)
    read = hidden_parts(wholes, source_masks, placements, footprints, (0, 1, 2), zones, regions)
    assert (read[0] & uncovered).sum() > (plain[0] & uncovered).sum()
    assert not read[0][~wide].any()


def test_a_hidden_part_takes_the_colour_of_its_object_out_of_the_front_objects_shadow() -> None:
    # A still back square, its left half in the shadow of the front object (darker), a
    # hidden part to paint. The shadow falls where the front object's coverage, shifted,
    # lands: here a stand-in that darkens the columns left of 16 by 0.5.
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    back = np.zeros((32, 32), dtype=bool)
    back[8:20, 8:24] = True
    image[back] = (100, 150, 200)
    shaded = back & (np.arange(32)[None, :] < 16)
    image[shaded] = (50, 75, 100)
    front = np.zeros((32, 32), dtype=bool)
    front[8:20, 0:8] = True
    image[front] = (10, 10, 10)
    footprints = np.stack([back, front])
    masks = footprints.copy()

    def shade(coverage: np.ndarray) -> np.ndarray:
        assert coverage[10, 4] and not coverage[10, 12]  # the front object's, not the back's
        return np.where(np.arange(32)[None, :] < 16, 0.5, 0.0) * np.ones((32, 1))

    lit = unshadowed_pixels(footprints, masks, [True, True], (0, 1), shade, 0.02)
    assert np.array_equal(lit[0], back & ~shaded) and np.array_equal(lit[1], front)
    parts = np.zeros((2, 32, 32), dtype=bool)
    parts[0, 20:24, 8:24] = True
    plain = complete_hidden_parts(image, parts, footprints)
    out = complete_hidden_parts(image, parts, footprints, lit)
    assert tuple(out[22, 12]) == (100, 150, 200)  # the lit colour
    assert tuple(plain[22, 12]) == (75, 112, 150)  # the mean of lit and shaded
    # A moved object's pixels are all kept: its source shadows moved with it.
    moved = unshadowed_pixels(footprints, masks, [False, True], (0, 1), shade, 0.02)
    assert np.array_equal(moved[0], back)


def test_objects_cut_along_a_straight_edge_may_hide_each_other_when_the_region_says_so() -> None:
    # A back disc cut by a square's straight bottom edge: neither hull cuts into the other,
    # so only the region-reading search looks under the square. The square then moves away
    # and the layout paints the whole disc where it stays.
    disc = _disk(30, 36, 9)
    square = np.zeros((64, 64), dtype=bool)
    square[18:34, 20:40] = True
    visible = disc & ~square
    source_masks = np.stack([visible, square])
    assert not in_front(source_masks).any()
    placements = [Placement(30.0, 40.0, 30.0, 40.0, 1.0), Placement(30.0, 26.0, 30.0, 6.0, 1.0)]
    moved_square = np.zeros((64, 64), dtype=bool)
    moved_square[0:14, 20:40] = True
    footprints = np.stack([visible, moved_square])
    layout = np.full((64, 64), 2, dtype=np.int16)
    layout[_disk(30, 36, 11)] = 0
    layout[0:15, 19:41] = 1
    plain = hidden_zones(source_masks, placements, layout, footprints)
    read = hidden_zones(source_masks, placements, layout, footprints, region_size=True)
    over = in_front(source_masks)  # a caller's own ordering: used as is, left unchanged
    given = hidden_zones(source_masks, placements, layout, footprints, True, over)
    assert np.array_equal(given, read) and not over.any()
    uncovered = disc & square
    assert not plain.any()
    assert (read[0] & uncovered).sum() >= 0.5 * uncovered.sum()
    # Which part shows is the regions' to say: the disc's, not the square's (it is whole).
    labels = np.full((64, 64), 2, dtype=np.int16)
    labels[visible], labels[square] = 0, 1
    wholes = np.stack([amodal_estimate(labels, i, 2) for i in range(2)])
    regions = np.stack([~grow(layout != i, 1) for i in range(2)])  # less a 1 px margin
    parts = hidden_parts(wholes, source_masks, placements, footprints, (0, 1), read, regions)
    assert (parts[0] & uncovered).sum() >= 0.5 * uncovered.sum() and not parts[1].any()


def test_a_weak_hull_order_lets_the_region_look_under_either_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The disc behind the square's straight edge, one disc pixel read as the square's (an
    # anti-aliased edge): the square's hull now holds a few disc pixels, which reads the
    # disc as lying over the square. A difference that small says nothing; the region
    # search looks under the square for the disc all the same.
    disc = _disk(30, 36, 9)
    square = np.zeros((64, 64), dtype=bool)
    square[18:34, 20:40] = True
    visible = disc & ~square
    visible[34, 30], square[34, 30] = False, True
    source_masks = np.stack([visible, square])
    cut = int(hull_cuts(source_masks)[1, 0])  # > 0: the disc cuts into the square
    assert cut > 0 and hull_cuts(source_masks)[0, 1] == -cut
    assert in_front(source_masks)[1, 0] and not in_front(source_masks)[0, 1]
    placements = [Placement(30.0, 40.0, 30.0, 40.0, 1.0), Placement(30.0, 26.0, 30.0, 6.0, 1.0)]
    moved_square = np.zeros((64, 64), dtype=bool)
    moved_square[0:14, 20:40] = True
    moved_square[14, 30] = True
    footprints = np.stack([visible, moved_square])
    layout = np.full((64, 64), 2, dtype=np.int16)
    layout[_disk(30, 36, 11)] = 0
    layout[0:16, 19:41] = 1
    uncovered = disc & square
    monkeypatch.setattr(occlusion_fit, "WEAK_ORDER", cut)  # the (wrong) order counts
    assert not weakly_ordered(source_masks).any()
    ordered = hidden_zones(source_masks, placements, layout, footprints, region_size=True)
    monkeypatch.setattr(occlusion_fit, "WEAK_ORDER", cut + 1)
    weak = weakly_ordered(source_masks)
    assert weak[0, 1] and weak[1, 0] and not weak.diagonal().any()
    read = hidden_zones(source_masks, placements, layout, footprints, region_size=True)
    assert (ordered[0] & uncovered).sum() < 0.1 * uncovered.sum()
    assert (read[0] & uncovered).sum() >= 0.5 * uncovered.sum()


def test_a_region_fills_only_its_own_objects_hidden_part() -> None:
    # Object 1's region claims pixels of the zone where object 0's part shows (a region
    # fills its object's hollows); only object 0 may take them.
    zones = np.zeros((2, 16, 16), dtype=bool)
    zones[0, 4:8, 4:8] = True
    regions = np.zeros((2, 16, 16), dtype=bool)
    regions[0, 2:10, 2:10] = True
    regions[1, 0:16, 0:8] = True
    footprints = np.zeros((2, 16, 16), dtype=bool)
    footprints[0, 8:12, 4:8] = footprints[1, 0:2, 0:8] = True
    source = footprints.copy()
    wholes = source.copy()
    still = [Placement(0.0, 0.0, 0.0, 0.0, 1.0)] * 2
    parts = hidden_parts(wholes, source, still, footprints, (0, 1), zones, regions)
    assert parts[0].sum() == 16 and not parts[1].any()


def test_the_painted_margin_is_read_where_the_object_meets_free_pixels() -> None:
    obj = _disk(32, 32, 8)
    tight, loose = _disk(32, 32, 10), _disk(32, 32, 13)
    free = ~obj
    assert painted_margin(tight, obj, free, cap=5) == 2
    assert painted_margin(loose, obj, free, cap=5) == 5  # capped
    assert painted_margin(obj, obj, free, cap=5) == 0
    # An edge that meets another object's pixels says nothing: with none free, the cap.
    assert painted_margin(tight, obj, np.zeros_like(obj), cap=4) == 4


def test_the_object_that_cuts_into_another_lies_over_it() -> None:
    back_whole, front = _disk(24, 32, 8), _disk(34, 32, 6)
    far = _disk(54, 54, 4)
    over = in_front(np.stack([back_whole & ~front, front, far]))
    assert over.tolist() == [[False, True, False], [False, False, False], [False, False, False]]


def test_a_hidden_part_of_a_striped_object_continues_its_stripes() -> None:
    yy, xx = np.mgrid[:64, :64]
    whole = _disk(30, 32, 16)
    stripes = ((xx + yy) / 3.0 % 2.0) < 1.0
    light = 0.8 + 0.4 * xx / 64.0  # the scene's light rises to the right
    truth = np.where(stripes, 200.0, 130.0)[..., None] * light[..., None] * np.ones(3)
    truth = np.where(whole[..., None], truth, 90.0)
    image = np.clip(np.rint(truth), 0, 255).astype(np.uint8)
    part = whole & (xx >= 38)  # what a front object hid
    image[part] = 90
    footprints = (whole & ~part)[None]
    parts = part[None]
    flat = complete_hidden_parts(image, parts, footprints)
    out = complete_hidden_parts(image, parts, footprints, pattern=True)

    def error(a: np.ndarray) -> float:
        return float(np.abs(a[part].astype(float) - truth[part]).mean())

    assert error(out) < 0.3 * error(flat)
    assert (out[~part] == image[~part]).all()  # nothing outside the part changes
    # A plain object has no repeat: its part keeps the flat colour.
    plain = np.where(whole[..., None], 160, 90).repeat(3, axis=-1).astype(np.uint8)
    plain[part] = 90
    same = complete_hidden_parts(plain, parts, footprints, pattern=True)
    assert (same[part] == 160).all()


def test_the_rim_a_front_object_left_on_a_completed_part_is_repainted() -> None:
    xx = np.mgrid[:64, :64][1]
    whole = _disk(30, 32, 12)
    part = whole & (xx >= 34)  # what a front object hid
    visible = whole & ~part
    cut = visible & (xx == 33)  # its visible pixels along the cut: half the front's colour
    image = np.full((64, 64, 3), 90, dtype=np.uint8)
    image[visible] = (230, 150, 40)
    image[cut] = (130, 200, 140)
    footprints, parts = visible[None], part[None]
    kept = complete_hidden_parts(image, parts, footprints)
    out = complete_hidden_parts(image, parts, footprints, rim=True)
    assert (kept[cut] == (130, 200, 140)).all()
    assert (out[part | cut] == (230, 150, 40)).all()  # the colour of the rest, not the mix
    assert (out[visible & ~cut] == image[visible & ~cut]).all()
