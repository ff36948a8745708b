"""Read any image file into an (H, W, 3) uint8 RGB array, or fail with one clear line.

Handles every mode Pillow opens (1, L, LA, P with or without transparency, RGB, RGBA, CMYK,
16-bit grey `I;16`/`I`, float `F`), applies the EXIF orientation, and turns missing,
unreadable and truncated files into `UserError`s that name the file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from layoutedit.errors import UserError

RGB = tuple[int, int, int]

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


MAX_JSON_BYTES = 10_000_000
"""A label map is a few hundred bytes; anything this large is not one."""


def check_file(path: Path, what: str) -> None:
    """Raise a UserError naming `path` unless it is an existing, readable regular path.

    Tells apart a missing file, a dangling symbolic link and a symbolic-link loop (all three
    make `Path.exists()` False).
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            target = os.readlink(path)
            raise UserError(f"{what} is a broken symbolic link (to {target})", path=path) from None
        raise UserError(f"{what} not found", path=path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{what} is a symbolic-link loop", path=path) from None
        if exc.errno == errno.ENOTDIR:
            raise UserError(f"{what} not found (a parent is a file)", path=path) from None
        raise UserError(f"cannot read {what}: {exc.strerror or exc}", path=path) from None


def _open(path: Path, what: str) -> Image.Image:
    check_file(path, what)
    if path.is_dir():
        raise UserError(f"{what} is a folder, not an image file", path=path)
    try:
        with warnings.catch_warnings():
            # Between Pillow's pixel limit and twice it, Pillow warns instead of refusing; the
            # image is read (and scaled to the model), so its raw warning line stays out.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()  # decode now, so truncation is found here and not later
    except UnidentifiedImageError:
        raise UserError(f"{what} is not an image Pillow can read", path=path) from None
    except Image.DecompressionBombError as exc:
        raise UserError(f"{what} is too large to read safely: {exc}", path=path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{what} is truncated or damaged ({exc})", path=path) from None
    frames = getattr(image, "n_frames", 1)
    if frames > 1:  # which frame was meant? (a scene folder refuses .gif files alike)
        raise UserError(
            f"{what} holds {frames} frames (an animation or a multi-page file); save the one "
            "you mean as a PNG",
            path=path,
        )
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return image


def _grey16_to_rgb(image: Image.Image) -> np.ndarray:
    """16/32-bit integer or float grey -> 8-bit RGB, scaling 0-65535 (or 0-1 floats) to 0-255."""
    grey = np.asarray(image).astype(np.float64)
    if image.mode == "F" and grey.size and grey.max() <= 1.0:
        grey = grey * 255.0
    elif image.mode.startswith("I;16") or (grey.size and grey.max() > 255):
        grey = grey / 257.0  # 65535 -> 255
    grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(grey8[:, :, None], 3, axis=2)


def to_rgb_array(image: Image.Image, matte: RGB = (255, 255, 255)) -> np.ndarray:
    """Convert a Pillow image of any mode to (H, W, 3) uint8 RGB.

    Transparent pixels are composited over `matte` (for a mask, the background colour, so
    transparent means background).
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _grey16_to_rgb(image)
    has_alpha = image.mode in _ALPHA_MODES or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*matte, 255))
        return np.asarray(Image.alpha_composite(base, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_rgb(path: Path, *, what: str = "image", matte: RGB = (255, 255, 255)) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB with EXIF orientation applied.

    Args:
        path: the file.
        what: what the file is, for messages ("image", "mask", "layout").
        matte: colour under transparent pixels.

    Raises:
        UserError: missing, not an image, truncated, or of a mode that cannot be converted.
    """
    image = _open(path, what)
    try:
        return to_rgb_array(image, matte)
    except (ValueError, OSError) as exc:
        raise UserError(
            f"cannot convert {what} of mode {image.mode} to RGB ({exc})", path=path
        ) from None


def read_json(path: Path, *, what: str) -> object:
    """Parse a JSON file; duplicate object keys are an error (JSON would keep the last silently).

    Numbers must be finite: `NaN`, `Infinity` and floats beyond the float range (`1e400`)
    are refused, as are integers of more than 100 digits and nesting deep enough to exhaust
    the parser's recursion.

    Raises:
        UserError: missing, unreadable, not JSON, with a duplicated key or a number that is
            not a finite value.
    """
    check_file(path, what)
    if path.is_dir():
        raise UserError(f"{what} is a folder, not a JSON file", path=path)

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out:
                raise UserError(f"{what} names {key!r} twice", path=path)
            out[key] = value
        return out

    def no_constant(name: str) -> object:
        raise UserError(f"{what} holds {name}, which is not a number JSON allows", path=path)

    def finite_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise UserError(f"{what} holds {text[:20]}, a number beyond the float range", path=path)
        return value

    def short_int(text: str) -> int:
        # int() of thousands of digits is slow (and refused past 4300 digits); no colour or
        # count needs more than a few.
        if len(text.lstrip("-")) > 100:
            raise UserError(f"{what} holds an integer of {len(text)} digits", path=path)
        return int(text)

    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(f"{what} is larger than {MAX_JSON_BYTES:,} bytes", path=path)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what}: {exc}", path=path) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=no_duplicates,
            parse_constant=no_constant,
            parse_float=finite_float,
            parse_int=short_int,
        )
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            path=path,
        ) from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be a label map", path=path) from None
