"""Export one entry to a file and import it into another cache: `cache export` / `cache import`.

Two file forms, chosen by the file's suffix; neither holds pickled data or runs code:

- `.tar`: `manifest.json` (key, kind, meta, times, each artifact's size and SHA-256) and
  `artifacts/<name>.safetensors`, the entry's files byte for byte;
- `.safetensors`: one file whose tensors are named `<artifact>/<tensor>`, with the manifest
  as JSON in the header metadata under `layoutedit_cache_export`; each artifact's tensor
  content (names, dtypes, shapes, bytes) is checked by a digest on import.

Importing trusts the file's claim that its key is right (a key hashes inputs that the file
does not carry); it checks that the tensors arrive intact and that the format is current.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Any

from layoutedit.atomic import write_atomic
from layoutedit.errors import UserError
from layoutedit_cache.artifacts import (
    SUFFIX,
    ArtifactError,
    check_artifact_name,
    deserialise,
    header,
    serialise,
    sha256_hex,
)
from layoutedit_cache.keys import CACHE_FORMAT_VERSION, is_key
from layoutedit_cache.store import CacheEntry, ConceptCache, check_kind

EXPORT_VERSION = 1
_META_KEY = "layoutedit_cache_export"
SUFFIXES = (".tar", ".safetensors")


def content_digest(blob: bytes) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes (sorted by name) of a
    safetensors blob: the same for the same tensors however the header is laid out."""
    head = header(blob)
    start = 8 + int.from_bytes(blob[:8], "little")
    sha = hashlib.sha256()
    for name in sorted(k for k in head if k != "__metadata__"):
        spec = head[name]
        begin, end = spec["data_offsets"]
        sha.update(json.dumps([name, spec["dtype"], spec["shape"]]).encode())
        sha.update(blob[start + begin : start + end])
    return sha.hexdigest()


def _manifest(entry: CacheEntry, digests: dict[str, str] | None = None) -> dict[str, Any]:
    artifacts = [a.to_json() for a in entry.artifacts]
    if digests is not None:
        for a in artifacts:
            a["content_sha256"] = digests[a["name"]]
    return {
        "export_version": EXPORT_VERSION,
        "format": CACHE_FORMAT_VERSION,
        "key": entry.key,
        "kind": entry.kind,
        "meta": entry.meta,
        "created": entry.created,
        "artifacts": artifacts,
    }


def check_export_target(cache: ConceptCache, path: Path, *, overwrite: bool = False) -> None:
    """Refuse an export file that would harm the cache or a file of the user's.

    Raises:
        UserError: `path` lies inside the cache folder (it could replace one of the cache's
            own files); it is a folder; it exists and is not a layoutedit export, unless
            `overwrite` (a link is never written through: it is replaced).
    """
    _suffix(path)
    target = Path(os.path.abspath(path))
    resolved = target.parent.resolve() / target.name
    root = cache.root.resolve()
    if resolved == root or root in resolved.parents:
        raise UserError(
            f"the export file lies inside the cache folder {cache.root}; write it elsewhere",
            path=path,
        )
    if target.is_dir() and not target.is_symlink():
        raise UserError("is a folder; give the export file's name", path=path)
    if (target.exists() or target.is_symlink()) and not overwrite and not _is_export(target):
        raise UserError(
            "file exists and is not a layoutedit cache export; give another name, or pass "
            "--overwrite to replace it",
            path=path,
        )


