"""Batch manifests: one JSON object a line, one scene and its edits per line.

    {"scene": "photos/kitchen", "edits": [{"move": ["cat=+20,0"]}, {"layout": "k/l1.png"}]}
    {"image": "a.jpg", "mask": "a-mask.png", "labels": "a.json", "edits": [...], "seeds": [0]}

Keys of a row: `scene` (a scene folder), or `image`, `mask` and `labels` (its files; with
`scene` they replace the folder's); `edits`, a non-empty list; optional `id` (the row's
output folder name; default the scene's name and a digest of the row), `seeds` (a list of
integers, over the preset's) and `preset`. An edit takes the keys of an edit script's step:
`layout` (a layout file), `move`, `scale`, `swap`, `box`, `to-front` (or `to_front`) and
`ops`; every edit starts from the source's masks, or from its own `layout`. Relative paths
are relative to the manifest's folder. Blank lines and lines starting with `#` are skipped.

`load_manifest` checks every row without a model (JSON, keys, files, the scene, every
layout and operation) and hashes the files a row reads, so that a row's content key
(`ManifestRow.key`) changes whenever anything its outputs depend on changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layoutedit.config import PRESETS, Settings, resolve_settings
from layoutedit.errors import UserError
from layoutedit.scenes.layout_edits import apply_operations

BATCH_FORMAT = 1
"""Changes when the batch's outputs for the same inputs change: every row is then redone."""

