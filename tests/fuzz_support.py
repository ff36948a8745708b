"""Hypothesis strategies for the fuzzing suite (issue #14): scene folders of every kind a
user might hand over, and option values, plus the contract every run must keep.

Profiles: `LAYOUTEDIT_FUZZ=quick` (the default, for `make test`: about a minute for all
fuzz tests) and `LAYOUTEDIT_FUZZ=long` (`make fuzz`: many more examples).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import Result

settings.register_profile(
    "quick",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
PROFILE = os.environ.get("LAYOUTEDIT_FUZZ", "quick")
settings.load_profile(PROFILE)

IMAGE_MODES = ["RGB", "RGBA", "L", "LA", "P", "PA", "1", "I;16", "I", "F", "CMYK"]
FORMATS = ["png", "png", "png", "jpg", "webp", "bmp", "tiff", "gif"]
BROKEN = ["garbage", "truncated", "empty", "folder"]

# JSON values of any shape: what a label map entry might hold by mistake.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)

# Raw label-map texts that no `json.dumps` writes.
RAW_TEXTS = [
    "",
    "{",
    "[" * 50_000 + "]" * 50_000,
    '{"a": ' + "[" * 20_000 + "]" * 20_000 + ', "background": [0, 0, 0]}',
    '{"a": [1e999, 0, 0], "background": [0, 0, 0]}',
    '{"a": [' + "7" * 6000 + ', 0, 0], "background": [0, 0, 0]}',
    '{"a": [NaN, 0, 0], "background": [0, 0, 0]}',
    '{"a": [1, 2, 3], "a": [4, 5, 6], "background": [0, 0, 0]}',
    "\ufeff{}",
    "null",
]


@dataclass
class SceneSpec:
    """A scene folder to write: image, mask, label map and layouts, each maybe broken."""

    height: int
    width: int
    n_objects: int
    seed: int
    image_mode: str
    image_format: str
    mask_scale: float
    mask_mode: str
    noise: float
    label_map: Any  # a dict/other JSON value, or a raw str, or bytes
    colours: list[tuple[int, int, int]]
    background: tuple[int, int, int]
    layouts: list[str] = field(default_factory=list)
    extra_image: str | None = None


def _spaced_colours(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """n + 1 colours far apart (object colours, then the background's)."""
    corners = [(r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255)]
    corners += [(128, 128, 128), (255, 128, 0), (0, 128, 255), (128, 0, 255)]
    picked = rng.permutation(len(corners))[: n + 1]
    return [corners[i] for i in picked]


@st.composite
def label_maps(draw: st.DrawFn, colours: list[tuple[int, int, int]], n: int) -> Any:
    """A label map for n objects: valid, with mutations, arbitrary JSON, or raw text."""
    names = draw(
        st.lists(
            st.text(min_size=1, max_size=8).filter(lambda s: s != "background"),
            min_size=n,
            max_size=n,
            unique=True,
        )
        | st.just([f"obj{i}" for i in range(n)])
    )
    valid: dict[str, Any] = {name: list(c) for name, c in zip(names, colours[:n], strict=True)}
    valid["background"] = list(colours[n])
    kind = draw(st.sampled_from(["valid", "valid", "valid", "mutated", "json", "raw", "bytes"]))
    if kind == "valid":
        return valid
    if kind == "mutated":
        mutated = dict(valid)
        for key in draw(st.lists(st.sampled_from([*valid, "extra"]), min_size=1, max_size=3)):
            if draw(st.booleans()):
                mutated[key] = draw(json_values)
            else:
                mutated.pop(key, None)
        return mutated
    if kind == "json":
        return draw(json_values)
    if kind == "raw":
        return draw(st.sampled_from(RAW_TEXTS))
    return draw(st.binary(max_size=40))


@st.composite
def scene_specs(draw: st.DrawFn) -> SceneSpec:
    """Two thirds of the scenes are clean (they load, so colour matching, snapping, layouts
    and the report run), one third may have anything wrong with them."""
    if draw(st.sampled_from([True, True, False])):
        return draw(clean_scene_specs())
    n = draw(st.integers(1, 4))
    height = draw(st.integers(1, 40))
    width = draw(st.sampled_from([height, draw(st.integers(1, 40))]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    colours = _spaced_colours(rng, n)
    return SceneSpec(
        height=height,
        width=width,
        n_objects=n,
        seed=seed,
        image_mode=draw(st.sampled_from(IMAGE_MODES)),
        image_format=draw(st.sampled_from(FORMATS + BROKEN[:1])),
        mask_scale=draw(st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.0, 0.7])),
        mask_mode=draw(st.sampled_from(["RGB", "RGB", "RGBA", "P", "L"])),
        noise=draw(st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.05, 0.5])),
        label_map=draw(label_maps(colours, n)),
        colours=colours[:n],
        background=colours[n],
        layouts=draw(st.lists(st.sampled_from(["moved", "missing", "noisy", *BROKEN]), max_size=2)),
        extra_image=draw(st.sampled_from([None, None, None, "jpg"])),
    )


