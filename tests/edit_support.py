"""Small builders shared by the edit tests: a two-object shapes scene, a moved layout, a
fresh tiny model, a hand-made concept and a fast edit config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from layoutedit.config import EditConfig
from layoutedit.scenes.scene import Layout, Scene, layout_from_labels, scene_from_arrays
from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE, sample_scene


def shapes_scene(seed: int = 3, n_objects: int = 2, crop: int | None = None) -> Scene:
    """A shapes-world scene; `crop` keeps only the first `crop` rows (a non-square scene)."""
    world = sample_scene(seed, n_objects)
    image, labels = world.image, world.labels()
    if crop is not None:
        image, labels = image[:crop].copy(), labels[:crop].copy()
    return scene_from_arrays(image, labels, world.names, MASK_PALETTE[:n_objects], MASK_BACKGROUND)


def moved_layout(scene: Scene, shift: int = 12) -> Layout:
    """The scene's labels rolled `shift` pixels to the right (every object moves)."""
    return layout_from_labels(np.roll(scene.labels, shift, axis=1), scene)


UNCOVER_START: dict[str, object] = {
    "init": "paste",
    "redraw_strength": 0.8,
    "placement": "occlusion",
    "hole_fill": "repeat",
    "move_shadows": True,
}
"""The paste start's settings that `test_model_pixels._uncover`'s case needs: a hidden part
found, a hole filled, shadows moved."""


def fast_config(**changes: object) -> EditConfig:
    """Few steps, one refinement step, plain words (no concept) unless changed."""
    base: dict[str, object] = {
        "steps": 6,
        "max_iter_to_alter": 3,
        "refinement": {0: 0.9},
        "max_refinement_steps": 2,
        "blend_steps": 3,
        "seeds": (0,),
        "use_concept": False,
    }
    base.update(changes)
    return EditConfig.model_validate(base)


def load_tiny(model_dir: Path):  # type: ignore[no-untyped-def]
    """A fresh copy of the tiny model (edits mutate processors and may apply a concept)."""
    from layoutedit.loading.model_loading import load_model

    return load_model(str(model_dir))


def hand_concept(model, scene: Scene):  # type: ignore[no-untyped-def]
    """A concept with random rows for the scene's placeholders (no learning needed)."""
    from layoutedit.learning.concept import Concept

    width = model.text_encoder.get_input_embeddings().weight.shape[1]
    gen = torch.Generator().manual_seed(0)
    extra = ("<new0>", "<new1>")
    tokens = (*scene.tokens, *extra)
    return Concept(
        tokens=scene.tokens,
        extra_tokens=extra,
        embeddings={t: torch.randn(width, generator=gen) * 0.1 for t in tokens},
        kv_weights={},
        prompt=f"{scene.prompt} {' '.join(extra)}",
        meta={"names": list(scene.names), "model_fingerprint": model.fingerprint},
    )
