"""Batch manifests are checked whole before any model work; COCO RLE is COCO's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli

from layoutedit.batch.coco import mask_box, mask_rle, object_annotations, rle_decode
from layoutedit.batch.manifest import load_manifest
from layoutedit.batch.runner import group_order
from layoutedit.editing.sharding import Shard
from layoutedit.errors import UserError
from layoutedit.shapes.world import sample_scene, write_scene_folder

MODEL = "builtin:shapes-tiny"


def _manifest(folder: Path, rows: list[object]) -> Path:
    path = folder / "m.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two scene folders under tmp_path/photos; the first one's object names."""
    world = sample_scene(7, 2)
    write_scene_folder(world, tmp_path / "photos" / "a")
    write_scene_folder(sample_scene(8, 2), tmp_path / "photos" / "b")
    return tmp_path, list(world.names)


def test_rows_are_read_relative_to_the_manifest(
    scenes: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root, (a, b) = scenes
    layout = root / "photos" / "a" / "mask.png"  # the source's own masks: a valid layout
    path = _manifest(
        root,
        [
            "# a comment, then a blank line",
            "",
            {
                "scene": "photos/a",
                "edits": [{"move": [f"{a}=+3,0"]}, {"layout": "photos/a/mask.png"}],
            },
            {
                "image": "photos/b/image.png",
                "mask": "photos/b/mask.png",
                "labels": "photos/b/semantic_dict.json",
                "edits": [{"ops": ["swap " + ",".join(sample_scene(8, 2).names)]}],
                "seeds": [3, 4],
                "id": "bee",
                "preset": "fast",
            },
            {"scene": "photos/a", "edits": [{"to-front": a, "scale": f"{b}=0.9"}], "seeds": 5},
        ],
    )
    monkeypatch.chdir(tmp_path.parent)  # elsewhere: paths must not depend on the cwd
    manifest = load_manifest(path, model=MODEL)
    first, second, third = manifest.rows
    assert [r.line for r in manifest.rows] == [3, 4, 5]
    assert first.scene_dir == root / "photos" / "a" and first.edits[1].layout == layout
    assert first.edits[0].operations == (f"--move {a}=+3,+0",)
    assert second.id == "bee" and second.settings.edit.seeds == (3, 4)
    assert second.settings.learn.ti_steps == 20  # its own preset (fast)
    assert third.settings.edit.seeds == (5,)
    assert first.id.startswith("a-") and first.id != third.id
    # Rows of the same scene and learn settings share a group (one process learns it).
    assert first.group == third.group != second.group
    assert [len(g) for g in manifest.groups()] == [2, 1]
    # The content key changes with the model's weights and with the row's inputs.
    assert first.key("f1") != first.key("f2")
    assert first.input_key != third.input_key


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"scene": "photos/a", "scene": "photos/b", "edits": []}', "names 'scene' twice"),
        ({"scene": "photos/a"}, "`edits` must be a non-empty list"),
        ({"scene": "photos/a", "edits": [{"move": ["nobody=+3,0"]}]}, "edit 1:"),
        ({"scene": "photos/a", "edits": [{"layout": "nowhere.png"}]}, "nowhere.png"),
        ({"scene": "photos/nope", "edits": [{"move": []}]}, "photos/nope"),
        ({"image": "photos/a/image.png", "edits": [{"move": []}]}, "missing `mask`"),
        ({"scene": "photos/a", "edits": [{"colour": 1}]}, "unknown key 'colour'"),
        ({"scene": "photos/a", "edits": [{"to-front": "x"}], "seeds": [1, 1]}, "repeats"),
        ({"scene": "photos/a", "edits": [{"to-front": "x"}], "id": "../up"}, "`id`"),
        ({"scene": "photos/a", "edits": [{"to-front": "x"}], "preset": "nope"}, "preset"),
        ('{"scene": "photos/a", "edits": [{"move": ["x=+1,0"]}], "seeds": [NaN]}', "NaN"),
    ],
)
def test_a_bad_row_is_one_line_naming_its_line(
    scenes: tuple[Path, list[str]], row: object, message: str
) -> None:
    root, (a, _b) = scenes
    good = {"scene": "photos/a", "edits": [{"move": [f"{a}=+3,0"]}]}
    path = _manifest(root, [good, row, good | {"id": "third"}])
    with pytest.raises(UserError) as caught:
        load_manifest(path, model=MODEL)
    line = caught.value.line()
    assert "\n" not in line and line.startswith(f"{path}: line 2: "), line
    assert message in line, line
    # --skip-bad-rows: reported, the others kept.
    bad: list[int] = []
    manifest = load_manifest(path, model=MODEL, skip_bad=True, on_bad=lambda b: bad.append(b.line))
    assert bad == [2] and [r.line for r in manifest.rows] == [1, 3]
    assert manifest.bad[0].line == 2 and message in manifest.bad[0].reason


