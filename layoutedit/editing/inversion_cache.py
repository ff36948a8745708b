"""Reusing a scene's DDIM inversion through the concept cache.

The inversion depends on the model, the concept applied to it, the source image, the prompt
and the step count; its key is `inversion_key(concept_key=..., prompt=..., steps=...,
guidance_scale=1.0, extra=...)` (guidance scale 1: the inversion uses the conditional
prediction only, so the edit's guidance scale does not change it). An edit without a learned
concept, or with a concept read from a folder, keys its inversion by `scene_concept_key`,
which covers the model, the scene and what stands in for the concept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layoutedit.editing.inversion import Inversion

if TYPE_CHECKING:
    from layoutedit.editing.session import EditSession
    from layoutedit.scenes.scene import Scene
    from layoutedit_cache import ConceptCache

ARTIFACT = "latents"


def file_digest(path: Path) -> str:
    """SHA-256 hex of a file's bytes."""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def scene_concept_key(model_fingerprint: str, scene: Scene, concept: Mapping[str, Any]) -> str:
    """A concept key for a concept that is not a cache entry (none, or a folder).

    Args:
        model_fingerprint: the base model's fingerprint.
        scene: the scene (its pixels, labels and names are covered).
        concept: what stands for the concept, e.g. {"concept": "none"} or
            {"concept_file_sha256": ...}.
    """
    from layoutedit_cache import concept_key

    return concept_key(
        model_fingerprint=model_fingerprint,
        learn_config=dict(concept),
        image=scene.image,
        labels=scene.labels,
        names=scene.names,
    )


def session_inversion_key(session: EditSession, concept_key: str) -> str:
    """The inversion key of a prepared session."""
    from layoutedit_cache import inversion_key

    return inversion_key(
        concept_key=concept_key,
        prompt=session.prompt,
        steps=session.config.steps,
        guidance_scale=1.0,
        extra={
            "latent_side": session.latent_side,
            "pad": [session.box.top, session.box.left, session.box.height, session.box.width],
            "dtype": str(session.model.unet.dtype),
        },
    )


def cached_inversion(session: EditSession, cache: ConceptCache, concept_key: str) -> bool:
    """Give `session` its inversion from the cache, or compute it and store it.

    Returns:
        True on a cache hit.
    """
    key = session_inversion_key(session, concept_key)
    with cache.lock(key):
        entry = cache.get(key)
        if entry is not None:
            session.use_inversion(
                Inversion.from_tensors(entry.tensors(ARTIFACT), device=session.source.device)
            )
            return True
        inversion = session.ensure_inversion()
        cache.put(
            key,
            "inversion",
            {ARTIFACT: inversion.tensors()},
            {
                "concept_key": concept_key,
                "prompt": session.prompt,
                "steps": session.config.steps,
                "unet_evaluations": session.inversion_counter.as_dict(),
            },
        )
    return False
