"""Memory-only learn settings never enter a concept's cache key: learning under
`--low-memory` or the automatic switch, then editing without it, finds one entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import run_cli, write_fast_config
from edit_support import load_tiny, shapes_scene

from layoutedit.config import LearnConfig
from layoutedit.learning.concept_store import ADDED_LATER, MEMORY_ONLY, scene_learn_key
from layoutedit.shapes.world import sample_scene, write_scene_folder


def test_memory_only_settings_leave_the_concept_key_alone(tiny_model_dir: Path) -> None:
    from layoutedit_cache import concept_key

    model, scene = load_tiny(tiny_model_dir), shapes_scene()
    plain = scene_learn_key(model, scene, LearnConfig())
    for changes in (
        {"low_memory": True},
        {"low_memory": True, "mixed_precision": "fp16"},
        {"mixed_precision": "bf16"},
    ):
        assert scene_learn_key(model, scene, LearnConfig(**changes)) == plain, changes
    assert set(MEMORY_ONLY) == {"low_memory", "mixed_precision"}
    # What is learned still changes the key.
    assert scene_learn_key(model, scene, LearnConfig(ti_steps=3)) != plain
    # A concept cached before keeps its key: at the defaults the key is the one computed
    # from the whole config as it always was.
    old_style = {**LearnConfig().model_dump(mode="json"), "prompt": scene.prompt}
    for name in ADDED_LATER:
        del old_style[name]
    expected = concept_key(
        model_fingerprint=model.fingerprint,
        learn_config=old_style,
        image=scene.image,
        labels=scene.labels,
        names=scene.names,
    )
    assert plain == expected


def _concept_entries(cache: Path) -> list[Any]:
    from layoutedit_cache import ConceptCache

    with ConceptCache(cache) as store:
        return [e for e in store.entries() if e.kind == "concept"]


@pytest.mark.slow
def test_learn_under_the_switch_then_edit_hits_one_entry(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`learn` switched to low memory (as on a GPU short of memory: checkpointing and a
    reduced-precision forward, here bf16 on the CPU), then a plain `edit`: it reuses the
    learned concept instead of learning again under another key."""
    import layoutedit.learning.low_memory as low_memory

    switched = {"low_memory": True, "mixed_precision": "bf16"}
    monkeypatch.setattr(low_memory, "learn_overrides", lambda backend: dict(switched))
    scene = write_scene_folder(sample_scene(5, 2), tmp_path / "scene")
    config = write_fast_config(tmp_path)
    cache = tmp_path / "cache"
    code, _, stderr = run_cli(
        tiny_model_dir, cache, "learn", str(scene), "--config", str(config), "--low-memory"
    )
    assert code == 0, stderr
    [learned] = _concept_entries(cache)
    assert learned.meta["concept"]["meta"]["learn_config"]["low_memory"] is True
    code, _, stderr = run_cli(
        tiny_model_dir,
        cache,
        "edit",
        str(scene),
        "--config",
        str(config),
        "--move",
        f"{_first_object(scene)}=+4,0",
        "--seeds",
        "0",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, stderr
    [used] = _concept_entries(cache)  # one entry: the edit did not learn again
    assert used.key == learned.key


def _first_object(scene_dir: Path) -> str:
    from cli_support import object_names

    return object_names(scene_dir)[0]
