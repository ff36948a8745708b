"""The shapes world: a pure, seeded generator of small scenes with exact ground truth.

Every scene is 64x64 RGB by default, with 1 to 3 objects (circle, square, triangle, star,
heart, ring) over a named background. An object's exact colour is random; its caption uses
the nearest basic colour name, so only a learned concept can carry the exact shade. Objects
are rendered with 4x4 supersampling (anti-aliased edges); an object's exact mask is where its
coverage is at least one half, minus what objects drawn later cover (occlusion order is the
drawing order). The same `WorldScene.background_seed` gives the same background texture, so
a scene can be re-rendered with its objects moved (benchmark ground truth, paste baseline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.atomic import write_json_atomic, write_png_atomic

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "ring")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 140, 25),
    "yellow": (240, 220, 35),
    "green": (40, 165, 55),
    "cyan": (35, 205, 215),
    "blue": (35, 65, 215),
    "purple": (135, 50, 195),
    "pink": (240, 130, 190),
    "brown": (125, 80, 40),
    "white": (248, 248, 248),
    "black": (22, 22, 22),
}
BACKGROUNDS: tuple[str, ...] = ("white", "gray", "sand", "sky", "grass")
EXTENT = 0.58  # every shape lies within EXTENT * size of its centre (square corners: 0.566)
_BACKGROUND_MEAN: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 236),
    "gray": (128, 128, 128),
    "sand": (214, 190, 142),
    "sky": (165, 205, 240),
    "grass": (80, 140, 62),
}
# Label-map colours of written scene folders: far apart, the seed sample's style.
MASK_PALETTE: tuple[tuple[int, int, int], ...] = ((251, 1, 1), (1, 200, 1), (1, 1, 251))
MASK_BACKGROUND: tuple[int, int, int] = (254, 254, 254)
VOCABULARY: tuple[str, ...] = (
    *SHAPES,
    *PATTERNS,
    *COLOUR_NAMES,
    *BACKGROUNDS,
    *[
        "a",
        "an",
        "and",
        "on",
        "of",
        "the",
        "with",
        "high",
        "quality",
        "picture",
        "photo",
        "background",
    ],
)
MIN_SIZE, MAX_SIZE = 14.0, 32.0
_SUPERSAMPLE = 4
_MIN_CONTRAST = 90.0  # RGB distance an object keeps from its background's mean colour


@dataclass(frozen=True)
class ShapeSpec:
    """One object: what it is and where. Positions and sizes in pixels of the scene."""

    shape: str
    colour: tuple[int, int, int]
    colour_name: str
    pattern: str
    cx: float
    cy: float
    size: float
    angle: float = 0.0

    @property
    def name(self) -> str:
        """Label-map name: the caption's colour and shape words, e.g. `red triangle`."""
        return f"{self.colour_name} {self.shape}"

    @property
    def phrase(self) -> str:
        """Caption phrase, e.g. `a striped red triangle`."""
        words = ([] if self.pattern == "plain" else [self.pattern]) + [self.colour_name, self.shape]
        article = "an" if words[0][0] in "aeiou" else "a"
        return " ".join([article, *words])


