"""Scene files -> one typed `Scene`; target layouts -> `Layout`s in the same label coding.

A scene is a folder holding

    image.png            the photo (any size, any mode; EXIF orientation is applied)
    mask.png             one flat colour per object plus the background colour (any size with
                         the image's proportions; resized to the image with nearest neighbour)
    semantic_dict.json   label map: {"cat": [251, 216, 1], ..., "background": [254, 254, 254]}
    target_layout/*.png  optional target layouts, same colour code as the mask

or the same three files named one by one. Pixels take the nearest label colour within
`SceneOptions.colour_tolerance` (RGB distance), so anti-aliased, resized and JPEG-saved masks
work; see `layoutedit.scenes.colour_match`.

Label coding: `labels[y, x] = i` for object `i` (label-map order, background excluded), and
`K = len(objects)` for the background. Arrays stay at the source image's size; the model
code pads non-square images to a square (`grids.square_pad`: image edge-replicated,
labels padded with background) and crops its outputs back (`grids.unpad`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.config import SceneOptions
from layoutedit.errors import UserError
from layoutedit.scenes.colour_match import RGB, format_colours, match_colours
from layoutedit.scenes.grids import resize_labels, resize_nearest
from layoutedit.scenes.image_io import check_file, read_json, read_rgb
from layoutedit.scenes.label_map import BACKGROUND, parse_label_map
from layoutedit.scenes.prompts import placeholder_token, scene_prompt

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MASK_NAME = "mask.png"
LABELS_NAME = "semantic_dict.json"
LAYOUT_DIR = "target_layout"
_FOLDER_HINT = "a scene folder holds image.png, mask.png and semantic_dict.json"
MIN_IMAGE_SIDE = 8
"""Smallest image side in pixels: below it no object and background fit side by side."""
MAX_LATENT_SIZE = 1024
"""Largest latent grid side accepted (SD 1.x: 64, SDXL: 128); the check resizes the labels
to this side, so an absurd value would exhaust memory."""


@dataclass(frozen=True)
class SceneObject:
    """One object of the label map, as it appears in the mask."""

    name: str
    """Label-map name, e.g. "potted plant"."""
    token: str
    """Placeholder token, e.g. "<potted_plant>"."""
    colour: RGB
    """Label-map colour."""
    area: int
    """Pixels at the image's size."""
    share: float
    """area / image pixels (0-1)."""


@dataclass(frozen=True, eq=False)
class Scene:
    """A parsed scene. Arrays are at the source image's size (H, W)."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB, EXIF orientation applied."""
    labels: np.ndarray
    """(H, W) int16: i < K -> objects[i]; K -> background."""
    objects: tuple[SceneObject, ...]
    """Label-map order, background excluded (K objects)."""
    background_colour: RGB
    prompt: str
    """Scene prompt, e.g. "a high quality picture of <cat>, <pot> and <plant>"."""
    image_path: Path | None = None
    mask_path: Path | None = None
    labels_path: Path | None = None
    layout_paths: tuple[Path, ...] = ()
    """target_layout/* images of a scene folder, sorted by name."""
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Object names in label-map order."""
        return tuple(o.name for o in self.objects)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Placeholder tokens in object order."""
        return tuple(o.token for o in self.objects)

    @property
    def background_index(self) -> int:
        """Label value of the background (== number of objects K)."""
        return len(self.objects)

    @property
    def palette(self) -> tuple[RGB, ...]:
        """Colour of every label value: the objects' colours, then the background's."""
        return (*(o.colour for o in self.objects), self.background_colour)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (int(self.labels.shape[0]), int(self.labels.shape[1]))

    def object_masks(self) -> np.ndarray:
        """(K, H, W) bool: one mask per object."""
        ks = np.arange(len(self.objects), dtype=self.labels.dtype)[:, None, None]
        return self.labels[None] == ks


@dataclass(frozen=True, eq=False)
class Layout:
    """A target layout in the scene's label coding, at the scene image's size."""

    path: Path | None
    labels: np.ndarray
    """(H, W) int16, same coding as `Scene.labels`."""
    warnings: tuple[str, ...] = ()
    exact: bool = False
    """Every region is its object's exact shape (made by operations from the source's
    masks), not painted around it: a region may then scale an object it still holds."""


