"""A cache entry as `get`, `put` and listings return it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layoutedit_cache.artifacts import ArtifactError, ArtifactInfo, deserialise, read_verified

if TYPE_CHECKING:
    import torch


@dataclass
class CacheEntry:
    """One cache entry.

    Attributes:
        key: 64 hex digits.
        kind: "concept", "inversion" or "prior".
        meta: JSON-able dict given to `put`.
        created: time of the `put`, seconds since the epoch.
        last_used: time of the last `get` hit (or the `put`), seconds since the epoch.
        size: bytes of all artifact files together.
        artifacts: name, size and SHA-256 of each artifact file.
        directory: folder holding the artifact files.
        record_id: random id of the `put` that wrote the entry (tells a rewrite apart).
    """

    key: str
    kind: str
    meta: dict[str, Any]
    created: float
    last_used: float
    size: int
    artifacts: tuple[ArtifactInfo, ...] = ()
    directory: Path | None = field(default=None, repr=False)
    record_id: str = field(default="", repr=False)
    _blobs: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def artifact_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.artifacts)

    def info(self, artifact: str) -> ArtifactInfo:
        """The record of one artifact; KeyError naming the ones there are."""
        for a in self.artifacts:
            if a.name == artifact:
                return a
        raise KeyError(f"entry {self.key[:12]} has no artifact {artifact!r}: {self.artifact_names}")

    def blob(self, artifact: str) -> bytes:
        """The verified safetensors bytes of one artifact."""
        info = self.info(artifact)
        blob = self._blobs.get(artifact)
        if blob is not None:
            return blob
        if self.directory is None:
            raise ArtifactError(f"entry {self.key[:12]} has no artifact folder")
        return read_verified(self.directory, info)

    def tensors(self, artifact: str) -> dict[str, torch.Tensor]:
        """The tensors of one artifact, on the CPU.

        Entries from `get` load the bytes verified there (then drop them); a later call reads
        and verifies the file again, raising ArtifactError if it changed since.
        """
        self.info(artifact)
        blob = self._blobs.pop(artifact, None)
        return deserialise(blob if blob is not None else self.blob(artifact))

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--json` output."""
        return {
            "key": self.key,
            "kind": self.kind,
            "meta": self.meta,
            "created": self.created,
            "last_used": self.last_used,
            "size": self.size,
            "artifacts": [a.to_json() for a in self.artifacts],
        }
