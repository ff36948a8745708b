"""What the app says, in sentences: the status line after each action, progress with an
estimate of the time left, candidate captions, and the objects table with colour swatches.
Pure functions over plain values, no Gradio.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from layoutedit.editing.session import Candidate
    from layoutedit.scenes.scene import Scene
    from layoutedit.serve.boxes import ObjectBox

Colour = tuple[int, int, int]


def hex_colour(rgb: Sequence[int]) -> str:
    """`(251, 1, 1)` -> `#fb0101`."""
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb[:3]))


def mean_colours(scene: Scene) -> list[Colour]:
    """Each object's own colour: the mean of its pixels in the photo (grey when hidden)."""
    out: list[Colour] = []
    for k in range(len(scene.objects)):
        pixels = scene.image[scene.labels == k]
        if len(pixels) == 0:
            out.append((128, 128, 128))
            continue
        red, green, blue = (int(v) for v in np.rint(pixels.reshape(-1, 3).mean(axis=0)))
        out.append((red, green, blue))
    return out


def swatch(rgb: Sequence[int], title: str) -> str:
    """A small square of colour `rgb` (HTML), its hex code as a tooltip."""
    code = hex_colour(rgb)
    return (
        f'<span class="swatch" title="{html.escape(title)} {code}" '
        f'style="display:inline-block;width:1.4em;height:1.4em;border-radius:3px;'
        f'border:1px solid #8886;vertical-align:middle;background:{code}"></span>'
    )


OBJECT_HEADERS = ["photo", "mask", "name", "area"]
"""Columns: the colour in the photo, the colour in the mask and layout, the name, the area."""


def object_rows(scene: Scene) -> list[list[str]]:
    """The objects table: photo colour swatch, mask colour swatch, name, share of the image."""
    photo = mean_colours(scene)
    return [
        [
            swatch(photo[k], "mean colour in the photo"),
            swatch(o.colour, "colour in the mask and the layout"),
            o.name,
            f"{100 * o.share:.1f} %",
        ]
        for k, o in enumerate(scene.objects)
    ]


def listing(words: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = list(words)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(count: int, noun: str) -> str:
    """`1 object`, `3 objects`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """`0.4 s`, `21 s`, `2 min 5 s`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def progress_line(
    what: str, done: int, total: int, elapsed: float, counted: int | None = None
) -> str:
    """`learning 3 objects: 40 %, about 20 s left` (no estimate before the first step).

    Args:
        what: the job, e.g. `learning 3 objects`.
        done, total: steps.
        elapsed: seconds the steps counted took.
        counted: how many steps `elapsed` covers (default `done`; fewer when a job resumed).
    """
    total = max(total, 1)
    share = min(max(done, 0), total) / total
    counted = done if counted is None else counted
    line = f"{what}: {100 * share:.0f} %"
    if counted > 0 and done < total and elapsed > 0:
        left = elapsed / counted * (total - done)
        line += f", about {duration(left)} left"
    return line


def stage_words(label: str) -> str:
    """A learning stage's label in words: `textual inversion ...` -> `their words`."""
    if label.startswith("textual inversion"):
        return "their words"
    if label.startswith("fine-tune"):
        return "the model's attention"
    return label


def opened(name: str, scene: Scene) -> str:
    """The sentence after opening a scene or an upload."""
    height, width = scene.size
    names = listing([o.name for o in scene.objects])
    return (
        f"Opened **{name}**: {plural(len(scene.objects), 'object')} ({names}) on a "
        f"{width} × {height} px picture. Drag a box to move its object, drag a corner to "
        "resize it; then Edit (it learns the scene first if it has to)."
    )


def learned(summary: dict[str, Any], count: int) -> str:
    """The sentence after Learn (`actions.learn`'s summary)."""
    if summary.get("cancelled"):
        return "Learning cancelled; nothing was kept."
    seconds = duration(float(summary.get("seconds", 0.0)))
    if summary.get("cached"):
        return f"The concept came from the cache ({seconds}): move the boxes and Edit."
    return (
        f"Learned {plural(count, 'object')} in {seconds}; the concept is cached, so this scene "
        "is ready at once next time."
    )


def score_text(candidate: Candidate) -> str:
    """`layout match 91 %` when the candidate has a layout score, else its attention loss."""
    if candidate.layout_score is not None:
        return f"layout match {100 * candidate.layout_score:.0f} %"
    return f"attention loss {candidate.loss:.3f}"


def caption(rank: int, candidate: Candidate) -> str:
    """A candidate's caption: `1. seed 8 · layout match 91 % · 1.2 s`."""
    return (
        f"{rank}. seed {candidate.seed} · {score_text(candidate)} · {duration(candidate.seconds)}"
    )


def edited(number: int, ranked: Sequence[Candidate], seconds: float, reused: bool) -> str:
    """The sentence after an edit: how many seeds, how long, which is best."""
    best = ranked[0]
    warm = " (the scene's inversion reused)" if reused else ""
    return (
        f"Edit {number}: {plural(len(ranked), 'seed')} in {duration(seconds)}{warm}. Best: "
        f"seed {best.seed}, {score_text(best)}. Drag the slider to compare before and after; "
        "pick another candidate below, or continue from this one."
    )


def moved(name: str, box: ObjectBox) -> str:
    """`Moved blue star: centre at 30 % across, 35 % down, 120 % of its size.`"""
    if box.keeps_proportions:
        size = f"{100 * box.sx:.0f} % of its size"
    else:
        size = f"{100 * box.sx:.0f} % of its width and {100 * box.sy:.0f} % of its height"
    return (
        f"Moved {name}: centre at {100 * box.cx:.0f} % across, {100 * box.cy:.0f} % down, "
        f"{size}. Edit when ready."
    )
