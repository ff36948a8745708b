"""Loading scenes and layouts: the published sample, image modes, sizes, noisy masks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layoutedit.config import SceneOptions
from layoutedit.errors import UserError
from layoutedit.scenes.label_map import parse_label_map
from layoutedit.scenes.layout_ops import object_moves
from layoutedit.scenes.scene import (
    layout_from_labels,
    load_layout,
    load_scene,
    scene_from_arrays,
)

LABELS = {
    "cat": [251, 216, 1],
    "pot": [75, 254, 1],
    "plant": [251, 1, 1],
    "background": [254, 254, 254],
}
PALETTE = np.array([LABELS["cat"], LABELS["pot"], LABELS["plant"], LABELS["background"]], np.uint8)


def label_grid(height: int = 32, width: int = 32) -> np.ndarray:
    """cat top-left, pot top-right, plant bottom band, background elsewhere."""
    grid = np.full((height, width), 3, dtype=np.int16)
    grid[: height // 2, : width // 3] = 0
    grid[: height // 2, 2 * width // 3 :] = 1
    grid[3 * height // 4 :, width // 4 : 3 * width // 4] = 2
    return grid


def write_scene(
    folder: Path,
    *,
    image: np.ndarray | Image.Image | None = None,
    mask: np.ndarray | Image.Image | None = None,
    labels: object = LABELS,
    size: tuple[int, int] = (32, 32),
) -> Path:
    """Write image.png, mask.png and semantic_dict.json; arrays of labels become colours."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if mask is None:
        mask = label_grid(h, w)
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        mask = PALETTE[mask]
    for name, value in (("image.png", image), ("mask.png", mask)):
        pil = value if isinstance(value, Image.Image) else Image.fromarray(value)
        pil.save(folder / name)
    (folder / "semantic_dict.json").write_text(json.dumps(labels))
    return folder


def test_seed_sample_parses(seed_sample: Path) -> None:
    scene = load_scene(seed_sample)
    assert scene.names == ("cat", "pot", "plant")
    assert scene.tokens == ("<cat>", "<pot>", "<plant>")
    assert scene.prompt == "a high quality picture of <cat>, <pot> and <plant>"
    assert scene.image.shape == (512, 512, 3) and scene.image.dtype == np.uint8
    assert scene.labels.shape == (512, 512) and scene.labels.dtype == np.int16
    assert scene.background_index == 3
    assert scene.background_colour == (254, 254, 254)
    assert scene.objects[0].colour == (251, 216, 1)
    # The 64 px mask is upscaled 8x by nearest neighbour: areas are 64x the mask's counts.
    mask = np.asarray(Image.open(seed_sample / "mask.png").convert("RGB")).reshape(-1, 3)
    for obj in scene.objects:
        count = int((mask == np.array(obj.colour)).all(-1).sum())
        assert obj.area == 64 * count
        assert obj.share == pytest.approx(obj.area / 512**2)
    assert [p.name for p in scene.layout_paths] == ["layout1.png", "layout2.png", "layout3.png"]
    assert scene.warnings == ()
    assert scene.object_masks().shape == (3, 512, 512)


def test_seed_sample_layouts_parse_and_move_objects(seed_sample: Path) -> None:
    scene = load_scene(seed_sample)
    layout = load_layout(seed_sample / "target_layout" / "layout1.png", scene)
    assert layout.labels.shape == scene.labels.shape
    moves = {m.name: m for m in object_moves(scene, layout)}
    assert set(moves) == {"cat", "pot", "plant"}
    # Layout 1 puts the plant at the bottom and the pot up and to the right.
    assert moves["plant"].dy > 200
    assert moves["pot"].dx > 100 and moves["pot"].dy < -50
    for move in moves.values():
        assert move.layout_area > 0 and 0.5 < move.scale < 1.5


def test_seed_sample_from_explicit_files(seed_sample: Path) -> None:
    scene = load_scene(
        image=seed_sample / "image.png",
        mask=seed_sample / "mask.png",
        labels=seed_sample / "semantic_dict.json",
    )
    assert scene.names == ("cat", "pot", "plant")
    assert scene.layout_paths == ()


def test_seed_sample_latent_check_passes_at_sd_resolution(seed_sample: Path) -> None:
    load_scene(seed_sample, latent_size=64)


