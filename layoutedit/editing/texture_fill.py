"""Fill a hole in a repeating background (tiles, bricks, stripes, planks) by its repeat.

A smooth fill (`paste.fill_holes`) continues a background's tones but not its pattern: where
an object left a tiled floor, it leaves a blur. A pattern that repeats has translations under
which the visible background matches itself; the best two (`lattice`) carry visible pixels
into the hole. The light is uneven, so the pattern is carried as a ratio to the light field
fitted to the known background (`relight.light_field`, a plane) and multiplied back by the
field at its new place. A local tone (the smooth fill blurred) was used before: a hole's tone
lacks the pattern's dark lines that every known pixel's tone holds, so a tiled floor came
back lighter where an object left (the blurred tone remains the fallback when too little
background is known to fit the field).

A background with no clear repeat (its best match is poor) keeps the smooth fill. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layoutedit.editing.compositing import gaussian_blur
from layoutedit.editing.paste import fill_holes
from layoutedit.editing.relight import light_field

MAX_SHIFT_SHARE = 0.4
"""Longest repeat looked for, as a share of the image's shorter side."""

MATCH_ERROR = 0.2
"""A repeat is taken when the background differs from itself, shifted, by at most this share
of its own variance (mean squared ratio): a clean tiling scores near 0, noise near 2."""

MIN_OVERLAP = 0.3
"""Share of the known pixels that must stay known under a shift for it to be scored."""

TONE_SIGMA_SHARE = 3.0 / 64
"""Gaussian sigma of the local tone, as a share of the image's longer side (3 px at 64)."""

LATTICE_REACH = 4
"""Lattice steps tried each way when looking for a known pixel to copy."""

GRAIN_LEVEL = 2.0
"""`floor_grain_rms`: RMS (0-255 luma levels) of the known background less its 3 x 3 mean
above which it has a fine grain. World v2 sources (seeds 1000, 2001, 2002): sand 4.4-5.0, grass
6.7-7.4; white, sky and lit gray 0.6-1.8; bricks, planks, stripes and tiles 9-22, which
repeat (`lattice`) and so keep their repeat fill."""

GRAIN_SIGMA = 1.0
"""`fine_grain`: Gaussian sigma (px) whose blur an image's grain is taken against."""

GRAIN_OUTLIER = 3.0
"""`floor_grain`: a pixel of the model's grain beyond this many times the floor's own grain
(`grain_level`, RMS) is no grain but an edge the model painted (a moved object's ghost, its
rim), and is dropped; a Gaussian grain passes it at 0.3 % of its pixels."""


@dataclass(frozen=True)
class Lattice:
    """The background's repeat: two translations in px (dx, dy) and how well each matched
    (mean squared ratio difference over the ratio's variance)."""

    first: tuple[int, int]
    second: tuple[int, int] | None
    error: float


