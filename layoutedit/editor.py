"""The Python API: one `Editor` keeps a model warm and edits scenes again and again.

    from layoutedit import Editor
    editor = Editor(model="builtin:shapes-tiny", backend="auto", cache_dir=None)
    scene = editor.scene("./scene")               # or image=, mask=, labels=
    concept = editor.learn(scene)                 # cached; progress callback optional
    result = editor.edit(scene, layout)           # a Layout, a path, or operations
    result.best().image, result.save("out/")

What it keeps between calls (the CLI, the demo, edit scripts and `serve` all go through it):

- the model, loaded on first need, with a pristine copy of what a concept changes (the
  cross-attention key/value weights and the text encoder's embedding rows), restored before
  another scene's concept is applied, so editing A, then B, then A gives A's first image;
- each scene's concept (memory, then the content-hashed cache, else learned and stored);
- one `EditSession` for the scene edited last (concept applied, attention recorders
  installed, prompts encoded) and each scene's DDIM inversion (memory, then the cache), so a
  scene is inverted once and every later edit of it only samples.

Calls hold a lock, so threads take turns; `cancel()` asks the running call to stop at its
next step (`Cancelled`). Every mistake a user can make raises `UserError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from layoutedit.config import Settings, resolve_settings
from layoutedit.editing.edit_outcome import EditOutcome
from layoutedit.editing.refine import require_extra_models
from layoutedit.editing.session import EditResult
from layoutedit.errors import UserError
from layoutedit.out_of_memory import phase
from layoutedit.scenes.layout_edits import Operation, operations_layout, parse_step
from layoutedit.scenes.scene import Layout, Scene, layout_from_labels, load_layout, load_scene

if TYPE_CHECKING:
    from layoutedit.backend import Backend
    from layoutedit.editing.inversion import Inversion
    from layoutedit.editing.session import EditSession
    from layoutedit.learning.concept import Concept
    from layoutedit.learning.concept_store import ObtainedConcept
    from layoutedit.learning.training import ProgressHook
    from layoutedit.loading.model_loading import LoadedModel
    from layoutedit.precision import Precision

__all__ = ["Cancelled", "ConceptMissing", "EditOutcome", "EditProgress", "Editor", "LayoutSpec"]

_log = logging.getLogger(__name__)

EditProgress = Callable[[str, int, int], None]
"""progress(what, done, total): `("seeds", n, N)` after each seed, `("steps", i, S)` per DDIM
step over all seeds."""

LayoutSpec = Layout | Path | str | Sequence[Operation | str] | np.ndarray
"""What `Editor.layout` takes: a Layout, a layout image path, operations, or a label grid."""

_KEEP = 8  # concepts and inversions kept in memory (least recently used are dropped)


class Cancelled(Exception):
    """A learn or edit stopped by `Editor.cancel()`; nothing partial is kept."""


class ConceptMissing(UserError):
    """No learned concept for a scene, and learning was not allowed."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no learned concept for this scene and these settings (key {key[:12]})")
        self.key = key


class _CancellableLearning:
    """A learning `ProgressHook` that raises `Cancelled` once the editor is asked to stop."""

    def __init__(self, inner: ProgressHook | None, flag: threading.Event) -> None:
        self.inner, self.flag = inner, flag

    def stage(self, name: str, total: int, done: int) -> None:
        """Forward a stage start."""
        if self.inner is not None:
            self.inner.stage(name, total, done)

    def step(self, loss: float) -> None:
        """Forward a step; stop here if cancelled."""
        if self.inner is not None:
            self.inner.step(loss)
        if self.flag.is_set():
            raise Cancelled("learning cancelled")