@dataclass(frozen=True)
class WorldScene:
    """A rendered scene and its exact ground truth."""

    image: np.ndarray  # (S, S, 3) uint8
    masks: np.ndarray  # (K, S, S) bool, visible pixels of each object
    objects: tuple[ShapeSpec, ...]
    background: str
    background_seed: int
    caption: str
    world: str = "v1"
    """`v1` (flat light, smooth backgrounds) or `v2` (see `world_v2`)."""
    light: Any = None
    """World v2: the scene's `lighting.Light`; None in v1."""
    amodal: np.ndarray | None = None
    """World v2: (K, S, S) bool whole-object masks, hidden parts included."""
    shadows: np.ndarray | None = None
    """World v2: (K, S, S) float32 each object's shadow darkening (0..strength)."""
    illumination: np.ndarray | None = None
    """World v2: (S, S) float32 multiplicative illumination field."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objects)

    def labels(self) -> np.ndarray:
        """(S, S) int16 label grid: i for objects[i], K for background."""
        return masks_to_labels(self.masks)

    def label_map(self) -> dict[str, list[int]]:
        """The `semantic_dict.json` content, background last."""
        out = {name: list(MASK_PALETTE[i]) for i, name in enumerate(self.names)}
        out["background"] = list(MASK_BACKGROUND)
        return out


def masks_to_labels(masks: np.ndarray) -> np.ndarray:
    """(K, S, S) bool masks (disjoint) -> (S, S) int16 labels, K where no mask is set."""
    k = masks.shape[0]
    labels = np.full(masks.shape[1:], k, dtype=np.int16)
    for i in range(k):
        labels[masks[i]] = i
    return labels


def labels_to_colour_mask(labels: np.ndarray, n_objects: int) -> np.ndarray:
    """(S, S) labels -> (S, S, 3) uint8 colour-coded mask in the written scene palette."""
    palette = np.array([*MASK_PALETTE[:n_objects], MASK_BACKGROUND], dtype=np.uint8)
    return palette[np.clip(labels, 0, n_objects)]


def nearest_colour_name(rgb: Sequence[float]) -> str:
    """Basic colour name nearest to `rgb` (Euclidean RGB distance)."""
    ref = np.array(list(COLOUR_NAMES.values()), dtype=np.float64)
    d = np.linalg.norm(ref - np.asarray(rgb, dtype=np.float64), axis=1)
    return list(COLOUR_NAMES)[int(np.argmin(d))]


def _sample_colour(
    rng: np.random.Generator, background: str, taken: set[str]
) -> tuple[tuple[int, int, int], str]:
    bg = np.array(_BACKGROUND_MEAN[background], dtype=np.float64)
    while True:
        name = str(rng.choice(list(COLOUR_NAMES)))
        base = np.array(COLOUR_NAMES[name], dtype=np.float64)
        rgb = np.clip(base + rng.uniform(-28, 28, size=3), 0, 255).round()
        if nearest_colour_name(rgb.tolist()) != name or name in taken:
            continue
        if np.linalg.norm(rgb - bg) < _MIN_CONTRAST:
            continue
        return (int(rgb[0]), int(rgb[1]), int(rgb[2])), name


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    n = size * _SUPERSAMPLE
    c = (np.arange(n) + 0.5) / _SUPERSAMPLE
    return np.meshgrid(c, c)  # x, y in pixel units


def _inside(spec: ShapeSpec, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Coordinates relative to the centre, rotated into the shape's frame, in units of radius.
    r = spec.size / 2.0
    a = math.radians(spec.angle)
    dx, dy = (x - spec.cx) / r, (y - spec.cy) / r
    u = dx * math.cos(a) + dy * math.sin(a)
    v = -dx * math.sin(a) + dy * math.cos(a)
    rho = np.hypot(u, v)
    if spec.shape == "circle":
        return rho <= 1.0
    if spec.shape == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if spec.shape == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if spec.shape == "triangle":
        # Upright equilateral triangle inscribed in the unit circle (y grows downwards).
        return (v <= 0.5) & (v >= -1.0 + 1.732 * np.abs(u))
    if spec.shape == "star":
        theta = np.arctan2(v, u) + math.pi / 2
        spike = np.abs(((theta * 5 / (2 * math.pi)) % 1.0) - 0.5) * 2  # 1 at points, 0 between
        return rho <= 0.45 + 0.55 * spike
    if spec.shape == "heart":
        hx, hy = u * 1.15, -(v * 1.15 - 0.15)
        return (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    raise ValueError(f"unknown shape {spec.shape!r}")


def shape_coverage(spec: ShapeSpec, size: int = 64) -> np.ndarray:
    """(S, S) float32 share of each pixel that the shape covers (4x4 supersampled)."""
    x, y = _grid(size)
    fine = _inside(spec, x, y).astype(np.float32)
    return fine.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))


def _pattern_fine(spec: ShapeSpec, size: int) -> np.ndarray:
    """(S*4, S*4) bool: where the pattern's second tone shows."""
    x, y = _grid(size)
    if spec.pattern == "striped":
        return ((x - spec.cx + y - spec.cy) / 3.0 % 2.0) < 1.0
    if spec.pattern == "dotted":
        return (np.hypot((x - spec.cx) % 5.0 - 2.5, (y - spec.cy) % 5.0 - 2.5)) < 1.2
    return np.zeros_like(x, dtype=bool)


