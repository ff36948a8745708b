"""A prior folder's contents are part of the concept key: edit an image, learn anew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edit_support import shapes_scene
from PIL import Image

from layoutedit.config import LearnConfig
from layoutedit.learning.concept_store import learn_key_config
from layoutedit.learning.prior import prior_folder_digest


def _prior_folder(folder: Path) -> Path:
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "images.txt").write_text("0.png\n1.png\n")
    (folder / "caption.txt").write_text("a photo of a circle\na photo of a circle\n")
    return folder


def test_digest_follows_images_and_captions(tmp_path: Path) -> None:
    folder = _prior_folder(tmp_path / "prior")
    first = prior_folder_digest(folder)
    assert first == prior_folder_digest(folder)  # stable
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(folder / "1.png")
    second = prior_folder_digest(folder)
    assert second != first
    (folder / "caption.txt").write_text("a photo of a star\na photo of a star\n")
    assert prior_folder_digest(folder) not in (first, second)
    (folder / "0.png").unlink()  # missing files hash as missing, without an error
    assert len(prior_folder_digest(folder)) == 64


def test_concept_key_config_covers_the_prior_folder_only_when_used(tmp_path: Path) -> None:
    folder = _prior_folder(tmp_path / "prior")
    scene = shapes_scene()
    used = LearnConfig(prior_preservation=True, prior_dir=folder)
    before = learn_key_config(used, scene)
    Image.fromarray(np.full((8, 8, 3), 99, dtype=np.uint8)).save(folder / "0.png")
    assert learn_key_config(used, scene) != before
    unused = LearnConfig(prior_preservation=False, prior_dir=folder)
    assert "prior_dir_digest" not in learn_key_config(unused, scene)
