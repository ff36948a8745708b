"""What the UNet reads of a prompt, per model family: the one place prompts become UNet inputs.

- SD 1.x / 2.x (`ClipPromptEncoder`): the text encoder's last hidden state (B, L, D), given
  to the UNet as `encoder_hidden_states`.
- SDXL (`SdxlPromptEncoder`): two CLIP text encoders. The UNet reads both encoders'
  penultimate hidden states side by side (B, L, D1 + D2), and through `added_cond_kwargs`
  the second encoder's projected (pooled) text embedding (B, P) and six "time ids" per row:
  (original height, original width, crop top, crop left, target height, target width).

`TextConditioning` carries a batch of either form through learning and editing: it
concatenates, slices, expands and casts like a tensor batch, and `unet_kwargs()` turns it
into the UNet's keyword arguments, so no caller asks which family it runs. A plain (B, L, D)
tensor still works wherever a conditioning is taken (`as_conditioning`): it is the SD 1.x
form, which is how stub predictors and the planner's meta models pass theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch

SDXL_TIME_IDS = 6
"""Time ids per row: original (h, w), crop (top, left), target (h, w), in pixels."""


@dataclass(frozen=True)
class TextConditioning:
    """The text inputs of one UNet call.

    Attributes:
        embeddings: (B, L, D) what cross-attention reads (`encoder_hidden_states`).
        pooled: (B, P) SDXL's pooled text embedding (`added_cond_kwargs["text_embeds"]`);
            None for SD 1.x / 2.x.
        time_ids: (B, 6) SDXL's size and crop conditioning; None when `pooled` is None.
    """

    embeddings: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.pooled is None) != (self.time_ids is None):
            raise ValueError("pooled embeddings and time ids go together (SDXL) or not at all")

    @property
    def batch(self) -> int:
        """Rows B."""
        return int(self.embeddings.shape[0])

    def unet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `UNet2DConditionModel.forward` for this batch."""
        out: dict[str, Any] = {"encoder_hidden_states": self.embeddings}
        if self.pooled is not None:
            out["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return out

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TextConditioning:
        """`fn` applied to every tensor (the same row operation on each)."""
        return TextConditioning(
            fn(self.embeddings),
            None if self.pooled is None else fn(self.pooled),
            None if self.time_ids is None else fn(self.time_ids),
        )

    def to(self, *args: Any, **kwargs: Any) -> TextConditioning:
        """`Tensor.to` on every tensor (device and/or dtype)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def float(self) -> TextConditioning:
        """Every tensor in fp32."""
        return self.map(lambda t: t.float())

    def __getitem__(self, rows: slice) -> TextConditioning:
        """The rows `rows` of every tensor, e.g. `both[:1]`."""
        return self.map(lambda t: t[rows])

    def expand(self, batch: int) -> TextConditioning:
        """A batch of 1 repeated to `batch` rows (a view, no copy)."""
        return self.map(lambda t: t.expand(batch, *t.shape[1:]))

    @staticmethod
    def cat(parts: Sequence[TextConditioning]) -> TextConditioning:
        """Rows of `parts` one after another (all of one family)."""
        first = parts[0]
        pooled = None if first.pooled is None else torch.cat([_need(p.pooled) for p in parts])
        time_ids = None if first.time_ids is None else torch.cat([_need(p.time_ids) for p in parts])
        return TextConditioning(torch.cat([p.embeddings for p in parts]), pooled, time_ids)


def _need(value: torch.Tensor | None) -> torch.Tensor:
    if value is None:
        raise ValueError("cannot join SDXL and SD 1.x conditioning")
    return value


Conditioning: TypeAlias = torch.Tensor | TextConditioning
"""A `TextConditioning`, or a plain (B, L, D) tensor (the SD 1.x form)."""


def as_conditioning(value: Conditioning) -> TextConditioning:
    """`value` as a `TextConditioning` (a tensor becomes its `embeddings`)."""
    return value if isinstance(value, TextConditioning) else TextConditioning(value)


def cat_conditioning(parts: Sequence[Conditioning]) -> Conditioning:
    """Rows of `parts` one after another; plain tensors stay a plain tensor."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(list(parts))  # type: ignore[arg-type]
    return TextConditioning.cat([as_conditioning(p) for p in parts])


def _token_ids(tokenizer: Any, prompts: Sequence[str], max_length: int, device: Any) -> Any:
    """(B, max_length) int64 ids, padded with the tokenizer's own pad token and truncated."""
    batch = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=max_length,
        truncation=True,
        return_tensors="pt",
    )
    return batch.input_ids.to(device)


@dataclass
class ClipPromptEncoder:
    """SD 1.x / 2.x: one CLIP text encoder's last hidden state (after its final norm).

    Attributes:
        tokenizer: the `CLIPTokenizer`.
        text_encoder: the `CLIPTextModel`.
        max_length: tokens per prompt.
    """

    tokenizer: Any
    text_encoder: Any
    max_length: int

    def encode(self, prompts: Sequence[str]) -> TextConditioning:
        """(B, L, D) embeddings; gradients flow when the caller has them on."""
        ids = _token_ids(self.tokenizer, prompts, self.max_length, self.text_encoder.device)
        return TextConditioning(self.text_encoder(ids)[0])


@dataclass
class SdxlPromptEncoder:
    """SDXL: both CLIP encoders' penultimate hidden states, the pooled embedding, time ids.

    Attributes:
        tokenizers: (`tokenizer`, `tokenizer_2`); the same vocabulary, so a prompt's tokens
            sit at the same positions in both (learning checks it for its prompts).
        text_encoders: (`CLIPTextModel`, `CLIPTextModelWithProjection`).
        max_length: tokens per prompt (both encoders read the same count).
        image_size: pixel side of the square images the model works at: every image is
            "original" and "target" at that size, uncropped (what diffusers' SDXL pipeline
            asks for by default when it generates at that size).
        zero_empty: the unconditional input is zeros rather than the empty prompt's
            encoding (`force_zeros_for_empty_prompt` in the model's `model_index.json`,
            true for SDXL base, as its pipeline does without a negative prompt).
    """

    tokenizers: tuple[Any, Any]
    text_encoders: tuple[Any, Any]
    max_length: int
    image_size: int
    zero_empty: bool = True

    def encode(self, prompts: Sequence[str]) -> TextConditioning:
        """(B, L, D1 + D2) embeddings, (B, P) pooled, (B, 6) time ids of `prompts`."""
        states = []
        output: Any = None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            ids = _token_ids(tokenizer, prompts, self.max_length, encoder.device)
            output = encoder(ids, output_hidden_states=True)
            states.append(output.hidden_states[-2])  # (B, L, D_b): SDXL skips the last layer
        embeddings = torch.cat(states, dim=-1)  # (B, L, D1 + D2)
        pooled = output.text_embeds  # (B, P): the second encoder's projection
        if self.zero_empty:
            empty = torch.tensor([p == "" for p in prompts], device=embeddings.device)
            embeddings = torch.where(empty[:, None, None], 0.0, embeddings)
            pooled = torch.where(empty[:, None], 0.0, pooled)
        side = float(self.image_size)
        row = torch.tensor([side, side, 0.0, 0.0, side, side], device=embeddings.device)
        time_ids = row.to(embeddings.dtype).expand(len(prompts), SDXL_TIME_IDS)  # (B, 6)
        return TextConditioning(embeddings, pooled, time_ids)


PromptEncoder: TypeAlias = ClipPromptEncoder | SdxlPromptEncoder
"""A family's prompt encoder: `encode(prompts) -> TextConditioning`."""
