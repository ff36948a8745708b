"""Model configurations: the embedded `shapes-tiny` and the tiny random models of the tests.

One function builds a complete Stable-Diffusion-layout pipeline folder (tokenizer, CLIP text
encoder, AutoencoderKL, UNet2DConditionModel, DDIM scheduler config) from a `ModelSize`, so the
embedded model and the test models are loaded by exactly the code that loads Stable Diffusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from layoutedit.shapes.tokenizer import write_tokenizer
from layoutedit.shapes.world import VOCABULARY


@dataclass(frozen=True)
class ModelSize:
    """Shapes of every component. Image side = latent side x 4 (three VAE blocks)."""

    latent_size: int = 16
    unet_channels: tuple[int, int, int] = (40, 80, 80)
    unet_layers: int = 2
    heads: int = 4
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    max_length: int = 24
    vae_channels: tuple[int, int, int] = (32, 64, 64)
    vae_layers: int = 1


SHAPES_TINY = ModelSize()
TEST_TINY = ModelSize(
    unet_channels=(8, 16, 16),
    unet_layers=1,
    heads=2,
    text_width=16,
    text_layers=1,
    text_heads=2,
    max_length=16,
    vae_channels=(8, 8, 8),
)


def build_vae(size: ModelSize) -> Any:  # AutoencoderKL (diffusers is untyped for mypy)
    """AutoencoderKL with spatial factor 4 and no attention (so it trains on crops)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=size.vae_channels,
        layers_per_block=size.vae_layers,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=size.latent_size * 4,
        mid_block_add_attention=False,
    )


def build_unet(size: ModelSize) -> Any:  # UNet2DConditionModel
    """UNet with cross-attention at the latent side and half of it (16x16, 8x8 for 64 px)."""
    return UNet2DConditionModel(
        sample_size=size.latent_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=size.unet_layers,
        block_out_channels=size.unet_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=size.text_width,
        attention_head_dim=size.heads,  # diffusers reads this as the number of heads
        norm_num_groups=8,
    )


def build_text_encoder(size: ModelSize, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A small CLIP text transformer whose pooling finds our tokenizer's end token."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_width,
        intermediate_size=size.text_width * 2,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        max_position_embeddings=size.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=size.text_width,
    )
    return CLIPTextModel(config)


def build_scheduler() -> Any:  # DDIMScheduler
    """Stable Diffusion's noise schedule (scaled linear betas), epsilon prediction."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_pipeline_folder(
    folder: Path,
    size: ModelSize = TEST_TINY,
    *,
    seed: int = 0,
    words: Sequence[str] = VOCABULARY,
    scaling_factor: float = 1.0,
) -> Path:
    """Write a randomly initialised pipeline folder in the Stable Diffusion layout."""
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(seed)
    write_tokenizer(folder / "tokenizer", words, size.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    vae = build_vae(size)
    vae.register_to_config(scaling_factor=scaling_factor)
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=build_text_encoder(size, tokenizer),
        tokenizer=tokenizer,
        unet=build_unet(size),
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@dataclass(frozen=True)
class SdxlParts:
    """What an SDXL-layout test model adds to a `ModelSize`: the second text encoder
    (`CLIPTextModelWithProjection`) and the UNet's text-and-time embedding."""

    text_width_2: int = 24
    projection_dim: int = 12  # pooled text embedding width
    time_embed_dim: int = 8  # per time id; the UNet reads 6 of them
    transformer_layers: tuple[int, int, int] = (1, 1, 2)  # SDXL stacks several per block


def build_sdxl_unet(size: ModelSize, parts: SdxlParts) -> Any:  # UNet2DConditionModel
    """A UNet laid out like SDXL's: no cross-attention at the latent side, several
    transformer layers per block, and text-and-time added embeddings."""
    return UNet2DConditionModel(
        sample_size=size.latent_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=size.unet_layers,
        block_out_channels=size.unet_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=parts.transformer_layers,
        cross_attention_dim=size.text_width + parts.text_width_2,  # both encoders side by side
        attention_head_dim=size.heads,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=parts.time_embed_dim,
        projection_class_embeddings_input_dim=6 * parts.time_embed_dim + parts.projection_dim,
        norm_num_groups=8,
    )


def build_sdxl_pipeline_folder(
    folder: Path,
    size: ModelSize = TEST_TINY,
    parts: SdxlParts = SdxlParts(),
    *,
    seed: int = 0,
    words: Sequence[str] = VOCABULARY,
) -> Path:
    """Write a randomly initialised pipeline folder in the SDXL layout (two tokenizers and
    text encoders, an Euler scheduler config as SDXL base ships)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    write_tokenizer(folder / "tokenizer", words, size.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    # SDXL's second tokenizer has the same vocabulary and pads with "!" instead of the end token.
    tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer", pad_token="!")
    width_2 = parts.text_width_2
    config_2 = CLIPTextConfig(
        vocab_size=len(tokenizer_2),
        hidden_size=width_2,
        intermediate_size=width_2 * 2,
        num_hidden_layers=max(2, size.text_layers),
        num_attention_heads=size.text_heads,
        max_position_embeddings=size.max_length,
        bos_token_id=tokenizer_2.bos_token_id,
        eos_token_id=tokenizer_2.eos_token_id,
        pad_token_id=tokenizer_2.pad_token_id,
        projection_dim=parts.projection_dim,
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    pipe: Any = StableDiffusionXLPipeline(
        vae=build_vae(size),
        # Two layers at least: SDXL reads the penultimate one's output.
        text_encoder=build_text_encoder(
            replace(size, text_layers=max(2, size.text_layers)), tokenizer
        ),
        text_encoder_2=CLIPTextModelWithProjection(config_2),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=build_sdxl_unet(size, parts),
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
