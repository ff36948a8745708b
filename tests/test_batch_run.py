"""`layoutedit batch` in one process: a failing or bad row does not stop the others, the
dataset files load (COCO with pycocotools), a rerun skips what is done, and an output
folder holding a user's files is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli, write_fast_config
from PIL import Image

from layoutedit.batch.coco import rle_decode
from layoutedit.shapes.world import sample_scene, write_scene_folder


def _shrink_object(folder: Path, name: str) -> None:
    """Make `name` 3x2 px: too small for the tiny model's 16x16 latent grid, which only
    the model-read scene checks, so the row passes the manifest check and fails when run."""
    labels = json.loads((folder / "semantic_dict.json").read_text())
    mask = np.asarray(Image.open(folder / "mask.png").convert("RGB")).copy()
    colour, background = tuple(labels[name]), tuple(labels["background"])
    mask[(mask == colour).all(-1)] = background
    mask[30:32, 2:5] = colour
    Image.fromarray(mask).save(folder / "mask.png")


def _write_batch(root: Path) -> tuple[Path, list[tuple[str, ...]]]:
    """Five rows: three good scenes, one that fails when run (line 4), one bad (line 5)."""
    names = []
    rows = []
    for i in range(3):
        world = sample_scene(20 + i, 2)
        write_scene_folder(world, root / "scenes" / f"s{i}")
        a, b = world.names
        names.append(world.names)
        edits = [{"move": [f"{a}=+3,0"]}, {"scale": [f"{b}=0.8"]}]
        rows.append({"scene": f"scenes/s{i}", "edits": edits, "id": f"s{i}", "seeds": [0]})
    small = sample_scene(30, 2)
    write_scene_folder(small, root / "scenes" / "small")
    _shrink_object(root / "scenes" / "small", small.names[1])
    rows.append({"scene": "scenes/small", "edits": [{"to-front": small.names[0]}], "id": "small"})
    rows.append({"scene": "scenes/s0", "edits": [{"move": ["nobody=+3,0"]}]})
    path = root / "scenes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, names


def _mask_of(scene: Path, name: str) -> np.ndarray:
    labels = json.loads((scene / "semantic_dict.json").read_text())
    mask = np.asarray(Image.open(scene / "mask.png").convert("RGB"))
    return (mask == np.asarray(labels[name])).all(-1)


@pytest.fixture(scope="module")
def dataset(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[str, ...]], tuple[str, ...]]:
    """(root, object names per good scene, the batch's CLI arguments) after one batch run
    (exit code and output checked by the first test)."""
    root = tmp_path_factory.mktemp("batch-run")
    manifest, names = _write_batch(root)
    config = write_fast_config(root)
    out, cache = root / "out", root / "cache"
    args = ("batch", str(manifest), "--out", str(out), "--config", str(config), "--seeds", "0")
    # --seeds is not a batch option: a usage error (one line, exit 2) before any work.
    code, _, err = run_cli(tiny_model_dir, cache, *args)
    assert code == 2 and "--seeds" in err
    args = (*args[:-2], "--skip-bad-rows", "--all")
    code, _, err = run_cli(tiny_model_dir, cache, *args)
    (root / "first-run.txt").write_text(f"{code}\n{err}")
    return root, names, args


def test_a_batch_writes_a_dataset_and_isolates_failures(
    dataset: tuple[Path, list[tuple[str, ...]], tuple[str, ...]],
) -> None:
    tmp_path, names, _args = dataset
    out = tmp_path / "out"
    code, err = (tmp_path / "first-run.txt").read_text().split("\n", 1)
    assert code == "1", err  # a row failed: not every row succeeded
    assert "line 5" in err and "nobody" in err  # the bad row, reported
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == {"total": 5, "done": 3, "skipped": 0, "failed": 1, "bad": 1}
    assert [f["line"] for f in summary["failures"]] == [4]
    assert "min_object_latent_pixels" in summary["failures"][0]["reason"]
    assert summary["bad_rows"][0]["line"] == 5
    assert summary["unet_evaluations"]["sampling"]["total"] > 0
    assert summary["images"] == {"source": 3, "edited": 6}  # 2 edits x 1 seed
    assert not any(p.name.endswith("layoutedit-batch") for p in tmp_path.iterdir())

    # metadata.jsonl: every image, source and edited, each file there, one schema.
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [(m["row"], m["kind"], m["edit"]) for m in lines] == [
        (f"s{i}", kind, edit)
        for i in range(3)
        for kind, edit in (("source", None), ("edit", 1), ("edit", 2))
    ]
    assert len({tuple(m) for m in lines}) == 1
    for m in lines:
        assert (out / m["file_name"]).is_file()
    assert sorted(p.name for p in (out / "rows").iterdir()) == ["s0", "s1", "s2"]

    # coco.json: loads with pycocotools; each box is its mask's extent; the source's masks
    # are the scene's; a moved object's mask is its source mask moved.
    coco = json.loads((out / "coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [m["file_name"] for m in lines]
    for ann in coco["annotations"]:
        mask = rle_decode(ann["segmentation"])
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["bbox"] == [float(v) for v in box] and ann["area"] == mask.sum()
    by_image: dict[int, dict[str, np.ndarray]] = {}
    category = {c["id"]: c["name"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], {})[category[ann["category_id"]]] = rle_decode(
            ann["segmentation"]
        )
    for i, (a, b) in enumerate(names):
        source_id, moved_id = 1 + 3 * i, 2 + 3 * i
        mask_a = _mask_of(tmp_path / "scenes" / f"s{i}", a)
        mask_b = _mask_of(tmp_path / "scenes" / f"s{i}", b)
        assert np.array_equal(by_image[source_id][a], mask_a)
        # `a` moved 3 px right, under `b` where they overlap (b is drawn over it).
        assert np.array_equal(by_image[moved_id][b], mask_b)
        assert np.array_equal(by_image[moved_id][a], np.roll(mask_a, 3, axis=1) & ~mask_b)


def test_the_coco_file_loads_with_pycocotools(
    dataset: tuple[Path, list[tuple[str, ...]], tuple[str, ...]],
) -> None:
    out = dataset[0] / "out"
    coco = json.loads((out / "coco.json").read_text())
    cocotools = pytest.importorskip("pycocotools.coco", reason="pycocotools not installed")
    mask_utils = pytest.importorskip("pycocotools.mask")
    loaded = cocotools.COCO(str(out / "coco.json"))
    assert len(loaded.getImgIds()) == 9 and len(loaded.getCatIds()) == len(coco["categories"])
    for ann in loaded.loadAnns(loaded.getAnnIds()):
        mask = loaded.annToMask(ann)
        rle = mask_utils.encode(np.asfortranarray(mask))
        assert mask_utils.toBbox(rle).tolist() == ann["bbox"]
        assert int(mask.sum()) == ann["area"]


def test_the_metadata_loads_as_a_hugging_face_image_folder(
    dataset: tuple[Path, list[tuple[str, ...]], tuple[str, ...]],
) -> None:
    datasets = pytest.importorskip("datasets", reason="datasets not installed")
    out = dataset[0] / "out"
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert loaded.num_rows == 9 and loaded["kind"].count("edit") == 6
    assert loaded[1]["image"].size == (64, 64) and loaded[1]["objects"]["name"]


def test_a_rerun_skips_what_is_done_and_retries_what_failed(
    tiny_model_dir: Path, dataset: tuple[Path, list[tuple[str, ...]], tuple[str, ...]]
) -> None:
    root, _names, args = dataset
    out = root / "out"
    lines = (out / "metadata.jsonl").read_text()
    record = (out / "rows" / "s1" / "row.json").read_text()
    code, _, err = run_cli(tiny_model_dir, root / "cache", *args)
    assert code == 1, err
    again = json.loads((out / "summary.json").read_text())
    assert again["rows"] == {"total": 5, "done": 0, "skipped": 3, "failed": 1, "bad": 1}
    assert (out / "rows" / "s1" / "row.json").read_text() == record  # not run again
    assert (out / "metadata.jsonl").read_text() == lines


def test_an_output_folder_with_a_users_files_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    world = sample_scene(21, 2)
    write_scene_folder(world, tmp_path / "scene")
    manifest = tmp_path / "one.jsonl"
    row = {"scene": "scene", "edits": [{"move": [f"{world.names[0]}=+2,0"]}], "seeds": [0]}
    manifest.write_text(json.dumps(row) + "\n")
    config = write_fast_config(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("batch", str(manifest), "--out", str(out), "--config", str(config))
    code, _, err = run_cli(tiny_model_dir, tmp_path / "cache", *args)
    assert code == 2 and "notes.txt" in err and "--overwrite" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, _, err = run_cli(tiny_model_dir, tmp_path / "cache", *args, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "coco.json").is_file()
    # The folder is now the batch's (beside the user's file, which --overwrite let stay).
    (out / "notes.txt").unlink()
    code, _, err = run_cli(tiny_model_dir, tmp_path / "cache", *args)
    assert code == 0, err
    # A file dropped among the rows is the user's too.
    shutil.copy(
        out / "coco.json", out / "rows" / next(p.name for p in (out / "rows").iterdir()) / "x.json"
    )
    code, _, err = run_cli(tiny_model_dir, tmp_path / "cache", *args)
    assert code == 2 and "x.json" in err, err


def test_an_output_folder_in_the_cache_folder_is_refused_before_any_work(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    world = sample_scene(21, 2)
    write_scene_folder(world, tmp_path / "scene")
    manifest = tmp_path / "one.jsonl"
    row = {"scene": "scene", "edits": [{"move": [f"{world.names[0]}=+2,0"]}], "seeds": [0]}
    manifest.write_text(json.dumps(row) + "\n")
    cache = tmp_path / "cache"
    args = ("batch", str(manifest), "--out", str(cache / "out"))
    code, _, err = run_cli(tiny_model_dir, cache, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "lies in the cache folder" in lines[0], err
    assert not (cache / "out").exists()
