"""Cache keys: SHA-256 over a canonical encoding of everything that decides a result.

What a key covers
-----------------
A **concept key** (`concept_key`) is the SHA-256 of:

- the cache format version (`CACHE_FORMAT_VERSION`): a new format never reads an old entry;
- the model fingerprint (`LoadedModel.fingerprint`: the model's config and weight-file hashes);
- the learning config, as the dict the caller passes (`LearnConfig().model_dump(mode="json")`,
  defaults filled in), encoded canonically: keys sorted, floats written with Python's
  shortest round-trip `repr`, tuples as lists, `True` distinct from `1`;
- the decoded image pixels: the uint8 array bytes and its shape, not the file bytes, so the
  same pixels saved as another PNG (other compression, metadata) give the same key;
- the per-object label grid: its values (as little-endian int64) and its shape;
- the object names, in label order.

An **inversion key** (`inversion_key`) covers the concept key, the prompt, the number of DDIM
steps, the guidance scale and any `extra` settings the caller passes. A **prior key**
(`prior_key`) covers the model fingerprint, the class prompt, the image count, the seed and
any `extra` generation settings.

Not covered: the file names, the backend or device that computed a result (a concept learned
on the GPU is reused on the CPU), and the *contents* of folders named in the config: a
caller that wants them covered adds a digest to the config dict (layoutedit's concept store
adds `prior_dir_digest`, over the prior folder's lists and images).

Each key is 64 lowercase hex digits. Keys are plain strings, never tuples (diskcache pickles
tuple keys, and equal tuples can pickle differently).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

CACHE_FORMAT_VERSION: int = 1
"""Bumped whenever what is stored, or how a key is computed, changes."""

KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def is_key(value: str) -> bool:
    """True for a full cache key: 64 lowercase hex digits."""
    return bool(KEY_PATTERN.match(value))


def check_key(value: str) -> str:
    """Return `value` if it is a full cache key, else raise ValueError (a programming error)."""
    if not isinstance(value, str) or not is_key(value):
        raise ValueError(f"not a cache key (64 lowercase hex digits): {value!r}")
    return value


def to_jsonable(value: Any) -> Any:
    """Normalise `value` to JSON types: tuples -> lists, paths -> str, numpy scalars -> Python.

    Raises TypeError for anything without an obvious JSON form (so a key never silently
    depends on a `repr`), and for dict keys other than str and int.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            # int keys become their decimal text, as JSON has it ({0: 0.6} -> {"0": 0.6}).
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"dict keys must be str or int, got {k!r} ({type(k).__name__})")
            name = str(k)
            if name in out:
                raise TypeError(f"dict has the key {name!r} twice (as int and str)")
            out[name] = to_jsonable(v)
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} value {value!r} canonically")


def canonical_json(value: Any) -> str:
    """One text for one value: sorted keys, no spaces, floats by shortest round-trip repr.

    NaN and infinities are written as `NaN`/`Infinity` (stable, if not strict JSON).
    """
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Hasher:
    """SHA-256 over named, length-prefixed fields, so no two field lists encode alike."""

    def __init__(self, kind: str) -> None:
        self._sha = hashlib.sha256()
        self.field("layoutedit-cache", kind.encode())
        self.field("format", str(CACHE_FORMAT_VERSION).encode())

    def field(self, name: str, data: bytes | memoryview) -> None:
        label = name.encode()
        self._sha.update(len(label).to_bytes(2, "big") + label)
        self._sha.update(len(data).to_bytes(8, "big"))
        self._sha.update(data)

    def json(self, name: str, value: Any) -> None:
        self.field(name, canonical_json(value).encode())

    def array(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self.json(name + ".shape", list(array.shape))
        self.json(name + ".dtype", array.dtype.str)
        self.field(name, array.tobytes())

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def concept_key(
    *,
    model_fingerprint: str,
    learn_config: Mapping[str, Any],
    image: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
) -> str:
    """Key of the concept learned from one scene.

    Args:
        model_fingerprint: `LoadedModel.fingerprint` of the base model.
        learn_config: the learning settings as plain data, defaults filled in
            (`LearnConfig.model_dump(mode="json")`).
        image: (H, W, 3) uint8 RGB pixels as decoded (`Scene.image`).
        labels: (H, W) integer label grid at the image's size (`Scene.labels`); any int dtype,
            hashed by value.
        names: object names in label order (`Scene.names`).

    Returns:
        64 lowercase hex digits.
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W[, C]) uint8, got {image.dtype} {image.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 2:
        raise ValueError(f"labels must be (H, W) integers, got {labels.dtype} {labels.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("names must be strings")
    h = _Hasher("concept")
    h.field("model", model_fingerprint.encode())
    h.json("learn_config", learn_config)
    h.array("image", image)
    # Hash label values, not their dtype: int16 and int32 grids with equal values are one scene.
    h.array("labels", labels.astype("<i8", copy=False))
    h.json("names", names)
    return h.hexdigest()


def inversion_key(
    *,
    concept_key: str,
    prompt: str,
    steps: int,
    guidance_scale: float,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Key of the DDIM-inversion latents of a scene under a concept.

    Args:
        concept_key: key of the concept applied to the model (covers model, scene, learning).
        prompt: the prompt the inversion conditions on.
        steps: number of DDIM steps.
        guidance_scale: classifier-free guidance scale (as a float: 5 and 5.0 are one key).
        extra: any further settings that change the latents (e.g. eta, the latent size).
    """
    h = _Hasher("inversion")
    h.field("concept", check_key(concept_key).encode())
    h.field("prompt", prompt.encode())
    h.json("steps", int(steps))
    h.json("guidance_scale", _finite(float(guidance_scale)))
    h.json("extra", dict(extra or {}))
    return h.hexdigest()


def prior_key(
    *,
    model_fingerprint: str,
    class_prompt: str,
    count: int,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Key of a set of prior-preservation images generated by the base model.

    Args:
        model_fingerprint: `LoadedModel.fingerprint` of the generating model.
        class_prompt: e.g. "a photo of a cat".
        count: number of images.
        seed: generator seed.
        extra: any further generation settings (steps, guidance scale, size).
    """
    h = _Hasher("prior")
    h.field("model", model_fingerprint.encode())
    h.field("class_prompt", class_prompt.encode())
    h.json("count", int(count))
    h.json("seed", int(seed))
    h.json("extra", dict(extra or {}))
    return h.hexdigest()


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value
