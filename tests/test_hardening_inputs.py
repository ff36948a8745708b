"""Issue #14's table: bad inputs that used to give a traceback, a wrong cause or silence.

Each gives one line naming the cause and exit 2 (or a warning, where the input is usable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hardening_support import LABELS, write_scene
from PIL import Image
from typer.testing import CliRunner, Result

from layoutedit.cli.app import app
from layoutedit.scenes.scene import load_scene, prompt_length_warning
from layoutedit_cache import ConceptCache

K1 = "3fa9" + "1" * 60
K2 = "81be" + "2" * 60
K3 = "c0de" + "3" * 60

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_one_line_error(result: Result, *words: str) -> str:
    """Exit 2, no traceback, exactly one stderr line starting with `error:` holding `words`."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene")


# --- options and config fields ---------------------------------------------------------


def test_latent_size_has_an_upper_bound(scene: Path) -> None:
    # Used to allocate latent_size**2 labels until the kernel killed the process.
    assert_one_line_error(invoke("inspect", str(scene), "--latent-size", "100000"), "100000")
    assert_one_line_error(invoke("inspect", str(scene), "--latent-size", "0"), "latent size 0")
    assert invoke("inspect", str(scene), "--latent-size", "64").exit_code == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_by_name(scene: Path, value: str) -> None:
    line = assert_one_line_error(
        invoke("inspect", str(scene), "--colour-tolerance", value), "colour_tolerance"
    )
    assert "finite" in line and "NaN" in line and "<=" not in line
    line = assert_one_line_error(
        invoke("edit", str(scene), "--guidance-scale", value, "--no-learn"), "guidance_scale"
    )
    assert "finite" in line


def test_nan_in_a_config_file_names_the_file(scene: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[scene]\ncolour_tolerance = nan\n")
    assert_one_line_error(
        invoke("inspect", str(scene), "--config", str(config)), str(config), "finite"
    )


def test_steps_have_an_upper_bound(scene: Path) -> None:
    # Used to blame a missing concept (--no-learn), or fail in diffusers after loading.
    assert_one_line_error(
        invoke("edit", str(scene), "--steps", "100000", "--no-learn"), "edit.steps", "1000"
    )


def test_negative_seed_is_refused(scene: Path) -> None:
    # Used to be accepted and write seed--1.png.
    assert_one_line_error(invoke("edit", str(scene), "--seeds", "-1", "--no-learn"), "seeds")
    assert_one_line_error(invoke("edit", str(scene), "--seeds", "0,-5", "--no-learn"), "seeds")


def test_every_numeric_config_field_has_bounds() -> None:
    from layoutedit.config import EditConfig, LearnConfig, SceneOptions

    for model in (SceneOptions, LearnConfig, EditConfig):
        for name, field in model.model_fields.items():
            if field.annotation not in (int, float, "int", "float"):
                continue
            bounds = {type(m).__name__ for m in field.metadata}
            assert bounds & {"Le", "Lt"}, f"{model.__name__}.{name} has no upper bound"
            assert bounds & {"Ge", "Gt"}, f"{model.__name__}.{name} has no lower bound"


def test_backend_is_checked_on_every_command(scene: Path) -> None:
    assert_one_line_error(invoke("--backend", "nosuch", "inspect", str(scene)), "nosuch", "cpu")
    assert invoke("--backend", "cpu", "inspect", str(scene)).exit_code == 0


def test_option_errors_come_before_the_model_stack(scene: Path, tmp_path: Path) -> None:
    """A bad option or scene file stops learn and edit before torch, diffusers or
    transformers load."""
    probe = (
        "import sys\n"
        "from layoutedit.cli.app import main\n"
        "sys.argv = ['layoutedit', *sys.argv[1:]]\n"
        "try:\n    main()\n"
        "except SystemExit as exc:\n"
        "    heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "    print('EXIT', exc.code, 'HEAVY', ','.join(heavy) or '-')\n"
    )
    env = {**os.environ, "LAYOUTEDIT_CACHE_DIR": str(tmp_path / "cache")}
    for args in (
        ["learn", str(scene), "--ti-steps", "-1"],
        ["learn", str(scene), "--ti-lr", "nan"],
        ["learn", str(tmp_path / "missing")],
        ["learn", str(scene), "--config", str(tmp_path / "missing.toml")],
        ["edit", str(scene), "--steps", "100000"],
        ["edit", str(scene), "--seeds", "-1"],
        ["edit", str(tmp_path / "missing")],
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env
        )
        assert "EXIT 2 HEAVY -" in done.stdout, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1


# --- the cache folder ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["cache", "ls"],
        ["cache", "verify"],
        ["cache", "prune"],
        ["inspect", "SCENE"],
        ["learn", "SCENE"],
        ["edit", "SCENE", "--no-learn"],
    ],
)
def test_cache_dir_that_is_a_file(scene: Path, tmp_path: Path, command: list[str]) -> None:
    # learn: NotADirectoryError traceback; edit: a missing concept; ls/verify: "all good".
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("x")
    args = [str(scene) if a == "SCENE" else a for a in command]
    for cache_dir in (not_a_folder, not_a_folder / "below"):
        assert_one_line_error(invoke("--cache-dir", str(cache_dir), *args), "is a file")
    assert not_a_folder.read_text() == "x"
    from_env = runner.invoke(app, args, env={"LAYOUTEDIT_CACHE_DIR": str(not_a_folder)})
    assert_one_line_error(from_env, "is a file", "$LAYOUTEDIT_CACHE_DIR")