def test_jpeg_saved_mask_and_layout_keep_every_object(seed_sample: Path, tmp_path: Path) -> None:
    reference = load_scene(seed_sample)
    mask = Image.open(seed_sample / "mask.png").convert("RGB")
    mask.save(tmp_path / "mask.jpg", quality=75)
    scene = load_scene(seed_sample, mask=tmp_path / "mask.jpg")
    for obj, ref in zip(scene.objects, reference.objects, strict=True):
        assert abs(obj.area - ref.area) / ref.area < 0.05
    agree = (scene.labels == reference.labels).mean()
    assert agree > 0.98
    Image.open(seed_sample / "target_layout" / "layout2.png").convert("RGB").save(
        tmp_path / "layout2.jpg", quality=75
    )
    noisy = load_layout(tmp_path / "layout2.jpg", scene)
    clean = load_layout(seed_sample / "target_layout" / "layout2.png", scene)
    assert (noisy.labels == clean.labels).mean() > 0.98


def test_anti_aliased_upscaled_mask_keeps_every_object(seed_sample: Path, tmp_path: Path) -> None:
    reference = load_scene(seed_sample)
    mask = Image.open(seed_sample / "mask.png").convert("RGB").resize((512, 512), Image.BILINEAR)
    mask.save(tmp_path / "mask.png")
    scene = load_scene(seed_sample, mask=tmp_path / "mask.png")
    # Two-colour blends along borders are edges; only a few three-colour blends at
    # junctions are left to snap (0.01 %).
    assert len(scene.warnings) <= 1
    assert all("(0.0" in w for w in scene.warnings)
    for obj, ref in zip(scene.objects, reference.objects, strict=True):
        assert abs(obj.area - ref.area) / ref.area < 0.05


def test_few_stray_pixels_are_snapped_with_a_warning(tmp_path: Path) -> None:
    colours = PALETTE[label_grid(40, 40)]
    colours[0, 20] = (0, 0, 255)  # 2 blue pixels of 1600: 0.125 %
    colours[1, 20] = (0, 0, 255)
    scene = load_scene(write_scene(tmp_path, mask=colours, size=(40, 40)))
    assert len(scene.warnings) == 1
    assert "(0, 0, 255) x 2" in scene.warnings[0] and "snapped" in scene.warnings[0]
    assert scene.labels[0, 20] != -1
    assert sum(o.area for o in scene.objects) + (scene.labels == 3).sum() == 1600


def test_many_stray_pixels_fail_naming_the_colour(tmp_path: Path) -> None:
    colours = PALETTE[label_grid(40, 40)]
    colours[30:, :8] = (0, 0, 255)  # 80 of 1600 pixels: 5 %
    folder = write_scene(tmp_path, mask=colours, size=(40, 40))
    with pytest.raises(UserError) as info:
        load_scene(folder)
    assert info.value.path == folder / "mask.png"
    assert "(0, 0, 255) x 80" in info.value.message


def test_snap_share_and_tolerance_are_configurable(tmp_path: Path) -> None:
    colours = PALETTE[label_grid(40, 40)]
    colours[30:, :8] = (0, 0, 255)
    folder = write_scene(tmp_path, mask=colours, size=(40, 40))
    scene = load_scene(folder, options=SceneOptions(snap_max_share=0.1))
    assert len(scene.warnings) == 1
    # With tolerance 0, a JPEG-ish shift of one level is a foreign colour.
    shifted = PALETTE[label_grid(40, 40)].copy()
    shifted[..., 2] = np.clip(shifted[..., 2].astype(int) + 1, 0, 255)
    write_scene(tmp_path, mask=shifted, size=(40, 40))
    load_scene(folder)
    with pytest.raises(UserError, match="match no label"):
        load_scene(folder, options=SceneOptions(colour_tolerance=0))


def test_mask_of_another_size_is_resized_nearest(tmp_path: Path) -> None:
    grid = label_grid(16, 16)
    folder = write_scene(tmp_path, mask=grid, image=np.zeros((64, 64, 3), np.uint8))
    scene = load_scene(folder)
    assert scene.labels.shape == (64, 64)
    assert np.array_equal(scene.labels, np.kron(grid, np.ones((4, 4), dtype=np.int16)))


