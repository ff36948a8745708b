"""The rows of the benchmark table: one `Variant` per way of making the edit.

A variant edits all the cases of one scene at a time (`run_scene`), so that per-scene work
(learning a concept, inverting the source) is done once and its cost counted once per
scene. `paste` is pure numpy. The diffusion variants share a `DiffusionRuntime`
(`layoutedit.bench.diffusion`) that learns each scene's concept once and hands the same
concept to every row that uses one (`full`, `published`, `no-guidance`, `no-steering`,
`no-blend`); they differ only in their edit settings. `no-model` runs `full`'s pipeline with
none of the model's steps (`EditConfig.denoise` off, which skips the denoising and the
corrector, and `whole_from_model` off, the completer): what the pipeline gives without the
model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from layoutedit.bench.cases import Case, identity_case
from layoutedit.editing.paste import background_mean, paste_edit
from layoutedit.errors import UserError


@dataclass
class EditOutput:
    """One variant's edit of one case."""

    image: np.ndarray
    """(S, S, 3) uint8 at the source's size."""
    seconds: float
    """Wall seconds of this edit, with its share of the per-scene edit work (inversion)."""
    unet_evaluations: float
    """UNet evaluations (forwards + backwards) of this edit, with its share of the scene's."""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SceneOutput:
    """One variant's work on one scene."""

    edits: list[EditOutput]
    """One per case, in the order given."""
    learn_seconds: float = 0.0
    """Seconds spent learning this scene's concept (shared concepts report the one cost)."""
    learn_unet_evaluations: int = 0
    attention_shares: list[float] | None = None
    """Per object, the share of its token's attention on its source mask before any edit
    (`layoutedit.learning.concept_check`); None for variants without a model."""


class Variant(Protocol):
    """A row of the table."""

    name: str
    description: str

    def scene_cases(self, cases: Sequence[Case]) -> list[Case]:
        """The cases this row edits for one scene (given the scene's cases)."""
        ...

    def run_scene(self, cases: Sequence[Case]) -> SceneOutput:
        """Edit every case of one scene (all share one source), as `scene_cases` gave them."""
        ...


class PasteVariant:
    """Cut the source objects and paste them at their exact targets (no model), in the
    layout's depth order (world v2; v1's cases never overlap)."""

    name = "paste"
    description = "cut-and-paste at the exact targets, holes filled with the background colour"

    def scene_cases(self, cases: Sequence[Case]) -> list[Case]:
        return list(cases)

    def run_scene(self, cases: Sequence[Case]) -> SceneOutput:
        edits = []
        for case in cases:
            began = time.perf_counter()
            fill = background_mean(case.source.image, case.source_labels, case.n_objects)
            image, _ = paste_edit(
                case.source.image, case.source.masks, case.placements, fill, case.depth_order
            )
            edits.append(EditOutput(image, time.perf_counter() - began, 0.0))
        return SceneOutput(edits)


@dataclass(frozen=True)
class DiffusionSpec:
    """A diffusion variant: edit-setting overrides and whether it uses the learned concept."""

    name: str
    description: str
    edit_overrides: dict[str, Any]
    uses_concept: bool = True
    learn_overrides: dict[str, Any] = field(default_factory=dict)
    """Learn-setting changes: a row with any learns its own concept for each scene."""
    scene_overrides: dict[str, Any] = field(default_factory=dict)
    """Scene-option changes (e.g. the prompt template): also a concept of its own."""
    identity: bool = False
    """Edit each scene once to its own mask (`cases.identity_case`) instead of its cases."""
    edit_preset: str | None = None
    """Start the edit settings from this preset's `edit` section (`config.PRESETS`) instead
    of the run's; `edit_overrides` still apply on top."""