class _Pristine:
    """What applying or learning a concept changes, as loaded: K/V weights and embedding rows
    (fp32, CPU)."""

    def __init__(self, model: LoadedModel) -> None:
        from layoutedit.learning.finetune import kv_parameters
        from layoutedit.learning.tokens import embedding_tables

        self.kv = {n: p.detach().float().cpu().clone() for n, p in kv_parameters(model).items()}
        # (V_e, D_e) per text encoder (two for SDXL)
        self.rows = [t.weight.detach().float().cpu().clone() for t in embedding_tables(model)]

    def restore(self, model: LoadedModel) -> None:
        """Put the base weights back (rows added for placeholders since are left alone)."""
        from layoutedit.learning.finetune import kv_parameters
        from layoutedit.learning.tokens import embedding_tables

        with torch.no_grad():
            for name, param in kv_parameters(model).items():
                param.copy_(self.kv[name].to(device=param.device, dtype=param.dtype))
            for table, rows in zip(embedding_tables(model), self.rows, strict=True):
                weight = table.weight
                weight[: len(rows)] = rows.to(device=weight.device, dtype=weight.dtype)


def _tensor_digest(concept: Concept) -> str:
    sha = hashlib.sha256()
    for name, value in sorted(concept.tensors().items()):
        sha.update(name.encode())
        sha.update(value.detach().float().cpu().numpy().tobytes())
    return sha.hexdigest()


