"""Content-hashed cache of learned concepts, inversion latents and prior images.

`keys` says what a key covers; `store` says how entries are written, what survives a crash
and what happens to a bad entry. torch is imported only when tensors are made or loaded.

    from layoutedit_cache import ConceptCache, concept_key
"""

from __future__ import annotations

from layoutedit_cache.artifacts import ArtifactError, ArtifactInfo
from layoutedit_cache.keys import CACHE_FORMAT_VERSION, concept_key, inversion_key, prior_key
from layoutedit_cache.store import KINDS, CacheEntry, CacheReadOnly, ConceptCache, IndexDamaged

__all__ = [
    "CACHE_FORMAT_VERSION",
    "KINDS",
    "ArtifactError",
    "ArtifactInfo",
    "CacheEntry",
    "CacheReadOnly",
    "ConceptCache",
    "IndexDamaged",
    "concept_key",
    "inversion_key",
    "prior_key",
]
