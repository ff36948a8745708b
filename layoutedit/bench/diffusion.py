"""The diffusion variants' runtime: library calls (never the CLI), one scene at a time.

Per scene: the concept is learned once (`layoutedit.learning.learn.learn_concept`, timed here, not
taken from the cache, so `learn s` is a real cost) and given to every variant that uses
one; each (scene, variant) edits a freshly loaded model, because applying a concept changes
the model in place. The source's DDIM inversion depends only on the scene, the concept and
the steps, so the first variant that blends computes it and later ones reuse it; each
variant is still charged its cost (seconds and UNet evaluations), shared over the scene's
edits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from layoutedit.bench.cases import Case
from layoutedit.bench.variants import DiffusionSpec, EditOutput, SceneOutput
from layoutedit.config import PRESETS, EditConfig, LearnConfig, SceneOptions, Settings
from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE

if TYPE_CHECKING:
    from layoutedit.backend import Backend
    from layoutedit.editing.inversion import Inversion
    from layoutedit.learning.concept import Concept
    from layoutedit.loading.model_loading import LoadedModel
    from layoutedit.scenes.scene import Scene

Say = Callable[[str], None]


@dataclass
class _Learned:
    concept: Concept
    seconds: float
    unet_evaluations: int


@dataclass
class _Inverted:
    inversion: Inversion
    seconds: float
    unet_evaluations: int


def _settings_key(learn: LearnConfig, scene: SceneOptions) -> str:
    """What of the settings a scene's concept (and so its inversion) depends on, as text."""
    return learn.model_dump_json() + scene.model_dump_json()