# --- masks and layouts -------------------------------------------------------------------


def _match(
    pixels: np.ndarray, palette: Sequence[RGB], options: SceneOptions, path: Path | None, what: str
) -> tuple[np.ndarray, list[str]]:
    """Label grid of a colour-coded image; snaps a few stray pixels (warning) or fails."""
    result = match_colours(pixels, palette, options.colour_tolerance)
    if result.unmatched_count == 0:
        return result.labels, []
    share = result.unmatched_share
    colours = format_colours(result.unmatched_colours)
    if share < options.snap_max_share:
        where = f"{path.name}: " if path is not None else ""
        return result.labels, [
            f"{where}{result.unmatched_count} {what} pixels ({100 * share:.2f} %) matched no label "
            f"colour within distance {options.colour_tolerance:g} and were snapped to the "
            f"nearest label; colours: {colours}"
        ]
    raise UserError(
        f"{100 * share:.1f} % of the {what} pixels match no label colour within distance "
        f"{options.colour_tolerance:g}: {colours}; add these colours to the label map "
        "or raise scene.colour_tolerance",
        path=path,
    )


def _fit(labels: np.ndarray, height: int, width: int, path: Path | None, what: str) -> np.ndarray:
    """Resize a label grid to the image's (height, width), nearest; proportions must agree."""
    mh, mw = labels.shape
    if (mh, mw) == (height, width):
        return labels
    # One pixel of rounding either way is fine; anything more would misplace objects.
    if abs(mw * height / width - mh) > 1 and abs(mh * width / height - mw) > 1:
        raise UserError(
            f"{what} is {mw}x{mh} but the image is {width}x{height} (width x height); the "
            f"proportions differ, so the {what} cannot be laid over the image",
            path=path,
        )
    return resize_nearest(labels, height, width)


def _check_present(
    labels: np.ndarray, names: Sequence[str], palette: Sequence[RGB], path: Path | None, what: str
) -> np.ndarray:
    """Pixel count of every object (K,); UserError when one is missing."""
    counts = np.bincount(labels.ravel(), minlength=len(palette))
    for k, name in enumerate(names):
        if counts[k] == 0:
            raise UserError(
                f"object {name!r} (colour {palette[k]}) is not in the {what}; "
                + ("draw it or remove it from the label map" if what == "mask" else "draw it"),
                path=path,
            )
    return counts[: len(names)]


def check_latent_size(latent_size: int) -> None:
    """UserError unless 1 <= `latent_size` <= MAX_LATENT_SIZE."""
    if not 1 <= latent_size <= MAX_LATENT_SIZE:
        raise UserError(
            f"latent size {latent_size} is out of range: give 1 to {MAX_LATENT_SIZE} "
            "(64 for Stable Diffusion 1.x)"
        )


def check_latent(scene: Scene, latent_size: int, options: SceneOptions = SceneOptions()) -> None:
    """Every object must cover `options.min_object_latent_pixels` cells of the model's square
    latent grid of side `latent_size` (64 for SD 1.x at 512 px).

    Raises:
        UserError: `latent_size` outside 1..MAX_LATENT_SIZE, or an object too small.
    """
    check_latent_size(latent_size)
    path = scene.mask_path
    small = resize_labels(scene.labels, latent_size, pad_value=scene.background_index)
    counts = np.bincount(small.ravel(), minlength=scene.background_index + 1)
    need = options.min_object_latent_pixels
    for k, obj in enumerate(scene.objects):
        if counts[k] < need:
            raise UserError(
                f"object {obj.name!r} covers {counts[k]} of the model's "
                f"{latent_size}x{latent_size} latent pixels, fewer than "
                f"scene.min_object_latent_pixels = {need}; draw it larger or use a model with a "
                "finer latent grid",
                path=path,
            )


