"""World v2 benchmark cases: edits whose truth copy-paste cannot give.

Scenes come from `world_v2.sample_world_scene(..., world="v2")` with v1's case seeds
(`cases.case_seeds`) and v1's count of objects (2 or 3, from the case's own stream), so
`--world v2` edits the v2 scene of each seed that v1 would use. Layout kinds:

- `uncover`: the front object of an overlapping pair moves clear of the back one, so the
  part the source hid shows (the first layout of every scene that has such a pair);
- `hide`: an object moves next to another so that 15-50 % of it goes behind it; the depth
  order may change (the moved object is drawn just behind the other), and the layout says
  the order: where two regions overlap, the front object's region holds the overlap;
- `relight`: an object on the dark half of the illumination ramp moves to the bright half;
- `move`, `swap`, `scale`: as in v1 (`cases.propose`).
Later layouts cycle through `hide`, `relight`, `move`, `swap`, `scale` (and `uncover`
last). Every move is whole pixels; every object's shadow moves with it, since the truth is
the scene re-rendered (`world_v2.rerender`) with the moved objects in their depth order, in
the source's light and over its background. Rough regions are v1's (`cases.rough_region`),
drawn around each object's whole (amodal) target mask; regions of two objects overlap only
where the objects do (an overlap the source had, or the one a `hide` makes), else they never
touch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from layoutedit.bench.cases import (
    KINDS,
    MIN_MOVE,
    Case,
    case_seeds,
    in_frame,
    into_frame,
    propose,
    rough_region,
)
from layoutedit.shapes.world import EXTENT, ShapeSpec, WorldScene, exact_mask, moved
from layoutedit.shapes.world_v2 import OCCLUSION_SHARE, rerender, sample_world_scene

FIRST_KIND = "uncover"
V2_KINDS: tuple[str, ...] = ("relight", "hide")
V1_KINDS: tuple[str, ...] = KINDS
KINDS_V2: tuple[str, ...] = (FIRST_KIND, *V2_KINDS, *V1_KINDS)
MIN_REVEALED = 12
"""px: an `uncover` shows at least this many pixels the source hid."""
MIN_VISIBLE = 12
"""px: every object keeps at least this many visible pixels and layout pixels."""
RELIGHT_RISE = 0.4
"""A `relight` raises the object's place on the illumination ramp (-1 dark edge .. +1
bright edge) by at least this much, from below 0 to above `RELIGHT_TO`: at least half the
field's gain brighter (7-13 % with the world's gains)."""
RELIGHT_TO = 0.05
_TRIES = 200

Proposal = tuple[list[ShapeSpec], list[int], frozenset[frozenset[int]]]
"""Objects (object order), depth order (back to front), pairs that may newly overlap."""


def ramp(scene: WorldScene, cx: float, cy: float) -> float:
    """Where (cx, cy) px lies on the scene's illumination ramp: -1 at the dark edge, +1 at
    the bright one (`lighting.illumination` is 1 + gain * ramp)."""
    half = scene.image.shape[0] / 2
    dx, dy = scene.light.direction
    return float(np.clip(((cx - half) * dx + (cy - half) * dy) / half, -1.0, 1.0))


def visible(amodal: Sequence[np.ndarray], order: Sequence[int]) -> list[np.ndarray]:
    """Each object's whole mask less what the objects drawn after it (in `order`, back to
    front) cover; object order."""
    out = [m.copy() for m in amodal]
    for n, i in enumerate(order):
        for j in order[n + 1 :]:
            out[i] &= ~amodal[j]
    return out


def _overlapping_pairs(source: WorldScene) -> list[tuple[int, int]]:
    """(back, front) pairs of the source where the front hides at least MIN_REVEALED px."""
    assert source.amodal is not None
    am = source.amodal
    k = len(am)
    pairs = [(b, f) for b in range(k) for f in range(b + 1, k)]
    return [(b, f) for b, f in pairs if (am[b] & am[f]).sum() >= MIN_REVEALED]


def frame_shift(spec: ShapeSpec, size: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """A whole-pixel shift, uniform over those that keep the whole shape in frame, at least
    MIN_MOVE long; None when the draw is shorter (or the shape cannot fit)."""
    r = EXTENT * spec.size
    lo_x, hi_x = int(np.ceil(r - spec.cx)), int(np.floor(size - r - spec.cx))
    lo_y, hi_y = int(np.ceil(r - spec.cy)), int(np.floor(size - r - spec.cy))
    if lo_x > hi_x or lo_y > hi_y:
        return None
    dx, dy = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
    return (dx, dy) if np.hypot(dx, dy) >= MIN_MOVE else None


def _shifted(specs: list[ShapeSpec], i: int, size: int, rng: np.random.Generator) -> bool:
    """Move object i to an in-frame place (`frame_shift`), in place; False if none drawn."""
    shift = frame_shift(specs[i], size, rng)
    if shift is None:
        return False
    specs[i] = moved(specs[i], specs[i].cx + shift[0], specs[i].cy + shift[1])
    return True


def _propose(kind: str, source: WorldScene, rng: np.random.Generator) -> Proposal | None:
    """One unchecked target of `kind`; None when the draw already fails."""
    specs = list(source.objects)
    k = len(specs)
    order = list(range(k))
    size = source.image.shape[0]
    if kind == "uncover":
        pairs = _overlapping_pairs(source)
        _, f = pairs[int(rng.integers(len(pairs)))]
        return (specs, order, frozenset()) if _shifted(specs, f, size, rng) else None
    if kind == "hide":
        a, c = (int(v) for v in rng.choice(k, size=2, replace=False))
        dist = (specs[a].size + specs[c].size) / 2 * float(rng.uniform(0.35, 0.85))
        angle = float(rng.uniform(0, 2 * np.pi))
        dx = round(specs[c].cx + dist * np.cos(angle) - specs[a].cx)
        dy = round(specs[c].cy + dist * np.sin(angle) - specs[a].cy)
        if np.hypot(dx, dy) < MIN_MOVE:
            return None
        specs[a] = moved(specs[a], specs[a].cx + dx, specs[a].cy + dy)
        if order.index(a) > order.index(c):  # a goes just behind c
            order.remove(a)
            order.insert(order.index(c), a)
        return specs, order, frozenset({frozenset((a, c))})
    if kind == "relight":
        dark = [i for i, s in enumerate(specs) if ramp(source, s.cx, s.cy) < 0]
        i = dark[int(rng.integers(len(dark)))]
        start = ramp(source, specs[i].cx, specs[i].cy)
        if not _shifted(specs, i, size, rng):
            return None
        end = ramp(source, specs[i].cx, specs[i].cy)
        if end <= RELIGHT_TO or end - start < RELIGHT_RISE:
            return None
        return specs, order, frozenset()
    if kind == "move":
        # As v1 (one or two objects), each to any place in frame: the objects of v2 scenes
        # are often large, and a short random shift rarely finds room.
        for i in rng.choice(k, size=int(rng.integers(1, min(2, k) + 1)), replace=False):
            if not _shifted(specs, int(i), size, rng):
                return None
        return specs, order, frozenset()
    if kind in KINDS:
        out = propose(kind, specs, rng)
        if not out:
            return None
        # A swap or a scale may be nudged into frame.
        fitted = [s if s is o else into_frame(s, size) for s, o in zip(out, specs, strict=True)]
        if any(s is None for s in fitted):
            return None
        return [s for s in fitted if s is not None], order, frozenset()
    raise ValueError(f"unknown layout kind {kind!r}")


def possible(kind: str, source: WorldScene) -> bool:
    """Whether a scene can take a kind at all (an overlap to uncover, an object on the
    dark half to relight, two objects to hide one behind the other)."""
    if kind == "uncover":
        return bool(_overlapping_pairs(source))
    if kind == "relight":
        return any(ramp(source, s.cx, s.cy) < 0 for s in source.objects)
    return len(source.objects) >= 2 or kind in ("move", "scale")


def try_layout(
    source: WorldScene, kind: str, rng: np.random.Generator
) -> tuple[list[ShapeSpec], tuple[int, ...], np.ndarray, tuple[str, ...]] | None:
    """One target of `kind` for `source`: objects (object order), depth order, the rough
    layout ((S, S) int16, regions painted back to front) and the region shapes; None when
    `_TRIES` proposals all fail the checks."""
    if not possible(kind, source):
        return None
    assert source.amodal is not None
    size = source.image.shape[0]
    k = len(source.objects)
    cache: dict[ShapeSpec, np.ndarray] = dict(zip(source.objects, source.amodal, strict=True))
    framed = {
        (s.shape, s.size, s.angle, s.pattern): (s, m)
        for s, m in zip(source.objects, source.amodal, strict=True)
        if in_frame(s, size)
    }

    def whole(spec: ShapeSpec) -> np.ndarray:
        if spec not in cache:
            cache[spec] = _whole_mask(spec, size, framed)
        return cache[spec]

    for _ in range(_TRIES):
        proposal = _propose(kind, source, rng)
        if proposal is None:
            continue
        specs, order, may_overlap = proposal
        changed = [s is not o for s, o in zip(specs, source.objects, strict=True)]
        moved_specs = [s for s, c in zip(specs, changed, strict=True) if c]
        if not moved_specs or not all(in_frame(s, size) for s in moved_specs):
            continue
        am = [whole(s) for s in specs]
        shown = visible(am, order)
        if min(int(m.sum()) for m in shown) < MIN_VISIBLE:
            continue
        if not _pairs_ok(am, changed, may_overlap):
            continue
        if kind == "uncover" and not _reveals(source, shown, changed):
            continue
        if kind == "hide" and not _hides(am, shown, changed):
            continue
        shapes = tuple(str(rng.choice(["ellipse", "blob"])) for _ in specs)
        regions = [
            rough_region(m, s.size, kd, rng) for m, s, kd in zip(am, specs, shapes, strict=True)
        ]
        if not _regions_ok(am, regions):
            continue
        layout = np.full((size, size), k, dtype=np.int16)
        for i in order:  # back to front: the front object's region holds an overlap
            layout[regions[i]] = i
        if min(int((layout == i).sum()) for i in range(k)) < MIN_VISIBLE:
            continue
        return specs, tuple(order), layout, shapes
    return None


def _whole_mask(
    spec: ShapeSpec, size: int, framed: dict[tuple, tuple[ShapeSpec, np.ndarray]]
) -> np.ndarray:
    """`exact_mask(spec)`; for an in-frame source object moved by whole pixels (in frame too)
    its source mask shifted, which is the same mask (the supersampling grid moves with it)
    at a fraction of the cost."""
    found = framed.get((spec.shape, spec.size, spec.angle, spec.pattern))
    if found is not None and in_frame(spec, size):
        src, mask = found
        dx, dy = spec.cx - src.cx, spec.cy - src.cy
        if dx == round(dx) and dy == round(dy):
            return _shifted_mask(mask, round(dx), round(dy))
    return exact_mask(spec, size)


def _shifted_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(H, W) bool `mask` moved dx right and dy down; what leaves the frame is lost."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = mask[
        max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)
    ]
    return out


def _pairs_ok(
    am: Sequence[np.ndarray], changed: Sequence[bool], may_overlap: frozenset[frozenset[int]]
) -> bool:
    """Objects overlap only as the source had them (both unmoved) or as the kind intends."""
    k = len(am)
    for i in range(k):
        for j in range(i + 1, k):
            if not (am[i] & am[j]).any():
                continue
            if (changed[i] or changed[j]) and frozenset((i, j)) not in may_overlap:
                return False
    return True


def _regions_ok(am: Sequence[np.ndarray], regions: Sequence[np.ndarray]) -> bool:
    """Regions of objects that do not overlap never touch (each holds its whole object)."""
    k = len(am)
    for i in range(k):
        for j in range(i + 1, k):
            if not (am[i] & am[j]).any() and (regions[i] & regions[j]).any():
                return False
    return True


def _reveals(source: WorldScene, shown: Sequence[np.ndarray], changed: Sequence[bool]) -> bool:
    """An unmoved object shows at least MIN_REVEALED px that the source hid."""
    assert source.amodal is not None
    for i, c in enumerate(changed):
        hidden = source.amodal[i] & ~source.masks[i]
        if not c and int((hidden & shown[i]).sum()) >= MIN_REVEALED:
            return True
    return False


def _hides(am: Sequence[np.ndarray], shown: Sequence[np.ndarray], changed: Sequence[bool]) -> bool:
    """The moved object has 15-50 % of its whole area hidden (`world_v2.OCCLUSION_SHARE`)."""
    i = changed.index(True)
    share = 1.0 - int(shown[i].sum()) / max(1, int(am[i].sum()))
    return OCCLUSION_SHARE[0] <= share <= OCCLUSION_SHARE[1]


def truth_scene(source: WorldScene, specs: Sequence[ShapeSpec], order: Sequence[int]) -> WorldScene:
    """The source re-rendered with `specs` (object order) drawn in `order` (back to front),
    its per-object arrays put back into object order."""
    drawn = rerender(source, [specs[i] for i in order])
    back = np.argsort(np.asarray(order))  # object i was drawn at back[i]
    assert drawn.amodal is not None and drawn.shadows is not None
    return replace(
        drawn,
        masks=drawn.masks[back],
        objects=tuple(specs),
        amodal=drawn.amodal[back],
        shadows=drawn.shadows[back],
    )


def _kinds(scene_index: int, layout_index: int) -> tuple[str, ...]:
    """The kinds a layout tries, in order: a scene's first layout `uncover`, then as the
    others; the others alternate between `hide` first and `relight` first, then `move`,
    `swap` and `scale` (which goes first moves on with the scene and the layout), `hide`
    (which nearly always fits, so it comes last where it did not come first), `uncover`."""
    turn = scene_index + layout_index
    plain = V1_KINDS[turn % 3 :] + V1_KINDS[: turn % 3]
    rest = ("hide", *plain) if turn % 2 else ("relight", *plain, "hide")
    return (FIRST_KIND, *rest) if layout_index == 0 else (*rest, FIRST_KIND)


def make_cases_v2(n_scenes: int, seed: int = 0, layouts_per_scene: int = 2) -> list[Case]:
    """World v2 cases: `n_scenes` scenes of 2 or 3 objects, `layouts_per_scene` layouts each.

    Deterministic in its arguments; a seed whose scene takes too few layouts is skipped.
    """
    if n_scenes < 1 or layouts_per_scene < 1:
        raise ValueError("n_scenes and layouts_per_scene must be at least 1")
    return cases_from_scene_seeds(case_seeds(seed), n_scenes, layouts_per_scene)


def cases_from_scene_seeds(
    scene_seeds: Iterable[int], n_scenes: int, layouts_per_scene: int = 2
) -> list[Case]:
    """World v2 cases from the scene seeds given, in order, until `n_scenes` scenes took
    their layouts (fewer when the seeds run out). The bench draws its seeds from
    `case_seeds`; the refiner's training pairs draw theirs from the training range."""
    cases: list[Case] = []
    scenes = 0
    for scene_seed in scene_seeds:
        if scenes == n_scenes:
            break
        rng = np.random.default_rng([scene_seed, 1])  # as v1: not the scene's own stream
        source = sample_world_scene(scene_seed, int(rng.integers(2, 4)), world="v2")
        found = []
        for i in range(layouts_per_scene):
            for kind in _kinds(scenes, i):
                tried = try_layout(source, kind, rng)
                if tried is not None:
                    found.append((kind, *tried))
                    break
            else:
                break
        if len(found) < layouts_per_scene:
            continue
        for i, (kind, specs, order, layout, shapes) in enumerate(found):
            cases.append(
                Case(
                    case_id=f"{scene_seed}-{i + 1}-{kind}",
                    scene_seed=scene_seed,
                    kind=kind,
                    source=source,
                    truth=truth_scene(source, specs, order),
                    layout=layout,
                    region_shapes=shapes,
                    depth_order=order,
                )
            )
        scenes += 1
    return cases
