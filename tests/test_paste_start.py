"""The cut-and-paste start: hole filling and where each object goes in a layout."""

from __future__ import annotations

import numpy as np

from layoutedit.bench.cases import make_cases
from layoutedit.editing.paste import fill_holes, paste_edit
from layoutedit.scenes.layout_ops import Placement, estimate_placements, paint_order, warp_mask


def test_fill_holes_continues_a_gradient_through_a_hole() -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    holes = np.zeros((64, 64), dtype=bool)
    holes[20:40, 20:40] = True
    damaged = image.copy()
    damaged[holes] = 255
    filled = fill_holes(damaged, holes)
    assert np.abs(filled[..., 0] - image[..., 0]).max() < 4.0  # the flat mean would be ~60 off
    assert np.array_equal(filled[~holes], image[~holes].astype(np.float64))


def test_an_exact_moved_and_scaled_mask_gives_back_its_placement() -> None:
    case = make_cases(1, seed=0)[0]
    labels = case.source_labels
    k_bg = case.n_objects
    src = labels == 0
    ys, xs = np.nonzero(src)
    truth = Placement(xs.mean() + 0.5, ys.mean() + 0.5, xs.mean() + 3.5, ys.mean() + 2.5, 1.2)
    layout = np.full_like(labels, k_bg)
    layout[warp_mask(src, truth)] = 0
    for k in range(1, case.n_objects):
        layout[labels == k] = k
    found = estimate_placements(labels, layout, case.n_objects)[0]
    assert abs(found.scale - 1.2) < 0.05
    assert abs(found.dst_cx - truth.dst_cx) < 0.6 and abs(found.dst_cy - truth.dst_cy) < 0.6


def test_identity_layout_keeps_every_object_in_place() -> None:
    case = make_cases(1, seed=0)[0]
    for p in estimate_placements(case.source_labels, case.source_labels, case.n_objects):
        assert p.scale == 1.0 and (p.src_cx, p.src_cy) == (p.dst_cx, p.dst_cy)


def test_painted_regions_give_scales_near_the_truth() -> None:
    ratios = []
    for case in make_cases(12, seed=0, layouts_per_scene=2):
        found = estimate_placements(case.source_labels, case.layout, case.n_objects)
        ratios += [f.scale / t.scale for f, t in zip(found, case.placements, strict=True)]
    assert 0.9 < float(np.median(ratios)) < 1.12


def test_the_layout_decides_which_of_two_overlapping_objects_is_in_front() -> None:
    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    labels = np.full((32, 32), 2, dtype=np.int16)  # K = 2: background
    labels[4:12, 4:12], labels[20:28, 20:28] = 0, 1
    image[labels == 0], image[labels == 1] = (200, 0, 0), (0, 0, 200)
    masks = np.stack([labels == 0, labels == 1])
    # Both move to overlap in the middle: 0 to (14, 14), 1 to (18, 18).
    placements = [Placement(8, 8, 14, 14, 1.0), Placement(24, 24, 18, 18, 1.0)]
    overlap = warp_mask(masks[0], placements[0]) & warp_mask(masks[1], placements[1])
    assert overlap.any()
    for front in (0, 1):
        layout = np.full((32, 32), 2, dtype=np.int16)
        layout[warp_mask(masks[1 - front], placements[1 - front])] = 1 - front
        layout[warp_mask(masks[front], placements[front])] = front  # drawn last: in front
        order = paint_order(labels, layout, placements)
        assert order[-1] == front
        pasted, footprints = paste_edit(image, masks, placements, (128, 128, 128), order)
        assert footprints[front][overlap].all() and not footprints[1 - front][overlap].any()
        assert (pasted[overlap] == image[labels == front][0]).all()


def test_an_object_moved_half_out_of_frame_or_scaled_lands_whole_where_it_can() -> None:
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    masks = np.zeros((1, 40, 40), dtype=bool)
    masks[0, 10:20, 10:20] = True
    image[masks[0]] = (200, 10, 10)
    centre = 15.0
    for dst_x, scale, landed in ((40.0, 1.0, 5 * 10), (20.0, 2.0, 20 * 20), (-6.0, 1.0, 0)):
        p = Placement(centre, centre, dst_x, centre, scale)
        out, pasted = paste_edit(image, masks, [p], (0, 0, 0))
        assert int(pasted[0].sum()) == landed, (dst_x, scale)
        assert (out[pasted[0]] == (200, 10, 10)).all()