def shift_errors(ratio: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every translation (dx, dy), the mean squared difference of `ratio` and itself
    moved by it, over the pixels known in both, and how many those are.

    All translations at once by FFT cross-correlations of the masked pattern and its square.

    Args:
        ratio: (H, W) float pattern.
        known: (H, W) bool where it is known.

    Returns:
        ((2H, 2W) mean squared differences, (2H, 2W) pixel counts), indexed [dy % 2H,
        dx % 2W]; the error is inf where no pixel is known in both.
    """
    h, w = known.shape
    size = (2 * h, 2 * w)
    k = known.astype(np.float64)
    r = np.where(known, ratio, 0.0)
    fk, fr, fr2 = (np.fft.rfft2(a, size) for a in (k, r, r * r))

    def corr(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        # sum_p a(p) b(p + d), for every d
        return np.fft.irfft2(np.conj(fa) * fb, size)

    count = np.rint(corr(fk, fk))
    total = corr(fr2, fk) + corr(fk, fr2) - 2.0 * corr(fr, fr)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.where(count > 0.5, np.maximum(total, 0.0) / np.maximum(count, 1.0), np.inf)
    return errors, count


def lattice(ratio: np.ndarray, known: np.ndarray) -> Lattice | None:
    """The repeat of a pattern: its best translation and the best one not parallel to it.

    Args:
        ratio: (H, W) float, the pattern (the image over its local tone, one channel).
        known: (H, W) bool, where `ratio` is the background's.

    Returns:
        The `Lattice`, or None when no translation matches within `MATCH_ERROR`.
    """
    h, w = known.shape
    values = ratio[known]
    if values.size < 16:
        return None
    variance = float(values.var())
    if variance < 1e-6:  # a plain background: the smooth fill is exact
        return None
    errors, count = shift_errors(ratio, known)
    reach = max(2, int(MAX_SHIFT_SHARE * min(h, w)))
    dy, dx = np.mgrid[: 2 * h, : 2 * w]
    dy = np.where(dy >= h, dy - 2 * h, dy)
    dx = np.where(dx >= w, dx - 2 * w, dx)
    allowed = (
        (np.abs(dx) <= reach)
        & (np.abs(dy) <= reach)
        & (dx * dx + dy * dy >= 4)
        & ((dy > 0) | ((dy == 0) & (dx > 0)))  # one of each +-pair
        & (count >= MIN_OVERLAP * known.sum())
    )
    score = np.where(allowed, errors, np.inf)
    best = np.unravel_index(int(np.argmin(score)), score.shape)
    if not score[best] <= MATCH_ERROR * variance:
        return None
    first = (int(dx[best]), int(dy[best]))
    # The best translation that is not a multiple of the first (a second lattice vector).
    parallel = np.abs(dx * first[1] - dy * first[0]) < max(2, abs(first[0]) + abs(first[1]))
    score2 = np.where(parallel, np.inf, score)
    best2 = np.unravel_index(int(np.argmin(score2)), score2.shape)
    second = None
    if score2[best2] <= MATCH_ERROR * variance:
        second = (int(dx[best2]), int(dy[best2]))
    return Lattice(first, second, float(score[best]) / variance)


def _steps(lat: Lattice) -> list[tuple[int, int]]:
    """Lattice translations to try, nearest first."""
    reach = range(-LATTICE_REACH, LATTICE_REACH + 1)
    seconds = reach if lat.second is not None else range(1)
    b_vec = lat.second if lat.second is not None else (0, 0)
    out = []
    for a in reach:
        for b in seconds:
            if a == 0 and b == 0:
                continue
            dx = a * lat.first[0] + b * b_vec[0]
            dy = a * lat.first[1] + b * b_vec[1]
            out.append((abs(a) + abs(b), dx * dx + dy * dy, dx, dy))
    return [(dx, dy) for _, _, dx, dy in sorted(out)]


def repeat_fill(
    image: np.ndarray,
    holes: np.ndarray,
    known: np.ndarray,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """Fill `holes` by the background's repeat, else smoothly.

    Args:
        image: (H, W, 3) uint8.
        holes: (H, W) bool, pixels to fill.
        known: (H, W) bool, background pixels to read the pattern from (not in `holes`;
            objects and their shadows left out).
        fallback: (H, W, 3) what a hole keeps where no repeat reaches it, or None for
            `paste.fill_holes` (the tones around it, smoothly).

    Returns:
        (H, W, 3) float64: `fallback` everywhere in `holes`, replaced where a repeat was
        found and a lattice step lands on a known pixel by that pixel's pattern under the
        tone here; pixels outside `holes` unchanged.
    """
    out = image.astype(np.float64).copy()
    if not holes.any():
        return out
    # The tones everywhere, pattern blurred away: a whole-frame fill, made only when the
    # holes keep it or the light cannot be fitted without it.
    smooth = None
    if fallback is None:
        smooth = fallback = fill_holes(image, ~known)
    out[holes] = fallback[holes]
    field = light_field(image, known, clearance=0)
    if field is not None:
        tone = np.repeat(field[..., None], 3, axis=-1)
    else:
        if smooth is None:
            smooth = fill_holes(image, ~known)
        sigma = TONE_SIGMA_SHARE * max(image.shape[:2])
        tone = np.maximum(gaussian_blur(smooth, sigma), 1.0)
    ratio = image.astype(np.float64) / tone  # (H, W, 3)
    found = lattice(ratio.mean(axis=-1), known)
    if found is None:
        return out
    h, w = holes.shape
    ys, xs = np.nonzero(holes)
    todo = np.ones(len(ys), dtype=bool)
    for dx, dy in _steps(found):
        if not todo.any():
            break
        qy, qx = ys + dy, xs + dx
        inside = todo & (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        ok = np.zeros_like(todo)
        ok[inside] = known[qy[inside], qx[inside]]
        if not ok.any():
            continue
        py, px = ys[ok], xs[ok]
        out[py, px] = ratio[qy[ok], qx[ok]] * tone[py, px]
        todo &= ~ok
    return np.clip(out, 0.0, 255.0)


def grain_level(image: np.ndarray, known: np.ndarray) -> float:
    """RMS (0-255 levels) of the luma less its 3 x 3 mean over the `known` pixels ((H, W)
    bool) whose 3 x 3 neighbourhood is all known: a background's fine grain. 0 when too few
    such pixels."""
    luma = image.astype(np.float64).mean(axis=-1)
    h, w = known.shape
    inner = known.copy()
    mean = np.zeros_like(luma)
    padded = np.pad(luma, 1, mode="edge")
    padded_known = np.pad(known, 1, mode="constant")
    for dy in range(3):
        for dx in range(3):
            mean += padded[dy : dy + h, dx : dx + w]
            inner &= padded_known[dy : dy + h, dx : dx + w]
    if inner.sum() < 16:
        return 0.0
    residual = luma - mean / 9.0
    return float(np.sqrt((residual[inner] ** 2).mean()))


def floor_grain_rms(image: np.ndarray, known: np.ndarray) -> float:
    """The known background's grain (`grain_level`, RMS, 0-255 levels) when a hole in it
    needs a grain that no fill here gives, else 0: it has no repeat (`lattice`, under its
    fitted light) and a grain above `GRAIN_LEVEL`, so a smooth fill leaves a blur there.

    Args:
        image: (H, W, 3) uint8.
        known: (H, W) bool background pixels (objects and their shadows left out).
    """
    level = grain_level(image, known)
    if level <= GRAIN_LEVEL:
        return 0.0
    field = light_field(image, known, clearance=0)
    if field is not None:
        ratio = image.astype(np.float64).mean(axis=-1) / np.maximum(field, 1.0)
        if lattice(ratio, known) is not None:
            return 0.0
    return level


def floor_grain(grain: np.ndarray, level: float) -> np.ndarray:
    """(H, W, 3) float64 `grain` (`fine_grain`) less its pixels whose luma grain exceeds
    `GRAIN_OUTLIER` x `level` (the floor's RMS grain, 0-255 levels): those are set to 0."""
    strong = np.abs(grain.mean(axis=-1)) > GRAIN_OUTLIER * level
    return np.where(strong[..., None], 0.0, grain)


def fine_grain(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 an image ((H, W, 3) uint8) less its Gaussian blur of `GRAIN_SIGMA`
    px: its grain, without its tones."""
    return image.astype(np.float64) - gaussian_blur(image, GRAIN_SIGMA)