def _layout_paths(folder: Path) -> tuple[Path, ...]:
    layout_dir = folder / LAYOUT_DIR
    if not layout_dir.is_dir():
        return ()
    return tuple(
        sorted(
            p for p in layout_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    )


def _find_image(folder: Path) -> tuple[Path, list[str]]:
    """The folder's image file (first of IMAGE_SUFFIXES) and a warning when several exist."""
    found = [folder / f"image{s}" for s in IMAGE_SUFFIXES if (folder / f"image{s}").is_file()]
    if not found:
        return folder / "image.png", []
    if len(found) == 1:
        return found[0], []
    others = ", ".join(p.name for p in found[1:])
    return found[0], [
        f"{folder.name}/ holds several images ({found[0].name}, {others}); using "
        f"{found[0].name}. Remove the others or name one with --image"
    ]


def prompt_length_warning(scene: Scene, tokenizer: Any, max_length: int) -> str | None:
    """A warning when the scene prompt, placeholders counted as one token each, is longer
    than the text encoder's `max_length` tokens (start and end tokens included), else None.

    `tokenizer` is a Hugging Face tokenizer; it is copied, so the caller's is not changed.
    """
    counter = copy.deepcopy(tokenizer)
    counter.add_tokens([t for t in scene.tokens if t not in counter.get_vocab()])
    count = len(counter(scene.prompt, truncation=False)["input_ids"])
    if count <= max_length:
        return None
    return (
        f"the prompt is {count} tokens long but the text encoder reads {max_length}; the "
        f"end is cut off: {scene.prompt!r}. Shorten scene.prompt_template or object names"
    )


# --- public loaders ----------------------------------------------------------------------


def scene_from_arrays(
    image: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    colours: Sequence[RGB],
    background_colour: RGB,
    options: SceneOptions = SceneOptions(),
    *,
    image_path: Path | None = None,
    mask_path: Path | None = None,
    labels_path: Path | None = None,
    layout_paths: tuple[Path, ...] = (),
    warnings: tuple[str, ...] = (),
) -> Scene:
    """Build a Scene from arrays (generated scenes: shapes world, benchmark); no files read.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integers, i < K -> names[i], K -> background.
        names: K object names; colours: their K colours; background_colour: the background's.
        options: prompt template and tolerance (colours closer than 2 x tolerance are refused).
        image_path, mask_path, labels_path, layout_paths, warnings: recorded as given
            (`load_scene` fills them; the paths name files in error messages).

    Raises:
        ValueError: shapes or label values that do not fit (a programming error).
        UserError: a bad label map (see `parse_label_map`) or an object absent from `labels`.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image {image.shape[:2]}")
    if len(names) != len(colours):
        raise ValueError("names and colours differ in length")
    if labels.size and (labels.min() < 0 or labels.max() > len(names)):
        raise ValueError(f"label values must lie in 0..{len(names)}")
    label_map: dict[str, object] = {n: list(c) for n, c in zip(names, colours, strict=True)}
    if BACKGROUND in label_map or len(label_map) != len(names):
        raise ValueError("object names must be distinct and must not include 'background'")
    label_map[BACKGROUND] = list(background_colour)
    names_, colours_, background = parse_label_map(label_map, options, labels_path)
    labels = labels.astype(np.int16)
    counts = _check_present(labels, names_, [*colours_, background], mask_path, "mask")
    total = labels.size
    objects = tuple(
        SceneObject(
            name=n, token=placeholder_token(n), colour=c, area=int(a), share=float(a) / total
        )
        for n, c, a in zip(names_, colours_, counts, strict=True)
    )
    return Scene(
        image=image,
        labels=labels,
        objects=objects,
        background_colour=background,
        prompt=scene_prompt(options.prompt_template, [o.token for o in objects]),
        image_path=image_path,
        mask_path=mask_path,
        labels_path=labels_path,
        layout_paths=layout_paths,
        warnings=warnings,
    )


def load_scene(
    folder: Path | None = None,
    *,
    image: Path | None = None,
    mask: Path | None = None,
    labels: Path | None = None,
    options: SceneOptions = SceneOptions(),
    latent_size: int | None = None,
) -> Scene:
    """Read a scene folder, or its three files given one by one (they override the folder's).

    Args:
        folder: folder with image.png, mask.png, semantic_dict.json, target_layout/.
        image: the image file (instead of the folder's, or without a folder).
        mask: the colour-coded object mask file.
        labels: the label map JSON file (name -> [r, g, b]).
        options: colour tolerance, snapping share, prompt template, smallest object.
        latent_size: side of the model's latent grid (64 for SD 1.x at 512 px); when given,
            each object must cover at least `options.min_object_latent_pixels` latent pixels.

    Raises:
        UserError: every bad input, naming the file (see the module docstring).
    """
    layout_paths: tuple[Path, ...] = ()
    warnings: list[str] = []
    if folder is not None:
        check_file(folder, "scene folder")
        if not folder.is_dir():
            raise UserError(
                f"not a folder ({_FOLDER_HINT}, or use --image/--mask/--labels)", path=folder
            )
        if image is None:
            image, warnings = _find_image(folder)
        mask = mask or folder / MASK_NAME
        labels = labels or folder / LABELS_NAME
        layout_paths = _layout_paths(folder)
    missing = [
        f"--{n}" for n, p in (("image", image), ("mask", mask), ("labels", labels)) if p is None
    ]
    if missing or image is None or mask is None or labels is None:
        raise UserError(
            "give a scene folder or all of --image, --mask and --labels "
            f"(missing {', '.join(missing)})"
        )
    for path, what in ((labels, "label map"), (image, "image"), (mask, "mask")):
        if not path.exists() and not path.is_symlink():
            others = sorted(path.parent.glob("image.*")) if what == "image" and folder else []
            if others:
                raise UserError(
                    f"{others[0].name} is not a supported image file; save it as one of "
                    f"{', '.join('image' + s for s in IMAGE_SUFFIXES)}",
                    path=folder,
                )
            hint = f" ({_FOLDER_HINT})" if folder is not None else ""
            raise UserError(f"{what} not found{hint}", path=path)
        check_file(path, what)
    if latent_size is not None:
        check_latent_size(latent_size)

    names, colours, background = parse_label_map(
        read_json(labels, what="label map"), options, labels
    )
    pixels = read_rgb(image, what="image")
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise UserError(
            f"image is {width}x{height} px; the smallest image is "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (objects and background must fit side by side)",
            path=image,
        )
    # Transparent mask pixels are background.
    mask_rgb = read_rgb(mask, what="mask", matte=background)
    palette = [*colours, background]
    grid, snapped = _match(mask_rgb, palette, options, mask, "mask")
    warnings.extend(snapped)
    grid = _fit(grid, height, width, mask, "mask")
    if not (grid == len(names)).any():
        warnings.append(
            f"{mask.name}: no pixel has the background colour {background}; every pixel "
            "belongs to an object, so nothing of the source is kept as background"
        )
    scene = scene_from_arrays(
        pixels,
        grid,
        names,
        colours,
        background,
        options,
        image_path=image,
        mask_path=mask,
        labels_path=labels,
        layout_paths=layout_paths,
        warnings=tuple(warnings),
    )
    if latent_size is not None:
        check_latent(scene, latent_size, options)
    return scene


def layout_from_labels(labels: np.ndarray, scene: Scene) -> Layout:
    """Wrap a label grid (same size and coding as `scene.labels`) as a Layout.

    Raises:
        ValueError: wrong shape or label values.
        UserError: an object of the scene is absent.
    """
    if labels.shape != scene.labels.shape:
        raise ValueError(f"layout {labels.shape} does not match the scene {scene.labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > scene.background_index):
        raise ValueError(f"label values must lie in 0..{scene.background_index}")
    labels = labels.astype(np.int16)
    _check_present(labels, scene.names, scene.palette, None, "layout")
    return Layout(path=None, labels=labels)


def load_layout(path: Path, scene: Scene, options: SceneOptions = SceneOptions()) -> Layout:
    """Read a target layout drawn in the scene's colour code; resized to the image, nearest.

    Raises:
        UserError: unreadable file, colours the label map lacks (beyond the snapping share),
            proportions unlike the image's, or an object of the scene missing from the layout.
    """
    pixels = read_rgb(path, what="layout", matte=scene.background_colour)
    grid, warnings = _match(pixels, scene.palette, options, path, "layout")
    grid = _fit(grid, *scene.size, path, "layout")
    _check_present(grid, scene.names, scene.palette, path, "layout")
    return Layout(path=path, labels=grid, warnings=tuple(warnings))
