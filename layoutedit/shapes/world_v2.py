"""World v2: scenes that copy-paste gets wrong.

A setting of the shapes world (`world.py` stays v1, reproducible). A v2 scene may have:
- occlusion: a back object 15-50 % hidden by a front one (drawing order is depth order);
- light (`lighting.py`): an illumination ramp over the whole scene and a soft cast shadow
  per object, which is not part of the object's mask and moves with it;
- structured backgrounds (`textures.py`: tiles, bricks, stripes, planks) beside v1's.
The truth carries whole-object (amodal) masks, shadow maps and the illumination, so a
re-rendering with objects moved (`rerender`) is the exact target of an edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from layoutedit.shapes.lighting import Light, illumination, sample_light, shadow_alpha
from layoutedit.shapes.textures import STRUCTURED, STRUCTURED_MEAN, render_structured
from layoutedit.shapes.world import (
    _BACKGROUND_MEAN,
    _SUPERSAMPLE,
    BACKGROUNDS,
    EXTENT,
    VOCABULARY,
    ShapeSpec,
    WorldScene,
    _grid,
    _inside,
    _overlap_ok,
    _pattern_fine,
    caption,
    exact_mask,
    moved,
    render,
    render_background,
    sample_object,
    shape_coverage,
)

WORLDS: tuple[str, ...] = ("v1", "v2")
BACKGROUNDS_V2: tuple[str, ...] = (*BACKGROUNDS, *STRUCTURED)
VOCABULARY_V2_EXTRA: tuple[str, ...] = STRUCTURED
"""Words v2 captions add to v1's vocabulary (appended: v1's token ids stay)."""
VOCABULARY_V2: tuple[str, ...] = (*VOCABULARY, *VOCABULARY_V2_EXTRA)
OCCLUSION_SHARE = (0.15, 0.5)  # hidden share of a back object's whole area
_OCCLUDE_P = 0.6
_STRUCTURED_P = 0.5


def background_albedo(name: str, seed: int, size: int = 64) -> np.ndarray:
    """(S, S, 3) float32 background before illumination, v1 or structured."""
    if name in STRUCTURED:
        return render_structured(name, seed, size)
    return render_background(name, seed, size)


def _window(spec: ShapeSpec) -> tuple[int, int, int]:
    """(x0, y0, side): a whole-pixel window that holds the shape (offsets keep the
    supersampling grid and the pattern's phase, so a window render equals a full one)."""
    reach = EXTENT * spec.size + 1.0
    x0, y0 = int(np.floor(spec.cx - reach)), int(np.floor(spec.cy - reach))
    return x0, y0, int(np.ceil(2 * reach)) + 2


def _paste(window: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    side = window.shape[0]
    out = np.zeros((size, size, *window.shape[2:]), dtype=np.float32)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(size, y0 + side), min(size, x0 + side)
    if ye > ys and xe > xs:
        out[ys:ye, xs:xe] = window[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


def coverage(spec: ShapeSpec, size: int) -> np.ndarray:
    """(S, S) float32 share of each pixel the shape covers (4x4 supersampled)."""
    x0, y0, side = _window(spec)
    return _paste(shape_coverage(moved(spec, spec.cx - x0, spec.cy - y0), side), x0, y0, size)


def _coverage_rgb(spec: ShapeSpec, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) coverage and (S, S, 3) premultiplied colour of one object (4x4 supersampled)."""
    x0, y0, side = _window(spec)
    local = moved(spec, spec.cx - x0, spec.cy - y0)
    x, y = _grid(side)
    inside = _inside(local, x, y)
    colour = np.array(spec.colour, dtype=np.float32)
    second = np.clip(colour * 0.55 + 20, 0, 255) if spec.colour_name != "black" else colour + 90
    fine_rgb = np.where(_pattern_fine(local, side)[..., None], second, colour) * inside[..., None]
    n = _SUPERSAMPLE
    cov = inside.astype(np.float32).reshape(side, n, side, n).mean(axis=(1, 3))
    rgb = fine_rgb.reshape(side, n, side, n, 3).mean(axis=(1, 3))
    return _paste(cov, x0, y0, size), _paste(rgb.astype(np.float32), x0, y0, size)


def render_lit(
    objects: Sequence[ShapeSpec],
    background: str,
    background_seed: int,
    light: Light,
    size: int = 64,
) -> WorldScene:
    """Draw `objects` back to front with their shadows, then light the whole scene.

    Each object's shadow darkens what is already drawn (background, objects behind it);
    the object is then painted over; finally every pixel is multiplied by the illumination.
    """
    img = background_albedo(background, background_seed, size)
    k = len(objects)
    masks = np.zeros((k, size, size), dtype=bool)
    amodal = np.zeros((k, size, size), dtype=bool)
    shadows = np.zeros((k, size, size), dtype=np.float32)
    sx, sy = light.shadow_shift
    for i, spec in enumerate(objects):
        shifted = coverage(moved(spec, spec.cx + sx, spec.cy + sy), size)
        shadows[i] = shadow_alpha(shifted, light)
        img = img * (1.0 - shadows[i][..., None])
        cov, rgb = _coverage_rgb(spec, size)
        img = img * (1.0 - cov[..., None]) + rgb
        exact = cov >= 0.5
        masks[:i] &= ~exact
        masks[i] = exact
        amodal[i] = exact
    light_field = illumination(light, size)
    img = img * light_field[..., None]
    return WorldScene(
        image=np.clip(img, 0, 255).round().astype(np.uint8),
        masks=masks,
        objects=tuple(objects),
        background=background,
        background_seed=background_seed,
        caption=caption(list(objects), background),
        world="v2",
        light=light,
        amodal=amodal,
        shadows=shadows,
        illumination=light_field,
    )


def rerender(scene: WorldScene, objects: Sequence[ShapeSpec]) -> WorldScene:
    """`objects` (moved, reordered) over `scene`'s background, in its world and light."""
    if scene.world == "v2":
        return render_lit(
            objects, scene.background, scene.background_seed, scene.light, scene.image.shape[0]
        )
    return render(objects, scene.background, scene.background_seed, scene.image.shape[0])


def hidden_share(back: ShapeSpec, front: ShapeSpec, size: int) -> float:
    """Share of `back`'s whole area that `front`, drawn over it, hides."""
    b, f = exact_mask(back, size), exact_mask(front, size)
    return float((b & f).sum() / max(1, b.sum()))


def _occluding(
    rng: np.random.Generator,
    back: ShapeSpec,
    candidate: ShapeSpec,
    others: Sequence[ShapeSpec],
    size: int,
) -> ShapeSpec | None:
    """`candidate` moved next to `back` so that it hides 15-50 % of it, or None."""
    for _ in range(40):
        dist = (back.size + candidate.size) / 2 * float(rng.uniform(0.35, 0.85))
        a = float(rng.uniform(0, 2 * np.pi))
        cx, cy = back.cx + dist * np.cos(a), back.cy + dist * np.sin(a)
        margin = candidate.size / 2 + 1
        if not (margin <= cx <= size - margin and margin <= cy <= size - margin):
            continue
        spec = moved(candidate, float(cx), float(cy))
        share = hidden_share(back, spec, size)
        if OCCLUSION_SHARE[0] <= share <= OCCLUSION_SHARE[1] and _overlap_ok(spec, others, size):
            return spec
    return None


def sample_scene_v2(seed: int, n_objects: int | None = None, size: int = 64) -> WorldScene:
    """The v2 scene of `seed`: 1-3 objects (or `n_objects`), often one hiding part of
    another, over a v1 or structured background, lit from one side with cast shadows."""
    rng = np.random.default_rng([seed, 2])  # not v1's stream: v1 scenes stay as they were
    n = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4])) if n_objects is None else n_objects
    if rng.random() < _STRUCTURED_P:
        background = str(rng.choice(STRUCTURED))
    else:
        background = str(rng.choice(BACKGROUNDS))
    mean_name = background if background in _BACKGROUND_MEAN else "gray"
    placed: list[ShapeSpec] = []
    while len(placed) < n:
        spec = sample_object(
            rng, mean_name, {o.colour_name for o in placed}, {o.shape for o in placed}, size
        )
        if background in STRUCTURED and not _contrasts(spec, background):
            continue
        if placed and rng.random() < _OCCLUDE_P:
            back = placed[int(rng.integers(0, len(placed)))]
            others = [o for o in placed if o is not back]
            hiding = _occluding(rng, back, spec, others, size)
            if hiding is not None:
                placed.append(hiding)
                continue
        if _overlap_ok(spec, placed, size):
            placed.append(spec)
    bg_seed = int(rng.integers(0, 2**31 - 1))
    light = sample_light(rng)
    order = list(rng.permutation(n))
    scene = render_lit(placed, background, bg_seed, light, size)
    return replace(scene, caption=caption([placed[i] for i in order], background))


def _contrasts(spec: ShapeSpec, background: str) -> bool:
    bg = np.array(STRUCTURED_MEAN[background], dtype=np.float64)
    return bool(np.linalg.norm(np.array(spec.colour, dtype=np.float64) - bg) >= 90.0)


def sample_world_scene(
    seed: int, n_objects: int | None = None, size: int = 64, world: str = "v1"
) -> WorldScene:
    """The scene of `seed` in `world` (`v1` or `v2`)."""
    if world == "v2":
        return sample_scene_v2(seed, n_objects, size)
    if world != "v1":
        raise ValueError(f"unknown world {world!r}: one of {', '.join(WORLDS)}")
    from layoutedit.shapes.world import sample_scene

    return sample_scene(seed, n_objects, size)
