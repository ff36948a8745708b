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
import os
import tarfile
from pathlib import Path
from typing import Any

from layoutedit.atomic import write_atomic
from layoutedit.errors import UserError
from layoutedit_cache.artifacts import (
    ArtifactError,
    ArtifactInfo,
    check_artifact_name,
    deserialise,
    header,
    serialise,
    sha256_hex,
)
from layoutedit_cache.keys import CACHE_FORMAT_VERSION, is_key
from layoutedit_cache.store import CacheEntry, ConceptCache

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


def import_entry(cache: ConceptCache, path: Path, *, force: bool = False) -> tuple[str, bool]:
    """Add the entry in `path` to the cache; returns (key, stored).

    `stored` is False when a good entry of that key was already there and `force` is off.
    """
    suffix = _suffix(path)
    try:
        if suffix == ".tar":
            manifest, blobs = _read_tar(path)
        else:
            manifest, blobs = _read_single(path)
    except FileNotFoundError:
        raise UserError("file not found", path=path) from None
    except (OSError, tarfile.TarError, ArtifactError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"not a layoutedit cache export ({exc})", path=path) from None
    key = manifest["key"]
    if not force and cache.get(key) is not None:
        return key, False
    cache.put_blobs(
        key, manifest["kind"], blobs, manifest["meta"], created=float(manifest["created"])
    )
    return key, True


def _check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict) or "export_version" not in manifest:
        raise UserError("not a layoutedit cache export (no manifest)", path=path)
    if manifest.get("format") != CACHE_FORMAT_VERSION:
        raise UserError(
            f"exported by cache format {manifest.get('format')}; this version reads "
            f"{CACHE_FORMAT_VERSION}: learn the scene again",
            path=path,
        )
    if not isinstance(manifest.get("key"), str) or not is_key(manifest["key"]):
        raise UserError("the export's key is not a cache key", path=path)
    if not isinstance(manifest.get("meta"), dict) or not manifest.get("artifacts"):
        raise UserError("the export's manifest is incomplete", path=path)
    return manifest


def _read_tar(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    files: dict[str, bytes] = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            # Read regular files by name only; nothing is ever extracted to the file system.
            if not member.isfile():
                raise ValueError(f"unexpected tar member {member.name!r}")
            handle = tar.extractfile(member)
            assert handle is not None
            files[member.name] = handle.read()
    if "manifest.json" not in files:
        raise ValueError("no manifest.json")
    manifest = _check_manifest(json.loads(files.pop("manifest.json")), path)
    blobs: dict[str, bytes] = {}
    for item in manifest["artifacts"]:
        info = ArtifactInfo.from_json(item)
        blob = files.pop(f"artifacts/{info.filename}", None)
        if blob is None:
            raise UserError(f"the export lacks artifact {info.name!r}", path=path)
        if len(blob) != info.size or sha256_hex(blob) != info.sha256:
            raise UserError(f"artifact {info.name!r} in the export is damaged", path=path)
        header(blob)
        blobs[info.name] = blob
    if files:
        raise ValueError(f"unexpected tar members {sorted(files)}")
    return manifest, blobs


def _read_single(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    data = path.read_bytes()
    meta = header(data).get("__metadata__") or {}
    if _META_KEY not in meta:
        raise ValueError("no layoutedit manifest in the header")
    manifest = _check_manifest(json.loads(meta[_META_KEY]), path)
    groups: dict[str, dict[str, Any]] = {}
    for full, tensor in deserialise(data).items():
        artifact, _, tname = full.partition("/")
        groups.setdefault(check_artifact_name(artifact), {})[tname] = tensor
    blobs: dict[str, bytes] = {}
    for item in manifest["artifacts"]:
        name = check_artifact_name(item["name"])
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
