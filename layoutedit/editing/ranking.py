"""Ranking candidates by what the decoded image shows, where the objects can be found in it.

The published method ranks an edit's seeds by their final attention loss: where the model
attended, not what it drew. When an object can be told apart by colour (the segmenter is
fitted on the source and must find every source object again, IoU >= `SELF_CHECK_IOU`), a
candidate is scored on the image itself: per object, the IoU of its pixels found by colour
with its target region, averaged. Objects drawn in the wrong colour, merged, missing or
outside their region all lower it. Photos whose objects share colours fail the self-check
and keep the attention ranking.
"""

from __future__ import annotations

import numpy as np

from layoutedit.scenes.colour_segment import ColourModel, fit_colour_model, segment
from layoutedit.scenes.masks import iou

SELF_CHECK_IOU = 0.9
"""Every source object must be found in the source itself at least this well."""


class LayoutScorer:
    """Scores decoded candidates against a target layout by colour segmentation.

    Args:
        image: (H, W, 3) uint8 source image.
        labels: (H, W) source labels, i < K objects, K background.
        n_objects: K.
    """

    def __init__(self, image: np.ndarray, labels: np.ndarray, n_objects: int) -> None:
        self.n_objects = n_objects
        self.model: ColourModel | None
        try:
            self.model = fit_colour_model(image, labels, n_objects)
        except ValueError:  # no background to learn from
            self.model = None
        self.self_check = 0.0
        if self.model is not None:
            found = segment(image, self.model)
            self.self_check = (
                min(iou(found[k], labels == k) for k in range(n_objects)) if n_objects else 0.0
            )

    @property
    def usable(self) -> bool:
        """Whether the source's objects are found by colour well enough to rank by it."""
        return self.model is not None and self.self_check >= SELF_CHECK_IOU

    def score(self, image: np.ndarray, layout_labels: np.ndarray) -> float:
        """Mean over objects of IoU(found by colour, target region), in [0, 1].

        Args:
            image: (H, W, 3) uint8 candidate at the source's size.
            layout_labels: (H, W) target layout labels.
        """
        if self.model is None:
            raise RuntimeError("no colour model: check `usable` first")
        found = segment(image, self.model)  # (K, H, W)
        return float(np.mean([iou(found[k], layout_labels == k) for k in range(self.n_objects)]))
