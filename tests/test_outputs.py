"""Writing an edit: per-seed PNGs, the contact sheet, edit.json, --best, safe replacement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edit_support import moved_layout, shapes_scene
from PIL import Image

from layoutedit.editing.outputs import RESULT_FILE, SHEET_FILE, colour_labels, seed_file, write_edit
from layoutedit.editing.session import Candidate, EditResult
from layoutedit.errors import UserError
from layoutedit.scenes.scene import Scene


def _result(scene: Scene, losses: dict[int, float]) -> EditResult:
    height, width = scene.size
    rng = np.random.default_rng(0)
    candidates = [
        Candidate(
            seed=seed,
            image=rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
            object_losses={n: loss / 2 for n in scene.names},
            loss=loss,
            seconds=0.5,
            guided_steps=3,
            refinement_passes=1,
        )
        for seed, loss in losses.items()
    ]
    return EditResult(
        layout=moved_layout(scene),
        candidates=candidates,
        prompt=scene.prompt,
        attention_res=8,
        record_layers=("up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor",),
        settings={"steps": 6},
        backend="cpu",
        timings={"prepare": 0.1, "inversion": 0.2, "sampling": 1.0, "decode": 0.01},
        unet_evaluations={
            "inversion": {"forward": 6, "backward": 0, "total": 6},
            "sampling": {"forward": 16, "backward": 4, "total": 20},
        },
    )


def test_writes_pngs_sheet_and_record(tmp_path: Path) -> None:
    scene = shapes_scene(crop=40)
    result = _result(scene, {0: 1.2, 8: 0.7, 88: 1.5})
    folder = write_edit(
        result, scene, tmp_path / "out" / "layout1", concept_id="abc", extra={"model": "m"}
    )
    for seed, cand in zip((0, 8, 88), result.candidates, strict=True):
        saved = np.asarray(Image.open(folder / seed_file(seed)))
        assert saved.shape == (40, 64, 3)  # the source's size
        assert np.array_equal(saved, cand.image)
    sheet = Image.open(folder / SHEET_FILE)
    assert sheet.width > 6 * 64 and sheet.height > 40  # six tiles in a row
    record = json.loads((folder / RESULT_FILE).read_text())
    assert record["concept"] == "abc" and record["model"] == "m"
    assert record["best_seed"] == 8
    assert [c["seed"] for c in record["candidates"]] == [0, 8, 88]
    assert record["candidates"][1]["object_losses"] == {n: 0.35 for n in scene.names}
    assert record["candidates"][0]["file"] == "seed-0.png"
    assert record["unet_evaluations"]["sampling"]["total"] == 20
    assert record["timings"]["sampling"] == 1.0
    assert record["settings"] == {"steps": 6}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_best_keeps_only_the_lowest_loss_and_replaces_an_earlier_run(tmp_path: Path) -> None:
    scene = shapes_scene()
    folder = tmp_path / "layout1"
    write_edit(_result(scene, {0: 1.2, 8: 0.7}), scene, folder)
    assert (folder / "seed-0.png").exists()
    write_edit(_result(scene, {0: 1.2, 8: 0.7}), scene, folder, best=True)
    assert sorted(p.name for p in folder.iterdir()) == [RESULT_FILE, "seed-8.png", SHEET_FILE]
    record = json.loads((folder / RESULT_FILE).read_text())
    assert [c["file"] for c in record["candidates"]] == [None, "seed-8.png"]


def test_refuses_to_replace_a_folder_that_is_not_an_output(tmp_path: Path) -> None:
    scene = shapes_scene()
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("do not delete")
    with pytest.raises(UserError, match="not a layoutedit edit output"):
        write_edit(_result(scene, {0: 1.0}), scene, folder)
    assert (folder / "thesis.tex").read_text() == "do not delete"


def test_colour_labels_uses_the_palette() -> None:
    labels = np.array([[0, 1], [2, 2]], dtype=np.int16)
    out = colour_labels(labels, [(1, 2, 3), (4, 5, 6), (7, 8, 9)])
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[1, 0].tolist() == [7, 8, 9]


def test_an_edit_without_a_measured_loss_writes_strict_json(tmp_path: Path) -> None:
    scene = shapes_scene(crop=40)
    result = _result(scene, {0: float("nan")})  # edit.denoise off measures no attention

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    folder = write_edit(result, scene, tmp_path / "out" / "layout1", concept_id=None)
    record = json.loads((folder / RESULT_FILE).read_text(), parse_constant=refuse)
    assert record["candidates"][0]["loss"] is None
    assert set(record["candidates"][0]["object_losses"].values()) == {None}