def test_non_square_image_keeps_its_size(tmp_path: Path) -> None:
    image = np.zeros((32, 64, 3), np.uint8)
    folder = write_scene(tmp_path, image=image, mask=label_grid(16, 32))
    scene = load_scene(folder, latent_size=8)
    assert scene.image.shape == (32, 64, 3)
    assert scene.size == (32, 64)
    assert scene.objects[0].area == 4 * (8 * 10)  # 8x10 mask pixels, each 2x2 image pixels


def test_mask_with_other_proportions_is_refused(tmp_path: Path) -> None:
    folder = write_scene(tmp_path, image=np.zeros((30, 60, 3), np.uint8), mask=label_grid(30, 30))
    with pytest.raises(UserError, match="proportions"):
        load_scene(folder)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "CMYK", "1"])
def test_image_modes_are_converted(tmp_path: Path, mode: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    if mode == "I;16":
        grey = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64).astype(np.uint16)
        image = Image.fromarray(grey)
    else:
        image = Image.fromarray(rgb).convert(mode)
    if mode == "CMYK":  # PNG has no CMYK; a print-ready JPEG does
        folder = write_scene(tmp_path)
        (folder / "image.png").unlink()
        image.save(folder / "image.jpg")
    else:
        folder = write_scene(tmp_path, image=image)
    scene = load_scene(folder)
    assert scene.image.shape == (32, 32, 3) and scene.image.dtype == np.uint8
    if mode == "I;16":
        # 16-bit values are scaled to 8 bits, not clipped at 255.
        assert scene.image[-1, -1, 0] == round(1023 * 64 / 257)
        assert scene.image.max() > 200