class Editor:
    """Learns scenes and edits them, keeping the model, concepts and inversions warm.

    Args:
        model: `builtin:shapes-tiny`, a diffusers folder, an offline Hugging Face repo id or
            a `.safetensors` checkpoint (as `--model`).
        backend: a backend name or `auto`.
        cache_dir: the concept cache; default `$LAYOUTEDIT_CACHE_DIR` or the user cache.
        preset: settings preset as `--preset` (ignored when `settings` is given).
        config: TOML settings file as `--config` (ignored when `settings` is given).
        settings: resolved settings to use as they are.
        allow_pickle: accept pickle checkpoints (as for `loading.model_loading.load_model`).
        model_config: config folder of a single-file checkpoint, as for `load_model`.
        report: receives one-line notices (cache repairs, a lock wait); default: logging.
        expected_edits: how many edits the caller means to make with this editor: `auto`
            weighs a compiling backend's one-off warm-up against that many edits when
            `layoutedit bench --backends` measured the backends here (`backend_speed`).
    """

    def __init__(
        self,
        model: str = "builtin:shapes-tiny",
        backend: str = "auto",
        cache_dir: Path | str | None = None,
        preset: str | None = None,
        config: Path | None = None,
        settings: Settings | None = None,
        *,
        allow_pickle: bool = False,
        model_config: Path | None = None,
        report: Callable[[str], None] | None = None,
        expected_edits: int = 1,
    ) -> None:
        from layoutedit.loading.fingerprint import default_cache_dir

        self.model_spec = model
        self.backend_name = backend
        self.expected_edits = expected_edits
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.settings: Settings = (
            settings if settings is not None else resolve_settings(preset, config, model=model)
        )
        self.allow_pickle, self.model_config = allow_pickle, model_config
        self.report: Callable[[str], None] = report or _log.warning
        self._backend: Backend | None = None
        self._model: LoadedModel | None = None
        self._pristine: _Pristine | None = None
        self._lock = threading.RLock()
        self._cancel = threading.Event()
        self._concepts: OrderedDict[str, Concept] = OrderedDict()
        self._inversions: OrderedDict[str, Inversion] = OrderedDict()
        self._keys: weakref.WeakKeyDictionary[Scene, tuple[str, str]] = weakref.WeakKeyDictionary()
        self._session: EditSession | None = None
        self._session_ident: tuple[str, ...] | None = None

    # --- the warm model ---------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend (chosen on first use; `auto` by measured speed where there is one)."""
        if self._backend is None:
            from layoutedit.backend import get_backend

            name = self.backend_name
            if name == "auto":
                from layoutedit.backend_speed import measured_auto

                choice = measured_auto(self.cache_dir, self.model_spec, self.expected_edits)
                if choice.reason is not None:
                    self.report(choice.reason)
                name = choice.name
            self._backend = get_backend(name)
        return self._backend

    @property
    def model(self) -> LoadedModel:
        """The model, loaded on first use on the backend's device in the edit's weight dtype
        (`precision.edit_precision`); a learn that needs wider weights loads it again."""
        if self._model is None:
            from layoutedit.precision import edit_precision

            return self._load(edit_precision(self.backend).weights)
        return self._model

    def _load(self, dtype: torch.dtype) -> LoadedModel:
        """Load the model with its weights read straight into `dtype` on the device."""
        from layoutedit.loading.model_loading import load_model

        self._model = load_model(
            self.model_spec,
            allow_pickle=self.allow_pickle,
            device=self.backend.device,
            dtype=dtype,
            cache_dir=self.cache_dir,
            model_config=self.model_config,
        )
        self._pristine = _Pristine(self._model)
        self._session, self._session_ident = None, None
        return self._model

    def _release_model(self) -> None:
        """Drop every reference this editor holds to the model (the session holds one too), so
        that a reload never has two models in memory (19 GiB for SDXL, fp32 beside fp16)."""
        import gc

        self._session, self._session_ident = None, None
        self._model, self._pristine = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _fresh_model(self, precision: Precision) -> LoadedModel:
        """The model with its base weights back, stored as the phase's `precision` says. A
        model stored in half precision is loaded again (the old one released first) for a
        phase that wants other weights, rather than cast back."""
        from layoutedit.precision import apply_precision, stored_precision

        if self._model is not None:
            stored = stored_precision(self._model).weights
            if stored != precision.weights and stored != torch.float32:
                self._release_model()
        model = self._model if self._model is not None else self._load(precision.weights)
        assert self._pristine is not None
        self._pristine.restore(model)
        apply_precision(model, precision)
        self._session, self._session_ident = None, None
        return model

    def cancel(self) -> None:
        """Ask the running `learn` or `edit` to stop at its next step (it raises `Cancelled`)."""
        self._cancel.set()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled")

    # --- scenes and concepts ----------------------------------------------------------------

    def scene(
        self,
        folder: Path | str | None = None,
        *,
        image: Path | str | None = None,
        mask: Path | str | None = None,
        labels: Path | str | None = None,
    ) -> Scene:
        """Read a scene folder, or its three files (which override the folder's).

        Each object is checked against the model's latent grid, so this loads the model.
        """

        def as_path(value: Path | str | None) -> Path | None:
            return Path(value) if value is not None else None

        return load_scene(
            as_path(folder),
            image=as_path(image),
            mask=as_path(mask),
            labels=as_path(labels),
            options=self.settings.scene,
            latent_size=self.model.latent_size,
        )

    def check_edit_models(self) -> None:
        """Raise a UserError when the edit settings ask for a refiner, a completer or a
        corrector that the model lacks (`editing.refine.require_extra_models`): callers that
        learn before they edit ask first."""
        require_extra_models(self.settings.edit, self.model)

    def learn_key(self, scene: Scene) -> str:
        """The cache key of the scene's concept under this editor's model and settings."""
        # Memoised per scene object (hashing the pixels each call would cost), and per
        # learn settings, which a caller may change through `settings`.
        learn = self.settings.learn.model_dump_json()
        memo = self._keys.get(scene)
        if memo is None or memo[0] != learn:
            from layoutedit.learning.concept_store import scene_learn_key

            memo = (learn, scene_learn_key(self.model, scene, self.settings.learn))
            self._keys[scene] = memo
        return memo[1]

    def _remember(self, key: str, concept: Concept) -> None:
        self._concepts[key] = concept
        self._concepts.move_to_end(key)
        while len(self._concepts) > _KEEP:
            self._concepts.popitem(last=False)

    def cached_concept(self, scene: Scene) -> Concept | None:
        """The scene's concept if it was learned before (memory or cache), else None."""
        from layoutedit.learning.concept_store import cached_concept
        from layoutedit_cache import ConceptCache

        key = self.learn_key(scene)
        if key in self._concepts:
            return self._concepts[key]
        with ConceptCache(self.cache_dir, report=self.report) as cache:
            concept = cached_concept(cache, key)
        if concept is not None:
            self._remember(key, concept)
        return concept

    def obtain(
        self,
        scene: Scene,
        *,
        progress: ProgressHook | None = None,
        force: bool = False,
        on_wait: Callable[[], None] | None = None,
    ) -> ObtainedConcept:
        """`learn` with the cache key and whether the concept was cached."""
        from layoutedit.learning.concept_store import ObtainedConcept, obtain_concept
        from layoutedit.precision import learn_precision
        from layoutedit_cache import ConceptCache

        with self._lock:
            self._cancel.clear()
            key = self.learn_key(scene)
            if not force and key in self._concepts:
                return ObtainedConcept(self._concepts[key], key, cached=True)
            model = self._fresh_model(learn_precision(self.settings.learn, self.backend.device))
            with ConceptCache(self.cache_dir, report=self.report) as cache, phase("learn"):
                obtained = obtain_concept(
                    model,
                    scene,
                    self.settings.learn,
                    cache,
                    backend=self.backend,
                    progress=_CancellableLearning(progress, self._cancel),
                    force=force,
                    on_wait=on_wait,
                )
            self._remember(obtained.key, obtained.concept)
            return obtained

    def learn(
        self, scene: Scene, *, progress: ProgressHook | None = None, force: bool = False
    ) -> Concept:
        """The scene's concept: from memory or the cache at once, else learned and cached.

        Args:
            scene: from `Editor.scene`.
            progress: receives stage starts and per-step losses.
            force: learn again even when cached.
        """
        return self.obtain(scene, progress=progress, force=force).concept

    # --- layouts and edits ------------------------------------------------------------------

    def layout(self, scene: Scene, spec: LayoutSpec, *, base: Layout | None = None) -> Layout:
        """A target layout of `scene`.

        Args:
            scene: the scene.
            spec: a `Layout`; a layout image path; operations (`layoutedit.scenes.layout_edits`
                objects or strings such as `"move cat=+40,-10"`) applied to `base`; or an
                (H, W) label grid in the scene's coding.
            base: what operations start from; default the source's masks.

        Raises:
            UserError: a bad file, an unknown object, an object pushed out of the frame.
        """
        if isinstance(spec, Layout):
            if spec.labels.shape != scene.labels.shape:
                raise UserError(
                    f"layout is {spec.labels.shape[1]}x{spec.labels.shape[0]}, the scene "
                    f"{scene.size[1]}x{scene.size[0]}",
                    path=spec.path,
                )
            return spec
        if isinstance(spec, (str, Path)):
            return load_layout(Path(spec), scene, self.settings.scene)
        if isinstance(spec, np.ndarray):
            return layout_from_labels(spec, scene)
        made = operations_layout(scene, spec, base)
        return Layout(path=None, labels=made.labels, exact=made.exact)

    def _concept_for(
        self,
        scene: Scene,
        given: Concept | Path | str | None,
        learn: bool,
        learn_progress: ProgressHook | None,
    ) -> tuple[Concept | None, str, str | None]:
        """(concept, the key its inversion is cached under, the id `edit.json` records)."""
        from layoutedit.editing.inversion_cache import file_digest, scene_concept_key

        fingerprint = self.model.fingerprint
        if not self.settings.edit.use_concept:
            return None, scene_concept_key(fingerprint, scene, {"concept": "none"}), None
        if isinstance(given, (str, Path)):
            from layoutedit.learning.concept import TENSORS_FILE, Concept

            folder = Path(given)
            loaded = Concept.load(folder)  # first: a bad folder is a UserError
            digest = file_digest(folder / TENSORS_FILE)
            key = scene_concept_key(fingerprint, scene, {"concept_file_sha256": digest})
            return loaded, key, str(folder)
        if given is not None:
            key = scene_concept_key(fingerprint, scene, {"concept_sha256": _tensor_digest(given)})
            return given, key, None
        concept = self.cached_concept(scene)
        if concept is not None:
            return concept, self.learn_key(scene), self.learn_key(scene)
        if not learn:
            raise ConceptMissing(self.learn_key(scene))
        obtained = self.obtain(scene, progress=learn_progress)
        return obtained.concept, obtained.key, obtained.key

    def _session_for(
        self, scene: Scene, concept: Concept | None, concept_key: str
    ) -> tuple[EditSession, bool]:
        """The prepared session of (scene, concept, settings), made now unless it is the one
        used last; its inversion comes from memory, the cache, or is computed and stored."""
        from layoutedit.editing.inversion_cache import cached_inversion, session_inversion_key
        from layoutedit.editing.session import EditSession
        from layoutedit.precision import edit_precision
        from layoutedit_cache import ConceptCache

        cfg = self.settings.edit
        ident = (concept_key, scene.prompt, cfg.model_dump_json())
        if self._session is not None and self._session_ident == ident:
            return self._session, True
        model = self._fresh_model(edit_precision(self.backend))
        session = EditSession(model, scene, cfg, self.backend, concept=concept)
        if cfg.blend_steps > 0:
            inv_key = session_inversion_key(session, concept_key)
            if inv_key in self._inversions:
                session.use_inversion(self._inversions[inv_key])
            else:
                with ConceptCache(self.cache_dir, report=self.report) as cache, phase("inversion"):
                    cached_inversion(session, cache, concept_key)
                self._inversions[inv_key] = session.ensure_inversion()
                while len(self._inversions) > _KEEP:
                    self._inversions.popitem(last=False)
        self._session, self._session_ident = session, ident
        return session, False

    def edit(
        self,
        scene: Scene,
        layout: LayoutSpec,
        *,
        seeds: Sequence[int] | None = None,
        base: Layout | None = None,
        progress: EditProgress | None = None,
        concept: Concept | Path | str | None = None,
        learn: bool = True,
        learn_progress: ProgressHook | None = None,
    ) -> EditOutcome:
        """Edit `scene` to a layout (see `layout` for the forms), once per seed.

        Learns the scene first when its concept is not cached (`learn=False`: raise
        `ConceptMissing` instead). The scene's session and inversion are reused by every
        later edit of the same scene.

        Args:
            scene: from `Editor.scene`.
            layout: the target (a Layout, a path, operations, a label grid).
            seeds: default the settings' seeds.
            base: what operations start from (default the source's masks).
            progress: `progress(what, done, total)`, see `EditProgress`.
            concept: edit with this concept (or concept folder) instead of the scene's own.
            learn: learn a missing concept (else `ConceptMissing`).
            learn_progress: progress of that learning.

        Returns:
            An `EditOutcome`; its `unet_evaluations["inversion"]` counts only the inversion
            this call made (0 when reused).
        """
        with self._lock:
            began = time.perf_counter()
            self._cancel.clear()
            target = self.layout(scene, layout, base=base)
            ops: tuple[str, ...] = ()
            if not isinstance(layout, (Layout, str, Path, np.ndarray)):
                ops = tuple((parse_step(op) if isinstance(op, str) else op).text for op in layout)
            self.check_edit_models()  # before minutes of learning
            used, concept_key, concept_id = self._concept_for(scene, concept, learn, learn_progress)
            self._check_cancel()
            session, reused = self._session_for(scene, used, concept_key)
            before = session.inversion_counter.as_dict() if reused else {}
            chosen = tuple(self.settings.edit.seeds if seeds is None else seeds)
            total_steps = len(chosen) * self.settings.edit.steps
            done = [0]

            def on_step(_i: int, _t: Any, _latents: torch.Tensor) -> None:
                self._check_cancel()
                done[0] += 1
                if progress is not None:
                    progress("steps", done[0], total_steps)

            session.progress = progress
            try:
                with phase("edit"):  # out of memory: one line naming the phase (decode inside)
                    result = session.edit(target, chosen, on_step=on_step)
            finally:
                session.progress = None
            evals = dict(result.unet_evaluations)
            inv = evals.get("inversion", {})
            evals["inversion"] = {k: v - before.get(k, 0) for k, v in inv.items()}
            model = self.model
            return EditOutcome(
                **{
                    f.name: getattr(result, f.name)
                    for f in dataclasses.fields(EditResult)
                    if f.name != "unet_evaluations"
                },
                unet_evaluations=evals,
                scene=scene,
                concept_id=concept_id,
                model={"spec": model.spec, "fingerprint": model.fingerprint},
                operations=ops,
                seconds=time.perf_counter() - began,
                reused_session=reused,
            )