# --- label maps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"cat": [NaN, 0, 0], "background": [1, 1, 1]}', ["NaN"]),
        ('{"cat": [Infinity, 0, 0], "background": [1, 1, 1]}', ["Infinity"]),
        ('{"cat": [-Infinity, 0, 0], "background": [1, 1, 1]}', ["-Infinity"]),
        ('{"cat": [1e400, 0, 0], "background": [1, 1, 1]}', ["1e400", "float range"]),
        ('{"cat": [' + "9" * 5000 + ', 0, 0], "background": [1, 1, 1]}', ["5000 digits"]),
        ("[" * 100_000 + "]" * 100_000, ["nested"]),
        ('{"cat": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested"]),
    ],
    ids=["nan", "inf", "-inf", "1e400", "5000-digits", "deep-list", "deep-value"],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_label_map_numbers_json_cannot_hold(
    tmp_path: Path, text: str, words: list[str], as_json: bool
) -> None:
    folder = write_scene(tmp_path / "scene")
    (folder / "semantic_dict.json").write_text(text)
    args = ["--json"] if as_json else []
    line = assert_one_line_error(invoke(*args, "inspect", str(folder)), *words)
    assert "semantic_dict.json" in line


def test_a_huge_label_value_is_shown_short(tmp_path: Path) -> None:
    folder = write_scene(tmp_path / "scene")
    (folder / "semantic_dict.json").write_text(
        json.dumps({"cat": [[[[list(range(500))]]]], "background": [1, 1, 1]})
    )
    line = assert_one_line_error(invoke("inspect", str(folder)), "'cat' must be [r, g, b]")
    assert "..." in line and len(line) < 300


# --- images and scene folders -------------------------------------------------------------


def test_a_one_pixel_image_is_called_too_small(scene: Path) -> None:
    # Used to be reported as a mask problem.
    Image.new("RGB", (1, 1)).save(scene / "image.png")
    assert_one_line_error(invoke("inspect", str(scene)), "image.png", "1x1", "smallest")


def test_symlink_loop_and_broken_link(scene: Path) -> None:
    image = scene / "image.png"
    image.unlink()
    os.symlink(image, image)  # a link to itself
    assert_one_line_error(invoke("inspect", str(scene)), "image.png", "loop")
    labels = scene / "semantic_dict.json"
    labels.unlink()
    os.symlink(scene / "gone.json", labels)
    assert_one_line_error(
        invoke(
            "inspect",
            "--image",
            str(scene / "mask.png"),
            "--mask",
            str(scene / "mask.png"),
            "--labels",
            str(labels),
        ),
        "broken symbolic link",
    )


def test_mask_without_background_warns(tmp_path: Path) -> None:
    folder = write_scene(tmp_path / "scene")
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:, :16] = LABELS["cat"]
    mask[:, 16:] = LABELS["pot"]
    Image.fromarray(mask).save(folder / "mask.png")
    result = invoke("inspect", str(folder))
    assert result.exit_code == 0, result.output
    assert "no pixel has the background colour" in result.output
    assert any("background colour" in w for w in load_scene(folder).warnings)


def test_two_images_in_a_scene_folder_warn(scene: Path) -> None:
    Image.open(scene / "image.png").save(scene / "image.jpg")
    result = invoke("inspect", str(scene))
    assert result.exit_code == 0, result.output
    assert "image.png, image.jpg" in result.output and "using image.png" in result.output
    single = load_scene(scene, image=scene / "image.jpg")
    assert single.warnings == ()  # naming the image with --image is not ambiguous


