"""`layoutedit edit` end to end on the tiny model: learn, edit, files, cache, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli, write_fast_config
from PIL import Image

from layoutedit.shapes.world import sample_scene, write_scene_folder


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    world = sample_scene(5, 2)
    labels = world.labels()
    return write_scene_folder(
        world,
        tmp_path / "scene",
        layouts=[np.roll(labels, 10, axis=1), np.roll(labels, -8, axis=0)],
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_fast_config(tmp_path)


def test_learn_then_edit_writes_every_file(
    tiny_model_dir: Path, scene_dir: Path, config_file: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    code, _, err = run_cli(
        tiny_model_dir, cache, "learn", str(scene_dir), "--config", str(config_file)
    )
    assert code == 0, err
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        tiny_model_dir,
        cache,
        "--json",
        "edit",
        str(scene_dir),
        "--config",
        str(config_file),
        "--no-learn",
        "--seeds",
        "0,8",
        "--out",
        str(out),
    )
    assert code == 0, err
    summaries = json.loads(stdout)
    assert [Path(s["out"]).name for s in summaries] == ["layout1", "layout2"]
    for stem in ("layout1", "layout2"):
        folder = out / stem
        assert sorted(p.name for p in folder.iterdir()) == [
            "edit.json",
            "seed-0.png",
            "seed-8.png",
            "sheet.png",
        ]
        assert Image.open(folder / "seed-0.png").size == (64, 64)
        record = json.loads((folder / "edit.json").read_text())
        assert len(record["concept"]) == 64  # the learned concept's cache key
        assert record["settings"]["steps"] == 3 and record["settings"]["seeds"] == [0, 8]
        assert [c["seed"] for c in record["candidates"]] == [0, 8]
        for cand in record["candidates"]:
            assert set(cand["object_losses"]) == set(
                json.loads((scene_dir / "semantic_dict.json").read_text())
            ) - {"background"}
        assert record["unet_evaluations"]["sampling"]["backward"] >= 2 * 2
        assert {"prepare", "inversion", "sampling", "decode"} <= set(record["timings"])
        assert "<" in record["prompt"]  # placeholders of the learned concept

    # A second edit reuses the cached inversion: no inversion UNet calls.
    code, _, err = run_cli(
        tiny_model_dir,
        cache,
        "edit",
        str(scene_dir),
        "--config",
        str(config_file),
        "--no-learn",
        "--seeds",
        "0",
        "--best",
        "--out",
        str(out),
        "-l",
        str(scene_dir / "target_layout" / "layout1.png"),
    )
    assert code == 0, err
    record = json.loads((out / "layout1" / "edit.json").read_text())
    assert record["unet_evaluations"]["inversion"]["total"] == 0
    assert sorted(p.name for p in (out / "layout1").iterdir()) == [
        "edit.json",
        "seed-0.png",
        "sheet.png",
    ]


def test_edit_without_concept_and_defaults(
    tiny_model_dir: Path,
    scene_dir: Path,
    config_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(
        tiny_model_dir,
        tmp_path / "cache",
        "edit",
        str(scene_dir),
        "--config",
        str(config_file),
        "--no-concept",
        "--scale-factor",
        "0",
        "--blend-steps",
        "0",
        "--seeds",
        "3",
    )
    assert code == 0, err
    folder = tmp_path / "layoutedit-out" / "scene" / "layout2"
    record = json.loads((folder / "edit.json").read_text())
    assert record["concept"] is None
    assert record["settings"]["scale_factor"] == 0 and record["settings"]["blend_steps"] == 0
    assert record["unet_evaluations"]["sampling"]["backward"] == 0
    assert "<" not in record["prompt"]
    assert "layout1.png: best seed 3" in stdout
    # One line per layout, and no blank line left behind by each layout's progress bar.
    assert [line.split(":")[0] for line in stdout.splitlines()] == ["layout1.png", "layout2.png"]
    assert all(line.strip() for line in err.splitlines())


def test_init_paste_strength_and_detail_flags_choose_the_start(
    tiny_model_dir: Path, scene_dir: Path, config_file: Path, tmp_path: Path
) -> None:
    forwards = {}
    paste = ["--init", "paste", "--paste-strength", "0.5", "--object-detail", "0.7"]
    for start in (["--init", "noise"], paste):
        out = tmp_path / start[1]
        flags = ["--config", str(config_file), "--no-concept", "--seeds", "3", "--out", str(out)]
        code, _, err = run_cli(
            tiny_model_dir, tmp_path / "cache", "edit", str(scene_dir), *flags, *start
        )
        assert code == 0, err
        record = json.loads((out / "layout1" / "edit.json").read_text())
        assert record["settings"]["init"] == start[1]
        forwards[start[1]] = record["unet_evaluations"]["sampling"]["forward"]
    assert record["settings"]["paste_strength"] == 0.5
    assert record["settings"]["object_detail"] == 0.7
    # From the pasted image only the last half of the steps run.
    assert 0 < forwards["paste"] < forwards["noise"]


def test_edit_takes_the_scene_as_three_files(
    tiny_model_dir: Path,
    scene_dir: Path,
    config_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    code, _, err = run_cli(
        tiny_model_dir, cache, "learn", str(scene_dir), "--config", str(config_file)
    )
    assert code == 0, err
    files = [
        "--image",
        str(scene_dir / "image.png"),
        "--mask",
        str(scene_dir / "mask.png"),
        "--labels",
        str(scene_dir / "semantic_dict.json"),
    ]
    layout = scene_dir / "target_layout" / "layout2.png"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # The files give the same scene as the folder: the concept learned above is found.
    code, stdout, err = run_cli(
        tiny_model_dir,
        cache,
        "edit",
        *files,
        "-l",
        str(layout),
        "--config",
        str(config_file),
        "--no-learn",
        "--seeds",
        "0",
    )
    assert code == 0, err
    folder = work / "layoutedit-out" / "scene" / "layout2"  # named after the image's folder
    assert sorted(p.name for p in folder.iterdir()) == ["edit.json", "seed-0.png", "sheet.png"]
    record = json.loads((folder / "edit.json").read_text())
    assert len(record["concept"]) == 64 and "<" in record["prompt"]
    assert record["scene"] is None
    assert record["scene_files"]["mask"] == str(scene_dir / "mask.png")
    assert stdout.startswith("layout2.png: best seed 0")

    # Without a learned concept, --no-learn names the learn command with the same files.
    code, _, err = run_cli(
        tiny_model_dir, tmp_path / "empty", "edit", *files, "-l", str(layout), "--no-learn"
    )
    assert code == 2 and f"layoutedit learn --image {scene_dir / 'image.png'}" in err
    # The files need layouts named, and all three files or a folder.
    code, _, err = run_cli(tiny_model_dir, cache, "edit", *files, "--no-concept")
    assert code == 2 and "no target layouts" in err
    code, _, err = run_cli(tiny_model_dir, cache, "edit", *files[:4], "-l", str(layout))
    assert code == 2 and "--labels" in err
    assert "Traceback" not in err


def test_user_mistakes_exit_2(
    tiny_model_dir: Path, scene_dir: Path, config_file: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    code, _, err = run_cli(
        tiny_model_dir, cache, "edit", str(scene_dir), "--config", str(config_file), "--no-learn"
    )
    assert code == 2 and "layoutedit learn" in err
    code, _, err = run_cli(tiny_model_dir, cache, "edit", str(scene_dir), "--seeds", "0,x")
    assert code == 2 and "--seeds" in err
    code, _, err = run_cli(
        tiny_model_dir,
        cache,
        "edit",
        str(scene_dir),
        "--no-concept",
        "-l",
        str(tmp_path / "no.png"),
    )
    assert code == 2 and "layout not found" in err
    code, _, err = run_cli(
        tiny_model_dir,
        cache,
        "edit",
        str(scene_dir),
        "--no-concept",
        "--attention-res",
        "5",
        "--steps",
        "2",
    )
    assert code == 2 and "choose from 8, 16" in err
    assert "Traceback" not in err
