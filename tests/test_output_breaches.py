"""The output-folder breaches of issue #20, one test each: a command that writes never
destroys, overwrites or writes beside what the user owns without --overwrite, refuses before
any work, writes nothing outside OUT, and leaves nothing half written."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import FAST_SETTINGS, object_names, run_cli, write_fast_config
from PIL import Image

from layoutedit.shapes.world import sample_scene, write_scene_folder
from layoutedit_cache import ConceptCache

NO_MODEL = "/nonexistent/model-folder"
"""A --model that fails when loaded: a refusal that names the output folder came first."""


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    world = sample_scene(5, 2)
    labels = world.labels()
    return write_scene_folder(world, tmp_path / "scene", layouts=[np.roll(labels, 6, axis=1)])


def hashes(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (links as their target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[path.relative_to(root).as_posix()] = f"-> {path.readlink()}"
        elif path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def user_folder(root: Path, files: dict[str, str]) -> dict[str, str]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return hashes(root)


def refused(code: int, err: str, folder: Path) -> None:
    assert code == 2, err
    assert "did not write" in err and "--overwrite" in err and str(folder) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_learn_out_with_the_users_files_is_refused_before_any_work(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "D"
    before = user_folder(out, {"diffusers/notes.txt": "mine", "concept/thesis.tex": "mine too"})
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "learn", str(scene_dir), "--out", str(out))
    refused(code, err, out)
    assert hashes(out) == before
    # --overwrite: the concept is written beside the user's files, which stay.
    config = write_fast_config(tmp_path)
    args = ["learn", str(scene_dir), "--config", str(config), "--out", str(out), "--overwrite"]
    code, _, err = run_cli(tiny_model_dir, tmp_path / "c", *args)
    assert code == 0, err
    after = hashes(out)
    assert {k: after[k] for k in before} == before
    assert "concept/concept.safetensors" in after
    assert any(k.startswith("diffusers/learned_embeds-") for k in after)
    # A second plain run is still refused: the user's files are still there.
    code, _, err = run_cli(tiny_model_dir, tmp_path / "c", *args[:-1])
    refused(code, err, out)


def test_demo_never_overwrites_the_users_photo(tmp_path: Path) -> None:
    out = tmp_path / "D"
    before = user_folder(out, {"scene/image.png": "my photo"})
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "demo", "--out", str(out))
    refused(code, err, out)
    assert hashes(out) == before  # and no earlier folder (scene/, edits/) was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]


def test_edit_out_with_the_users_files_is_refused_before_any_work(
    scene_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    before = user_folder(out, {"thesis.tex": "do not delete"})
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "edit", str(scene_dir), "--out", str(out))
    refused(code, err, out)
    assert hashes(out) == before


def test_a_layout_whose_stem_is_dot_dot_cannot_write_outside_out(
    scene_dir: Path, tmp_path: Path
) -> None:
    layouts = tmp_path / "layouts"
    layouts.mkdir()
    source = scene_dir / "target_layout" / "layout1.png"
    (layouts / "...png").write_bytes(source.read_bytes())  # stem ".."
    out = tmp_path / "a" / "out"
    args = ["edit", str(scene_dir), "-l", str(layouts / "...png"), "--out", str(out)]
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", *args)
    assert code == 2 and "layout name '..'" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name", ["../../escaped", "../x", "a/../../b", "..\\x"])
def test_a_script_step_name_cannot_leave_out(tmp_path: Path, scene_dir: Path, name: str) -> None:
    a, _ = object_names(scene_dir)
    script = tmp_path / "script.toml"
    steps = f'[[step]]\nmove = ["{a}=+3,0"]\nname = {json.dumps(name)}\n'
    script.write_text(f'scene = "scene"\nout = "run"\nseeds = [0]\n{FAST_SETTINGS}\n{steps}')
    before = hashes(tmp_path)
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "run", str(script))
    assert code == 2 and "step 1" in err and "cannot be a file name" in err, err
    assert hashes(tmp_path) == before


def test_a_step_name_of_the_wrong_type_is_one_line(tmp_path: Path, scene_dir: Path) -> None:
    a, _ = object_names(scene_dir)
    script = tmp_path / "script.toml"
    script.write_text(f'scene = "scene"\n[[step]]\nmove = ["{a}=+3,0"]\nname = 3\n')
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "run", str(script))
    assert code == 2 and "step 1" in err and "`name` must be a string" in err, err


def test_an_interrupted_animation_leaves_no_frames(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import layoutedit.editing.animation as animation

    a, _ = object_names(scene_dir)
    script = tmp_path / "script.toml"
    steps = f'[[step]]\nmove = ["{a}=+3,0"]\n'
    script.write_text(f'scene = "scene"\nout = "run"\nseeds = [0]\n{FAST_SETTINGS}\n{steps}')

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C once every frame is written, before the GIF

    monkeypatch.setattr(animation, "write_animation", interrupted)
    code, _, err = run_cli(tiny_model_dir, tmp_path / "c", "run", str(script), "--frames", "2")
    assert code == 130 and "nothing partial was written" in err, err
    assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if "stage" in p.name]


def test_bench_out_with_the_users_files(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    before = user_folder(out, {"bench.md": "my notes on the last run"})
    args = ["bench", "--variants", "paste", "--scenes", "1", "--layouts", "1", "--out", str(out)]
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", *args)
    refused(code, err, out)
    assert hashes(out) == before
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", *args, "--overwrite")
    assert code == 0, err
    assert {"bench.json", "examples.png"} <= set(hashes(out))
    assert hashes(out)["bench.md"] != before["bench.md"]  # a path bench writes: replaced


def _cache_with_entry(root: Path) -> str:
    key = "ab" * 32
    cache = ConceptCache(root)
    cache.put(key, "concept", {"kv": {"w": torch.ones(2, 3)}}, {"scene": "s"})
    cache.close()
    return key


def test_cache_export_refuses_a_target_inside_the_cache(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    key = _cache_with_entry(cache_dir)
    own = cache_dir / "artifacts" / key / "kv.safetensors"
    before = hashes(cache_dir / "artifacts")  # (the index's database changes when read)
    for target in (own, cache_dir / "copy.tar", cache_dir / "artifacts" / "x.safetensors"):
        code, _, err = run_cli(NO_MODEL, cache_dir, "cache", "export", key[:8], str(target))
        assert code == 2 and "inside the cache folder" in err, err
    assert hashes(cache_dir / "artifacts") == before
    assert not (cache_dir / "copy.tar").exists()
    code, out, err = run_cli(NO_MODEL, cache_dir, "cache", "verify")
    assert code == 0 and "all good" in out, out + err


def test_cache_export_keeps_a_users_file_and_replaces_an_export(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    key = _cache_with_entry(cache_dir)
    for name in ("entry.tar", "entry.safetensors"):
        target = tmp_path / name
        target.write_text("my own file")
        code, _, err = run_cli(NO_MODEL, cache_dir, "cache", "export", key[:8], str(target))
        assert code == 2 and "not a layoutedit cache export" in err, err
        assert target.read_text() == "my own file"
        code, _, err = run_cli(
            NO_MODEL, cache_dir, "cache", "export", key, str(target), "--overwrite"
        )
        assert code == 0, err
        # An earlier export is replaced without --overwrite; both forms get the usual mode.
        code, _, err = run_cli(NO_MODEL, cache_dir, "cache", "export", key, str(target))
        assert code == 0, err
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mask_out_beside_the_users_photo(tmp_path: Path) -> None:
    world = sample_scene(3, 3)
    scene = tmp_path / "scene"
    scene.mkdir()
    Image.fromarray(world.image).save(scene / "photo.png")
    (scene / "image.png").write_text("the user's own image.png")
    before = hashes(scene)
    names = ",".join(world.names)
    args = ["mask", str(scene / "photo.png"), "--objects", names, "--out", str(scene)]
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", *args)
    refused(code, err, scene)
    assert hashes(scene) == before
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", *args, "--overwrite")
    assert code == 0, err
    after = hashes(scene)
    assert after["photo.png"] == before["photo.png"]
    assert after["image.png"] != before["image.png"]  # a file mask writes: replaced