def _is_export(path: Path) -> bool:
    """A regular file (not a link) that `export_entry` wrote: a tar whose first member is the
    manifest, or safetensors with the manifest in its header."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        if path.suffix.lower() == ".tar":
            with tarfile.open(path, "r:*") as tar:
                first = tar.next()
            return first is not None and first.name == "manifest.json"
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n > 100_000_000:
                return False
            head = header(n.to_bytes(8, "little") + fh.read(n))
        meta = head.get("__metadata__")
        return isinstance(meta, dict) and _META_KEY in meta
    except (OSError, tarfile.TarError, ArtifactError, ValueError):
        return False


def export_entry(
    cache: ConceptCache, key: str, path: Path, *, overwrite: bool = False
) -> CacheEntry:
    """Write the (verified) entry `key` to `path` (`.tar` or `.safetensors`), atomically.

    `path` is checked first (`check_export_target`); `overwrite` lets it replace a file that
    is not a layoutedit export.
    """
    suffix = _suffix(path)
    check_export_target(cache, path, overwrite=overwrite)
    entry = cache.get(key)
    if entry is None:
        raise UserError(f"cache entry {key[:12]} is missing or damaged; nothing exported")
    blobs = {name: entry.blob(name) for name in entry.artifact_names}
    try:
        if suffix == ".tar":
            write_atomic(path, lambda tmp: _write_tar(tmp, _manifest(entry), blobs))
        else:
            write_atomic(path, lambda tmp: _write_single(tmp, entry, blobs))
    except OSError as exc:
        raise UserError(f"cannot write the export: {exc.strerror}", path=path) from None
    return entry


def _write_tar(path: Path, manifest: dict[str, Any], blobs: dict[str, bytes]) -> None:
    members = [("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())]
    members += [(f"artifacts/{name}.safetensors", blob) for name, blob in blobs.items()]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(manifest["created"])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def _write_single(path: Path, entry: CacheEntry, blobs: dict[str, bytes]) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for name, blob in blobs.items():
        for tname, tensor in deserialise(blob).items():
            tensors[f"{name}/{tname}"] = tensor
    digests = {name: content_digest(blob) for name, blob in blobs.items()}
    save_file(tensors, str(path), metadata={_META_KEY: json.dumps(_manifest(entry, digests))})


MAX_MANIFEST_BYTES = 16 << 20
MAX_ARTIFACT_BYTES = 16 << 30
"""The largest artifact an import accepts (an SDXL concept's K/V weights are about 1.3 GB
in float32); members are read in chunks, and only once their name and size are known."""
_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def import_entry(cache: ConceptCache, path: Path, *, force: bool = False) -> tuple[str, bool]:
    """Add the entry in `path` to the cache; returns (key, stored).

    The whole file is checked before anything is written: the manifest (key, kind, meta,
    time, every artifact's name, size and digest) and every artifact's bytes; tar members
    are read only when their name and size are the manifest's. `stored` is False when a
    good entry of that key was already there and `force` is off.

    Raises:
        UserError: not a current layoutedit export (one line naming the file), or a
            read-only cache folder.
    """
    suffix = _suffix(path)
    if not path.exists():
        raise UserError("file not found", path=path)
    if not path.is_file():
        raise UserError("is not a file; give a file written by `cache export`", path=path)
    cache.require_writable()
    try:
        if suffix == ".tar":
            manifest, blobs = _read_tar(path)
        else:
            manifest, blobs = _read_single(path)
    except UserError:
        raise
    except (OSError, tarfile.TarError, ArtifactError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"not a layoutedit cache export ({exc})", path=path) from None
    key = manifest["key"]
    if not force and cache.get(key) is not None:
        return key, False
    cache.put_blobs(key, manifest["kind"], blobs, manifest["meta"], created=manifest["created"])
    return key, True


def _check_manifest(manifest: Any, path: Path, *, single: bool = False) -> dict[str, Any]:
    """The manifest, with every field checked (UserError naming the first bad one)."""

    def bad(what: str) -> UserError:
        return UserError(f"not a usable layoutedit cache export: {what}", path=path)

    if not isinstance(manifest, dict) or "export_version" not in manifest:
        raise UserError("not a layoutedit cache export (no manifest)", path=path)
    if manifest.get("export_version") != EXPORT_VERSION:
        raise bad(f"export version {manifest.get('export_version')!r} (this version reads 1)")
    if manifest.get("format") != CACHE_FORMAT_VERSION:
        raise UserError(
            f"exported by cache format {manifest.get('format')}; this version reads "
            f"{CACHE_FORMAT_VERSION}: learn the scene again",
            path=path,
        )
    if not isinstance(manifest.get("key"), str) or not is_key(manifest["key"]):
        raise UserError("the export's key is not a cache key", path=path)
    try:
        check_kind(manifest.get("kind"))
    except ValueError as exc:
        raise bad(str(exc)) from None
    meta = manifest.get("meta")
    if not isinstance(meta, dict):
        raise bad("`meta` is not a table")
    try:
        json.dumps(meta, allow_nan=False)
    except ValueError:
        raise bad("`meta` holds NaN or infinity") from None
    created = manifest.get("created")
    if (
        isinstance(created, bool)
        or not isinstance(created, int | float)
        or not math.isfinite(created)
        or not 0 <= created <= time.time() + 86_400
    ):
        raise bad(f"`created` is not a time ({created!r})")
    items = manifest.get("artifacts")
    if not isinstance(items, list) or not items:
        raise UserError("the export's manifest is incomplete", path=path)
    names: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise bad("an artifact is not a table")
        try:
            name = check_artifact_name(item["name"] if isinstance(item.get("name"), str) else "")
        except ValueError as exc:
            raise bad(str(exc)) from None
        if name in names:
            raise bad(f"artifact {name!r} is listed twice")
        names.add(name)
        size = item.get("size")
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not 0 < size <= MAX_ARTIFACT_BYTES
        ):
            raise bad(f"artifact {name!r} has size {size!r}")
        digests = ("sha256", "content_sha256") if single else ("sha256",)
        for field in digests:
            if not isinstance(item.get(field), str) or not _HEX64.match(item[field]):
                raise bad(f"artifact {name!r} has no {field}")
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    """A regular member's bytes, read in chunks and never past `limit`."""
    if not member.isfile():
        raise ValueError(f"unexpected tar member {member.name!r}")
    if member.size > limit:
        raise ValueError(f"tar member {member.name!r} is larger than expected")
    handle = tar.extractfile(member)
    assert handle is not None
    parts, got = [], 0
    while chunk := handle.read(min(_CHUNK, limit + 1 - got)):
        parts.append(chunk)
        got += len(chunk)
        if got > limit:
            raise ValueError(f"tar member {member.name!r} is larger than expected")
    return b"".join(parts)


def _read_tar(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    blobs: dict[str, bytes] = {}
    with tarfile.open(path, "r:*") as tar:
        # Members are read by name only, nothing is ever extracted to the file system; the
        # manifest comes first (as `export_entry` writes it), so every later member's name
        # and size are known before a byte of it is read.
        first = tar.next()
        if first is None or first.name != "manifest.json":
            raise ValueError("the first member is not manifest.json")
        text = _read_member(tar, first, MAX_MANIFEST_BYTES)
        manifest = _check_manifest(json.loads(text), path)
        expected = {f"artifacts/{item['name']}{SUFFIX}": item for item in manifest["artifacts"]}
        while (member := tar.next()) is not None:  # (iterating would start over)
            item = expected.pop(member.name, None)
            if item is None:
                raise ValueError(f"unexpected tar member {member.name!r}")
            if member.size != item["size"]:
                raise UserError(f"artifact {item['name']!r} in the export is damaged", path=path)
            blob = _read_member(tar, member, item["size"])
            if sha256_hex(blob) != item["sha256"]:
                raise UserError(f"artifact {item['name']!r} in the export is damaged", path=path)
            header(blob)
            blobs[item["name"]] = blob
    if expected:
        name = next(iter(expected.values()))["name"]
        raise UserError(f"the export lacks artifact {name!r}", path=path)
    return manifest, blobs


def _read_single(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    if path.stat().st_size > MAX_ARTIFACT_BYTES + MAX_MANIFEST_BYTES:
        raise ValueError("the file is larger than any export")
    data = path.read_bytes()
    meta = header(data).get("__metadata__") or {}
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise ValueError("no layoutedit manifest in the header")
    manifest = _check_manifest(json.loads(meta[_META_KEY]), path, single=True)
    groups: dict[str, dict[str, Any]] = {}
    for full, tensor in deserialise(data).items():
        artifact, _, tname = full.partition("/")
        groups.setdefault(check_artifact_name(artifact), {})[tname] = tensor
    blobs: dict[str, bytes] = {}
    for item in manifest["artifacts"]:
        name = item["name"]
        if name not in groups:
            raise UserError(f"the export lacks artifact {name!r}", path=path)
        blob = serialise(groups.pop(name))
        if content_digest(blob) != item["content_sha256"]:
            raise UserError(f"artifact {name!r} in the export is damaged", path=path)
        blobs[name] = blob
    if groups:
        raise ValueError(f"unexpected artifacts {sorted(groups)}")
    return manifest, blobs


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError("export files end in .tar or .safetensors", path=path)
    return suffix
