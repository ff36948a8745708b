"""Uploaded photos: a byte limit, a pixel limit checked before decoding, and one clear line.

The pixel count comes from the file's header (Pillow opens lazily), so a decompression bomb
(a small file that decodes to gigapixels) is refused before any pixel is decoded; Pillow's
own `DecompressionBombError` (raised on opening a header of over twice
`Image.MAX_IMAGE_PIXELS`) is turned into the same message. Nothing global is changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from layoutedit.errors import UserError
from layoutedit.scenes.image_io import to_rgb_array

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MiB
MAX_UPLOAD_PIXELS = 4096 * 4096  # 16.8 megapixels


def read_upload(
    path: Path,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> np.ndarray:
    """Read an uploaded image as (H, W, 3) uint8 RGB, EXIF orientation applied.

    Raises:
        UserError: too many bytes, too many pixels (a decompression bomb included), or not a
            readable image. The message names the limit.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(
            f"upload refused: {size / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit"
        )
    too_big = (
        f"upload refused: the image is larger than the {max_pixels / 1e6:.1f} megapixel limit "
        "(a decompression bomb, or a photo to shrink first)"
    )
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise UserError(f"{too_big}: {width}x{height} px")
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block must not make a good image unreadable
                upright = image
            return to_rgb_array(upright)
    except Image.DecompressionBombError:
        raise UserError(too_big) from None
    except UnidentifiedImageError:
        raise UserError("upload refused: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"upload refused: the image is truncated or damaged ({exc})") from None
