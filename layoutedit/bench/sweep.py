"""Sweep rows of `layoutedit bench --sweep FILE`: named setting changes, one table row each.

A sweep file is TOML; each top-level table is one row, `full` with its `scene`, `learn` and
`edit` changes over the resolved settings:

    [res16]
    edit = { attention_res = 16 }

    [ti300]
    learn = { ti_steps = 300, ti_joint = false }

    [ti50-identity]
    identity = true
    learn = { ti_steps = 50 }

Rows that change only edit settings share the scene's concept (learned once); a row that
changes scene or learn settings learns its own. `identity = true` makes the row the
`identity` variant with its changes (each scene edited to its own mask): how well a learning
schedule reproduces the scene, row against row on the same scenes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from layoutedit.bench.variants import DiffusionSpec
from layoutedit.config import (
    EditConfig,
    LearnConfig,
    SceneOptions,
    Settings,
    normalise_edit_section,
    read_toml,
)
from layoutedit.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}$")
_SECTIONS: dict[str, type[BaseModel]] = {
    "scene": SceneOptions,
    "learn": LearnConfig,
    "edit": EditConfig,
}


def _describe(changes: dict[str, dict[str, Any]], base: str = "full") -> str:
    parts = [f"{section}.{k}={v}" for section, values in changes.items() for k, v in values.items()]
    return f"{base} with " + ", ".join(parts) if parts else f"{base} (no changes)"


def load_sweep(path: Path, settings: Settings, taken: Iterable[str] = ()) -> list[DiffusionSpec]:
    """The rows of the sweep file at `path`, each checked against `settings`.

    Args:
        path: the TOML file.
        settings: the resolved settings the rows change.
        taken: row names already in the table (the `--variants`); a row may not reuse one.

    Raises:
        UserError: unreadable file, no rows, a bad row name, an unknown section or setting,
            or a value the setting refuses; the message names the file and the row.
    """
    data = read_toml(path, "sweep file")
    if not data:
        raise UserError("the sweep file has no rows (one TOML table per row)", path=path)
    used = set(taken)
    rows = []
    for name, body in data.items():
        if not _NAME.match(name):
            raise UserError(f"row name {name!r}: use letters, digits, _ . + -", path=path)
        if name in used:
            raise UserError(f"row name {name!r} is already a row of the table", path=path)
        if not isinstance(body, dict):
            raise UserError(f"row {name!r} must be a table of settings sections", path=path)
        unknown = sorted(set(body) - set(_SECTIONS) - {"identity"})
        if unknown:
            raise UserError(
                f"row {name!r}: unknown section {unknown[0]!r} (rows change scene, learn or edit)",
                path=path,
            )
        identity = body.get("identity", False)
        if not isinstance(identity, bool):
            raise UserError(f"row {name!r}: identity must be true or false", path=path)
        changes: dict[str, dict[str, Any]] = {}
        for section, model in _SECTIONS.items():
            raw = body.get(section, {})
            if not isinstance(raw, dict):
                raise UserError(f"row {name!r}: {section} must be a table of settings", path=path)
            values = dict(raw)
            if section == "edit":
                normalise_edit_section(values, path, where=f"row {name!r}: ")
            extra = sorted(set(values) - set(model.model_fields))
            if extra:
                raise UserError(f"row {name!r}: unknown setting {section}.{extra[0]}", path=path)
            base = getattr(settings, section).model_dump()
            try:
                model.model_validate({**base, **values})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise UserError(
                    f"row {name!r}: bad setting {section}.{where}: {first['msg']}", path=path
                ) from None
            changes[section] = values
        used.add(name)
        rows.append(
            DiffusionSpec(
                name,
                _describe(changes, "identity" if identity else "full"),
                changes["edit"],
                learn_overrides=changes["learn"],
                scene_overrides=changes["scene"],
                identity=identity,
                # A row that edits without the concept learns none (as `no-model` does).
                uses_concept=changes["edit"].get("use_concept", True) is not False,
            )
        )
    return rows
