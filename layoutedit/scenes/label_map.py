"""The label map (`semantic_dict.json`): object name -> [r, g, b], plus a `background` entry.

Checked strictly, because every later stage trusts it: colours are integers 0-255, the
background is named, names give distinct placeholder tokens, and no two colours are so close
that the colour tolerance could confuse them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from layoutedit.config import SceneOptions
from layoutedit.errors import UserError
from layoutedit.scenes.colour_match import RGB, close_pairs
from layoutedit.scenes.prompts import placeholder_token

BACKGROUND = "background"


def _colour(value: object) -> RGB | None:
    """[r, g, b] with integers 0-255 (integral floats allowed) -> tuple, else None."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    out = []
    for v in value:
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or v != int(v)
            or not 0 <= v <= 255
        ):
            return None
        out.append(int(v))
    return (out[0], out[1], out[2])


def _short(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_label_map(
    data: object, options: SceneOptions, path: Path | None = None
) -> tuple[list[str], list[RGB], RGB]:
    """Check a label map and split it into object names, their colours and the background's.

    Raises:
        UserError: not an object of name -> [r, g, b] (0-255), no `background` entry, no
            objects, two names with the same token, or two colours closer than the tolerance
            can separate (2 x colour_tolerance).
    """
    if not isinstance(data, Mapping):
        raise UserError(
            f"label map must be a JSON object of name -> [r, g, b], not a {type(data).__name__}",
            path=path,
        )
    names: list[str] = []
    colours: list[RGB] = []
    background: RGB | None = None
    for name, value in data.items():
        if not isinstance(name, str) or not name.strip():
            raise UserError("label map has an empty name", path=path)
        if name != name.strip():  # `--move cat=...` could never name " cat "
            raise UserError(f"label {_short(name)} has spaces at its ends; remove them", path=path)
        colour = _colour(value)
        if colour is None:
            raise UserError(
                f"label {_short(name)} must be [r, g, b] with integers 0-255, got {_short(value)}",
                path=path,
            )
        if name == BACKGROUND:
            background = colour
        else:
            names.append(name)
            colours.append(colour)
    if background is None:
        raise UserError(
            "label map has no `background` entry (the colour of pixels that are no object)",
            path=path,
        )
    if not names:
        raise UserError("label map names no objects besides `background`", path=path)
    seen: dict[str, str] = {}
    for name in names:
        token = placeholder_token(name)
        if token in seen:
            raise UserError(
                f"labels {seen[token]!r} and {name!r} give the same token {token}; rename one",
                path=path,
            )
        seen[token] = name
    all_names = [*names, BACKGROUND]
    all_colours = [*colours, background]
    tol = options.colour_tolerance
    for i, j, dist in close_pairs(all_colours, tol):
        raise UserError(
            f"labels {all_names[i]!r} {all_colours[i]} and {all_names[j]!r} {all_colours[j]} have "
            f"nearly the same colour (distance {dist:.1f}; colour_tolerance {tol:g} needs more "
            f"than {2 * tol:g}): give them distinct colours or lower scene.colour_tolerance",
            path=path,
        )
    return names, colours, background