def test_an_unsupported_image_suffix_is_named(scene: Path) -> None:
    # Used to say "image not found" beside image.gif.
    (scene / "image.png").rename(scene / "image.gif")
    assert_one_line_error(invoke("inspect", str(scene)), "image.gif is not a supported", ".webp")


def test_long_prompt_warns_with_count_and_limit(
    scene: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import CLIPTokenizer

    from layoutedit.config import SceneOptions

    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_model_dir / "tokenizer"))
    limit = tokenizer.model_max_length  # 16 in the tiny model
    short = load_scene(scene, options=SceneOptions(prompt_template="{objects}"))
    assert prompt_length_warning(short, tokenizer, limit) is None
    template = "{objects} " + "on a table by the window " * 3
    long = load_scene(scene, options=SceneOptions(prompt_template=template))
    warning = prompt_length_warning(long, tokenizer, limit)
    assert warning is not None and f"reads {limit}" in warning
    count = int(warning.split(" tokens long")[0].rsplit(" ", 1)[1])
    assert count > limit
    assert "<cat>" not in tokenizer.get_vocab()  # the caller's tokenizer is unchanged

    config = tmp_path / "long.toml"
    config.write_text(f"[scene]\nprompt_template = {json.dumps(template)}\n")
    result = invoke(
        "inspect", str(scene), "--config", str(config), "--tokenizer", str(tiny_model_dir)
    )
    assert result.exit_code == 0, result.output
    assert f"{count} tokens long" in result.output and f"reads {limit}" in result.output


# --- cache maintenance --------------------------------------------------------------------


@pytest.fixture
def damaged_cache(tmp_path: Path) -> Path:
    """Three entries: K1 whole, K2 truncated, K3 with a missing artifact file."""
    root = tmp_path / "cache"
    cache = ConceptCache(root)
    for key in (K1, K2, K3):
        cache.put(key, "concept", {"concept": {"w": torch.randn(64)}}, {"scene": "s"})
    (path2,) = (root / "artifacts" / K2).glob("*.safetensors")
    path2.write_bytes(path2.read_bytes()[:-10])
    (path3,) = (root / "artifacts" / K3).glob("*.safetensors")
    path3.unlink()
    cache.close()
    return root


def test_verify_fix_says_what_it_evicted(damaged_cache: Path) -> None:
    # Used to end with "all good" after evicting two bad entries.
    fixed = invoke("--cache-dir", str(damaged_cache), "cache", "verify", "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert "2 bad, evicted" in fixed.stdout and "all good" not in fixed.stdout
    again = invoke("--cache-dir", str(damaged_cache), "cache", "verify")
    assert again.exit_code == 0 and "checked 1 entries: all good" in again.stdout


def test_ls_and_show_mark_damaged_entries(damaged_cache: Path) -> None:
    # Used to list them like good ones, exit 0, no sign of trouble.
    listed = invoke("--cache-dir", str(damaged_cache), "cache", "ls")
    assert listed.exit_code == 0, listed.output
    assert f"DAMAGED {K2[:12]}" in listed.stdout and "truncated" in listed.stdout
    assert f"DAMAGED {K3[:12]}" in listed.stdout and "missing" in listed.stdout
    assert f"DAMAGED {K1[:12]}" not in listed.stdout
    data = json.loads(invoke("--cache-dir", str(damaged_cache), "--json", "cache", "ls").stdout)
    assert {d["key"]: d["problem"] is not None for d in data} == {K1: False, K2: True, K3: True}
    shown = invoke("--cache-dir", str(damaged_cache), "cache", "show", K2[:8])
    assert shown.exit_code == 1 and "DAMAGED" in shown.stdout
    assert invoke("--cache-dir", str(damaged_cache), "cache", "show", K1[:8]).exit_code == 0


def test_ls_marks_an_unreadable_record(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = ConceptCache(root)
    cache.put(K1, "concept", {"concept": {"w": torch.randn(4)}}, {})
    index = cache._open(create=False)
    assert index is not None
    index.set(K2, "{not json")
    cache.close()
    listed = invoke("--cache-dir", str(root), "cache", "ls")
    assert listed.exit_code == 0 and f"DAMAGED {K2[:12]}" in listed.stdout
    assert "2 entries" in listed.stdout
