"""Score one output image of one case with the metrics of `metrics.py`.

Objects are found in the output by `segment.segment` with a colour model fitted on the
case's source. The shape IoU uses each found object's largest connected piece, so a ghost
left at the old place costs layout IoU and in-region share but does not smear the shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from layoutedit.bench.cases import Case
from layoutedit.bench.metrics import (
    background_psnr,
    colour_error,
    in_region_share,
    iou,
    layout_iou,
    object_psnr,
    shape_iou,
    vacated_psnr,
)
from layoutedit.scenes.colour_segment import ColourModel, fit_colour_model, segment
from layoutedit.scenes.morphology import largest_component

METRICS: tuple[str, ...] = (
    "layout_iou",
    "in_region",
    "colour_error",
    "shape_iou",
    "background_psnr",
    "vacated_psnr",
    "object_psnr",
)
LOWER_IS_BETTER: frozenset[str] = frozenset({"colour_error"})
"""Metrics where a lower value is better; higher is better for the others."""


@dataclass(frozen=True)
class Scores:
    """The metrics of one edit (see docs/benchmark.md)."""

    layout_iou: float
    """Mean over objects of IoU(found, exact target mask), 0-1."""
    in_region: float
    """Mean over objects of the share of found pixels inside the rough region, 0-1."""
    colour_error: float
    """Mean over objects of |mean output colour - mean source colour|, RGB 0-255 units."""
    shape_iou: float
    """Mean over objects of the bounding-box-normalised IoU with the source mask, 0-1."""
    background_psnr: float
    """dB over pixels that are background in both the source and the target."""
    vacated_psnr: float
    """dB over pixels an object left (object in the source, background in the target);
    NaN when none."""
    object_psnr: float = float("nan")
    """dB over the inside of the objects where the target has them (1 px in from the edge):
    shade and pattern as drawn, which the mean colour error cannot see. NaN in results
    written before this metric existed."""

    def as_dict(self) -> dict[str, float]:
        """Field name -> value."""
        return asdict(self)


def colour_model(case: Case) -> ColourModel:
    """The segmenter's colour model for a case (fitted on its source)."""
    return fit_colour_model(case.source.image, case.source_labels, case.n_objects)


def score(case: Case, output: np.ndarray, model: ColourModel | None = None) -> Scores:
    """Scores of `output` ((S, S, 3) uint8) as the edit of `case`."""
    if output.shape != case.source.image.shape or output.dtype != np.uint8:
        raise ValueError(f"output must be {case.source.image.shape} uint8, got {output.shape}")
    model = model or colour_model(case)
    found = segment(output, model)
    target = case.target_masks
    shapes = [
        shape_iou(largest_component(f), s) for f, s in zip(found, case.source.masks, strict=True)
    ]
    return Scores(
        layout_iou=layout_iou(found, target),
        in_region=in_region_share(found, case.region_masks),
        colour_error=colour_error(output, found, case.source_colours(), fallback=target),
        shape_iou=float(np.mean(shapes)),
        # Against the target image: its background is the source's, except that an object
        # that moved leaves no anti-aliased outline where it was (the source still has one).
        background_psnr=background_psnr(
            output, case.truth.image, case.source_labels, case.target_labels, case.n_objects
        ),
        vacated_psnr=vacated_psnr(
            output, case.truth.image, case.source_labels, case.target_labels, case.n_objects
        ),
        object_psnr=object_psnr(output, case.truth.image, case.target_labels, case.n_objects),
    )


def segmenter_check(
    case: Case, paste_image: np.ndarray, paste_masks: np.ndarray
) -> dict[str, float]:
    """The segmenter's own validation on one case: the lowest per-object IoU on the source
    (against the source masks) and on the paste rendering (against where it pasted)."""
    model = colour_model(case)
    on_source = segment(case.source.image, model)
    on_paste = segment(paste_image, model)
    return {
        "source_min_iou": min(iou(f, m) for f, m in zip(on_source, case.source.masks, strict=True)),
        "paste_min_iou": min(iou(f, m) for f, m in zip(on_paste, paste_masks, strict=True)),
    }
