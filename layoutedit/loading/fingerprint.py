"""Model fingerprints: a SHA-256 over a model's configs and weight files.

The concept cache keys on the fingerprint, so it must change whenever a weight changes and
must not depend on where the model lies. Hashing a multi-gigabyte checkpoint takes seconds,
so each file's hash is memoised in a small JSON file under the cache dir, keyed by the file's
resolved path, size and modification time (a changed file is re-hashed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from layoutedit.atomic import write_json_atomic

MEMO_FILE = "file-hashes.json"
_CHUNK = 1 << 20  # 1 MiB reads keep memory flat on big checkpoints


def default_cache_dir() -> Path:
    """`LAYOUTEDIT_CACHE_DIR`, else the platform's user cache dir (as the CLI uses)."""
    env = os.environ.get("LAYOUTEDIT_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("layoutedit"))


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_memo(memo_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged memo only costs re-hashing
    return data if isinstance(data, dict) else {}


def _write_memo(memo_path: Path, memo: Mapping[str, Any]) -> None:
    # A read-only cache dir must not stop a run; hashing is just repeated.
    with contextlib.suppress(OSError):
        write_json_atomic(memo_path, memo, indent=None)


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 hex of one file, memoised by (resolved path, size, mtime) under `cache_dir`."""
    return file_hashes([path], cache_dir)[0]


def file_hashes(paths: Iterable[Path], cache_dir: Path | None = None) -> list[str]:
    """SHA-256 hex of each file, in order, reading the memo file once."""
    memo_path = (cache_dir or default_cache_dir()) / MEMO_FILE
    memo = _read_memo(memo_path)
    changed = False
    out: list[str] = []
    for path in paths:
        real = path.resolve()  # HF cache snapshots are symlinks to content blobs
        stat = real.stat()
        entry = memo.get(str(real))
        if (
            isinstance(entry, dict)
            and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            out.append(entry["sha256"])
            continue
        digest = _hash_file(real)
        memo[str(real)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        changed = True
        out.append(digest)
    if changed:
        _write_memo(memo_path, memo)
    return out


def model_fingerprint(
    files: Mapping[str, Path],
    config: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> str:
    """Fingerprint of a model: SHA-256 over its configs and the hashes of its files.

    Args:
        files: name -> file; the name is relative (e.g. `unet/diffusion_pytorch_model.safetensors`)
            so moving the model folder keeps the fingerprint.
        config: extra JSON-able settings that change what is loaded (e.g. component configs).
        cache_dir: where the memo of file hashes lives (default: the layoutedit cache dir).

    Returns:
        64 hex characters.
    """
    names = sorted(files)
    hashes = file_hashes([files[n] for n in names], cache_dir)
    payload = {
        "files": dict(zip(names, hashes, strict=True)),
        "config": config or {},
    }
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
