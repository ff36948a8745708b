"""`layoutedit mask` and `layoutedit.masking`: colour clusters against the shapes world's exact
masks, CLIPSeg end to end on a tiny random model, and the scene folder it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.errors import UserError
from layoutedit.masking import colour_masks
from layoutedit.masking.clipseg import masks_from_scores
from layoutedit.masking.naming import assign_names, parse_objects
from layoutedit.scenes.morphology import box, close, components, fill_holes, largest_component
from layoutedit.scenes.scene import load_scene
from layoutedit.shapes.world import sample_scene

runner = CliRunner()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(int((a | b).sum()), 1))


# --- clean-up primitives -------------------------------------------------------------------


def test_components_are_four_connected_and_sized() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:3, 1:3] = True  # 4 px
    mask[3, 3] = True  # touches the square only diagonally: its own component
    mask[5:8, 0:8] = True  # 24 px
    labels, count = components(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    assert sorted(sizes.tolist()) == [1, 4, 24]
    assert labels[1, 1] != labels[3, 3]
    assert largest_component(mask).sum() == 24


def test_components_of_a_photo_sized_mask_are_numbered_in_scan_order() -> None:
    # 200 one-pixel stripes of a 1000 x 1000 mask; a bridge on the left joins the first two.
    mask = np.zeros((1000, 1000), dtype=bool)
    mask[::5, :] = True
    mask[1:5, :3] = True
    labels, count = components(mask)
    assert count == 199
    assert labels[0, 0] == labels[5, 999] == 1  # the joined pair is the first component
    assert labels[10, 500] == 2 and labels[995, 0] == 199  # then top to bottom


def test_fill_holes_fills_enclosed_not_open_regions() -> None:
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False  # enclosed hole
    ring[0:3, 5] = False  # a notch cut in from the top: open to the outside
    filled = fill_holes(ring)
    assert filled[3, 3]
    assert not filled[1, 5]  # the notch reaches the outside, so it stays open


def test_close_bridges_a_one_pixel_stripe() -> None:
    stripes = np.ones((6, 9), dtype=bool)
    stripes[:, 4] = False
    assert components(stripes)[1] == 2
    assert components(close(stripes, box(1)))[1] == 1


# --- colour clusters -------------------------------------------------------------------------


def test_colour_clusters_reproduce_the_true_masks_on_20_scenes() -> None:
    """IoU >= 0.9 for every object of 20 three-object shapes scenes (striped, dotted, rings,
    textured and graded backgrounds among them), names matched by their colour words."""
    worst = 1.0
    for seed in range(20):
        scene = sample_scene(seed, 3)
        masks = colour_masks(scene.image, list(scene.names))
        for name, mask, truth in zip(scene.names, masks, scene.masks, strict=True):
            value = iou(mask, truth)
            assert value >= 0.9, f"seed {seed} {name}: IoU {value:.3f}"
            worst = min(worst, value)
        assert not (masks.sum(axis=0) > 1).any(), "masks overlap"
    assert worst < 1.0  # the comparison is real: not every border pixel is trivially right


def test_names_without_colour_words_go_largest_first() -> None:
    image = np.full((40, 40, 3), 230, dtype=np.uint8)
    image[4:24, 4:24] = (200, 30, 30)  # 400 px
    image[28:36, 28:36] = (30, 30, 200)  # 64 px
    masks = colour_masks(image, ["big", "small"])
    assert masks[0].sum() == 400 and masks[0][10, 10]
    assert masks[1].sum() == 64 and masks[1][30, 30]


def test_colour_words_pick_the_nearest_region() -> None:
    colours = np.array([[30.0, 60, 210], [215, 40, 30]])
    assert assign_names(["red square", "blue ring"], colours, [10, 99]) == [1, 0]


def test_too_few_colour_regions_is_a_user_error() -> None:
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    image[8:16, 8:16] = (200, 20, 20)
    with pytest.raises(UserError, match="colour region"):
        colour_masks(image, ["a", "b", "c"])


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "separated by commas"), ("a,,b", "separated by commas"), ("a,A", "twice")],
)
def test_bad_object_lists(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_objects(text)
    assert parse_objects(" cat , pot,plant ") == ["cat", "pot", "plant"]


# --- the command -------------------------------------------------------------------------------


def write_shapes_image(folder: Path, seed: int = 3) -> tuple[Path, object]:
    scene = sample_scene(seed, 3)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "photo.png"
    Image.fromarray(scene.image).save(path)
    return path, scene


def test_mask_command_writes_a_scene_that_loads(tmp_path: Path) -> None:
    path, world = write_shapes_image(tmp_path)
    names = ",".join(world.names)  # type: ignore[attr-defined]
    out = tmp_path / "scene"
    result = runner.invoke(
        app, ["--json", "mask", str(path), "--objects", names, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["method"] == "colours"
    scene = load_scene(out)
    assert scene.names == world.names  # type: ignore[attr-defined]
    assert np.array_equal(scene.image, world.image)  # type: ignore[attr-defined]
    for mask, truth in zip(scene.object_masks(), world.masks, strict=True):  # type: ignore[attr-defined]
        assert iou(mask, truth) >= 0.9
    # Its own earlier output is replaced; a mask the user has since painted over is the
    # user's, kept unless --overwrite (or its old name --force).
    again = runner.invoke(app, ["mask", str(path), "--objects", names, "--out", str(out)])
    assert again.exit_code == 0, again.output
    painted = np.asarray(Image.open(out / "mask.png")).copy()
    painted[0, 0] = 0
    Image.fromarray(painted).save(out / "mask.png")
    refused = runner.invoke(app, ["mask", str(path), "--objects", names, "--out", str(out)])
    assert refused.exit_code == 2
    assert "'mask.png'" in refused.output and "--overwrite" in refused.output
    assert np.array_equal(np.asarray(Image.open(out / "mask.png")), painted)
    forced = runner.invoke(
        app, ["mask", str(path), "--objects", names, "--out", str(out), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert not np.array_equal(np.asarray(Image.open(out / "mask.png")), painted)


def test_mask_command_bad_image_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["mask", str(bad), "--objects", "a", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "not an image" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


# --- CLIPSeg -------------------------------------------------------------------------------


def test_scores_resolve_overlaps_and_clean_up() -> None:
    scores = np.zeros((2, 20, 20), dtype=np.float32)
    scores[0, 2:12, 2:12] = 0.9
    scores[0, 6, 6] = 0.1  # a hole: filled
    scores[0, 18, 18] = 0.9  # a speck away from the object: dropped
    scores[1, 8:18, 8:18] = 0.7  # overlaps object 0, which scores higher there
    masks = masks_from_scores(scores, ["a", "b"], threshold=0.5)
    assert masks[0][6, 6] and not masks[0][18, 18]
    assert masks[0][10, 10] and not masks[1][10, 10]
    assert masks[1][15, 15]
    assert not (masks[0] & masks[1]).any()
    with pytest.raises(UserError, match="lower --threshold"):
        masks_from_scores(scores, ["a", "b"], threshold=0.95)


@pytest.fixture(scope="module")
def tiny_clipseg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIPSeg folder: 32 px images, 2-layer text and vision towers, and the shapes
    world's closed-vocabulary CLIP tokenizer; saved with save_pretrained (safetensors)."""
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
    )

    try:
        from transformers import ViTImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:  # older transformers
        from transformers import ViTImageProcessor as ImageProcessor

    from layoutedit.shapes.tokenizer import write_tokenizer
    from layoutedit.shapes.world import VOCABULARY

    folder = tmp_path_factory.mktemp("clipseg") / "model"
    write_tokenizer(folder, VOCABULARY, model_max_length=16)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = CLIPSegConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 16,
            **ids,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=32,
        extract_layers=[0, 1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    torch.manual_seed(0)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    processor = ImageProcessor(size={"height": 32, "width": 32})
    CLIPSegProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clipseg_end_to_end_on_a_tiny_model(tmp_path: Path, tiny_clipseg: Path) -> None:
    path, _ = write_shapes_image(tmp_path, seed=5)
    out = tmp_path / "scene"
    # Threshold 0: every pixel goes to its best-scoring name, so a random model still gives
    # each name a region; what is tested is the whole path, files included.
    result = runner.invoke(
        app,
        [
            "--json",
            "mask",
            str(path),
            "--objects",
            "red heart,blue star",
            "--out",
            str(out),
            "--segmenter",
            str(tiny_clipseg),
            "--threshold",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["method"] == "clipseg"
    scene = load_scene(out)
    assert scene.names == ("red heart", "blue star")
    masks = scene.object_masks()
    assert masks.any(axis=(1, 2)).all()
    assert not (masks[0] & masks[1]).any()


@pytest.mark.parametrize("spec", ["missing-folder", "empty-folder", "nobody/clipseg-not-cached"])
def test_missing_clipseg_model_fails_cleanly(tmp_path: Path, spec: str) -> None:
    path, _ = write_shapes_image(tmp_path)
    segmenter = str(tmp_path / spec) if spec.endswith("folder") else spec
    if spec == "empty-folder":
        (tmp_path / spec).mkdir()
    out = tmp_path / "scene"
    result = runner.invoke(
        app, ["mask", str(path), "--objects", "a,b", "--out", str(out), "--segmenter", segmenter]
    )
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "CLIPSeg" in result.output
    assert not out.exists()