ROW_KEYS = ("scene", "image", "mask", "labels", "edits", "id", "seeds", "preset")
EDIT_KEYS = ("layout", "move", "scale", "swap", "box", "to-front", "to_front", "ops")
RESERVED_IDS = frozenset({"metadata.jsonl", "coco.json", "summary.json"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_LINE = 1_000_000  # bytes; a row is a few hundred


@dataclass(frozen=True)
class ManifestEdit:
    """One edit of a row: a layout file and/or operations (texts, as parsed)."""

    layout: Path | None
    layout_text: str | None
    """`layout` as the manifest wrote it (for the dataset's metadata)."""
    operations: tuple[str, ...]


@dataclass(frozen=True)
class ManifestRow:
    """One checked row."""

    line: int
    """1-based line number in the manifest."""
    id: str
    scene_dir: Path | None
    image: Path | None
    mask: Path | None
    labels: Path | None
    scene_text: str
    """The scene as the manifest wrote it (folder, else the image)."""
    edits: tuple[ManifestEdit, ...]
    settings: Settings
    names: tuple[str, ...]
    """Object names in label-map order."""
    input_key: str
    """SHA-256 hex of everything the outputs depend on except the model's weights."""
    group: str
    """SHA-256 hex of what the row's concept depends on: rows that share it are run by one
    process, one after another, so no process waits on another's learning."""

    def key(self, model_fingerprint: str) -> str:
        """The row's content key: its inputs, settings and the model's weights."""
        return hashlib.sha256(f"{self.input_key}:{model_fingerprint}".encode()).hexdigest()


@dataclass(frozen=True)
class BadRow:
    """A row that failed its check."""

    line: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the summary."""
        return {"line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: good rows in file order, and the bad ones (with `skip_bad`)."""

    path: Path
    rows: tuple[ManifestRow, ...]
    bad: tuple[BadRow, ...]
    digest: str
    """SHA-256 hex of the manifest's bytes."""

    def groups(self) -> list[list[ManifestRow]]:
        """Rows grouped by `ManifestRow.group`, groups in the order of their first row."""
        order: dict[str, list[ManifestRow]] = {}
        for row in self.rows:
            order.setdefault(row.group, []).append(row)
        return list(order.values())


def _strict_json(text: str) -> Any:
    """Parse one line: duplicate keys, NaN/Infinity and huge numbers are refused."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise UserError(f"names {key!r} twice")
            out[key] = value
        return out

    def no_constant(name: str) -> Any:
        raise UserError(f"holds {name}, which is not a number JSON allows")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise UserError(f"holds {text[:20]}, a number beyond the float range")
        return value

    def short_int(text: str) -> int:
        if len(text.lstrip("-")) > 30:
            raise UserError(f"holds an integer of {len(text)} digits")
        return int(text)

    try:
        return json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=no_constant,
            parse_float=finite,
            parse_int=short_int,
        )
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON (column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise UserError("nested too deeply") from None


def _path(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise UserError(f"`{key}` must be a path (a non-empty string)")
    return base / value


def _seeds(value: Any) -> tuple[int, ...]:
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in items)
    ):
        raise UserError("`seeds` must be a non-empty list of integers")
    if len(set(items)) != len(items):
        raise UserError(f"`seeds` {items} repeats a seed")
    if any(not 0 <= s < 2**63 for s in items):
        raise UserError("`seeds` must lie in 0 .. 2**63-1")
    return tuple(items)


def _slug(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return (cleaned or "scene")[:60]


def _sha(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Checked:
    """A row checked without hashing (files are hashed in one pass afterwards)."""

    line: int
    data: dict[str, Any]
    id: str | None
    scene_dir: Path | None
    image: Path
    mask: Path
    labels: Path
    edits: list[ManifestEdit]
    settings: Settings
    names: tuple[str, ...]


def _check_edit(index: int, table: Any, base: Path, scene: Any, settings: Settings) -> ManifestEdit:
    from layoutedit.edit_script import step_operations
    from layoutedit.scenes.scene import load_layout

    where = f"edit {index}"
    try:
        if not isinstance(table, dict):
            raise UserError("must be an object")
        unknown = sorted(set(table) - set(EDIT_KEYS))
        if unknown:
            raise UserError(f"unknown key {unknown[0]!r}; use {', '.join(EDIT_KEYS[:-2])}, ops")
        if "to-front" in table and "to_front" in table:
            raise UserError("give `to-front` or `to_front`, not both")
        normal = {k.replace("-", "_"): v for k, v in table.items()}
        ops = step_operations(normal, where)
        layout: Path | None = None
        labels = scene.labels
        if "layout" in table:
            layout = _path(table["layout"], "layout", base)
            labels = load_layout(layout, scene, settings.scene).labels
        elif not ops:
            raise UserError("give a `layout` file or operations (move, scale, swap, ...)")
        if ops:
            labels, _ = apply_operations(labels, scene.names, ops)
    except UserError as exc:
        raise UserError(f"{where}: {exc.line()}") from None
    text = table.get("layout") if isinstance(table.get("layout"), str) else None
    return ManifestEdit(layout, text, tuple(op.text for op in ops))


def _check_row(
    data: Any,
    line: int,
    base: Path,
    model: str,
    preset: str | None,
    config: Path | None,
    edit_overrides: dict[str, Any],
) -> _Checked:
    """Everything about one row that can be checked without a model (no hashing)."""
    from layoutedit.scenes.scene import load_scene

    if not isinstance(data, dict):
        raise UserError("a row must be a JSON object")
    unknown = sorted(set(data) - set(ROW_KEYS))
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r}; use {', '.join(ROW_KEYS)}")
    row_id = data.get("id")
    if row_id is not None and (
        not isinstance(row_id, str) or not _ID.match(row_id) or row_id in RESERVED_IDS
    ):
        raise UserError(
            f"`id` {row_id!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit, and not one of {', '.join(sorted(RESERVED_IDS))}"
        )
    scene_dir = _path(data["scene"], "scene", base) if "scene" in data else None
    files = {k: _path(data[k], k, base) for k in ("image", "mask", "labels") if k in data}
    if scene_dir is None and len(files) < 3:
        missing = [k for k in ("image", "mask", "labels") if k not in files]
        raise UserError(
            f"give `scene` (a folder), or `image`, `mask` and `labels` (missing "
            f"{', '.join(f'`{m}`' for m in missing)})"
        )
    row_preset = data.get("preset", preset)
    if row_preset is not None and (not isinstance(row_preset, str) or row_preset not in PRESETS):
        raise UserError(f"`preset` {row_preset!r} is not one of {', '.join(PRESETS)}")
    edit_over: dict[str, Any] = dict(edit_overrides)
    if "seeds" in data:
        edit_over["seeds"] = _seeds(data["seeds"])
    settings = resolve_settings(row_preset, config, {"edit": edit_over}, model=model)
    scene = load_scene(
        scene_dir,
        image=files.get("image"),
        mask=files.get("mask"),
        labels=files.get("labels"),
        options=settings.scene,
    )
    edits = data.get("edits")
    if not isinstance(edits, list) or not edits:
        raise UserError("`edits` must be a non-empty list of edits")
    checked = [_check_edit(i, e, base, scene, settings) for i, e in enumerate(edits, start=1)]
    assert scene.image_path and scene.mask_path and scene.labels_path
    return _Checked(
        line,
        data,
        row_id,
        scene_dir,
        scene.image_path,
        scene.mask_path,
        scene.labels_path,
        checked,
        settings,
        scene.names,
    )


def _finish(
    checked: _Checked, hashes: dict[Path, str], model: str, ids: dict[str, int]
) -> ManifestRow:
    """Keys and id of a checked row, now that its files are hashed."""
    files = {"image": checked.image, "mask": checked.mask, "labels": checked.labels}
    inputs = {
        "scene": {k: hashes[p] for k, p in files.items()},
        "edits": [
            {"layout": hashes[e.layout] if e.layout else None, "operations": list(e.operations)}
            for e in checked.edits
        ],
    }
    settings = checked.settings.model_dump(mode="json")
    input_key = _sha(
        {"format": BATCH_FORMAT, "model": model, "inputs": inputs, "settings": settings}
    )
    group = _sha(
        {
            "model": model,
            "scene": inputs["scene"],
            "learn": settings["learn"],
            "options": settings["scene"],
        }
    )
    scene_text = str(checked.data.get("scene") or checked.data.get("image"))
    row_id = checked.id
    if row_id is None:
        stem = Path(scene_text).stem if "scene" not in checked.data else Path(scene_text).name
        row_id = f"{_slug(stem)}-{_sha(checked.data)[:10]}"
    if row_id in ids:
        raise UserError(f"`id` {row_id!r} is taken by line {ids[row_id]} (ids must be unique)")
    ids[row_id] = checked.line
    return ManifestRow(
        line=checked.line,
        id=row_id,
        scene_dir=checked.scene_dir,
        image=checked.image,
        mask=checked.mask,
        labels=checked.labels,
        scene_text=scene_text,
        edits=tuple(checked.edits),
        settings=checked.settings,
        names=checked.names,
        input_key=input_key,
        group=group,
    )


def _read_lines(path: Path) -> tuple[list[tuple[int, str]], str]:
    from layoutedit.scenes.image_io import check_file

    check_file(path, "manifest")
    if path.is_dir():
        raise UserError("manifest is a folder, not a JSONL file", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the manifest: {exc.strerror or exc}", path=path) from None
    lines: list[tuple[int, str]] = []
    for number, data in enumerate(raw.split(b"\n"), start=1):
        if len(data) > _MAX_LINE:
            raise UserError(f"line {number}: longer than {_MAX_LINE:,} bytes", path=path)
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"line {number}: not UTF-8 text", path=path) from None
        if text and not text.startswith("#"):
            lines.append((number, text))
    return lines, hashlib.sha256(raw).hexdigest()


def load_manifest(
    path: Path,
    *,
    model: str,
    preset: str | None = None,
    config: Path | None = None,
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    on_bad: Callable[[BadRow], None] | None = None,
    edit_overrides: dict[str, Any] | None = None,
) -> Manifest:
    """Read and check a whole manifest, without a model.

    Args:
        path: the JSONL file.
        model: the `--model` value (its default preset, and part of every row's key).
        preset, config: `--preset` and `--config`; a row's own `preset` replaces `preset`.
        skip_bad: keep going past bad rows (they are returned in `Manifest.bad`).
        cache_dir: where file hashes are memoised (`loading.fingerprint.file_hashes`).
        on_bad: called with each bad row as it is found (with `skip_bad`).
        edit_overrides: `[edit]` settings from flags (None values are ignored), under a
            row's own `seeds`.

    Raises:
        UserError: the first bad row, as `manifest.jsonl: line 3: <what is wrong>` (unless
            `skip_bad`); a manifest without rows; a file that cannot be read.
    """
    from layoutedit.loading.fingerprint import file_hashes

    path = Path(path)
    lines, digest = _read_lines(path)
    base = path.parent
    bad: list[BadRow] = []

    def refuse(line: int, exc: UserError) -> None:
        if not skip_bad:
            raise UserError(f"line {line}: {exc.line()}", path=path) from None
        row = BadRow(line, exc.line())
        bad.append(row)
        if on_bad is not None:
            on_bad(row)

    checked: list[_Checked] = []
    for line, text in lines:
        try:
            data = _strict_json(text)
            checked.append(
                _check_row(data, line, base, model, preset, config, edit_overrides or {})
            )
        except UserError as exc:
            refuse(line, exc)
    files = sorted(
        {
            p
            for c in checked
            for p in (c.image, c.mask, c.labels, *(e.layout for e in c.edits if e.layout))
        }
    )
    hashes = dict(zip(files, file_hashes(files, cache_dir), strict=True))
    rows: list[ManifestRow] = []
    ids: dict[str, int] = {}
    for item in checked:
        try:
            rows.append(_finish(item, hashes, model, ids))
        except UserError as exc:
            refuse(item.line, exc)
    if not rows:
        raise UserError("the manifest has no usable rows", path=path)
    return Manifest(path, tuple(rows), tuple(bad), digest)


def edit_layout(scene: Any, edit: ManifestEdit, settings: Settings) -> Any:
    """The target `Layout` of one edit of a (model-read) scene: its layout file, with its
    operations applied on top, or the operations on the source's masks."""
    from layoutedit.scenes.layout_edits import operations_layout
    from layoutedit.scenes.scene import load_layout

    base = load_layout(edit.layout, scene, settings.scene) if edit.layout else None
    if edit.operations:
        return operations_layout(scene, list(edit.operations), base=base)
    assert base is not None  # a checked edit has a layout or operations
    return base
