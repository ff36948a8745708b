"""The quality gate's presence check, validated on images whose answer is known."""

from __future__ import annotations

import numpy as np

from layoutedit.shapes.evaluate import best_shape, presence
from layoutedit.shapes.world import ShapeSpec, sample_scene, shape_coverage


def test_presence_finds_the_objects_of_rendered_scenes() -> None:
    found = []
    for seed in range(300, 320):
        scene = sample_scene(seed)
        found += presence(scene.image, scene).colour_and_shape
    # Striped objects' second tone can take another colour name, so not quite all.
    assert np.mean(found) >= 0.85


def test_presence_finds_nothing_on_an_empty_background() -> None:
    scene = sample_scene(301)
    empty = np.broadcast_to(scene.image[0, 0], scene.image.shape).copy()
    assert not any(presence(empty, scene).colour)


def test_best_shape_names_each_shape() -> None:
    for shape in ("circle", "square", "triangle", "star", "heart", "ring"):
        spec = ShapeSpec(shape, (0, 0, 0), "black", "plain", 30.0, 33.0, 26.0)
        assert best_shape(shape_coverage(spec) >= 0.5)[0] == shape
