"""Benchmark cases: a shapes-world scene, a rough target layout, and the exact ground truth.

Scenes come from seeds that nothing else uses: `CASE_SEED_BASE + 1_000 * seed + j`
(training uses 10_000_000 and up, the quality gate 20_000_000 and up, tests small seeds).
Each scene gets `layouts_per_scene` target layouts, their kinds cycling through
`move` (one or two objects move), `swap` (two objects trade places) and `scale` (one object
is scaled 0.6-1.5x, and may shift a little). Moves are whole pixels, so an unscaled object's
ground truth is its source pixels shifted exactly.

The layout handed to the method is a rough region around each transformed object (an
ellipse around its bounding box, or the object dilated by a disk: a painted blob), never the
exact shape. Regions of different objects never touch, so each region holds its whole
object. The exact transformed masks come from re-rendering the moved objects with
`layoutedit.shapes.world.render` and the same background seed.

A layout kind that a scene cannot take (everything must stay in frame, regions disjoint)
gives way to the next kind; a seed whose scene takes none is skipped for the next seed. A
given (n_scenes, seed, layouts_per_scene) always yields the same cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from layoutedit.scenes.layout_ops import Placement
from layoutedit.scenes.morphology import dilate, disk
from layoutedit.shapes.world import (
    EXTENT,
    ShapeSpec,
    WorldScene,
    exact_mask,
    moved,
    render,
    sample_scene,
)

CASE_SEED_BASE = 5_000_000
SEED_STRIDE = 1_000
MAX_SEED_OFFSET = 4_999  # keeps case seeds below the training range (10_000_000)
KINDS: tuple[str, ...] = ("move", "swap", "scale")
SCALE_RANGE = (0.6, 1.5)
MIN_SCALE_CHANGE = 0.2  # |scale - 1| at least this, so a scale edit is visible
MAX_TARGET_SIZE = 34.0  # px; larger objects leave no room for a second region
MIN_TARGET_SIZE = 12.0  # px; smaller ones are a few pixels at the latent grid
MIN_MOVE = 8.0  # px; smallest centre move of a moved object
_TRIES = 200


@dataclass(frozen=True, eq=False)
class Case:
    """One edit to score. Arrays are at the scene's size S (64 px); K objects."""

    case_id: str
    scene_seed: int
    kind: str
    source: WorldScene
    truth: WorldScene
    """The moved objects re-rendered over the same background: exact target masks."""
    layout: np.ndarray
    """(S, S) int16 rough target regions, object i -> i, background K (the method's input)."""
    region_shapes: tuple[str, ...]
    """Per object: `ellipse` or `blob`."""
    depth_order: tuple[int, ...] | None = None
    """World v2: object indices back to front in the truth (the layout says it: where two
    regions overlap, the front object's holds the overlap); None: the drawing order."""

    @property
    def world(self) -> str:
        """`v1` or `v2`: the shapes world of the source."""
        return self.source.world

    @property
    def n_objects(self) -> int:
        """K."""
        return len(self.source.objects)

    @property
    def names(self) -> tuple[str, ...]:
        """Object names in object (drawing) order, e.g. `red triangle`."""
        return self.source.names

    @property
    def source_labels(self) -> np.ndarray:
        """(S, S) int16 source labels, K = background."""
        return self.source.labels()

    @property
    def target_masks(self) -> np.ndarray:
        """(K, S, S) bool exact transformed masks."""
        return self.truth.masks

    @property
    def target_labels(self) -> np.ndarray:
        """(S, S) int16 exact target labels, K = background."""
        return self.truth.labels()

    @property
    def region_masks(self) -> np.ndarray:
        """(K, S, S) bool rough regions."""
        ks = np.arange(self.n_objects)[:, None, None]
        return self.layout[None] == ks

    @property
    def placements(self) -> tuple[Placement, ...]:
        """Per object, from source to target (centres and scale)."""
        return tuple(
            Placement(s.cx, s.cy, t.cx, t.cy, t.size / s.size)
            for s, t in zip(self.source.objects, self.truth.objects, strict=True)
        )

    def source_colours(self) -> np.ndarray:
        """(K, 3) float64 mean RGB of each object's visible source pixels."""
        img = self.source.image.astype(np.float64)
        return np.stack([img[m].mean(axis=0) for m in self.source.masks])

    def truth_colours(self) -> np.ndarray:
        """(K, 3) float64 mean RGB of each object's visible pixels in the truth (world v2: an
        object moved across the light or into a shadow changes colour; NaN when hidden)."""
        img = self.truth.image.astype(np.float64)
        return np.stack(
            [img[m].mean(axis=0) if m.any() else np.full(3, np.nan) for m in self.truth.masks]
        )


