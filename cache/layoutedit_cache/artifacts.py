"""Artifact files: safetensors bytes, written durably, checked by size and SHA-256 on every read.

torch is imported only by the functions that make or load tensors, so listing, verifying and
pruning the cache never load it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SUFFIX = ".safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_CHUNK = 1 << 20


class ArtifactError(Exception):
    """An artifact file is missing, truncated or corrupted; the message is one line."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What the index records of one artifact file.

    Attributes:
        name: artifact name; the file is `<name>.safetensors`.
        size: file size in bytes.
        sha256: hex digest of the file bytes.
    """

    name: str
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.name + SUFFIX

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactInfo:
        return cls(
            name=check_artifact_name(str(data["name"])),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
        )

    @classmethod
    def of_bytes(cls, name: str, blob: bytes) -> ArtifactInfo:
        return cls(name=check_artifact_name(name), size=len(blob), sha256=sha256_hex(blob))


def check_artifact_name(name: str) -> str:
    """An artifact name becomes a file name: letters, digits, `_.-`, not starting with `.`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"bad artifact name {name!r}: use letters, digits and _.- (max 100)")
    return name


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def serialise(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """safetensors bytes of `tensors` (any device; stored as CPU, contiguous, unshared copies)."""
    import torch
    from safetensors.torch import save

    plain: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"artifact tensors must map str -> torch.Tensor, got {name!r}")
        # clone: safetensors refuses tensors that share storage (views, tied weights).
        plain[name] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return save(plain)


def deserialise(blob: bytes) -> dict[str, torch.Tensor]:
    """Tensors (on the CPU) from safetensors bytes; no code is run, nothing is unpickled."""
    from safetensors.torch import load

    return load(blob)


def header(blob: bytes) -> dict[str, Any]:
    """The JSON header of safetensors bytes: tensor name -> {dtype, shape, data_offsets}.

    Raises ArtifactError if `blob` is not a well-formed safetensors file.
    """
    if len(blob) < 8:
        raise ArtifactError("not a safetensors file (too short)")
    n = int.from_bytes(blob[:8], "little")
    if n > len(blob) - 8 or n > 100_000_000:
        raise ArtifactError("not a safetensors file (bad header length)")
    try:
        data = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactError("not a safetensors file (bad header)") from None
    if not isinstance(data, dict):
        raise ArtifactError("not a safetensors file (bad header)")
    return data


def write_durable(path: Path, blob: bytes) -> None:
    """Write `blob` to a new file and fsync it (the caller renames its folder into place)."""
    with open(path, "xb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """fsync a folder so renames into it survive a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def read_verified(folder: Path, info: ArtifactInfo) -> bytes:
    """The bytes of one artifact, checked against its recorded size and SHA-256."""
    path = folder / info.filename
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"artifact {info.name!r} is missing") from None
    except OSError as exc:
        raise ArtifactError(f"artifact {info.name!r} cannot be read: {exc.strerror}") from None
    _compare(info, len(blob), sha256_hex(blob))
    return blob


def check_file(folder: Path, info: ArtifactInfo) -> None:
    """Check one artifact file without keeping its bytes; raises ArtifactError if it is bad."""
    path = folder / info.filename
    sha = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {info.name!r} is missing") from None
    except OSError as exc:
        raise ArtifactError(f"artifact {info.name!r} cannot be read: {exc.strerror}") from None
    _compare(info, size, sha.hexdigest())


def _compare(info: ArtifactInfo, size: int, digest: str) -> None:
    if size != info.size:
        what = "truncated" if size < info.size else "longer than recorded"
        raise ArtifactError(f"artifact {info.name!r} is {what} ({size} of {info.size} bytes)")
    if digest != info.sha256:
        raise ArtifactError(f"artifact {info.name!r} is corrupted (SHA-256 mismatch)")
