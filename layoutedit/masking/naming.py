"""Which name goes with which colour region, and the names themselves.

Two rules, chosen by the names:

- every name holds a basic colour word (`red heart`, `cyan star`; the words of
  `layoutedit.shapes.world.COLOUR_NAMES`): each name goes to the region whose main colour
  is nearest that word's colour, the assignment with the smallest total distance;
- otherwise the names go to the regions largest first (list the objects by size).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from layoutedit.errors import UserError
from layoutedit.scenes.label_map import BACKGROUND
from layoutedit.shapes.world import COLOUR_NAMES

MAX_OBJECTS = 8  # label-map colours and the exhaustive assignment below stay small


def parse_objects(text: str) -> list[str]:
    """`"cat, pot,plant"` -> `["cat", "pot", "plant"]`: trimmed, distinct, not background.

    Raises:
        UserError: no names, a repeated name, `background`, or more than MAX_OBJECTS.
    """
    names = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UserError('--objects needs names separated by commas, e.g. "cat,pot,plant"')
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(lowered):
        raise UserError(f"--objects names an object twice: {text!r}")
    if BACKGROUND in lowered:
        raise UserError("--objects must not name `background` (it is what is left)")
    if len(names) > MAX_OBJECTS:
        raise UserError(f"--objects: at most {MAX_OBJECTS} objects, got {len(names)}")
    return names


def colour_word(name: str) -> str | None:
    """The first basic colour word of `name` (`"dark red heart"` -> `"red"`), or None."""
    for word in name.lower().replace("-", " ").split():
        if word in COLOUR_NAMES:
            return word
    return None


def assign_names(names: Sequence[str], colours: np.ndarray, areas: Sequence[int]) -> list[int]:
    """The region index of each name (see the module docstring for the rule).

    Args:
        names: K object names.
        colours: (K, 3) main RGB colour of each region.
        areas: K region areas in pixels.

    Returns:
        `order` with `order[i]` the region of `names[i]`; a permutation of range(K).
    """
    words = [colour_word(n) for n in names]
    if all(w is not None for w in words):
        targets = np.array([COLOUR_NAMES[w] for w in words if w is not None], dtype=np.float64)
        cost = np.linalg.norm(targets[:, None] - colours[None], axis=-1)  # (names, regions)
        best = min(
            itertools.permutations(range(len(names))),
            key=lambda p: sum(cost[i, r] for i, r in enumerate(p)),
        )
        return list(best)
    return sorted(range(len(names)), key=lambda r: -int(areas[r]))
