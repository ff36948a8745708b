"""Cross-attention recording: a swappable attention processor and the store that averages it.

The guidance of `method.md` reads the cross-attention probabilities of the UNet layers whose
query grid is the attention resolution (16 x 16 for Stable Diffusion 1.x at 512 px). Unlike the
published code, which stores every map of every layer (self-attention too), only those layers
get a `RecordingAttnProcessor`; every other layer keeps the backend's fast kernel
(`install_processors`). A processor records only while its store says so
(`AttentionStore.recording`), so passes that need no maps (the classifier-free-guidance
predictions of most steps) pay nothing for them.

Data flow of one recorded pass:

    RecordingAttnProcessor (per layer)  --probs (B, heads, Q, T)-->  AttentionStore.add
    AttentionStore.maps()  ->  (B, res, res, T): mean over recorded layers and heads

The processor is attached to a store by `AttentionStore.attach(unet)`, which finds every
`RecordingAttnProcessor` a backend installed, so a backend needs to know nothing of stores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor


class AttentionCollected(Exception):
    """Raised by a recording processor once every recorded layer has reported, when the store
    was asked to stop early: the rest of the UNet (its high-resolution up blocks) is not
    needed for the attention loss, so the guidance pass skips it."""


def choose_attention_res(sides: Mapping[str, int], latent_side: int, wanted: int | None) -> int:
    """The attention resolution to use.

    Candidates are the grids of the down- and up-block cross-attention layers (the published
    code's `from_where=("up", "down")`): the mid block alone works at the coarsest grid (4 x 4
    for a 16 x 16 latent), too coarse to place objects.

    Args:
        sides: processor name -> query-grid side (`unet_grids.cross_attention_sides`).
        latent_side: the latent side; `wanted=None` aims at latent_side / 4 (16 for SD 1.x).
        wanted: the user's `EditConfig.attention_res`, or None.

    Returns:
        `wanted` when a down/up layer has it; for None, the candidate nearest latent_side / 4
        (the larger on a tie), e.g. 8 for a 16 x 16 latent whose grids are 16 and 8.

    Raises:
        ValueError: `wanted` is not a candidate, or the model has no candidate layers.
    """
    candidates = sorted({s for n, s in sides.items() if not n.startswith("mid_block")})
    if not candidates:
        raise ValueError("the UNet has no down- or up-block cross-attention layers to guide")
    if wanted is not None:
        if wanted not in candidates:
            raise ValueError(
                f"attention_res {wanted} is not a cross-attention grid of this model; "
                f"choose from {', '.join(map(str, candidates))}"
            )
        return wanted
    target = latent_side / 4
    return min(candidates, key=lambda s: (abs(s - target), -s))


class AttentionStore:
    """Sums cross-attention probabilities of one pass over layers and heads.

    Args:
        res: side of the query grid that is recorded; a map of another size is a bug.

    Usage:
        store.attach(unet)
        with store.recording():
            unet(...)
        maps = store.maps()     # (B, res, res, T)
    """

    def __init__(self, res: int) -> None:
        self.res = res
        self.active = False
        self.stop_early = False
        self.expected_layers = 0
        self._sum: torch.Tensor | None = None  # (B, Q, T), summed over layers and heads
        self._count = 0  # layers x heads summed into _sum
        self._layers: list[str] = []

    def attach(self, unet: Any) -> list[str]:
        """Point every `RecordingAttnProcessor` of `unet` at this store.

        Returns:
            The names of the attached layers (the ones that will record).
        """
        names = []
        for name, proc in unet.attn_processors.items():
            if isinstance(proc, RecordingAttnProcessor):
                proc.store = self
                proc.name = name
                names.append(name)
        self.expected_layers = len(names)
        return names

    def reset(self) -> None:
        """Forget what was recorded (called at the start of each recorded pass)."""
        self._sum = None
        self._count = 0
        self._layers = []

    @contextlib.contextmanager
    def recording(self, *, stop_early: bool = False) -> Iterator[None]:
        """Record during the block. `stop_early`: raise `AttentionCollected` once every
        attached layer has reported (the caller catches it; see `run_until_collected`)."""
        self.reset()
        self.active, self.stop_early = True, stop_early
        try:
            yield
        finally:
            self.active, self.stop_early = False, False

    def add(self, name: str, probs: torch.Tensor) -> None:
        """Add one layer's probabilities.

        Args:
            name: the layer's processor name (for messages).
            probs: (B, heads, Q, T) softmax over T, Q = res * res.
        """
        heads, queries = probs.shape[1], probs.shape[2]
        if queries != self.res * self.res:
            raise RuntimeError(
                f"{name}: query grid of {queries} positions, expected {self.res}x{self.res}"
            )
        summed = probs.float().sum(dim=1)  # (B, Q, T)
        self._sum = summed if self._sum is None else self._sum + summed
        self._count += heads
        self._layers.append(name)
        if self.stop_early and len(self._layers) >= self.expected_layers:
            raise AttentionCollected

    @property
    def layers(self) -> tuple[str, ...]:
        """Layers recorded since the last reset, in call order."""
        return tuple(self._layers)

    def maps(self) -> torch.Tensor:
        """(B, res, res, T) mean of the recorded probabilities over layers and heads."""
        if self._sum is None:
            raise RuntimeError("no attention was recorded; was the store attached?")
        mean = self._sum / self._count  # (B, Q, T)
        return mean.reshape(mean.shape[0], self.res, self.res, mean.shape[-1])


class RecordingAttnProcessor:
    """Attention with explicit probabilities, recorded into a store while it is recording.

    Computes exactly what diffusers' `AttnProcessor` computes (same hidden states out) and,
    for cross-attention while `store.active`, hands the probabilities (B, heads, Q, T) to
    `store.add`. While not recording it runs `idle` instead (a backend passes its fast kernel,
    e.g. `AttnProcessor2_0`; by default the explicit `AttnProcessor`). While `replaying` (a
    gradient checkpoint recomputing a recorded pass in backward, `replaying_recorded`) it
    computes explicitly again, as the recorded pass did, and hands nothing to the store.

    Args:
        name: layer name for messages (set by `AttentionStore.attach`).
        idle: processor used while not recording.
    """

    def __init__(self, name: str = "", idle: Callable[..., torch.Tensor] | None = None) -> None:
        self.name = name
        self.idle = idle if idle is not None else AttnProcessor()
        self.store: AttentionStore | None = None
        self.replaying = False

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        store = self.store
        explicit = self.replaying or (store is not None and store.active)
        if not explicit or encoder_hidden_states is None:
            return self.idle(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return self._explicit(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def _explicit(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch, tokens, _ = encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)  # (B, Q, C)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)  # (B, T, C)
        value = attn.to_v(encoder_hidden_states)  # (B, T, C)
        query = attn.head_to_batch_dim(query)  # (B*heads, Q, C/heads)
        key = attn.head_to_batch_dim(key)  # (B*heads, T, C/heads)
        value = attn.head_to_batch_dim(value)

        probs = attn.get_attention_scores(query, key, attention_mask)  # (B*heads, Q, T)
        out = torch.bmm(probs, value)  # (B*heads, Q, C/heads)
        out = attn.batch_to_head_dim(out)  # (B, Q, C)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        out = out / attn.rescale_output_factor

        if self.replaying:  # the recorded pass already handed these to the store
            return out
        assert self.store is not None
        # head_to_batch_dim orders the batch axis as (B, heads).
        self.store.add(self.name, probs.reshape(batch, attn.heads, *probs.shape[1:]))
        return out


@contextlib.contextmanager
def replaying_recorded(unet: Any) -> Iterator[None]:
    """Every `RecordingAttnProcessor` of `unet` replays for the block: it computes attention
    explicitly, as a recorded pass did, and records nothing. The recomputation context of a
    gradient checkpoint over a recorded pass (`torch.utils.checkpoint`'s `context_fn`): it
    runs in backward, after recording stopped, and must save what the recorded pass saved."""
    procs = [p for p in unet.attn_processors.values() if isinstance(p, RecordingAttnProcessor)]
    for proc in procs:
        proc.replaying = True
    try:
        yield
    finally:
        for proc in procs:
            proc.replaying = False


def install_processors(
    unet: Any,
    record_layers: Sequence[str],
    make_default: Callable[[], Any] = AttnProcessor,
    make_idle: Callable[[], Any] | None = None,
) -> None:
    """Give `unet` a `RecordingAttnProcessor` on `record_layers` and `make_default()`
    everywhere else (one call of `unet.set_attn_processor`).

    Args:
        unet: a `UNet2DConditionModel`.
        record_layers: processor names (keys of `unet.attn_processors`).
        make_default: factory of the backend's processor for the other layers.
        make_idle: factory of what a recording processor runs while not recording
            (default: the explicit `AttnProcessor`).

    Raises:
        ValueError: a name in `record_layers` is not an attention layer of `unet`.
    """
    names = list(unet.attn_processors)
    unknown = sorted(set(record_layers) - set(names))
    if unknown:
        raise ValueError(f"not attention layers of this UNet: {', '.join(unknown)}")
    wanted = set(record_layers)
    default = make_default()
    procs: Mapping[str, Any] = {
        name: (
            RecordingAttnProcessor(name, make_idle() if make_idle else None)
            if name in wanted
            else default
        )
        for name in names
    }
    unet.set_attn_processor(dict(procs))


def run_until_collected(store: AttentionStore, forward: Callable[[], object]) -> torch.Tensor:
    """Run `forward` recording with early stop; return `store.maps()` (B, res, res, T).

    The UNet stops right after the last recorded layer, so a guidance pass does not compute
    the layers that cannot change the loss.
    """
    with store.recording(stop_early=True), contextlib.suppress(AttentionCollected):
        forward()
    return store.maps()