DIFFUSION_SPECS: dict[str, DiffusionSpec] = {
    s.name: s
    for s in (
        DiffusionSpec("full", "the method as shipped", {}),
        DiffusionSpec(
            "no-guidance",
            "learned concept, no attention guidance (plain regeneration)",
            {"scale_factor": 0.0, "refinement": {}, "max_refinement_steps": 0},
        ),
        DiffusionSpec(
            "no-steering",
            "learned concept, no layout steering at all: noise start (no paste) and no "
            "attention guidance",
            {
                "scale_factor": 0.0,
                "refinement": {},
                "max_refinement_steps": 0,
                "init": "noise",
            },
        ),
        DiffusionSpec(
            "no-concepts",
            "attention guidance with the plain object words, nothing learned",
            {"use_concept": False},
            uses_concept=False,
        ),
        DiffusionSpec(
            "no-blend",
            "full without background blending",
            {"blend_steps": 0, "background_composite": False},
        ),
        DiffusionSpec(
            "published",
            "the published method's edit settings: noise start, no composite, colour "
            "matching or detail, ranking by attention (the run's learned concept)",
            {},
            edit_preset="published",
        ),
        DiffusionSpec(
            "no-model",
            "full with none of the model's steps: the paste start (objects pasted, holes "
            "filled, hidden parts completed by the shape rules) through the VAE, then full's "
            "pixel passes; no learning, no completer, no corrector",
            {"denoise": False, "init": "paste", "use_concept": False, "whole_from_model": False},
            uses_concept=False,
        ),
        DiffusionSpec(
            "identity",
            "full, edited to the source's own mask: how well the concept reproduces the scene",
            {},
            identity=True,
        ),
    )
}
VARIANT_NAMES: tuple[str, ...] = (*DIFFUSION_SPECS, "paste")


class DiffusionRunner(Protocol):
    """What the diffusion rows share (`layoutedit.bench.diffusion.DiffusionRuntime`): it learns
    each scene's concepts once and edits a scene's cases with one row's settings."""

    def run_scene(self, cases: Sequence[Case], spec: DiffusionSpec) -> SceneOutput:
        """Edit every case of one scene with `spec`'s settings."""
        ...


class DiffusionVariant:
    """A diffusion variant: learn (shared, once per scene) then edit with its settings."""

    def __init__(self, spec: DiffusionSpec, runtime: DiffusionRunner) -> None:
        self.spec = spec
        self.name = spec.name
        self.description = spec.description
        self.runtime = runtime

    def scene_cases(self, cases: Sequence[Case]) -> list[Case]:
        return [identity_case(cases[0])] if self.spec.identity else list(cases)

    def run_scene(self, cases: Sequence[Case]) -> SceneOutput:
        return self.runtime.run_scene(cases, self.spec)


def parse_variants(text: str) -> list[str]:
    """`full,paste` -> ["full", "paste"], checked; UserError names the known variants."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"--variants is empty; choose from {','.join(VARIANT_NAMES)}")
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}; choose from {','.join(VARIANT_NAMES)}")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def published_spec(preset: str | None) -> DiffusionSpec:
    """The `published` row for a run under `preset`: the published preset's edit settings,
    or the `fast` preset's when the run is fast (`--quick`: the published method with fewer
    steps, as the run's other rows)."""
    spec = DIFFUSION_SPECS["published"]
    return replace(spec, edit_preset="fast") if preset == "fast" else spec


def build_variants(
    names: Sequence[str],
    runtime_factory: Callable[[], DiffusionRunner],
    extra: Sequence[DiffusionSpec] = (),
    preset: str | None = None,
) -> list[Variant]:
    """Variant objects for `names`, then one per `extra` spec (sweep rows); the diffusion
    runtime is built only when one needs it. `preset`: the run's preset (`published_spec`)."""
    runtime: DiffusionRunner | None = None
    out: list[Variant] = []
    table = {**DIFFUSION_SPECS, "published": published_spec(preset)}
    specs = [table.get(name) for name in names] + list(extra)
    for spec in specs:
        if spec is None:
            out.append(PasteVariant())
            continue
        if runtime is None:
            runtime = runtime_factory()
        out.append(DiffusionVariant(spec, runtime))
    return out
