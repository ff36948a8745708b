"""Stage 2 of `method.md`: edit the layout of one scene, for one or more target layouts.

`EditSession` does the per-scene work once (apply the concept, choose and install the
recorded attention layers, encode the prompts, encode and invert the source); `EditSession.
edit` then edits one layout for several seeds:

    # 1. check inputs          the layout fits the scene
    # 2. masks                 target regions on the attention grid, blend mask on the latent
    #                          (init `paste`: the start image, `editing/start.py`: the
    #                          objects pasted into their regions, holes filled, shadows
    #                          moved; with `refine`, corrected by the model's refiner)
    # 3. guided sampling       per seed: seeded z_T (or the pasted image noised to the step
    #                          `paste_strength` leaves) -> guided, blended DDIM loop; all
    #                          seeds as one batch when the backend says `batch_seeds`
    # 4. decode                VAE decode, crop the square padding, resize to the source
    #                          size; optionally the objects' colours matched to the source
    #                          and the untouched background composited back
    # 5. rank                  by the final attention loss, or by the layout found by colour

and returns an `EditResult` (images per seed, per-object final attention loss, timings, UNet
evaluations). The published method is `init="noise"`, no composite, attention ranking.
`edit()` is the one-call form. The `no-concepts`, `no-guidance` and `no-blend` variants are
`EditConfig(use_concept=False)`, `scale_factor=0` and `blend_steps=0` (and no composite);
`denoise=False` skips step 3: the paste start is decoded as it is (the bench's `no-model`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from PIL import Image

from layoutedit.attention_recording import AttentionStore, choose_attention_res
from layoutedit.config import EditConfig
from layoutedit.counting import UNetCounter
from layoutedit.editing.compositing import agreeing, composite, keep_alpha, match_colours
from layoutedit.editing.correct import correct_image, guide_masks
from layoutedit.editing.denoising import UNetRunner, scheduler_pair
from layoutedit.editing.detail import apply_detail, moved_detail
from layoutedit.editing.guidance import total_loss
from layoutedit.editing.inversion import Inversion, invert
from layoutedit.editing.low_memory import decode_seeds, prepare_editing
from layoutedit.editing.noise import seed_generator, seeded_normal
from layoutedit.editing.paste import grow, rim_width
from layoutedit.editing.ranking import LayoutScorer
from layoutedit.editing.redraw import (
    BlendChain,
    RegionalStart,
    first_steps,
)
from layoutedit.editing.refine import changed_zone, require_extra_models
from layoutedit.editing.sampling import (
    AttentionGuide,
    BackgroundBlend,
    LatentBlend,
    SamplingOutput,
    SamplingStats,
    StepHook,
    sample,
)
from layoutedit.editing.seed_batch import sample_batch
from layoutedit.editing.start import PasteStart, StartBuilder
from layoutedit.editing.texture_fill import fine_grain, floor_grain
from layoutedit.errors import UserError
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.out_of_memory import phase
from layoutedit.precision import apply_precision, edit_precision
from layoutedit.scenes.grids import blend_mask, region_masks, square_pad, unpad
from layoutedit.scenes.prompts import token_positions

if TYPE_CHECKING:
    from layoutedit.backend import Backend
    from layoutedit.learning.concept import Concept
    from layoutedit.loading.model_loading import LoadedModel
    from layoutedit.scenes.scene import Layout, Scene

Progress = Callable[[str, int, int], None]
"""progress(what, done, total): called as work advances (the CLI draws a bar)."""


@dataclass
class Candidate:
    """One seed's edit."""

    seed: int
    image: np.ndarray
    """(H, W, 3) uint8 at the source image's size."""
    object_losses: dict[str, float]
    """Object name -> final out-of-region attention loss l_k (0 = all attention inside)."""
    loss: float
    """mean_k + max_k of `object_losses`: the score that ranks candidates (lower is better)."""
    seconds: float
    guided_steps: int
    refinement_passes: int
    layout_score: float | None = None
    """Mean IoU of each object found by colour with its target region (`ranking`); None
    when the scene's objects cannot be told apart by colour or ranking is by attention."""
    nonfinite_gradients: int = 0
    """Guidance updates skipped for a NaN or infinite gradient (`SamplingStats`)."""


