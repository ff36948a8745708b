"""Read any image file into an (H, W, 3) uint8 RGB array, or fail with one clear line.

Handles every mode Pillow opens (1, L, LA, P with or without transparency, RGB, RGBA, CMYK,
16-bit grey `I;16`/`I`, float `F`), applies the EXIF orientation, and turns missing,
unreadable and truncated files into `UserError`s that name the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from layoutedit.errors import UserError

RGB = tuple[int, int, int]

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _open(path: Path, what: str) -> Image.Image:
    if not path.exists():
        raise UserError(f"{what} not found", path=path)
    if path.is_dir():
        raise UserError(f"{what} is a folder, not an image file", path=path)
    try:
        image = Image.open(path)
        image.load()  # decode now, so truncation is found here and not later
    except UnidentifiedImageError:
        raise UserError(f"{what} is not an image Pillow can read", path=path) from None
    except Image.DecompressionBombError as exc:
        raise UserError(f"{what} is too large to read safely: {exc}", path=path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{what} is truncated or damaged ({exc})", path=path) from None
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

    Raises:
        UserError: missing, unreadable, not JSON, or with a duplicated key.
    """
    if not path.exists():
        raise UserError(f"{what} not found", path=path)

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out:
                raise UserError(f"{what} names {key!r} twice", path=path)
            out[key] = value
        return out

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what}: {exc}", path=path) from None
    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            path=path,
        ) from None
