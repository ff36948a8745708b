"""Score one output image of one case with the metrics of `metrics.py` (and, for a world
v2 case, those of `metrics_v2.py`).

Objects are found in the output by `segment.segment` with a colour model fitted on the
case's source. The shape IoU uses each found object's largest connected piece, so a ghost
left at the old place costs layout IoU and in-region share but does not smear the shape.

World v2 changes two of v1's measures: the colour error compares with each object's colour
in the truth (lit where it now stands, not where it stood), and the background PSNR keeps
only pixels that no shadow touches in the source or the target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from layoutedit.bench import metrics_v2 as v2
from layoutedit.bench.cases import Case
from layoutedit.bench.metrics import (
    background_psnr,
    colour_error,
    in_region_share,
    iou,
    layout_iou,
    object_psnr,
    psnr,
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
METRICS_V2: tuple[str, ...] = (
    *METRICS,
    "image_psnr",
    "revealed_psnr",
    "shadow_psnr",
    "vacated_texture_distance",
    "seam_error",
)
"""World v2's metrics: v1's and five more (`ScoresV2`)."""
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"colour_error", "vacated_texture_distance", "seam_error"}
)
"""Metrics where a lower value is better; higher is better for the others."""


def metrics_of(world: str) -> tuple[str, ...]:
    """The metric names of a world's cases (`v1` or `v2`)."""
    return METRICS_V2 if world == "v2" else METRICS


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


@dataclass(frozen=True)
class ScoresV2(Scores):
    """A world v2 edit's metrics: v1's (colour error against the truth's colours, background
    PSNR over unshadowed pixels) and these, against the re-rendered truth."""

    image_psnr: float = float("nan")
    """dB over the whole image."""
    revealed_psnr: float = float("nan")
    """dB over object pixels hidden in the source and visible in the target; NaN when none."""
    shadow_psnr: float = float("nan")
    """dB where any shadow shows in the source or the target, objects excluded."""
    vacated_texture_distance: float = float("nan")
    """0-1, local gradient histograms of output and truth where an object left (lower is
    better); NaN when no pixel was vacated."""
    seam_error: float = float("nan")
    """Grey levels (0-255), mean absolute error in a 2 px band along the moved objects'
    edges (lower is better); NaN when nothing moved."""


V2_BACKGROUND_CLUSTERS = 16
"""Background prototypes of the segmenter on world v2 (v1: the segmenter's default 8): a
structured background and its light ramp have more tones (on the development cases of seed
0 the segmenter found the truth's own objects at IoU 0.944 with 16, 0.930 with 8)."""


def colour_model(case: Case) -> ColourModel:
    """The segmenter's colour model for a case (fitted on its source)."""
    if case.world == "v2":
        return fit_colour_model(
            case.source.image,
            case.source_labels,
            case.n_objects,
            background_clusters=V2_BACKGROUND_CLUSTERS,
        )
    return fit_colour_model(case.source.image, case.source_labels, case.n_objects)


def score(case: Case, output: np.ndarray, model: ColourModel | None = None) -> Scores:
    """Scores of `output` ((S, S, 3) uint8) as the edit of `case` (`ScoresV2` for v2)."""
    if output.shape != case.source.image.shape or output.dtype != np.uint8:
        raise ValueError(f"output must be {case.source.image.shape} uint8, got {output.shape}")
    model = model or colour_model(case)
    found = segment(output, model)
    target = case.target_masks
    shapes = [
        shape_iou(largest_component(f), s) for f, s in zip(found, case.source.masks, strict=True)
    ]
    v2_case = case.world == "v2"
    colours = case.truth_colours() if v2_case else case.source_colours()
    # Against the target image: its background is the source's, except that an object that
    # moved leaves no anti-aliased outline where it was (the source still has one).
    background = (
        psnr(output, case.truth.image, _unshadowed(case))
        if v2_case
        else background_psnr(
            output, case.truth.image, case.source_labels, case.target_labels, case.n_objects
        )
    )
    base = {
        "layout_iou": layout_iou(found, target),
        "in_region": in_region_share(found, case.region_masks),
        "colour_error": colour_error(output, found, colours, fallback=target),
        "shape_iou": float(np.mean(shapes)),
        "background_psnr": background,
        "vacated_psnr": vacated_psnr(
            output, case.truth.image, case.source_labels, case.target_labels, case.n_objects
        ),
        "object_psnr": object_psnr(output, case.truth.image, case.target_labels, case.n_objects),
    }
    if not v2_case:
        return Scores(**base)
    return ScoresV2(**base, **score_v2(case, output))


def _unshadowed(case: Case) -> np.ndarray:
    source, truth = case.source, case.truth
    assert source.shadows is not None and truth.shadows is not None
    return v2.unshadowed_background(
        case.source_labels,
        case.target_labels,
        case.n_objects,
        source.shadows,
        truth.shadows,
        source.light.strength,
    )


def score_v2(case: Case, output: np.ndarray) -> dict[str, float]:
    """World v2's five extra metrics of `output` for a v2 `case` (`ScoresV2`'s fields)."""
    source, truth, k = case.source, case.truth, case.n_objects
    assert source.amodal is not None and source.shadows is not None
    assert truth.shadows is not None
    hidden = v2.hidden_moved(source.amodal, source.masks, case.placements)
    shadows = v2.shadow_region(
        source.shadows,
        truth.shadows,
        source.light.strength,
        case.source_labels != k,
        case.target_labels != k,
    )
    vacated = (case.source_labels != k) & (case.target_labels == k)
    moved = np.array([s != t for s, t in zip(source.objects, truth.objects, strict=True)])
    return {
        "image_psnr": v2.image_psnr(output, truth.image),
        "revealed_psnr": v2.revealed_psnr(
            output, truth.image, v2.revealed_mask(hidden, truth.masks)
        ),
        "shadow_psnr": v2.shadow_psnr(output, truth.image, shadows),
        "vacated_texture_distance": v2.texture_distance(output, truth.image, vacated),
        "seam_error": v2.seam_error(output, truth.image, v2.seam_band(truth.masks[moved])),
    }


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