@dataclass
class EditResult:
    """The edit of one layout."""

    layout: Layout
    candidates: list[Candidate]
    prompt: str
    attention_res: int
    record_layers: tuple[str, ...]
    settings: dict[str, Any]
    backend: str
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: prepare (per scene, shared by its layouts), inversion (idem), start (the
    paste start, refiner included), sampling, decode."""
    unet_evaluations: dict[str, dict[str, int]] = field(default_factory=dict)
    """`inversion` (per scene, 0 when reused) and `sampling` (this layout), as
    `UNetCounter.as_dict()`."""

    def best(self) -> Candidate:
        """The candidate with the highest layout score when every candidate has one (ties:
        lower loss), else the one with the lowest final attention loss."""
        if all(c.layout_score is not None for c in self.candidates):
            return max(self.candidates, key=lambda c: (c.layout_score, -c.loss))
        return min(self.candidates, key=lambda c: c.loss)


def _plain_positions(
    tokenizer: Any, prompt: str, names: Sequence[str], max_length: int
) -> dict[str, int]:
    """Position of the last token of each object's words (its noun: `red circle` -> circle),
    searched in order so that repeated words map to the right object.

    Raises:
        UserError: a name is not in the prompt, or lies past the text encoder's `max_length`
            tokens (the encoder would never see it).
    """
    ids = list(tokenizer(prompt).input_ids)
    positions: dict[str, int] = {}
    start = 1
    for name in names:
        word = list(tokenizer(name, add_special_tokens=False).input_ids)
        for at in range(start, len(ids) - len(word) + 1):
            if ids[at : at + len(word)] == word:
                positions[name] = at + len(word) - 1
                start = at + len(word)
                break
        else:
            raise UserError(f"object name {name!r} is not in the prompt {prompt!r}")
        if positions[name] >= max_length - 1:  # the end token takes the last place
            raise UserError(
                f"the plain-word prompt is {len(ids)} tokens and the text encoder takes "
                f"{max_length}: {name!r} falls past the limit; use shorter object names"
            )
    return positions


def _resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8, Lanczos."""
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized)


