"""The colour segmenter, validated as docs/benchmark.md asks: IoU >= 0.9 per object on
source images and on cut-and-paste renderings, over several world seeds."""

from __future__ import annotations

import numpy as np
import pytest

from layoutedit.bench.cases import make_cases
from layoutedit.bench.metrics import iou
from layoutedit.editing.paste import background_mean, paste_edit
from layoutedit.scenes.colour_segment import fit_colour_model, kmeans, segment
from layoutedit.shapes.world import sample_scene


@pytest.mark.parametrize("seed", [3, 11, 27, 40, 58, 71])
def test_segmenter_finds_objects_in_sources(seed: int) -> None:
    scene = sample_scene(seed, 2 + seed % 2)
    model = fit_colour_model(scene.image, scene.labels(), len(scene.objects))
    found = segment(scene.image, model)
    for f, m in zip(found, scene.masks, strict=True):
        assert iou(f, m) >= 0.9


@pytest.mark.parametrize("seed", [0, 3])
def test_segmenter_on_paste_renderings_and_truth(seed: int) -> None:
    for case in make_cases(2, seed=seed, layouts_per_scene=2):
        model = fit_colour_model(case.source.image, case.source_labels, case.n_objects)
        fill = background_mean(case.source.image, case.source_labels, case.n_objects)
        image, pasted = paste_edit(case.source.image, case.source.masks, case.placements, fill)
        for f, m in zip(segment(image, model), pasted, strict=True):
            assert iou(f, m) >= 0.9
        # The re-rendered ground truth itself is found too.
        for f, m in zip(segment(case.truth.image, model), case.target_masks, strict=True):
            assert iou(f, m) >= 0.9


def test_missing_object_and_foreign_colour_are_not_found() -> None:
    scene = sample_scene(5, 2)
    labels = scene.labels()
    model = fit_colour_model(scene.image, labels, 2)
    erased = scene.image.copy()
    erased[scene.masks[0]] = background_mean(scene.image, labels, 2).round().astype(np.uint8)
    found = segment(erased, model)
    assert found[0].sum() <= 3  # at most a faint anti-aliased rim is left
    assert iou(found[1], scene.masks[1]) >= 0.9
    # A colour unlike any object or the background belongs to nobody.
    odd = np.zeros_like(scene.image)
    odd[...] = (255, 0, 255) if scene.objects[0].colour_name != "pink" else (0, 255, 0)
    dists = [np.linalg.norm(p - odd[0, 0], axis=1).min() for p in model.object_prototypes]
    if min(dists) > 2 * model.threshold:
        assert not segment(odd, model).any()


def test_kmeans_is_deterministic_and_separates_two_colours() -> None:
    points = np.array([[0, 0, 0]] * 5 + [[200, 10, 10]] * 3, dtype=float)
    centres = kmeans(points, 2)
    assert np.array_equal(centres, kmeans(points, 2))
    assert sorted(map(tuple, centres.round())) == [(0, 0, 0), (200, 10, 10)]
    assert len(kmeans(points[:1], 4)) == 1