def render_background(name: str, seed: int, size: int = 64) -> np.ndarray:
    """(S, S, 3) float32 background texture in 0..255."""
    rng = np.random.default_rng(seed)
    mean = np.array(_BACKGROUND_MEAN[name], dtype=np.float32)
    img = np.broadcast_to(mean, (size, size, 3)).astype(np.float32).copy()
    if name == "sky":
        t = np.linspace(-1.0, 1.0, size, dtype=np.float32)[:, None, None]
        img += t * np.array([30, 22, 10], dtype=np.float32)
    elif name in ("sand", "grass"):
        # Smooth noise: upsampled coarse noise keeps the texture learnable by a small VAE.
        coarse = rng.normal(0, 1, size=(size // 8, size // 8, 1)).astype(np.float32)
        smooth = np.kron(coarse, np.ones((8, 8, 1), dtype=np.float32))
        fine = rng.normal(0, 1, size=(size, size, 1)).astype(np.float32)
        amp = (10.0, 4.0) if name == "sand" else (14.0, 6.0)
        img += amp[0] * smooth + amp[1] * fine
    return img


def render(
    objects: Sequence[ShapeSpec], background: str, background_seed: int, size: int = 64
) -> WorldScene:
    """Draw `objects` in order (later ones on top) over the named background."""
    img = render_background(background, background_seed, size)
    masks = np.zeros((len(objects), size, size), dtype=bool)
    for i, spec in enumerate(objects):
        x, y = _grid(size)
        fine_inside = _inside(spec, x, y)
        colour = np.array(spec.colour, dtype=np.float32)
        second = np.clip(colour * 0.55 + 20, 0, 255) if spec.colour_name != "black" else colour + 90
        pat = _pattern_fine(spec, size)
        fine_rgb = np.where(pat[..., None], second, colour)
        fine_rgb = fine_rgb * fine_inside[..., None]
        cov = fine_inside.astype(np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)
        cov = cov.mean(axis=(1, 3))
        rgb = fine_rgb.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).sum(axis=(1, 3))
        rgb = rgb / (_SUPERSAMPLE**2)
        img = img * (1 - cov[..., None]) + rgb
        exact = cov >= 0.5
        masks[:i] &= ~exact
        masks[i] = exact
    caption_objects = list(objects)
    scene_caption = caption(caption_objects, background)
    return WorldScene(
        image=np.clip(img, 0, 255).round().astype(np.uint8),
        masks=masks,
        objects=tuple(objects),
        background=background,
        background_seed=background_seed,
        caption=scene_caption,
    )


def caption(objects: Sequence[ShapeSpec], background: str) -> str:
    """`a striped red triangle, a blue circle and a yellow star on a sand background`."""
    phrases = [o.phrase for o in objects]
    joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{joined} on a {background} background"


def _overlap_ok(spec: ShapeSpec, placed: Sequence[ShapeSpec], size: int) -> bool:
    cov = shape_coverage(spec, size) >= 0.5
    for other in placed:
        o = shape_coverage(other, size) >= 0.5
        inter = (cov & o).sum()
        if inter > 0.12 * min(cov.sum(), o.sum()):
            return False
    return True


def sample_object(
    rng: np.random.Generator,
    background: str,
    taken_colours: set[str],
    taken_shapes: set[str],
    size: int = 64,
) -> ShapeSpec:
    """A random object fully inside the frame, with a colour unlike the background's."""
    shape = str(rng.choice([s for s in SHAPES if s not in taken_shapes]))
    colour, colour_name = _sample_colour(rng, background, taken_colours)
    pattern = str(rng.choice(PATTERNS, p=[0.7, 0.15, 0.15]))
    scale = size / 64.0
    d = float(rng.uniform(MIN_SIZE, MAX_SIZE)) * scale
    margin = d / 2 + 1
    cx = float(rng.uniform(margin, size - margin))
    cy = float(rng.uniform(margin, size - margin))
    angle = float(rng.uniform(-20, 20)) if shape in ("square", "star") else 0.0
    return ShapeSpec(shape, colour, colour_name, pattern, cx, cy, d, angle)


def sample_scene(seed: int, n_objects: int | None = None, size: int = 64) -> WorldScene:
    """The scene of `seed`: 1-3 objects (or `n_objects`), distinct colour names and shapes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4)) if n_objects is None else n_objects
    background = str(rng.choice(BACKGROUNDS))
    placed: list[ShapeSpec] = []
    while len(placed) < n:
        spec = sample_object(
            rng, background, {o.colour_name for o in placed}, {o.shape for o in placed}, size
        )
        if _overlap_ok(spec, placed, size):
            placed.append(spec)
    bg_seed = int(rng.integers(0, 2**31 - 1))
    order = list(rng.permutation(n))
    scene = render(placed, background, bg_seed, size)
    # The caption names objects in a shuffled order; the drawing order stays the truth.
    return replace(scene, caption=caption([placed[i] for i in order], background))


def moved(spec: ShapeSpec, cx: float, cy: float, scale: float = 1.0) -> ShapeSpec:
    """The same object at another centre and size."""
    return replace(spec, cx=cx, cy=cy, size=spec.size * scale)


def exact_mask(spec: ShapeSpec, size: int) -> np.ndarray:
    """(size, size) bool: where the shape alone covers at least half a pixel.

    Same as `shape_coverage(spec, size) >= 0.5`, computed on a window around the shape only
    (whole-pixel window offsets keep the supersampling grid, so the result is identical).
    """
    reach = EXTENT * spec.size + 1.0
    x0, y0 = int(np.floor(spec.cx - reach)), int(np.floor(spec.cy - reach))
    side = int(np.ceil(2 * reach)) + 2
    window = shape_coverage(moved(spec, spec.cx - x0, spec.cy - y0), side) >= 0.5
    out = np.zeros((size, size), dtype=bool)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(size, y0 + side), min(size, x0 + side)
    if ye > ys and xe > xs:
        out[ys:ye, xs:xe] = window[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


def write_scene_folder(scene: WorldScene, folder: Path, layouts: Sequence[np.ndarray] = ()) -> Path:
    """Write `image.png`, `mask.png`, `semantic_dict.json` and `target_layout/layoutN.png`.

    Args:
        layouts: label grids (S, S) int in the scene's coding (K = background).
    """
    folder.mkdir(parents=True, exist_ok=True)
    k = len(scene.objects)
    write_png_atomic(folder / "image.png", scene.image)
    write_png_atomic(folder / "mask.png", labels_to_colour_mask(scene.labels(), k))
    write_json_atomic(folder / "semantic_dict.json", scene.label_map())
    if layouts:
        (folder / "target_layout").mkdir(exist_ok=True)
        for i, lab in enumerate(layouts, start=1):
            write_png_atomic(
                folder / "target_layout" / f"layout{i}.png", labels_to_colour_mask(lab, k)
            )
    return folder