class EditSession:
    """The per-scene part of an edit, done once for all its layouts.

    Args:
        model: the base model (weights on `backend.device` in `backend.dtype`). The concept,
            when given, is applied to it in place.
        scene: the scene to edit.
        config: the edit settings.
        backend: how to run (attention kernels, batching, autocast).
        concept: the learned concept; required unless `config.use_concept` is False.
        inversion: a cached inversion of this scene (same prompt and steps) to reuse.
        progress: progress callback.

    Raises:
        UserError: no concept while one is needed, a concept for other objects, or an
            attention resolution the model does not have.
    """

    def __init__(
        self,
        model: LoadedModel,
        scene: Scene,
        config: EditConfig,
        backend: Backend,
        *,
        concept: Concept | None = None,
        inversion: Inversion | None = None,
        progress: Progress | None = None,
    ) -> None:
        began = time.perf_counter()
        self.model, self.scene, self.config, self.backend = model, scene, config, backend
        self.progress = progress
        # 1. check inputs
        if config.use_concept and concept is None:
            raise UserError("no concept given: learn one first, or edit with use_concept off")
        if not config.denoise and config.init != "paste":
            raise UserError("edit.denoise off needs init paste: a noise start has no image")
        require_extra_models(config, model)
        if concept is not None and config.use_concept and tuple(concept.tokens) != scene.tokens:
            raise UserError(
                f"the concept was learned for {', '.join(concept.tokens)}, "
                f"but the scene has {', '.join(scene.tokens)}"
            )
        # Every forward pass of the edit runs as `precision.edit_precision` says; a model
        # learned on (a low-memory learn's fp32 K/V in a half UNet) is stored that way first.
        self.precision = edit_precision(backend)
        apply_precision(model, self.precision)
        for module in model.modules:
            # Gradients flow to the latent only (learning may have left weights trainable).
            module.requires_grad_(False)
            module.eval()
        prepare_editing(model, config)  # config.low_memory: VAE slicing
        # 2. prompt and token positions (from the tokenized prompt, never typed in)
        self.plain_prompt = scene.prompt
        for obj in scene.objects:
            self.plain_prompt = self.plain_prompt.replace(obj.token, obj.name)
        if config.use_concept and concept is not None:
            from layoutedit.learning.concept import apply_concept

            apply_concept(model, concept)
            self.prompt = concept.prompt
            found = token_positions(model.tokenizer, self.prompt, scene.tokens)
            self.positions = tuple(found[t] for t in scene.tokens)
        else:
            self.prompt = self.plain_prompt
            plain = _plain_positions(model.tokenizer, self.prompt, scene.names, model.max_length)
            self.positions = tuple(plain[n] for n in scene.names)
        ids = model.tokenizer(self.prompt, truncation=True, max_length=model.max_length).input_ids
        self.last = len(ids) - 1  # the end token
        # 3. attention layers: record only the cross-attention layers at the attention grid
        sides = cross_attention_sides(model.unet, model.latent_size)
        try:
            self.res = choose_attention_res(sides, model.latent_size, config.attention_res)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        wanted = sorted(name for name, side in sides.items() if side == self.res)
        backend.install_attention(model.unet, wanted)
        self.store = AttentionStore(self.res)
        self.record_layers = tuple(self.store.attach(model.unet))
        if sorted(self.record_layers) != wanted:
            raise RuntimeError(
                f"backend {backend.name!r} did not install RecordingAttnProcessor on {wanted}"
            )
        # 4. encode prompts: (1, L, D) each (SDXL: with its pooled embeddings and time ids)
        with torch.no_grad(), self.precision.autocast():
            texts = model.encode_text([self.prompt, ""]).float()
        self.cond, self.uncond = texts[:1], texts[1:]
        self.sampler, inverter = scheduler_pair(model.scheduler_config, config.steps)
        self.timings: dict[str, float] = {}
        # 5. encode the source, padded to a square for the model
        square, self.box = square_pad(scene.image, None)
        with torch.no_grad():
            self.source = model.encode_image(square).float()  # (1, C, h, w)
        self.timings["prepare"] = time.perf_counter() - began
        # 6. DDIM inversion: once per scene, on first use (`ensure_inversion`) or reused
        self.inversion_counter = UNetCounter()
        self._inverter = inverter
        self._inversion: Inversion | None = None
        self.starts = StartBuilder(
            model,
            scene,
            config,
            self.precision,
            self.sampler,
            self.plain_prompt,
            self.to_source_size,
            self.latent_side,
        )
        self._scorer: LayoutScorer | None = None
        if inversion is not None:
            self.use_inversion(inversion)

    def use_inversion(self, inversion: Inversion) -> None:
        """Reuse an inversion of this scene (e.g. from the cache).

        Raises:
            ValueError: it was made with another number of steps or another latent shape.
        """
        if inversion.steps != self.config.steps or not torch.equal(
            inversion.timesteps.cpu(), self.sampler.timesteps.cpu()
        ):
            raise ValueError("the inversion was made on other timesteps")
        if inversion.latents.shape[1:] != self.source.shape[1:]:
            raise ValueError("the inversion has another latent shape")
        self._inversion = inversion
        self.timings.setdefault("inversion", 0.0)

    def ensure_inversion(self) -> Inversion:
        """The source's DDIM inversion, computed on first call (N conditional UNet calls)."""
        if self._inversion is None:
            began = time.perf_counter()
            runner = self._runner(self.inversion_counter)
            self._inversion = invert(runner, self._inverter, self.source, self.cond)
            self.timings["inversion"] = time.perf_counter() - began
        return self._inversion

    def _runner(self, counter: UNetCounter) -> UNetRunner:
        return UNetRunner(self.model.unet, self.precision.weights, self.precision.autocast, counter)

    @property
    def latent_side(self) -> int:
        """Side of the latent grid."""
        return int(self.source.shape[-1])

    def _guide(self, layout: Layout) -> AttentionGuide:
        cfg = self.config
        regions = region_masks(layout.labels, len(self.scene.objects), self.res)  # (K, r, r)
        return AttentionGuide(
            store=self.store,
            positions=self.positions,
            regions=torch.from_numpy(regions).to(self.source.device),
            last=self.last,
            steps=cfg.steps,
            softmax_scale=cfg.softmax_scale,
            token_softmax=cfg.token_softmax,
            scale_factor=cfg.scale_factor,
            scale_range=cfg.scale_range,
            max_iter_to_alter=cfg.max_iter_to_alter,
            refinement=cfg.refinement,
            max_refinement_steps=cfg.max_refinement_steps,
        )

    def _blend(self, layout: Layout, redraw: np.ndarray | None = None) -> BackgroundBlend | None:
        if self.config.blend_steps == 0:
            return None
        mask = blend_mask(
            self.scene.labels, layout.labels, self.scene.background_index, self.latent_side
        )  # (h, w) bool
        if redraw is not None:  # a shadow band is background in both, but must change
            mask &= ~self._cells(redraw)
        return BackgroundBlend(
            mask=torch.from_numpy(mask)[None, None].to(self.source.device),
            inversion=self.ensure_inversion(),
            steps=self.config.blend_steps,
        )

    def start_noise(self, seed: int) -> torch.Tensor:
        """(1, C, h, w) seeded Gaussian z_T, float32: drawn on the CPU, so the same seed gives
        the same z_T on every backend (`editing.noise`)."""
        return seeded_normal(seed, self.source.shape, self.source.device)

    def to_source_size(self, images: np.ndarray) -> list[np.ndarray]:
        """(B, S, S, 3) model-size images -> the source's size and aspect (padding cropped)."""
        height, width = self.scene.size
        return [_resize_rgb(unpad(img, self.box), height, width) for img in images]

    def _cells(self, pixels: np.ndarray) -> np.ndarray:
        return self.starts.cells(pixels)

    def _paste_start(
        self, layout: Layout, counter: UNetCounter | None = None
    ) -> tuple[int, torch.Tensor, PasteStart]:
        return self.starts.build(layout, counter)

    def start_image(self, layout: Layout) -> PasteStart:
        """The start that `edit(layout)` denoises (init `paste`), at the source's size: the
        refiner's training pairs read it (`shapes.refiner_pairs`)."""
        return self._paste_start(layout)[2]

    def _regional(
        self, paste: PasteStart | None, pasted: torch.Tensor | None, noise: torch.Tensor
    ) -> RegionalStart | None:
        """The differential start of `redraw_strength`: cells outside the redraw follow the
        start noised to each step until `paste_strength` lets them run. None: one strength."""
        cfg = self.config
        if paste is None or paste.redraw is None or pasted is None:
            return None
        if cfg.redraw_strength <= cfg.paste_strength:
            return None
        cells = self._cells(paste.redraw)
        strengths = np.where(cells, cfg.redraw_strength, cfg.paste_strength)
        first = torch.from_numpy(first_steps(strengths, cfg.steps))[None, None]
        return RegionalStart(first=first, clean=pasted, noise=noise, sampler=self.sampler)

    def _guidance(
        self, paste: PasteStart | None, layout_labels: np.ndarray | None
    ) -> float | torch.Tensor:
        """The classifier-free guidance scale: one number, or with `redraw_unconditional` a
        (1, 1, h, w) map that is 0 on redrawn cells no target region touches."""
        cfg = self.config
        if not cfg.redraw_unconditional or paste is None or paste.redraw is None:
            return cfg.guidance_scale
        assert layout_labels is not None
        # Conditional only where a hidden part may show: a redrawn cell that merely touches
        # an object, guided, paints a halo of the object's colour around it.
        background = self._cells(paste.redraw)
        if paste.hidden is not None:
            background &= ~self._cells(paste.hidden)
        scale = np.where(background, 0.0, cfg.guidance_scale).astype(np.float32)
        return torch.from_numpy(scale)[None, None].to(self.source.device)

    def _blends(
        self,
        background: BackgroundBlend | None,
        paste: PasteStart | None,
        pasted: torch.Tensor | None,
        noise: torch.Tensor,
    ) -> LatentBlend | None:
        """The regional start (first) and the background blend (over it) of one batch."""
        regional = self._regional(paste, pasted, noise)
        if regional is None:
            return background
        if background is None:
            return regional
        return BlendChain((regional, background))

    def _layout_scores(self, images: list[np.ndarray], layout: Layout) -> list[float | None]:
        """Per image, the layout score when ranking by layout and the scene allows it."""
        if self.config.rank_by != "layout":
            return [None] * len(images)
        if self._scorer is None:  # fitted once per scene
            self._scorer = LayoutScorer(
                self.scene.image, self.scene.labels, len(self.scene.objects)
            )
        if not self._scorer.usable:
            return [None] * len(images)
        return [self._scorer.score(image, layout.labels) for image in images]

    def _finish(
        self,
        images: list[np.ndarray],
        layout: Layout,
        start: PasteStart | None,
        reference_last: bool = False,
    ) -> list[np.ndarray]:
        """The pixel post-passes: with a paste start, the objects' fine detail carried from
        the source and their colours matched to it; then the source's background composited
        back where nothing is, and (with `vacated="fill"`) the start's fill where an object
        left. With `reference_last` the last image is the start's own round trip: it takes
        the passes up to `model_agreement`'s and is not returned."""
        cfg = self.config
        footprints = None if start is None else start.footprints
        grains = None
        # Only over the start's fill where an object left (else the model's own pixels,
        # grain included, show there).
        fill_shows = cfg.vacated == "fill" and cfg.background_composite and cfg.denoise
        if cfg.model_grain and fill_shows and start is not None and start.grain is not None:
            # The model's grain as it decoded, before any pass smooths or replaces it.
            # Only as strong as the floor's own: an edge the model painted is no grain.
            grains = [
                floor_grain(fine_grain(i), start.grain_rms)
                for i in images[: len(images) - int(reference_last)]
            ]
        if cfg.object_detail > 0 and start is not None:
            # Latent cells -> source pixels (the source is padded square, then resized).
            sigma = cfg.detail_sigma * max(self.scene.size) / self.model.latent_size
            detail, where = moved_detail(
                self.scene.image, self.scene.object_masks(), start.placements, start.order, sigma
            )
            images = [apply_detail(i, detail, where, sigma, cfg.object_detail) for i in images]
        if cfg.colour_match and footprints is not None:
            masks = self.scene.object_masks()
            gains = None if start is None else start.gains
            images = [match_colours(i, self.scene.image, footprints, masks, gains) for i in images]
        if reference_last:
            reference = images.pop()
            assert cfg.model_agreement is not None  # what `edit` asks it for
            # Before the zone's blend: a departure from what the start alone gives is the
            # model's, and one far from it a guess that the start's paint contradicts.
            images = [agreeing(i, reference, cfg.model_agreement) for i in images]
        if cfg.model_pixels != "everywhere" and start is not None and start.redraw is not None:
            # Paste's pixels where paste is right; the background composite below still
            # puts the source's back where nothing changed (where the start lifted or cast a
            # shadow, `PasteStart.shadows`, it keeps the start's).
            own = self._model_zone(start)
            alpha = keep_alpha(~own, cfg.composite_feather * max(self.scene.size))
            # Inside the zone the redraw and the start are two guesses at what was never
            # seen: their weighted mean errs less than either when their errors differ.
            alpha[own] = 1.0 - cfg.model_weight
            images = [composite(i, start.image, alpha) for i in images]
        if cfg.background_composite:
            # Objects sit on their pasted footprints, else anywhere in their regions. Where
            # an object left, its anti-aliased rim is not background to keep either (it
            # would leave an outline); an object that stayed keeps its rim.
            objects = self.scene.labels != self.scene.background_index
            if footprints is not None:
                occupied = footprints.any(axis=0)
                vacated = objects & ~occupied
            else:
                occupied = layout.labels != self.scene.background_index
                vacated = objects
            left = grow(vacated, rim_width(objects.shape))
            keep = ~objects & ~left & ~occupied
            redraw = None if start is None else start.redraw
            if redraw is not None:  # the model's, where it redrew
                keep &= ~redraw
                left &= ~redraw
            if start is not None and start.shadows is not None:
                keep &= ~start.shadows  # a shadow lifted or cast is not the source's
            alpha = keep_alpha(keep, cfg.composite_feather * max(self.scene.size))  # (H, W)
            images = [composite(i, self.scene.image, alpha) for i in images]
            if cfg.vacated == "fill" and start is not None:
                # The model may paint a trace of the object where it was (the concept
                # learned it there); the fill continues the surrounding background.
                filled = (left & ~occupied).astype(np.float32)
                images = [composite(i, start.image, filled) for i in images]
        if grains is not None and start is not None and start.grain is not None:
            # Where an object left a grainy floor the fill is its smooth tone: the model's
            # grain over it (its own tones there are a worse guess than the fill's). Only
            # where an object stood (its rim is half the source's background) and not on
            # an uncovered part, which is no floor.
            objects = self.scene.labels != self.scene.background_index
            floor = start.grain & objects & ~start.footprints.any(axis=0)
            if start.hidden is not None:
                floor &= ~start.hidden
            images = [
                np.clip(np.rint(i + floor[..., None] * g), 0, 255).astype(np.uint8)
                for i, g in zip(images, grains, strict=True)
            ]
        if cfg.correct and cfg.denoise and start is not None:
            images = self._correct(images, start)
        return images

    def _correct(self, images: list[np.ndarray], start: PasteStart) -> list[np.ndarray]:
        """Each finished image ((H, W, 3) uint8) with the model's corrector's change added
        where it differs from the source or was redrawn (`editing.correct`)."""
        corrector = self.model.corrector
        assert corrector is not None  # `refine.require_extra_models`, when the session began
        with phase("correct"):
            return [
                correct_image(
                    corrector,
                    i,
                    guide_masks(changed_zone(self.scene.image, i, start.redraw), start),
                    painted=start.painted if self.config.correct_shade_or_blend else None,
                )
                for i in images
            ]

    def _model_zone(self, start: PasteStart) -> np.ndarray:
        """(H, W) bool where `model_pixels` keeps the model's pixels: the redrawn area, or
        where a hidden part may show (`redraw.hidden_zones`). That zone grown by a latent
        cell within the target regions took the model's pixels over the fill where an object
        left and over moved shadows: on world v2's dev cases (seed 2000, 8 scenes x 2) the
        zone alone gave image +0.11 [+0.03, +0.21] dB, shadow +0.22 [+0.06, +0.41] dB and
        the uncovered parts +0.04 [0, +0.13] dB against the grown one (seed 2001: +0.23
        [-0.03, +0.59], +0.45 [-0.05, +1.26] and -0.05 [-0.29, +0.24] dB)."""
        shape = start.image.shape[:2]
        if self.config.model_pixels == "redraw":
            return np.zeros(shape, dtype=bool) if start.redraw is None else start.redraw
        if start.hidden is None:
            return np.zeros(shape, dtype=bool)
        return start.hidden

    def _start(self, seed: int, start_step: int, pasted: torch.Tensor | None) -> torch.Tensor:
        """(1, C, h, w) the seed's z_T, or the paste start noised to the first step's level."""
        start = self.start_noise(seed)
        if pasted is not None:
            t_start = self.sampler.timesteps[start_step : start_step + 1]
            start = self.sampler.add_noise(pasted, start, cast(torch.IntTensor, t_start))
        return start

    def _sample_batch(
        self,
        runner: UNetRunner,
        counter: UNetCounter,
        seeds: Sequence[int],
        guide: AttentionGuide,
        blend: BackgroundBlend | None,
        start_step: int,
        pasted: torch.Tensor | None,
        on_step: StepHook | None,
        paste: PasteStart | None = None,
        layout_labels: np.ndarray | None = None,
    ) -> list[SamplingOutput]:
        """Every seed sampled as one batch (`seed_batch.sample_batch`): each seed's start
        and `eta` noise are drawn from its own generators as the one-seed loop draws them."""
        starts = torch.cat(
            [self._start(seed, start_step, pasted) for seed in seeds]
        )  # (S, C, h, w)
        generators = [seed_generator(s) for s in seeds]
        noise = torch.cat([self.start_noise(seed) for seed in seeds])  # as `_start` drew it
        return sample_batch(
            runner,
            self.sampler,
            starts,
            self.cond,
            self.uncond,
            self._guidance(paste, layout_labels),
            generators,
            batch_cfg=self.backend.batch_cfg,
            guide=guide,
            blend=self._blends(blend, paste, pasted, noise),
            eta=self.config.eta,
            counter=counter,
            on_step=on_step,
            start_step=start_step,
        )

    def edit(
        self,
        layout: Layout,
        seeds: Sequence[int] | None = None,
        *,
        on_step: StepHook | None = None,
    ) -> EditResult:
        """Edit the scene to `layout` for each seed (default: `config.seeds`).

        `on_step(i, t, z_t)` sees the latent entering each DDIM step (after guidance and
        blending), for tests and visualisations.
        """
        cfg = self.config
        seeds = tuple(cfg.seeds if seeds is None else seeds)
        # 1. check inputs
        if layout.labels.shape != self.scene.labels.shape:
            raise UserError(
                f"layout is {layout.labels.shape[1]}x{layout.labels.shape[0]}, the scene "
                f"{self.scene.size[1]}x{self.scene.size[0]}",
                path=layout.path,
            )
        if not seeds:
            raise UserError("give at least one seed")
        # 2. masks
        guide = self._guide(layout)
        counter = UNetCounter()  # the refiner's evaluations (`refine`) count too
        start_began = time.perf_counter()
        start_step, pasted, paste_start = (
            self._paste_start(layout, counter) if cfg.init == "paste" else (0, None, None)
        )
        start_s = time.perf_counter() - start_began
        redraw = None if paste_start is None else paste_start.redraw
        blend = self._blend(layout, redraw) if cfg.denoise else None
        # 3. guided sampling, one seed at a time (the same seed gives the same noise), or
        # every seed in one batch when the backend asks for it
        runner = self._runner(counter)
        latents: list[torch.Tensor] = []
        outputs: list[SamplingOutput] = []
        seconds: list[float] = []
        sampling_began = time.perf_counter()
        if not cfg.denoise:
            # No denoising step: every seed's latent is the paste start itself, with no
            # attention measured (NaN losses).
            assert pasted is not None  # checked in __init__: init is paste
            nan = torch.full((len(self.scene.objects),), float("nan"))
            outputs = [SamplingOutput(pasted, nan, SamplingStats()) for _ in seeds]
            latents = [pasted for _ in seeds]
            seconds = [0.0] * len(seeds)
        elif getattr(self.backend, "batch_seeds", False) and len(seeds) > 1:
            outputs = self._sample_batch(
                runner,
                counter,
                seeds,
                guide,
                blend,
                start_step,
                pasted,
                on_step,
                paste_start,
                layout.labels,
            )
            latents = [out.latents for out in outputs]
            # One batch: its seconds are shared evenly by its seeds.
            seconds = [(time.perf_counter() - sampling_began) / len(seeds)] * len(seeds)
            if self.progress is not None:
                for n in range(len(seeds)):
                    self.progress("seeds", n + 1, len(seeds))
        else:
            for n, seed in enumerate(seeds):
                began = time.perf_counter()
                generator = seed_generator(seed)  # eta noise, on the CPU as z_T
                out = sample(
                    runner,
                    self.sampler,
                    self._start(seed, start_step, pasted),
                    self.cond,
                    self.uncond,
                    self._guidance(paste_start, layout.labels),
                    batch_cfg=self.backend.batch_cfg,
                    guide=guide,
                    blend=self._blends(blend, paste_start, pasted, self.start_noise(seed)),
                    eta=cfg.eta,
                    generator=generator,
                    counter=counter,
                    on_step=on_step,
                    start_step=start_step,
                )
                latents.append(out.latents)
                outputs.append(out)
                seconds.append(time.perf_counter() - began)
                if self.progress is not None:
                    self.progress("seeds", n + 1, len(seeds))
        sampling_s = time.perf_counter() - sampling_began
        # 4. decode, one seed at a time: a batched decode can round differently with the
        # batch size, and the same seed must give the same image whatever else is decoded
        began = time.perf_counter()
        with phase("decode"):  # with low_memory, a large image tile by tile
            decoded = decode_seeds(self.model, latents, cfg.low_memory)  # (S, S, 3) each
            agree = cfg.model_agreement is not None and cfg.model_pixels != "everywhere"
            reference = pasted if agree and cfg.denoise else None
            if reference is not None:  # the start's round trip: what no step decodes
                decoded.extend(decode_seeds(self.model, [reference], cfg.low_memory))
        images = self._finish(
            self.to_source_size(np.stack(decoded)), layout, paste_start, reference is not None
        )
        decode_s = time.perf_counter() - began

        # 5. rank
        scores = self._layout_scores(images, layout)
        candidates = []
        for seed, out, image, secs, layout_score in zip(
            seeds, outputs, images, seconds, scores, strict=True
        ):
            assert out.final_losses is not None
            losses = out.final_losses.cpu()
            stats: SamplingStats = out.stats
            candidates.append(
                Candidate(
                    seed=seed,
                    image=image,
                    object_losses={
                        n: float(v) for n, v in zip(self.scene.names, losses, strict=True)
                    },
                    loss=float(total_loss(losses)),
                    seconds=secs,
                    guided_steps=stats.guided_steps,
                    refinement_passes=stats.refinement_passes,
                    layout_score=layout_score,
                    nonfinite_gradients=stats.nonfinite_gradients,
                )
            )
        return EditResult(
            layout=layout,
            candidates=candidates,
            prompt=self.prompt,
            attention_res=self.res,
            record_layers=self.record_layers,
            settings=cfg.model_dump(mode="json"),
            backend=self.backend.name,
            timings={
                **self.timings,
                "start": start_s,
                "sampling": sampling_s,
                "decode": decode_s,
            },
            unet_evaluations={
                "inversion": self.inversion_counter.as_dict(),
                "sampling": counter.as_dict(),
            },
        )


def edit(
    model: LoadedModel,
    scene: Scene,
    layouts: Sequence[Layout],
    config: EditConfig,
    backend: Backend,
    *,
    concept: Concept | None = None,
    progress: Progress | None = None,
) -> list[EditResult]:
    """Edit `scene` to each layout: one session (concept, inversion) for all of them."""
    session = EditSession(model, scene, config, backend, concept=concept, progress=progress)
    return [session.edit(layout) for layout in layouts]
