"""The Python API (`layoutedit.Editor`): the issue's example, warm reuse, scene switches,
cancelling and the errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layoutedit.config import resolve_settings
from layoutedit.shapes.world import sample_scene, write_scene_folder

FAST_TINY = {
    "learn": {
        "ti_steps": 2,
        "ti_batch_size": 1,
        "ft_steps": 2,
        "ft_batch_size": 1,
        "checkpoint_every": 0,
    },
    "edit": {
        "steps": 3,
        "max_iter_to_alter": 2,
        "refinement": {0: 0.9},
        "max_refinement_steps": 1,
        "blend_steps": 2,
        "seeds": (0,),
    },
}


def _scene_dir(folder: Path, seed: int) -> Path:
    world = sample_scene(seed, 2)
    labels = world.labels()
    return write_scene_folder(world, folder, layouts=[np.roll(labels, 10, axis=1)])


def _tiny_editor(model_dir: Path, cache: Path):  # type: ignore[no-untyped-def]
    from layoutedit import Editor

    settings = resolve_settings("fast", None, FAST_TINY)
    return Editor(model=str(model_dir), backend="cpu", cache_dir=cache, settings=settings)


def test_api_example_runs_as_written_on_the_embedded_model(tmp_path: Path) -> None:
    scene_dir = _scene_dir(tmp_path / "scene", 5)
    layout = scene_dir / "target_layout" / "layout1.png"

    # The example, with the fast preset to keep it quick.
    from layoutedit import Editor

    editor = Editor(model="builtin:shapes-tiny", backend="auto", cache_dir=None, preset="fast")
    scene = editor.scene(scene_dir)
    concept = editor.learn(scene)
    result = editor.edit(scene, layout)
    image, paths = result.best().image, result.save(tmp_path / "out")

    assert concept.tokens == scene.tokens
    assert image.shape == (*scene.size, 3) and image.dtype == np.uint8
    assert paths["folder"] == tmp_path / "out"
    for name in ("sheet", "edit_json", "best"):
        assert paths[name].is_file(), name
    assert paths["layout"] == layout  # a layout file is not copied
    record = json.loads(paths["edit_json"].read_text())
    assert record["concept"] == editor.learn_key(scene)
    assert record["settings"]["steps"] == 10  # the fast preset
    # Learning once: the second learn is a cache hit, and a second edit reuses the session.
    assert editor.obtain(scene).cached
    again = editor.edit(scene, ["move " + scene.names[0] + "=+4,0"])
    assert again.reused_session and again.unet_evaluations["inversion"]["total"] == 0
    # A layout made from operations is written next to the edit, in the scene's colours.
    drawn = np.asarray(Image.open(again.save(tmp_path / "ops")["layout"]).convert("RGB"))
    assert (drawn == np.asarray(scene.palette, dtype=np.uint8)[again.layout.labels]).all()
    assert json.loads((tmp_path / "ops" / "edit.json").read_text())["operations"] == [
        f"--move {scene.names[0]}=+4,+0"
    ]
    assert result.unet_evaluations["inversion"]["total"] == 10


def test_scene_switch_gives_the_fresh_editors_image(tiny_model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    editor = _tiny_editor(tiny_model_dir, cache)
    a = editor.scene(_scene_dir(tmp_path / "a", 5))
    b = editor.scene(_scene_dir(tmp_path / "b", 6))
    ops = [f"move {a.names[0]}=+6,0"]
    first = editor.edit(a, ops).best().image
    other = editor.edit(b, b.layout_paths[0]).best().image
    back = editor.edit(a, ops)
    assert not back.reused_session  # B's concept was applied in between
    assert back.unet_evaluations["inversion"]["total"] == 0  # A's inversion kept in memory
    assert np.array_equal(back.best().image, first)
    assert not np.array_equal(other, first)

    fresh = _tiny_editor(tiny_model_dir, tmp_path / "other-cache")
    scene = fresh.scene(_scene_dir(tmp_path / "a2", 5))
    assert np.array_equal(fresh.edit(scene, ops).best().image, first)


def test_edit_without_learning_names_the_missing_concept(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from layoutedit import ConceptMissing

    editor = _tiny_editor(tiny_model_dir, tmp_path / "cache")
    scene = editor.scene(_scene_dir(tmp_path / "a", 5))
    with pytest.raises(ConceptMissing, match="no learned concept"):
        editor.edit(scene, scene.layout_paths[0], learn=False)


def test_cancel_stops_learning_and_editing(tiny_model_dir: Path, tmp_path: Path) -> None:
    from layoutedit import Cancelled

    editor = _tiny_editor(tiny_model_dir, tmp_path / "cache")
    scene = editor.scene(_scene_dir(tmp_path / "a", 5))

    class StopAtFirstStep:
        def stage(self, name: str, total: int, done: int) -> None:
            pass

        def step(self, loss: float) -> None:
            editor.cancel()

    with pytest.raises(Cancelled):
        editor.learn(scene, progress=StopAtFirstStep())
    assert editor.cached_concept(scene) is None  # nothing partial kept

    seen: list[tuple[str, int, int]] = []

    def stop_after_two_steps(what: str, done: int, total: int) -> None:
        seen.append((what, done, total))
        if what == "steps" and done == 2:
            editor.cancel()

    with pytest.raises(Cancelled):
        editor.edit(scene, scene.layout_paths[0], progress=stop_after_two_steps)
    assert seen[:2] == [("steps", 1, 3), ("steps", 2, 3)]
    # The editor still works after a cancel, and learned the scene once.
    result = editor.edit(scene, scene.layout_paths[0], seeds=[0, 8])
    assert [c.seed for c in result.candidates] == [0, 8]


def test_layout_forms_and_user_mistakes(tiny_model_dir: Path, tmp_path: Path) -> None:
    from layoutedit.errors import UserError
    from layoutedit.scenes.layout_edits import Move
    from layoutedit.scenes.scene import layout_from_labels

    editor = _tiny_editor(tiny_model_dir, tmp_path / "cache")
    scene = editor.scene(_scene_dir(tmp_path / "a", 5))
    name = scene.names[0]
    by_object = editor.layout(scene, [Move(name, 5, 0)])
    by_text = editor.layout(scene, [f"move {name}=+5,0"])
    assert np.array_equal(by_object.labels, by_text.labels)
    base = layout_from_labels(by_text.labels, scene)
    twice = editor.layout(scene, [f"move {name}=+5,0"], base=base)
    assert not np.array_equal(twice.labels, by_text.labels)
    assert editor.layout(scene, by_text.labels.copy()).path is None
    with pytest.raises(UserError, match="no object 'dog'"):
        editor.layout(scene, ["move dog=+5,0"])
    with pytest.raises(UserError, match="not found"):
        editor.layout(scene, tmp_path / "missing.png")


def test_learn_key_follows_the_editors_settings(tiny_model_dir: Path, tmp_path: Path) -> None:
    editor = _tiny_editor(tiny_model_dir, tmp_path / "cache")
    scene = editor.scene(_scene_dir(tmp_path / "a", 5))
    first = editor.learn_key(scene)
    assert editor.learn_key(scene) == first
    editor.settings = resolve_settings("fast", None, {**FAST_TINY, "learn": {"ti_steps": 3}})
    assert editor.learn_key(scene) != first