def identity_case(case: Case) -> Case:
    """The case whose target is the source itself: the layout is the source's exact mask.

    It asks how well the learned concept reproduces the scene before anything moves, which
    separates "learning lost the object" from "guidance could not move it".
    """
    return replace(
        case,
        case_id=f"{case.scene_seed}-identity",
        kind="identity",
        truth=case.source,
        layout=case.source_labels,
        region_shapes=("exact",) * case.n_objects,
        depth_order=None if case.depth_order is None else tuple(range(case.n_objects)),
    )


def case_seeds(seed: int) -> range:
    """Scene seeds for `--seed seed`, in the order they are tried."""
    if not 0 <= seed <= MAX_SEED_OFFSET:
        raise ValueError(f"seed must lie in 0..{MAX_SEED_OFFSET}")
    first = CASE_SEED_BASE + SEED_STRIDE * seed
    return range(first, first + SEED_STRIDE)


def in_frame(spec: ShapeSpec, size: int) -> bool:
    """Whether the whole shape lies inside the (size x size) frame (with EXTENT's margin)."""
    r = EXTENT * spec.size
    return r <= spec.cx <= size - r and r <= spec.cy <= size - r


def rough_region(
    mask: np.ndarray, size_px: float, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """A hand-painted-looking region holding every pixel of `mask` ((S, S) bool).

    `ellipse`: the smallest axis-aligned ellipse with the bounding box's centre and aspect
    that holds every mask pixel (corners included), grown by a 1-3 px margin. `blob`: the
    mask dilated by a disk of about an eighth of the object's size plus up to 1.5 px, which
    rounds every corner and fills a ring's hole.
    """
    if kind == "blob":
        radius = max(2.0, 0.125 * size_px) + float(rng.uniform(0.0, 1.5))
        return dilate(mask, disk(radius))
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    hw, hh = (xs.max() + 1 - xs.min()) / 2, (ys.max() + 1 - ys.min()) / 2
    # Pixel squares' far corners, so the ellipse holds whole pixels, not just centres.
    dx = np.abs(xs + 0.5 - cx) + 0.5
    dy = np.abs(ys + 0.5 - cy) + 0.5
    grow = float(np.sqrt(np.max((dx / hw) ** 2 + (dy / hh) ** 2)))
    margin = float(rng.uniform(1.0, 3.0))
    a, b = hw * grow + margin, hh * grow + margin
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5  # pixel centres
    return (((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2) <= 1.0


def into_frame(spec: ShapeSpec, size: int) -> ShapeSpec | None:
    """`spec` shifted by whole pixels just enough to lie in frame; None if it cannot fit."""
    r = EXTENT * spec.size
    if 2 * r > size:
        return None
    dx = max(0, int(np.ceil(r - spec.cx))) - max(0, int(np.ceil(spec.cx - (size - r))))
    dy = max(0, int(np.ceil(r - spec.cy))) - max(0, int(np.ceil(spec.cy - (size - r))))
    out = spec if dx == dy == 0 else moved(spec, spec.cx + dx, spec.cy + dy)
    return out if in_frame(out, size) else None


def random_shift(rng: np.random.Generator, low: float, high: float) -> tuple[int, int]:
    """A whole-pixel shift (dx, dy), each in -high..high, at least `low` px long."""
    while True:
        dx, dy = (int(v) for v in rng.integers(-int(high), int(high) + 1, size=2))
        if np.hypot(dx, dy) >= low:
            return dx, dy


def propose(kind: str, specs: Sequence[ShapeSpec], rng: np.random.Generator) -> list[ShapeSpec]:
    """The objects after one random `move`, `swap` or `scale` (unchecked: may leave the
    frame); [] when the drawn scale is refused."""
    out = list(specs)
    k = len(specs)
    if kind == "move":
        n_moved = int(rng.integers(1, min(2, k) + 1))
        for i in rng.choice(k, size=n_moved, replace=False):
            dx, dy = random_shift(rng, MIN_MOVE, 24)
            out[i] = moved(specs[i], specs[i].cx + dx, specs[i].cy + dy)
    elif kind == "swap":
        # Each takes the other's place: whole-pixel moves, a little jitter so that objects of
        # different sizes can fit, clamped so that a big object stays in frame.
        i, j = (int(v) for v in rng.choice(k, size=2, replace=False))
        for a, b in ((i, j), (j, i)):
            jx, jy = (int(v) for v in rng.integers(-3, 4, size=2))
            dx = round(specs[b].cx - specs[a].cx) + jx
            dy = round(specs[b].cy - specs[a].cy) + jy
            out[a] = moved(specs[a], specs[a].cx + dx, specs[a].cy + dy)
    elif kind == "scale":
        i = int(rng.integers(k))
        s = float(rng.uniform(*SCALE_RANGE))
        new_size = specs[i].size * s
        if abs(s - 1.0) < MIN_SCALE_CHANGE or not MIN_TARGET_SIZE <= new_size <= MAX_TARGET_SIZE:
            return []
        dx, dy = random_shift(rng, 0, 6)
        out[i] = moved(specs[i], specs[i].cx + dx, specs[i].cy + dy, s)
    else:
        raise ValueError(f"unknown layout kind {kind!r}")
    return out


def _try_layout(
    source: WorldScene, kind: str, rng: np.random.Generator
) -> tuple[list[ShapeSpec], np.ndarray, tuple[str, ...]] | None:
    size = source.image.shape[0]
    k = len(source.objects)
    cache: dict[ShapeSpec, np.ndarray] = {}

    def shape_mask(spec: ShapeSpec) -> np.ndarray:
        if spec not in cache:
            cache[spec] = exact_mask(spec, size)
        return cache[spec]

    for _ in range(_TRIES):
        specs = propose(kind, source.objects, rng)
        if not specs:
            continue
        # A swap or a scale may be nudged into frame; a move that leaves it is redrawn.
        fitted = [
            s if s is o else (into_frame(s, size) if kind != "move" else s)
            for s, o in zip(specs, source.objects, strict=True)
        ]
        specs = [s for s in fitted if s is not None]
        if len(specs) < k or not all(
            in_frame(s, size) for s, o in zip(specs, source.objects, strict=True) if s is not o
        ):
            continue
        shapes = [shape_mask(s) for s in specs]
        if min(int(m.sum()) for m in shapes) < 12:
            continue
        kinds = tuple(str(rng.choice(["ellipse", "blob"])) for _ in specs)
        regions = [
            rough_region(m, s.size, kd, rng) for m, s, kd in zip(shapes, specs, kinds, strict=True)
        ]
        if (np.sum(regions, axis=0) > 1).any():
            continue  # regions must not touch: each holds its whole object
        layout = np.full((size, size), k, dtype=np.int16)
        for i, r in enumerate(regions):
            layout[r] = i
        return specs, layout, kinds
    return None


def make_cases(
    n_scenes: int, seed: int = 0, layouts_per_scene: int = 2, world: str = "v1"
) -> list[Case]:
    """`n_scenes` scenes of 2 or 3 objects, `layouts_per_scene` target layouts each.

    Deterministic in its arguments; another `seed` (0..MAX_SEED_OFFSET) gives other scenes.
    `world="v2"`: scenes of world v2 and its layout kinds (`cases_v2`).
    """
    if n_scenes < 1 or layouts_per_scene < 1:
        raise ValueError("n_scenes and layouts_per_scene must be at least 1")
    if world != "v1":
        from layoutedit.bench.cases_v2 import make_cases_v2

        if world != "v2":
            raise ValueError(f"unknown world {world!r}: v1 or v2")
        return make_cases_v2(n_scenes, seed, layouts_per_scene)
    cases: list[Case] = []
    scenes = 0
    for scene_seed in case_seeds(seed):
        if scenes == n_scenes:
            break
        rng = np.random.default_rng([scene_seed, 1])  # not sample_scene's own stream
        source = sample_scene(scene_seed, int(rng.integers(2, 4)))
        found = []
        for i in range(layouts_per_scene):
            # Kinds cycle over scenes and layouts; a kind the scene cannot take gives way
            # to the next one.
            first = (scenes + i) % len(KINDS)
            for kind in KINDS[first:] + KINDS[:first]:
                tried = _try_layout(source, kind, rng)
                if tried is not None:
                    found.append((kind, *tried))
                    break
            else:
                break
        if len(found) < layouts_per_scene:
            continue
        for i, (kind, specs, layout, shapes) in enumerate(found):
            truth = render(specs, source.background, source.background_seed)
            cases.append(
                Case(
                    case_id=f"{scene_seed}-{i + 1}-{kind}",
                    scene_seed=scene_seed,
                    kind=kind,
                    source=source,
                    truth=truth,
                    layout=layout,
                    region_shapes=shapes,
                )
            )
        scenes += 1
    return cases
