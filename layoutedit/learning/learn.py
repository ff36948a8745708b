"""Stage 1 of the method as one library call: learn a scene's concept (method.md).

    concept = learn_concept(model, scene, settings.learn, backend=get_backend("auto"))

Order: prior-preservation latents (from the base model, before anything is learned) ->
placeholder tokens -> masked textual inversion (per object, or joint) -> K/V fine-tune with
the two extra tokens -> a `Concept` with the learned rows, the K/V weights and the costs.
The model is changed in place (it ends with the concept applied). With a checkpoint folder,
each stage saves its state every `checkpoint_every` steps and a rerun resumes; the caller
removes the checkpoints (`CheckpointDir.clear`) once the concept is stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layoutedit.backend import Backend
from layoutedit.config import LearnConfig
from layoutedit.errors import UserError
from layoutedit.learning.checkpoints import CheckpointDir, RunTotals
from layoutedit.learning.concept import Concept
from layoutedit.learning.concept_check import source_attention_shares
from layoutedit.learning.finetune import kv_parameters, run_finetune
from layoutedit.learning.low_memory import prepare_learning
from layoutedit.learning.prior import PriorSet, generated_prior, load_prior_folder
from layoutedit.learning.textual_inversion import LearnData, run_textual_inversion
from layoutedit.learning.tokens import add_placeholders, get_rows
from layoutedit.learning.training import NoProgress, ProgressHook
from layoutedit.loading.model_loading import LoadedModel
from layoutedit.precision import learn_precision, prior_precision
from layoutedit.scenes.grids import region_masks, square_pad
from layoutedit.scenes.prompts import token_positions
from layoutedit.scenes.scene import Scene
from layoutedit.version import __version__

EXTRA_TOKENS = ("<new0>", "<new1>")


@dataclass
class LearnResult:
    """A learned concept and what it cost."""

    concept: Concept
    totals: RunTotals


def prepare_data(model: LoadedModel, scene: Scene, token_ids: dict[str, int]) -> LearnData:
    """Encode the square-padded scene image and put the object masks on the latent grid."""
    k = len(scene.objects)
    image, _ = square_pad(scene.image, None)  # edge-replicated, as the model sees it
    z0 = model.encode_image(image)  # (1, C, h, w)
    masks = region_masks(scene.labels, k, model.latent_size)  # (K, h, w), pads background
    return LearnData(
        z0=z0.float(),
        masks=torch.from_numpy(masks)[:, None].to(model.device),  # (K, 1, h, w)
        names=tuple(scene.names),
        tokens=tuple(scene.tokens),
        token_ids=token_ids,
        template=_template(scene),
    )


def _template(scene: Scene) -> str:
    # The scene prompt is the template with the joined placeholders; recover the template so
    # per-object prompts use exactly the user's wording.
    from layoutedit.scenes.prompts import OBJECTS_FIELD, join_objects

    joined = join_objects(scene.tokens)
    if joined not in scene.prompt:
        raise ValueError("scene prompt does not contain its placeholders")
    return scene.prompt.replace(joined, OBJECTS_FIELD, 1)


def concept_prompt(scene: Scene) -> str:
    """The scene prompt with every placeholder, followed by the extra tokens."""
    return f"{scene.prompt} {' '.join(EXTRA_TOKENS)}"


def run_id(model: LoadedModel, scene: Scene, cfg: LearnConfig) -> str:
    """SHA-256 of everything a learning run depends on (checkpoints of other runs are ignored)."""
    digest = hashlib.sha256()
    digest.update(model.fingerprint.encode())
    digest.update(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(scene.image).tobytes())
    digest.update(np.ascontiguousarray(scene.labels).astype("<i8").tobytes())
    digest.update(json.dumps([list(scene.names), scene.prompt]).encode())
    return digest.hexdigest()


def _check_prompts(model: LoadedModel, data: LearnData, prompt: str, cfg: LearnConfig) -> None:
    """Every prompt learning uses must keep its placeholders within the token limit, at the
    same positions in every tokenizer (SDXL's encoders are read side by side per position,
    and the guidance finds a placeholder's map by its first-tokenizer position)."""
    checks = [(prompt, [*data.tokens, *EXTRA_TOKENS])]
    for k, token in enumerate(data.tokens):
        checks += [(text, [token]) for text in data.object_prompts(k, cfg.ti_single_template)]
    for text, tokens in checks:
        found = [token_positions(tokenizer, text, tokens) for tokenizer in model.tokenizers]
        if any(other != found[0] for other in found[1:]):
            raise UserError(
                f"the model's two tokenizers split {text!r} differently; its placeholders "
                "would sit at different positions in the two text encoders"
            )


def _prior(
    model: LoadedModel,
    scene: Scene,
    cfg: LearnConfig,
    backend: Backend | None,
    totals: RunTotals,
    cache: Any | None,
    prior_folder: Path | None,
) -> PriorSet | None:
    if not cfg.prior_preservation:
        return None
    began = time.perf_counter()
    if cfg.prior_dir is not None:
        prior = load_prior_folder(model, cfg.prior_dir)
    else:
        prior = generated_prior(
            model,
            scene.names,
            cfg,
            cache=cache,
            folder=prior_folder,
            batch_cfg=backend.batch_cfg if backend is not None else False,
            autocast=prior_precision(cfg, backend, model.device).autocast,
            counter=totals.counter,
        )
    totals.seconds["prior"] = totals.seconds.get("prior", 0.0) + time.perf_counter() - began
    return prior


def learn_concept(
    model: LoadedModel,
    scene: Scene,
    cfg: LearnConfig,
    *,
    backend: Backend | None = None,
    checkpoint_dir: Path | None = None,
    progress: ProgressHook | None = None,
    cache: Any | None = None,
    prior_folder: Path | None = None,
) -> LearnResult:
    """Learn the concept of one scene (method.md Stage 1); the model is changed in place.

    Args:
        model: base model on the backend's device, its weights in the dtype
            `layoutedit.precision.learn_precision(cfg, device)` names (fp32 unless a
            low-memory learn in half precision).
        scene: the scene (image, labels, objects, prompt).
        cfg: learning settings.
        backend: sets the attention kernels, and the half dtype prior generation
            autocasts to (`precision.prior_precision`).
        checkpoint_dir: resumable checkpoints of this run go here (None: no checkpoints).
        progress: receives stage starts and per-step losses.
        cache: a `ConceptCache` for generated prior latents (else `prior_folder` is used).
        prior_folder: where generated prior latents are kept without a cache.

    Returns:
        The concept (meta has names, positions, fingerprint, config, UNet evaluations and
        seconds) and the run totals.

    Raises:
        UserError: a placeholder would be cut by the token limit, or a name collides with
            an extra token.
    """
    began = time.perf_counter()
    progress = progress or NoProgress()
    totals = RunTotals()
    if backend is not None:
        backend.install_attention(model.unet, [])
    clash = set(scene.tokens) & set(EXTRA_TOKENS)
    if clash:
        raise UserError(f"object token {sorted(clash)[0]} is reserved; rename that object")

    prior = _prior(model, scene, cfg, backend, totals, cache, prior_folder)

    inits = dict(zip(scene.tokens, scene.names, strict=True))
    inits.update(zip(EXTRA_TOKENS, cfg.extra_token_init, strict=True))
    ids = add_placeholders(model, inits)
    data = prepare_data(model, scene, ids)
    prompt = concept_prompt(scene)
    _check_prompts(model, data, prompt, cfg)
    prepare_learning(model, cfg)  # cfg.low_memory: checkpointing, frozen weights in fp16
    ckpts = CheckpointDir(checkpoint_dir, run_id(model, scene, cfg))

    k = len(scene.objects)
    stages = [(list(range(k)), "ti")] if cfg.ti_joint else [([i], f"ti-{i}") for i in range(k)]
    for object_ids, stage in stages:
        run_textual_inversion(model, data, cfg, object_ids, stage, ckpts, totals, progress)
    extra_ids = [ids[t] for t in EXTRA_TOKENS]
    run_finetune(model, data, cfg, prompt, extra_ids, prior, ckpts, totals, progress)

    all_tokens = [*scene.tokens, *EXTRA_TOKENS]
    positions = token_positions(model.tokenizer, prompt, all_tokens)
    # How well each placeholder attends to its own object before anything moves (aim >= 0.6):
    # a low share means guidance will steer the wrong thing (concept bleeding).
    # It runs as learning ran (a low-memory learn leaves half weights beside fp32 K/V).
    shares = source_attention_shares(
        model,
        scene,
        prompt,
        [positions[t] for t in scene.tokens],
        precision=learn_precision(cfg, model.device),
    )
    seconds = dict(totals.seconds)
    seconds["total_this_run"] = time.perf_counter() - began
    meta: dict[str, Any] = {
        "names": list(scene.names),
        "positions": positions,
        "attention_shares": {
            name: round(share, 4) for name, share in zip(scene.names, shares, strict=True)
        },
        "model_fingerprint": model.fingerprint,
        "model": model.spec,
        "family": model.family,
        "learn_config": cfg.model_dump(mode="json"),
        "image_size": model.image_size,
        "latent_size": model.latent_size,
        "unet_evals": totals.counter.as_dict(),
        "seconds": seconds,
        "prior": None if prior is None else {"count": len(prior.captions)},
        "layoutedit_version": __version__,
    }
    concept = Concept(
        tokens=tuple(scene.tokens),
        extra_tokens=EXTRA_TOKENS,
        embeddings=get_rows(model, all_tokens),
        # SDXL: the same tokens' rows of the second text encoder (empty for one encoder)
        embeddings_2=get_rows(model, all_tokens, 1) if len(model.text_encoders) > 1 else {},
        kv_weights={
            name: p.detach().float().cpu().clone() for name, p in kv_parameters(model).items()
        },
        prompt=prompt,
        meta=meta,
    )
    return LearnResult(concept, totals)
