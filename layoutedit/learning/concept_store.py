"""Learned concepts in the concept cache: look up, or learn once and store.

A concept's key (`layoutedit_cache.concept_key`) covers the base model's fingerprint, the
learning settings (the memory-only ones at their defaults, `MEMORY_ONLY`) plus the scene
prompt (the prompt template changes what is learned) and the contents of a prior folder, the
scene's pixels, its labels and its object names.
`obtain_concept` holds the key's lock while it looks up and learns, so two processes learning
the same scene learn it once. Checkpoints of a run in progress live in
`<cache dir>/learn-checkpoints/<key>` (not a cache entry), so an interrupted run leaves no
entry but resumes; they are removed once the entry is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layoutedit.backend import Backend
from layoutedit.config import LearnConfig
from layoutedit.learning.checkpoints import CheckpointDir
from layoutedit.learning.concept import Concept
from layoutedit.learning.learn import learn_concept
from layoutedit.learning.prior import prior_folder_digest
from layoutedit.learning.training import ProgressHook
from layoutedit.loading.model_loading import LoadedModel
from layoutedit.scenes.scene import Scene

KIND = "concept"
ARTIFACT = "concept"
CHECKPOINTS = "learn-checkpoints"


@dataclass
class ObtainedConcept:
    """A concept with its cache key and whether it came from the cache."""

    concept: Concept
    key: str
    cached: bool


ADDED_LATER: dict[str, Any] = {"optimizer": "adamw", "augment_shift": 0.0}
"""Settings added after concepts were first cached, with their defaults: at its default a
setting leaves the key as it was before it existed, so concepts cached then are found."""

MEMORY_ONLY = ("low_memory", "mixed_precision")
"""Settings that change what learning holds in memory (and its rounding), not what it
learns: gradient checkpointing, and the dtype of the forward passes and frozen weights. They
enter the key at their defaults whatever they are, so a concept learned with `--low-memory`
or under the automatic switch (`learn` on a GPU short of memory) is the one a later `edit`
without them finds, and keys of concepts cached before stay as they were."""


def learn_key_config(cfg: LearnConfig, scene: Scene) -> dict[str, Any]:
    """What of the settings a concept depends on: the learn config (memory-only settings at
    their defaults), the scene prompt and, when prior preservation reads a folder, a digest
    of that folder's contents."""
    out = {**cfg.model_dump(mode="json"), "prompt": scene.prompt}
    for name in MEMORY_ONLY:
        out[name] = LearnConfig.model_fields[name].default
    for name, default in ADDED_LATER.items():
        if out.get(name) == default:
            del out[name]
    if cfg.prior_preservation and cfg.prior_dir is not None:
        out["prior_dir_digest"] = prior_folder_digest(cfg.prior_dir)
    return out


def scene_learn_key(model: LoadedModel, scene: Scene, cfg: LearnConfig) -> str:
    """The concept key of learning `scene` on `model` with `cfg` (64 hex)."""
    from layoutedit_cache import concept_key

    return concept_key(
        model_fingerprint=model.fingerprint,
        learn_config=learn_key_config(cfg, scene),
        image=scene.image,
        labels=scene.labels,
        names=scene.names,
    )


def concept_from_entry(entry: Any) -> Concept:
    """The concept stored in a cache entry of kind `concept`."""
    return Concept.from_parts(entry.meta["concept"], entry.tensors(ARTIFACT))


def cached_concept(cache: Any, key: str) -> Concept | None:
    """The concept under `key`, or None when absent (or evicted as damaged)."""
    entry = cache.get(key)
    if entry is None or entry.kind != KIND:
        return None
    return concept_from_entry(entry)


def store_concept(cache: Any, key: str, concept: Concept, scene: Scene) -> None:
    """Put a concept into the cache under `key` (atomic; replaces an older entry)."""
    where = scene.image_path.parent if scene.image_path is not None else None
    meta = {
        "concept": concept.header(),
        "scene": str(where) if where is not None else "",
        "objects": list(scene.names),
        "model": concept.meta.get("model", ""),
    }
    cache.put(key, KIND, {ARTIFACT: concept.tensors()}, meta)


def obtain_concept(
    model: LoadedModel,
    scene: Scene,
    cfg: LearnConfig,
    cache: Any,
    *,
    backend: Backend | None = None,
    progress: ProgressHook | None = None,
    force: bool = False,
    on_wait: Callable[[], None] | None = None,
) -> ObtainedConcept:
    """The scene's concept from `cache`, learning and storing it when missing.

    On a hit the concept is applied to `model`; after learning the model already has it.

    Args:
        model, scene, cfg, backend, progress: as for `learn_concept`.
        cache: a `layoutedit_cache.ConceptCache`.
        force: learn again even when the cache has the concept.
        on_wait: called if another process holds the key's lock (it is learning this scene).
    """
    from layoutedit.learning.concept import apply_concept

    key = scene_learn_key(model, scene, cfg)
    with cache.lock(key, on_wait=on_wait):
        if not force:
            concept = cached_concept(cache, key)
            if concept is not None:
                apply_concept(model, concept)
                return ObtainedConcept(concept, key, cached=True)
        ckpts = CheckpointDir(Path(cache.root) / CHECKPOINTS / key)
        result = learn_concept(
            model,
            scene,
            cfg,
            backend=backend,
            checkpoint_dir=ckpts.root,
            progress=progress,
            cache=cache,
        )
        store_concept(cache, key, result.concept, scene)
        ckpts.clear()
    return ObtainedConcept(result.concept, key, cached=False)