@st.composite
def clean_scene_specs(draw: st.DrawFn) -> SceneSpec:
    """Scenes that should load: a valid label map, a readable image of 8-40 px, a mask with
    at most a few stray pixels, layouts with every object."""
    n = draw(st.integers(1, 4))
    height = draw(st.integers(8, 40))
    width = draw(st.sampled_from([height, draw(st.integers(max(8, 2 * n), 40))]))
    seed = draw(st.integers(0, 2**32 - 1))
    colours = _spaced_colours(np.random.default_rng(seed), n)
    names = [f"obj {i}" for i in range(n)]
    label_map: dict[str, Any] = {m: list(c) for m, c in zip(names, colours[:n], strict=True)}
    label_map["background"] = list(colours[n])
    return SceneSpec(
        height=height,
        width=width,
        n_objects=n,
        seed=seed,
        image_mode=draw(st.sampled_from(IMAGE_MODES)),
        image_format=draw(st.sampled_from(FORMATS)),
        mask_scale=1.0,
        mask_mode=draw(st.sampled_from(["RGB", "RGBA", "P"])),
        noise=draw(st.sampled_from([0.0, 0.0, 0.002])),
        label_map=label_map,
        colours=colours[:n],
        background=colours[n],
        layouts=draw(st.lists(st.sampled_from(["moved", "noisy"]), max_size=2)),
    )