class DiffusionRuntime:
    """Model, backend and per-scene shared work for the diffusion variants.

    Args:
        model: the `--model` spec (e.g. `builtin:shapes-tiny`).
        backend: the `--backend` name (`auto`, `cpu`, `cuda`).
        settings: resolved settings; the variants override `settings.edit`.
        cache_dir: memo of model weight hashes (the model loader's cache).
        work_dir: scratch folder (generated prior images, when prior preservation is on).
        say: where progress lines go (None: quiet).
    """

    def __init__(
        self,
        model: str,
        backend: str,
        settings: Settings,
        cache_dir: Path,
        work_dir: Path,
        say: Say | None = None,
    ) -> None:
        from layoutedit.backend import get_backend

        self.model_spec = model
        self.backend: Backend = get_backend(backend)
        self.settings = settings
        self.cache_dir = cache_dir
        self.work_dir = work_dir
        self.say = say or (lambda _line: None)
        # Keyed by (scene seed, learn + scene settings as JSON): sweep rows may differ.
        self._learned: dict[tuple[int, str], _Learned] = {}
        # Keyed by (scene seed, learn + scene settings, DDIM steps): the inversion needs all.
        self._inverted: dict[tuple[int, str, int], _Inverted] = {}
        self.warm_up(self.load_model())  # also fails early on a missing model

    def warm_up(self, model: LoadedModel) -> None:
        """Run each kind of model call once, untimed, so that one-time kernel set-up (large
        on a first CPU call) is not charged to whichever variant happens to run first."""
        import torch

        side = model.latent_size
        texts = model.encode_text(["a picture", ""]).float()  # (2, L, D) (+ SDXL's extras)
        for batch in (1, 2):
            z = torch.randn(
                batch, model.unet.config.in_channels, side, side, device=self.backend.device
            ).requires_grad_(True)
            t = torch.full((batch,), 500, device=self.backend.device)
            model.unet(z, t, **texts[:batch].unet_kwargs()).sample.sum().backward()
        with torch.no_grad():
            image = np.zeros((model.image_size, model.image_size, 3), dtype=np.uint8)
            model.decode_latents(model.encode_image(image))

    def load_model(self, dtype: Any = None) -> LoadedModel:
        """A fresh copy of the base model on the backend's device."""
        from layoutedit.loading.model_loading import load_model

        kwargs: dict[str, Any] = {"device": self.backend.device, "cache_dir": self.cache_dir}
        if dtype is not None:
            kwargs["dtype"] = dtype
        return load_model(self.model_spec, **kwargs)

    def scene(self, case: Case, options: SceneOptions | None = None) -> Scene:
        """The case's source as a library `Scene` (label colours of written scene folders),
        parsed with `options` (default: `settings.scene`)."""
        from layoutedit.scenes.scene import scene_from_arrays

        k = case.n_objects
        return scene_from_arrays(
            case.source.image,
            case.source_labels,
            case.names,
            MASK_PALETTE[:k],
            MASK_BACKGROUND,
            options if options is not None else self.settings.scene,
        )

    def edit_config(self, spec: DiffusionSpec) -> EditConfig:
        """`settings.edit` (or the spec's preset's edit section) with the variant's
        overrides, validated."""
        base = (
            self.settings.edit.model_dump()
            if spec.edit_preset is None
            else PRESETS[spec.edit_preset].get("edit", {})
        )
        return EditConfig.model_validate({**base, **spec.edit_overrides})

    def learn_config(self, spec: DiffusionSpec) -> LearnConfig:
        """`settings.learn` with the variant's overrides, validated."""
        data = {**self.settings.learn.model_dump(), **spec.learn_overrides}
        return LearnConfig.model_validate(data)

    def scene_options(self, spec: DiffusionSpec) -> SceneOptions:
        """`settings.scene` with the variant's overrides, validated."""
        data = {**self.settings.scene.model_dump(), **spec.scene_overrides}
        return SceneOptions.model_validate(data)

    def learned(
        self,
        cases: Sequence[Case],
        config: LearnConfig | None = None,
        options: SceneOptions | None = None,
    ) -> _Learned:
        """The scene's concept for `config` (default: `settings.learn`) and scene `options`
        (default: `settings.scene`), learned on first use (fp32 weights, as training needs)."""
        from layoutedit.learning.learn import learn_concept

        config = config if config is not None else self.settings.learn
        options = options if options is not None else self.settings.scene
        key = (cases[0].scene_seed, _settings_key(config, options))
        if key not in self._learned:
            self.say(f"learning scene {key[0]}")
            model = self.load_model()
            began = time.perf_counter()
            result = learn_concept(
                model,
                self.scene(cases[0], options),
                config,
                backend=self.backend,
                prior_folder=self.work_dir / "prior",
            )
            self._learned[key] = _Learned(
                result.concept, time.perf_counter() - began, result.totals.counter.total
            )
            del model
        return self._learned[key]

    def forget_scenes(self) -> None:
        """Drop the concepts and inversions kept so far: a caller that edits thousands of
        scenes once each (training pairs) would otherwise hold them all in memory."""
        self._learned.clear()
        self._inverted.clear()

    def run_scene(self, cases: Sequence[Case], spec: DiffusionSpec) -> SceneOutput:
        """Edit every case of one scene with the variant `spec`."""
        from layoutedit.editing.session import EditSession
        from layoutedit.learning.concept_check import source_attention_shares
        from layoutedit.scenes.scene import layout_from_labels

        learn_cfg, options = self.learn_config(spec), self.scene_options(spec)
        learned = self.learned(cases, learn_cfg, options) if spec.uses_concept else None
        cfg = self.edit_config(spec)
        scene = self.scene(cases[0], options)
        seed = cases[0].scene_seed
        self.say(f"editing scene {seed}: {spec.name}")
        model = self.load_model(self.backend.dtype)
        began = time.perf_counter()
        session = EditSession(
            model,
            scene,
            cfg,
            self.backend,
            concept=learned.concept if learned is not None else None,
        )
        # A concept measured its placeholders when it was learned; plain words are measured here.
        stored = (
            learned.concept.meta.get("attention_shares") if learned and cfg.use_concept else None
        )
        shares: list[float] | None = None
        if stored:
            shares = [stored[name] for name in scene.names]
        elif cfg.denoise:  # a row with no denoising step has no attention to measure
            shares = source_attention_shares(
                model, scene, session.prompt, session.positions, attention_res=session.res
            )
        inv_key = (seed, _settings_key(learn_cfg, options), cfg.steps)
        blends = cfg.blend_steps > 0 and cfg.denoise  # no step: nothing to blend
        shared = self._inverted.get(inv_key) if spec.uses_concept else None
        if shared is not None and blends:
            session.use_inversion(shared.inversion)
        results = [session.edit(layout_from_labels(c.layout, scene)) for c in cases]
        wall = time.perf_counter() - began
        # Per-scene work (prepare, inversion) is shared over the scene's edits.
        inv_s = float(session.timings.get("inversion", 0.0))
        inv_evals = int(session.inversion_counter.total)
        if blends and spec.uses_concept:
            if shared is None:
                self._inverted[inv_key] = _Inverted(session.ensure_inversion(), inv_s, inv_evals)
            else:
                inv_s, inv_evals = shared.seconds, shared.unet_evaluations
                wall += inv_s  # charged as if computed here
        edits = []
        per_scene_evals = inv_evals / len(cases)
        for result in results:
            best = result.best()
            sampling = result.unet_evaluations.get("sampling", {})
            edits.append(
                EditOutput(
                    image=best.image,
                    seconds=wall / len(cases),
                    unet_evaluations=float(sampling.get("total", 0)) + per_scene_evals,
                    info={
                        "seed": best.seed,
                        "attention_loss": round(best.loss, 4),
                        "candidates": len(result.candidates),
                    },
                )
            )
        return SceneOutput(
            edits,
            learn_seconds=learned.seconds if learned is not None else 0.0,
            learn_unet_evaluations=learned.unet_evaluations if learned is not None else 0,
            attention_shares=shares,
        )
