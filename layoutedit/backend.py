"""The backend contract and the registry that finds backends through entry points.

A backend decides *how* the method runs (device, dtype, attention kernels, autocast, whether
the unconditional and conditional predictions share one UNet call); the method's maths lives
in the core and never imports a backend. A plugin package exposes one class implementing
`Backend` under the entry-point group `layoutedit.backends`:

    [project.entry-points."layoutedit.backends"]
    mybackend = "my_package:MyBackend"
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from layoutedit.errors import UserError

if TYPE_CHECKING:
    import torch
    from diffusers import UNet2DConditionModel

ENTRY_POINT_GROUP = "layoutedit.backends"


@runtime_checkable
class Backend(Protocol):
    """What a backend supplies. Instances are cheap; create one per run."""

    name: ClassVar[str]
    description: ClassVar[str]
    priority: ClassVar[int]
    """`--backend auto` takes the usable backend with the highest priority."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here; else why not and what to install (one line)."""
        ...

    @property
    def device(self) -> torch.device:
        """Device every model and tensor of a run lives on."""
        ...

    @property
    def dtype(self) -> torch.dtype:
        """Weight dtype for inference (training keeps fp32 master weights). Editing stores
        the weights in it and, when it is half, autocasts to it (`layoutedit.precision`)."""
        ...

    @property
    def batch_cfg(self) -> bool:
        """True: unconditional and conditional predictions run as one batch of 2."""
        ...

    @property
    def batch_seeds(self) -> bool:
        """True: an edit samples all its seeds as one batch (`editing.seed_batch`) instead of
        one seed after another. Faster where a UNet call's overhead outweighs its batch's
        work; a seed's image may then round differently with the number of seeds. A backend
        without this property is read as False."""
        ...

    def install_attention(self, unet: UNet2DConditionModel, record_layers: Sequence[str]) -> None:
        """Set attention processors: `layoutedit.attention_recording.RecordingAttnProcessor` (which
        computes probabilities explicitly) on the layers named in `record_layers`, the
        backend's own kernel everywhere else."""
        ...

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Context for forward passes (mixed precision where the backend supports it). The
        core takes its autocast from `layoutedit.precision` (from `dtype`), which decides it
        for every phase; this stays for callers outside it."""
        ...


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend, as `layoutedit backends` lists it."""

    name: str
    description: str
    priority: int
    unavailable_reason: str | None
    cls: type[Backend]

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None


_registered: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a backend class by its `name` (tests use this for fake plugins)."""
    _registered[cls.name] = cls
    return cls


def unregister_backend(name: str) -> None:
    """Remove a backend registered with `register_backend` (tests clean up with it)."""
    _registered.pop(name, None)


def _discover() -> Iterator[type[Backend]]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            yield ep.load()
        except Exception:  # a broken plugin must not break the tool; it is just not listed
            continue


def list_backends() -> list[BackendInfo]:
    """Every backend found through entry points or registered by hand, best first."""
    classes: dict[str, type[Backend]] = {cls.name: cls for cls in _discover()}
    classes.update(_registered)
    infos = [
        BackendInfo(c.name, c.description, c.priority, c.unavailable_reason(), c)
        for c in classes.values()
    ]
    return sorted(infos, key=lambda i: (-i.priority, i.name))


def get_backend(name: str = "auto") -> Backend:
    """An instance of the named backend; `auto` picks the usable one of highest priority."""
    infos = list_backends()
    if name == "auto":
        for info in infos:
            if info.available:
                return info.cls()
        raise UserError("no usable backend; run `layoutedit backends` to see why")
    for info in infos:
        if info.name == name:
            if not info.available:
                raise UserError(f"backend {name!r} is not usable here: {info.unavailable_reason}")
            return info.cls()
    known = ", ".join(i.name for i in infos) or "none"
    raise UserError(f"unknown backend {name!r}; known: {known}")