def _label_grid(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """(h, w) ints: background n, one random rectangle per object, each in its own column
    band so that none hides another (where the image is at least n pixels wide)."""
    grid = np.full((h, w), n, np.int64)
    bands = np.linspace(0, w, n + 1).astype(int)
    for k in range(n):
        left, right = bands[k], max(bands[k + 1], bands[k] + 1)
        x0 = int(rng.integers(left, right))
        x1 = int(rng.integers(x0 + 1, right + 1))
        y0 = int(rng.integers(0, h))
        y1 = int(rng.integers(y0 + 1, h + 1))
        grid[y0:y1, x0:x1] = k
    return grid


def _colour_image(grid: np.ndarray, palette: list[tuple[int, int, int]]) -> np.ndarray:
    return np.asarray(palette, np.uint8)[grid]


def _add_noise(rng: np.random.Generator, rgb: np.ndarray, share: float) -> np.ndarray:
    if share <= 0:
        return rgb
    out = rgb.copy()
    hit = rng.random(rgb.shape[:2]) < share
    out[hit] = rng.integers(0, 256, (int(hit.sum()), 3), dtype=np.uint8)
    return out


def _save(image: Image.Image, path: Path, fmt: str) -> None:
    """Save in `fmt`, converting the mode when the format cannot hold it."""
    pil_format = {"jpg": "JPEG", "tiff": "TIFF", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}
    try:
        image.save(path, format=pil_format.get(fmt, "PNG"))
    except (OSError, ValueError, KeyError):
        image.convert("RGB").save(path, format=pil_format.get(fmt, "PNG"))


def _broken(path: Path, kind: str, good: Image.Image) -> None:
    if kind == "garbage":
        path.write_bytes(b"\x89PNG not really" * 3)
    elif kind == "truncated":
        buffer = io.BytesIO()
        good.convert("RGB").save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[: max(8, len(buffer.getvalue()) // 2)])
    elif kind == "empty":
        path.write_bytes(b"")
    else:  # folder
        path.mkdir()


def write_scene(spec: SceneSpec, folder: Path) -> Path:
    """Write the scene folder that `spec` describes; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    palette = [*spec.colours, spec.background]
    grid = _label_grid(rng, h, w, spec.n_objects)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = Image.fromarray(photo)
    if spec.image_mode == "I;16":
        image = Image.fromarray(photo[:, :, 0].astype(np.uint16) * 257)  # mode I;16
    elif spec.image_mode in ("I", "F"):
        image = image.convert("L").convert(spec.image_mode)
    else:
        image = image.convert(spec.image_mode)
    suffix = "png" if spec.image_format in BROKEN else spec.image_format
    image_path = folder / f"image.{suffix}"
    if spec.image_format in BROKEN:
        _broken(image_path, spec.image_format, image)
    else:
        _save(image, image_path, spec.image_format)
    if spec.extra_image:
        _save(Image.fromarray(photo), folder / f"image.{spec.extra_image}", spec.extra_image)

    mh, mw = max(1, round(h * spec.mask_scale)), max(1, round(w * spec.mask_scale))
    small = np.asarray(Image.fromarray(grid.astype(np.uint8)).resize((mw, mh), Image.NEAREST))
    mask_rgb = _add_noise(rng, _colour_image(small.astype(np.int64), palette), spec.noise)
    mask = Image.fromarray(mask_rgb)
    if spec.mask_mode == "RGBA":
        alpha = np.where(rng.random((mh, mw)) < 0.1, 0, 255).astype(np.uint8)
        mask = Image.fromarray(np.dstack([mask_rgb, alpha]))  # mode RGBA
    elif spec.mask_mode == "P":
        mask = mask.quantize(colors=len(palette) + 4)
    elif spec.mask_mode == "L":
        mask = mask.convert("L")
    mask.save(folder / "mask.png")

    labels_path = folder / "semantic_dict.json"
    if isinstance(spec.label_map, bytes):
        labels_path.write_bytes(spec.label_map)
    elif isinstance(spec.label_map, str):
        labels_path.write_text(spec.label_map)
    else:
        labels_path.write_text(json.dumps(spec.label_map, allow_nan=True))

    if spec.layouts:
        layout_dir = folder / "target_layout"
        layout_dir.mkdir()
        for i, kind in enumerate(spec.layouts):
            path = layout_dir / f"layout{i}.png"
            moved = np.roll(grid, max(1, w // 4), axis=1)
            if kind == "missing":
                moved[moved == 0] = spec.n_objects
            pixels = _colour_image(moved, palette)
            if kind == "noisy":
                pixels = _add_noise(rng, pixels, 0.004)
            if kind in BROKEN:
                _broken(path, kind, Image.fromarray(pixels))
            else:
                Image.fromarray(pixels).save(path)
    return folder


def snapshot(folder: Path) -> dict[str, int]:
    """Every path under `folder` with its size (folders -1), to find files a run left."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1)
        for p in folder.rglob("*")
        if not p.is_symlink()
    }


def check_contract(result: Result, allowed: tuple[int, ...] = (0, 2)) -> None:
    """The contract: exit 0 or 2, no traceback, an error is exactly one line."""
    assert result.exit_code in allowed, (result.exit_code, result.output, result.exception)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        # Typer's own option-parsing errors too (the root group makes them one line).
        assert len(errors) == 1 and len(lines) == 1, result.stderr
