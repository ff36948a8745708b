"""Writing files and folders so that a crash leaves the old version or the new one, never a mix.

Every writer here writes under a temporary name in the target's own folder (so the final
rename stays on one filesystem, where it is atomic) and renames it into place; on any error,
Ctrl-C included, the temporary is removed. Temporary files are named `.<name>.<random>.tmp`
(writers that pick a format from the extension must be told the format) and temporary
folders `.<name>.tmp-<random>`. What is written gets the usual modes (0666 / 0777 less the
umask), not the owner-only modes of `tempfile`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Create or replace the file `path` through `write(tmp)`, which writes a sibling temp file.

    Args:
        path: the final file; its folder is created if missing.
        write: writes the whole file at the path it is given (e.g.
            `lambda p: image.save(p, format="GIF")`).

    Returns:
        `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        # After the write: some writers (safetensors' save_file) make a new file with the
        # owner-only mode of a temporary file instead of writing into the one given.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Create or replace the file `path` with `data`."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> Path:
    """Create or replace the file `path` with `text` (UTF-8)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(
    path: Path, payload: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """Create or replace the file `path` with `payload` as JSON and a final newline.

    Values JSON cannot hold are written as their `str()`.
    """
    text = json.dumps(payload, indent=indent, sort_keys=sort_keys, default=str)
    return write_text_atomic(path, text + "\n")


def write_png_atomic(path: Path, image: np.ndarray | Image.Image) -> Path:
    """Create or replace the PNG file `path` with an (H, W) or (H, W, 3|4) uint8 array or a
    Pillow image."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return write_atomic(path, lambda tmp: picture.save(tmp, format="PNG"))


def write_safetensors_atomic(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Create or replace the safetensors file `path` with `tensors` (made contiguous) and
    header `metadata`."""
    from safetensors.torch import save_file

    contiguous = {name: tensor.contiguous() for name, tensor in tensors.items()}
    meta = dict(metadata) if metadata is not None else None
    return write_atomic(path, lambda tmp: save_file(contiguous, str(tmp), metadata=meta))


def replace_folder(new: Path, target: Path) -> None:
    """Rename the folder `new` to `target`, replacing an existing `target`.

    A folder cannot be renamed onto a non-empty one, so an existing `target` is first renamed
    aside and removed after: the gap in which neither exists is two renames long.
    """
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Build a folder's new content in a temporary sibling that replaces `folder` on success.

    Usage: `with atomic_folder(out) as tmp: (tmp / "a.json").write_text(...)`. When the block
    raises, `folder` is left as it was and the temporary is removed.

    Args:
        folder: the final folder; its parent is created if missing.

    Yields:
        The empty temporary folder to write into.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
