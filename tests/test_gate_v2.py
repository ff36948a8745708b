"""World v2's gate figures judge true scenes as they are: shadows away from the light,
textured backgrounds; an image with its shadows or texture taken away scores lower."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from layoutedit.shapes.gate_v2 import gradient_energy, light_direction, shadow_sides
from layoutedit.shapes.lighting import Light
from layoutedit.shapes.textures import render_structured
from layoutedit.shapes.world import moved, sample_scene
from layoutedit.shapes.world_v2 import render_lit


def _scene(strength: float, angle: float = 30.0):  # type: ignore[no-untyped-def]
    light = Light(angle=angle, gain=0.25, offset=3.5, softness=1.0, strength=strength)
    spec = replace(sample_scene(2).objects[0], shape="circle", pattern="plain", size=16.0)
    return render_lit([moved(spec, 24.0, 30.0), moved(spec, 44.0, 40.0)], "sand", 5, light)


def test_the_light_direction_comes_from_the_background_ramp() -> None:
    scene = _scene(0.5, angle=0.0)
    direction = light_direction(scene.image, ~scene.masks.any(axis=0))
    assert direction is not None and direction[0] > 0.9  # from the right


def test_true_shadows_are_found_on_the_far_side_and_missing_ones_are_not() -> None:
    lit = _scene(0.5)
    assert shadow_sides(lit.image, list(lit.masks)) == [True, True]
    flat = _scene(0.0)
    assert shadow_sides(flat.image, list(flat.masks)) == [False, False]


def test_a_blurred_background_has_less_gradient_energy() -> None:
    bricks = np.clip(render_structured("bricks", 1), 0, 255).astype(np.uint8)
    mask = np.ones((64, 64), dtype=bool)
    flat = np.full_like(bricks, int(bricks.mean()))
    assert gradient_energy(bricks, mask) > 5 * max(gradient_energy(flat, mask), 0.1)
