"""Animations between keyframe layouts: in-between layouts, flicker figures, GIF/MP4 files.

Pure numpy (and Pillow for the files). Between two keyframes every object's centroid and
linear size are interpolated and its region is redrawn from the earlier keyframe's mask
(`in_between`); the last frame is the later keyframe itself. Each frame is then edited like
any layout (`layoutedit.edit_script.run_animation`), always with the same seed.

Flicker (`flicker`) is measured on the edited frames:

- background change: the mean absolute change (0-255, over RGB) between consecutive frames
  of the pixels that are background in both frames' layouts (ideally 0: the background does
  not move);
- colour drift per object: the mean over consecutive frames of the RGB distance between the
  object's mean colour (over its layout region) in one frame and in the next.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from layoutedit.scenes.layout_edits import ObjectState
from layoutedit.scenes.masks import centroid, move_mask


def in_between(start: ObjectState, end: ObjectState, frames: int) -> list[np.ndarray]:
    """`frames` label grids from just after `start` to `end` (inclusive), (H, W) int16 each.

    Frame j of n (t = j / n) draws each object's `start` mask scaled by
    `1 + t * (s - 1)` (s = sqrt(end area / start area)) about its start centroid and moved
    to `c0 + t * (c1 - c0)`; objects are drawn in `end`'s order; the last frame is `end`.
    """
    if frames < 1:
        raise ValueError("frames must be >= 1")
    names = start.names
    out = []
    for j in range(1, frames + 1):
        if j == frames:
            out.append(end.labels())
            break
        t = j / frames
        masks = np.zeros_like(start.masks)
        for k in range(len(names)):
            a, b = start.masks[k], end.masks[k]
            if not a.any() or not b.any():
                masks[k] = b
                continue
            c0, c1 = centroid(a), centroid(b)
            scale = 1 + t * (float(np.sqrt(b.sum() / a.sum())) - 1)
            target = (c0[0] + t * (c1[0] - c0[0]), c0[1] + t * (c1[1] - c0[1]))
            masks[k] = move_mask(a, scale, c0, target)
        out.append(ObjectState(masks, end.order, names).labels())
    return out


def flicker(
    images: Sequence[np.ndarray], layouts: Sequence[np.ndarray], names: Sequence[str]
) -> dict[str, object]:
    """Frame-to-frame flicker of an edited sequence.

    Args:
        images: (H, W, 3) uint8 frames.
        layouts: their (H, W) label grids (background = len(names)).
        names: the object names.

    Returns:
        `background_change` (mean over frame pairs, 0-255), `background_change_per_pair`,
        `colour_drift` (object -> mean RGB distance of its mean colour between consecutive
        frames) and `colour_span` (object -> distance between its extreme mean colours).
    """
    background = len(names)
    pairs: list[float] = []
    for (a, la), (b, lb) in itertools.pairwise(zip(images, layouts, strict=True)):
        both = (la == background) & (lb == background)
        if both.any():
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))[both]
            pairs.append(float(diff.mean()))
    drift: dict[str, float] = {}
    span: dict[str, float] = {}
    for k, name in enumerate(names):
        means = [
            img[lay == k].reshape(-1, 3).mean(axis=0)
            for img, lay in zip(images, layouts, strict=True)
            if (lay == k).any()
        ]
        if len(means) < 2:
            continue
        steps = [float(np.linalg.norm(m1 - m0)) for m0, m1 in itertools.pairwise(means)]
        drift[name] = round(float(np.mean(steps)), 3)
        stack = np.stack(means)
        span[name] = round(float(np.linalg.norm(stack.max(axis=0) - stack.min(axis=0))), 3)
    return {
        "background_change": round(float(np.mean(pairs)), 3) if pairs else 0.0,
        "background_change_per_pair": [round(p, 3) for p in pairs],
        "colour_drift": drift,
        "colour_span": span,
    }


def frame_file(number: int) -> str:
    """File name of frame `number` (1-based): `frame-001.png`."""
    return f"frame-{number:03d}.png"


def write_animation(
    frames: Sequence[np.ndarray], folder: Path, *, ms: int = 150, pngs: bool = True
) -> dict[str, Path]:
    """Write `frame-001.png` ... (unless `pngs` is False: written already) and
    `animation.gif` (and `animation.mp4` when imageio-ffmpeg is installed) into `folder`;
    each file atomically.

    Returns:
        `gif` (and `mp4`) -> path.
    """
    from PIL import Image

    from layoutedit.atomic import write_atomic, write_png_atomic

    if pngs:
        for i, frame in enumerate(frames, start=1):
            write_png_atomic(folder / frame_file(i), frame)
    side = 256
    pictures = [
        Image.fromarray(f).resize(
            (side, round(side * f.shape[0] / f.shape[1])), Image.Resampling.LANCZOS
        )
        for f in frames
    ]

    def gif(tmp: Path) -> None:
        pictures[0].save(
            tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=ms, loop=0
        )

    paths = {"gif": write_atomic(folder / "animation.gif", gif)}
    try:
        import imageio_ffmpeg  # noqa: F401  (optional: MP4 only when installed)
    except ImportError:
        return paths
    import imageio.v2 as imageio

    def mp4(tmp: Path) -> None:
        with imageio.get_writer(tmp, format="FFMPEG", fps=max(1, round(1000 / ms))) as writer:
            for picture in pictures:
                writer.append_data(np.asarray(picture))

    paths["mp4"] = write_atomic(folder / "animation.mp4", mp4)
    return paths