def test_ids_must_be_unique(scenes: tuple[Path, list[str]]) -> None:
    root, (a, _b) = scenes
    row = {"scene": "photos/a", "edits": [{"move": [f"{a}=+3,0"]}]}
    with pytest.raises(UserError, match=r"line 2: .*taken by line 1"):
        load_manifest(_manifest(root, [row, row]), model=MODEL)
    with pytest.raises(UserError, match=r"line 3: .*taken by line 1"):
        load_manifest(_manifest(root, [row | {"id": "x"}, row, row | {"id": "x"}]), model=MODEL)


def test_the_cli_refuses_a_bad_manifest_before_the_model_loads(
    scenes: tuple[Path, list[str]],
) -> None:
    root, _names = scenes
    path = _manifest(root, [{"scene": "photos/a", "edits": [{"move": ["nobody=+3,0"]}]}])
    # A model folder that does not exist: the manifest must fail first.
    code, _out, err = run_cli(
        root / "no-model", root / "cache", "batch", str(path), "--out", str(root / "o")
    )
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "line 1:" in lines[0] and "nobody" in lines[0], err
    assert not (root / "o").exists()


def test_rle_is_what_pycocotools_writes() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(v) for v in rng.integers(1, 50, 2))
        mask = rng.random((height, width)) < rng.random()
        if trial % 2:  # a solid block: long runs, the delta coding's other branch
            mask = np.zeros((height, width), bool)
            mask[height // 3 :, width // 4 : width // 2 + 1] = True
        theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = mask_rle(mask)
        assert ours["counts"] == theirs["counts"].decode() and ours["size"] == [height, width]
        if mask.any():
            assert mask_box(mask) == pytest.approx(mask_utils.toBbox(theirs).tolist())


def test_rle_round_trips_without_pycocotools() -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        mask = rng.random(tuple(int(v) for v in rng.integers(1, 40, 2))) < 0.3
        assert np.array_equal(rle_decode(mask_rle(mask)), mask)
    labels = np.full((8, 10), 2, np.int16)
    labels[1:3, 2:6] = 0  # object 0: 2 rows x 4 columns
    found = object_annotations(labels, ["cat", "pot"])  # pot (1) has no pixel: no record
    assert [o["name"] for o in found] == ["cat"]
    assert found[0]["bbox"] == [2.0, 1.0, 4.0, 2.0] and found[0]["area"] == 8


def test_processes_take_their_share_then_steal_from_the_end() -> None:
    assert group_order(5, Shard(0, 2), "static") == [0, 2, 4]
    assert group_order(5, Shard(1, 2), "static") == [1, 3]
    assert group_order(5, Shard(1, 2), "steal") == [1, 3, 4, 2, 0]
    assert group_order(3, Shard(), "steal") == [0, 1, 2]


def test_a_model_that_does_not_load_leaves_nothing_behind(
    scenes: tuple[Path, list[str]],
) -> None:
    root, (a, _b) = scenes
    path = _manifest(root, [{"scene": "photos/a", "edits": [{"move": [f"{a}=+3,0"]}]}])
    out = root / "o"
    code, _out, err = run_cli(
        root / "no-model", root / "cache", "batch", str(path), "--out", str(out)
    )
    assert code == 2 and "no-model" in err, err
    assert not out.exists() and not (root / ".o.layoutedit-batch").exists()
