"""The recipe's mask-supervised attention loss: targets, token positions, and its gradient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPTokenizer

from layoutedit.shapes.architecture import TEST_TINY, build_unet
from layoutedit.shapes.attention_loss import (
    attach_recorders,
    mask_attention_loss,
    phrase_token_positions,
    token_selection,
)
from layoutedit.shapes.dataset import pooled_covers
from layoutedit.shapes.tokenizer import write_tokenizer
from layoutedit.shapes.world import VOCABULARY, sample_scene


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizer:
    folder: Path = tmp_path_factory.mktemp("tok")
    write_tokenizer(folder, VOCABULARY, 24)
    return CLIPTokenizer.from_pretrained(folder)


def test_pooled_covers_give_the_covered_share_of_each_cell() -> None:
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[0, :4, :4] = True  # exactly cell (0, 0) at 16 x 16
    masks[1, 4:6, 4:8] = True  # half of cell (1, 1)
    covers = pooled_covers(masks, 16)
    assert covers.shape == (2, 16, 16)
    assert covers[0, 0, 0] == 1.0 and covers[0].sum() == 1.0
    assert covers[1, 1, 1] == 0.5 and covers[1].sum() == 0.5


def test_phrase_positions_point_at_the_phrase_words(tokenizer: CLIPTokenizer) -> None:
    scene = sample_scene(10_000_002)
    phrases = [o.phrase for o in scene.objects]
    positions = phrase_token_positions(tokenizer, scene.caption, phrases, 24)
    ids = tokenizer(scene.caption).input_ids
    for phrase, pos in zip(phrases, positions, strict=True):
        words = [tokenizer.convert_ids_to_tokens(ids[p]).removesuffix("</w>") for p in pos]
        assert words == phrase.split()[1:]  # the article is left out
    picture = "a high quality picture of " + ", ".join(p.split(" ", 1)[1] for p in phrases)
    positions = phrase_token_positions(tokenizer, picture, phrases, 24)
    for phrase, pos in zip(phrases, positions, strict=True):
        ids = tokenizer(picture).input_ids
        words = [tokenizer.convert_ids_to_tokens(ids[p]).removesuffix("</w>") for p in pos]
        assert words == phrase.split()[1:]


def test_identical_phrases_take_successive_occurrences(tokenizer: CLIPTokenizer) -> None:
    caption = "a red circle and a red circle on a gray background"
    first, second = phrase_token_positions(tokenizer, caption, ["a red circle", "a red circle"], 24)
    assert first == [2, 3] and second == [6, 7]


def test_a_phrase_missing_from_the_caption_is_an_error(tokenizer: CLIPTokenizer) -> None:
    with pytest.raises(ValueError, match="not in caption"):
        phrase_token_positions(tokenizer, "a red circle on a gray background", ["a star"], 24)


def test_token_selection_marks_each_objects_words() -> None:
    sel = token_selection([[[2, 3], [6]], [[1]]], objects=3, tokens=8)
    assert sel.shape == (2, 3, 8)
    assert sel[0, 0].nonzero()[0].tolist() == [2, 3]
    assert sel[0, 1].nonzero()[0].tolist() == [6]
    assert sel[1, 0].nonzero()[0].tolist() == [1] and sel[0, 2].sum() == sel[1, 1].sum() == 0


def _probs_from(maps: torch.Tensor) -> torch.Tensor:
    """(B, Q, T) per-token spatial weights -> (B, 1 head, Q, T) softmax over T."""
    return torch.softmax(maps, dim=-1).unsqueeze(1)


def test_loss_is_zero_when_attention_sits_on_the_object_and_not_otherwise() -> None:
    covers = torch.zeros(1, 1, 4, 4)
    covers[0, 0, :2, :2] = 1.0
    sel = torch.zeros(1, 1, 3)
    sel[0, 0, 1] = 1.0
    on = torch.full((1, 16, 3), -30.0)
    on[0, :, 0] = 0.0  # every pixel attends the start token ...
    on[0, [0, 1, 4, 5], 1] = 30.0  # ... except the object's, which attend token 1
    loss, share = mask_attention_loss([_probs_from(on)], covers, sel)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and share.item() == pytest.approx(1.0)
    uniform = torch.zeros(1, 16, 3)
    loss, share = mask_attention_loss([_probs_from(uniform)], covers, sel)
    # Spread evenly, a token puts the object's area share (4 of 16 cells) on it.
    assert share.item() == pytest.approx(0.25) and loss.item() == pytest.approx(0.75**2)


def test_coarser_layers_compare_against_pooled_covers() -> None:
    covers = torch.zeros(1, 1, 4, 4)
    covers[0, 0, :2, :2] = 1.0
    sel = torch.zeros(1, 1, 2)
    sel[0, 0, 1] = 1.0
    coarse = torch.zeros(1, 4, 2)
    coarse[0, :, 1] = -30.0
    coarse[0, 0, 1] = 30.0  # the 2 x 2 grid's top-left cell is the object exactly
    _, share = mask_attention_loss([_probs_from(coarse)], covers, sel)
    assert share.item() == pytest.approx(1.0, abs=1e-6)


def test_training_on_the_loss_moves_attention_onto_the_object() -> None:
    torch.manual_seed(0)
    unet = build_unet(TEST_TINY)
    collector = attach_recorders(unet, TEST_TINY.latent_size)
    text = torch.randn(2, 4, TEST_TINY.text_width)
    covers = torch.zeros(2, 1, 16, 16)
    covers[0, 0, :8, :8] = 1.0
    covers[1, 0, 8:, 8:] = 1.0
    sel = torch.zeros(2, 1, 4)
    sel[:, 0, 1] = 1.0
    z = torch.randn(2, 4, 16, 16)
    z[0, :, :8, :8] += 2.0  # the object is visible in the latent
    z[1, :, 8:, 8:] += 2.0
    t = torch.tensor([100, 100])
    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    shares = []
    for _ in range(15):
        collector.reset()
        unet(z, t, text)
        loss, share = mask_attention_loss(collector.probs, covers, sel)
        shares.append(share.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Every down/up cross-attention layer is supervised, at both grids.
    assert {p.shape[2] for p in collector.probs} == {16 * 16, 8 * 8}
    assert shares[-1] > shares[0] + 0.1