def test_transparent_mask_pixels_are_background(tmp_path: Path) -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    grid = label_grid()
    rgba[..., :3] = PALETTE[grid]
    rgba[..., 3] = 255
    rgba[grid == 3] = (0, 0, 0, 0)  # background drawn as transparent black
    scene = load_scene(write_scene(tmp_path, mask=Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(scene.labels, grid)


def test_palette_mask_is_read(tmp_path: Path) -> None:
    mask = Image.fromarray(PALETTE[label_grid()]).quantize(colors=4)
    assert mask.mode == "P"
    scene = load_scene(write_scene(tmp_path, mask=mask))
    assert np.array_equal(scene.labels, label_grid())


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    folder = write_scene(tmp_path, size=(20, 40), image=np.zeros((20, 40, 3), np.uint8))
    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(folder / "image.png", exif=exif)
    # The mask was drawn on the displayed (portrait) photo.
    Image.fromarray(PALETTE[label_grid(40, 20)]).save(folder / "mask.png")
    scene = load_scene(folder)
    assert scene.image.shape == (40, 20, 3)
    assert np.array_equal(scene.labels, label_grid(40, 20))


def test_image_suffix_other_than_png_is_found(tmp_path: Path) -> None:
    folder = write_scene(tmp_path)
    (folder / "image.png").rename(folder / "image.jpg")
    assert load_scene(folder).image_path == folder / "image.jpg"


def test_latent_size_check_names_small_objects(tmp_path: Path) -> None:
    grid = np.full((64, 64), 3, dtype=np.int16)
    grid[:32, :32] = 0
    grid[40:60, 40:60] = 1
    grid[0:3, 60:63] = 2  # 3x3 px: at most one pixel of an 8x8 latent
    folder = write_scene(tmp_path, mask=grid, size=(64, 64))
    load_scene(folder)  # fine without a model
    with pytest.raises(UserError, match="'plant' covers") as info:
        load_scene(folder, latent_size=8)
    assert info.value.path == folder / "mask.png"
    load_scene(folder, latent_size=8, options=SceneOptions(min_object_latent_pixels=0))


def test_prompt_template_is_used(tmp_path: Path) -> None:
    scene = load_scene(
        write_scene(tmp_path), options=SceneOptions(prompt_template="a photo of {objects}")
    )
    assert scene.prompt == "a photo of <cat>, <pot> and <plant>"


def test_label_map_order_and_multiword_names(tmp_path: Path) -> None:
    labels = {"potted plant": [251, 1, 1], "background": [254, 254, 254], "cat": [251, 216, 1]}
    grid = label_grid()
    grid[grid == 1] = 3
    grid[grid == 0] = 1
    grid[grid == 2] = 0
    mask = np.array([labels["potted plant"], labels["cat"], [0, 0, 0], labels["background"]])
    scene = load_scene(write_scene(tmp_path, labels=labels, mask=mask[grid].astype(np.uint8)))
    assert scene.names == ("potted plant", "cat")
    assert scene.prompt == "a high quality picture of <potted_plant> and <cat>"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([["cat", [1, 2, 3]]], "JSON object"),
        ({"cat": [300, 0, 0], "background": [0, 0, 0]}, "integers 0-255"),
        ({"cat": [1, 2], "background": [0, 0, 0]}, "integers 0-255"),
        ({"cat": "red", "background": [0, 0, 0]}, "integers 0-255"),
        ({"cat": [True, 0, 0], "background": [0, 0, 0]}, "integers 0-255"),
        ({"cat": [255, 0, 0]}, "no `background`"),
        ({"background": [0, 0, 0]}, "no objects"),
        ({"cat": [255, 0, 0], "dog": [250, 10, 0], "background": [0, 0, 0]}, "nearly the same"),
        ({"a b": [255, 0, 0], "a_b": [0, 255, 0], "background": [0, 0, 0]}, "same token"),
    ],
)
def test_bad_label_maps(data: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_label_map(data, SceneOptions(), Path("labels.json"))


def test_integral_float_colours_are_accepted() -> None:
    names, colours, bg = parse_label_map(
        {"cat": [251.0, 216, 1], "background": [0, 0, 0]}, SceneOptions()
    )
    assert (names, colours, bg) == (["cat"], [(251, 216, 1)], (0, 0, 0))


def test_layout_errors_name_the_layout(tmp_path: Path) -> None:
    scene = load_scene(write_scene(tmp_path / "scene"))
    lacking = label_grid()
    lacking[lacking == 1] = 3
    Image.fromarray(PALETTE[lacking]).save(tmp_path / "lacking.png")
    with pytest.raises(UserError, match="'pot'") as info:
        load_layout(tmp_path / "lacking.png", scene)
    assert info.value.path == tmp_path / "lacking.png"
    foreign = PALETTE[label_grid()]
    foreign[:10, 10:20] = (20, 20, 240)
    Image.fromarray(foreign).save(tmp_path / "foreign.png")
    with pytest.raises(UserError, match=r"\(20, 20, 240\)"):
        load_layout(tmp_path / "foreign.png", scene)


def test_layout_of_another_size_is_resized_to_the_image(tmp_path: Path) -> None:
    scene = load_scene(write_scene(tmp_path / "scene", size=(64, 64), mask=label_grid(64, 64)))
    Image.fromarray(PALETTE[label_grid(16, 16)]).save(tmp_path / "small.png")
    layout = load_layout(tmp_path / "small.png", scene)
    assert layout.labels.shape == (64, 64)
    assert np.array_equal(layout.labels, np.kron(label_grid(16, 16), np.ones((4, 4), np.int16)))


def test_scene_from_arrays_and_layout_from_labels() -> None:
    grid = label_grid()
    scene = scene_from_arrays(
        np.zeros((32, 32, 3), np.uint8),
        grid,
        ["cat", "pot", "plant"],
        [tuple(c) for c in PALETTE[:3].tolist()],  # type: ignore[misc]
        (254, 254, 254),
    )
    assert scene.image_path is None and scene.prompt.endswith("<cat>, <pot> and <plant>")
    assert scene.objects[2].area == int((grid == 2).sum())
    layout = layout_from_labels(np.flipud(grid).copy(), scene)
    assert layout.path is None
    with pytest.raises(ValueError):
        layout_from_labels(grid[:10], scene)
    with pytest.raises(UserError, match="'cat'"):
        layout_from_labels(np.full_like(grid, 3), scene)
    with pytest.raises(ValueError):
        scene_from_arrays(np.zeros((8, 8, 3), np.uint8), grid, ["a"], [(0, 0, 0)], (255, 255, 255))


def test_truncated_image_is_a_user_error(tmp_path: Path) -> None:
    folder = write_scene(tmp_path)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
        buffer, format="PNG"
    )
    (folder / "image.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(UserError, match="truncated") as info:
        load_scene(folder)
    assert info.value.path == folder / "image.png"
