"""`layoutedit inspect` end to end: the published sample, JSON, and one test per bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.shapes.tokenizer import write_tokenizer

LABELS = {
    "cat": [251, 216, 1],
    "pot": [75, 254, 1],
    "plant": [251, 1, 1],
    "background": [254, 254, 254],
}
PALETTE = np.array(list(LABELS.values()), dtype=np.uint8)

runner = CliRunner()


def grid(side: int = 32) -> np.ndarray:
    g = np.full((side, side), 3, dtype=np.int16)
    g[: side // 2, : side // 3] = 0
    g[: side // 2, 2 * side // 3 :] = 1
    g[3 * side // 4 :, side // 4 : 3 * side // 4] = 2
    return g


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    """A valid 32 px scene with a target layout."""
    folder = tmp_path / "scene"
    (folder / "target_layout").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "image.png")
    Image.fromarray(PALETTE[grid()]).save(folder / "mask.png")
    Image.fromarray(PALETTE[np.fliplr(grid())]).save(folder / "target_layout" / "flip.png")
    (folder / "semantic_dict.json").write_text(json.dumps(LABELS))
    return folder


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(args: list[str | Path], path: Path, *problem: str) -> str:
    """Exit 2, exactly one line on stderr naming `path` and every `problem` part."""
    code, out, err = invoke(*args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert str(path) in line
    for part in problem:
        assert part in line, line
    assert "Traceback" not in out + err
    return line


# --- the published sample ------------------------------------------------------------------


def test_inspect_seed_sample_lists_objects_areas_and_prompt(seed_sample: Path) -> None:
    code, out, _ = invoke("inspect", seed_sample)
    assert code == 0
    for text in ("cat", "pot", "plant", "<cat>", "73,408", "92,352", "30,528", "28.0 %"):
        assert text in out
    # The default model's preset prompts with the bare object list.
    assert "<cat>, <pot> and <plant>" in out and "high quality" not in out
    assert "layout1.png, layout2.png, layout3.png" in out


def test_inspect_seed_sample_with_layout_says_how_objects_moved(seed_sample: Path) -> None:
    layout = seed_sample / "target_layout" / "layout1.png"
    code, out, _ = invoke("inspect", seed_sample, "--layout", layout)
    assert code == 0
    assert "layout1.png" in out
    assert "-111.5" in out and "+224.1" in out and "+340.1" in out  # dx cat, dx pot, dy plant
    assert "340 px" in out and "down" in out


def test_inspect_json_seed_sample(seed_sample: Path) -> None:
    layout = seed_sample / "target_layout" / "layout3.png"
    code, out, _ = invoke(
        "--json", "--model", "/models/sd15", "inspect", seed_sample, "--layout", layout
    )
    assert code == 0
    report = json.loads(out)
    assert [o["name"] for o in report["objects"]] == ["cat", "pot", "plant"]
    assert report["objects"][0] == {
        "name": "cat",
        "token": "<cat>",
        "colour": [251, 216, 1],
        "area": 73408,
        "share": pytest.approx(0.280029, abs=1e-6),
    }
    assert report["prompt"] == "a high quality picture of <cat>, <pot> and <plant>"
    assert report["token_positions"] is None
    moves = report["layouts"][0]["moves"]
    assert [m["name"] for m in moves] == ["cat", "pot", "plant"]
    assert all({"dx", "dy", "scale"} <= m.keys() for m in moves)
    assert report["warnings"] == []


# --- features ------------------------------------------------------------------------------


def test_inspect_explicit_files_and_flip_layout(scene_dir: Path) -> None:
    code, out, _ = invoke(
        "--json",
        "inspect",
        "--image",
        scene_dir / "image.png",
        "--mask",
        scene_dir / "mask.png",
        "--labels",
        scene_dir / "semantic_dict.json",
        "--layout",
        scene_dir / "target_layout" / "flip.png",
    )
    assert code == 0
    moves = {m["name"]: m for m in json.loads(out)["layouts"][0]["moves"]}
    # Mirrored left-right: cat (left third) goes right, pot goes left, plant stays.
    assert moves["cat"]["dx"] == pytest.approx(22.0) and moves["cat"]["dy"] == 0
    assert moves["pot"]["dx"] == pytest.approx(-21.0)  # 11 columns wide, not 10
    assert moves["plant"]["dx"] == 0 and moves["plant"]["scale"] == 1


def test_inspect_token_positions_with_a_tokenizer(scene_dir: Path, tmp_path: Path) -> None:
    tok = tmp_path / "model" / "tokenizer"
    write_tokenizer(tok, ["a", "high", "quality", "picture", "of", "and"], 77)
    model = ("--model", tmp_path / "model")  # not the builtin model: the published template
    code, out, _ = invoke("--json", *model, "inspect", scene_dir, "--tokenizer", tmp_path / "model")
    assert code == 0
    assert json.loads(out)["token_positions"] == {"<cat>": 6, "<pot>": 8, "<plant>": 10}
    code, out, _ = invoke(*model, "inspect", scene_dir, "--tokenizer", tok)
    assert "<cat> 6" in out
    # With the builtin model's bare template the tokens sit at the front.
    code, out, _ = invoke("--json", "inspect", scene_dir, "--tokenizer", tok)
    assert json.loads(out)["token_positions"] == {"<cat>": 1, "<pot>": 3, "<plant>": 5}


def test_inspect_shows_snapping_warnings(scene_dir: Path) -> None:
    mask = PALETTE[grid()]
    mask[0, 15] = (0, 0, 255)
    Image.fromarray(mask).save(scene_dir / "mask.png")
    code, out, _ = invoke("inspect", scene_dir)
    assert code == 0
    assert "warning:" in out and "(0, 0, 255) x 1" in out


def test_inspect_colour_tolerance_flag_and_config(scene_dir: Path, tmp_path: Path) -> None:
    mask = PALETTE[grid()].astype(np.int32)
    mask[..., 0] = np.clip(mask[..., 0] - 30, 0, 255)  # every colour 30 off
    Image.fromarray(mask.astype(np.uint8)).save(scene_dir / "mask.png")
    assert invoke("inspect", scene_dir)[0] == 0
    assert_one_line_error(
        ["inspect", scene_dir, "--colour-tolerance", "10"], scene_dir / "mask.png", "match no label"
    )
    config = tmp_path / "strict.toml"
    config.write_text("[scene]\ncolour_tolerance = 10\n")
    assert invoke("inspect", scene_dir, "--config", config)[0] == 2


def test_inspect_help_has_an_example() -> None:
    code, out, _ = invoke("inspect", "--help")
    assert code == 0
    assert "Example" in out and "layoutedit inspect ./scene --layout" in out


# --- one test per bad input: exit 2, one line naming the file and the problem ----------------


def test_missing_scene_folder(tmp_path: Path) -> None:
    assert_one_line_error(["inspect", tmp_path / "nope"], tmp_path / "nope", "not found")


def test_missing_mask_file(scene_dir: Path) -> None:
    (scene_dir / "mask.png").unlink()
    assert_one_line_error(["inspect", scene_dir], scene_dir / "mask.png", "mask not found")


def test_missing_files_without_a_folder(scene_dir: Path) -> None:
    code, _, err = invoke("inspect", "--image", scene_dir / "image.png")
    assert code == 2 and "--mask, --labels" in err and len(err.strip().splitlines()) == 1


def test_unreadable_image(scene_dir: Path) -> None:
    (scene_dir / "image.png").write_text("this is not a picture")
    assert_one_line_error(["inspect", scene_dir], scene_dir / "image.png", "not an image")


def test_truncated_image(scene_dir: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    (scene_dir / "image.png").write_bytes(buffer.getvalue()[:2000])
    assert_one_line_error(["inspect", scene_dir], scene_dir / "image.png", "truncated")


def test_label_map_not_json(scene_dir: Path) -> None:
    (scene_dir / "semantic_dict.json").write_text("{cat: yellow}")
    assert_one_line_error(
        ["inspect", scene_dir], scene_dir / "semantic_dict.json", "not valid JSON", "line 1"
    )


def test_label_map_not_an_object(scene_dir: Path) -> None:
    (scene_dir / "semantic_dict.json").write_text(json.dumps([["cat", [251, 216, 1]]]))
    assert_one_line_error(
        ["inspect", scene_dir], scene_dir / "semantic_dict.json", "JSON object of name -> [r, g, b]"
    )


@pytest.mark.parametrize("value", [[256, 0, 0], [-1, 0, 0], [1, 2], "yellow", [1.5, 0, 0]])
def test_label_map_bad_colour(scene_dir: Path, value: object) -> None:
    (scene_dir / "semantic_dict.json").write_text(json.dumps({**LABELS, "cat": value}))
    assert_one_line_error(
        ["inspect", scene_dir], scene_dir / "semantic_dict.json", "'cat'", "integers 0-255"
    )


def test_label_map_duplicate_name(scene_dir: Path) -> None:
    text = '{"cat": [251, 216, 1], "cat": [1, 1, 1], "pot": [75, 254, 1], "background": [0, 0, 0]}'
    (scene_dir / "semantic_dict.json").write_text(text)
    assert_one_line_error(["inspect", scene_dir], scene_dir / "semantic_dict.json", "'cat' twice")


def test_label_map_without_background(scene_dir: Path) -> None:
    labels = {k: v for k, v in LABELS.items() if k != "background"}
    (scene_dir / "semantic_dict.json").write_text(json.dumps(labels))
    assert_one_line_error(
        ["inspect", scene_dir], scene_dir / "semantic_dict.json", "no `background` entry"
    )


def test_object_absent_from_mask(scene_dir: Path) -> None:
    (scene_dir / "semantic_dict.json").write_text(json.dumps({**LABELS, "dog": [0, 0, 255]}))
    assert_one_line_error(
        ["inspect", scene_dir], scene_dir / "mask.png", "'dog'", "(0, 0, 255)", "not in the mask"
    )


def test_two_labels_with_nearly_the_same_colour(scene_dir: Path) -> None:
    (scene_dir / "semantic_dict.json").write_text(json.dumps({**LABELS, "pot": [251, 200, 20]}))
    assert_one_line_error(
        ["inspect", scene_dir],
        scene_dir / "semantic_dict.json",
        "'cat'",
        "'pot'",
        "nearly the same colour",
    )


def test_object_too_small_for_the_latent_grid(scene_dir: Path) -> None:
    mask = PALETTE[grid()]
    mask[3 * 32 // 4 :] = PALETTE[3]
    mask[31, 31] = PALETTE[2]  # the plant is one pixel
    Image.fromarray(mask).save(scene_dir / "mask.png")
    assert invoke("inspect", scene_dir)[0] == 0
    assert_one_line_error(
        ["inspect", scene_dir, "--latent-size", "8"],
        scene_dir / "mask.png",
        "'plant' covers 0 of the model's 8x8 latent pixels",
    )


def test_mask_colour_in_no_label_map(scene_dir: Path) -> None:
    mask = PALETTE[grid()]
    mask[20:, :8] = (10, 100, 200)
    Image.fromarray(mask).save(scene_dir / "mask.png")
    assert_one_line_error(
        ["inspect", scene_dir], scene_dir / "mask.png", "match no label colour", "(10, 100, 200)"
    )


def test_mask_with_other_proportions(scene_dir: Path) -> None:
    Image.fromarray(PALETTE[grid(16)[:8]]).save(scene_dir / "mask.png")
    assert_one_line_error(["inspect", scene_dir], scene_dir / "mask.png", "16x8", "proportions")


def test_layout_lacking_an_object(scene_dir: Path) -> None:
    lacking = grid()
    lacking[lacking == 0] = 3
    layout = scene_dir / "target_layout" / "no_cat.png"
    Image.fromarray(PALETTE[lacking]).save(layout)
    assert_one_line_error(
        ["inspect", scene_dir, "--layout", layout], layout, "'cat'", "not in the layout"
    )


def test_layout_colour_the_label_map_lacks(scene_dir: Path) -> None:
    colours = PALETTE[grid()]
    colours[:, :4] = (128, 0, 128)
    layout = scene_dir / "target_layout" / "purple.png"
    Image.fromarray(colours).save(layout)
    assert_one_line_error(["inspect", scene_dir, "--layout", layout], layout, "(128, 0, 128)")


def test_missing_layout(scene_dir: Path) -> None:
    layout = scene_dir / "target_layout" / "nope.png"
    assert_one_line_error(["inspect", scene_dir, "--layout", layout], layout, "layout not found")


def test_bad_toml_config(scene_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[scene\ncolour_tolerance = ")
    assert_one_line_error(["inspect", scene_dir, "--config", config], config, "not valid TOML")


def test_missing_tokenizer_folder(scene_dir: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        ["inspect", scene_dir, "--tokenizer", tmp_path / "none"], tmp_path / "none", "not found"
    )
