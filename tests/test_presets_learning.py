"""The learning schedules of the presets: published-fast learns with at most half the
published UNet evaluations and edits as published does; shapes-tiny's short schedule,
which shapes-tiny-v2 shares."""

from __future__ import annotations

import pytest

from layoutedit.config import resolve_settings
from layoutedit.planning.phases import PhaseCost
from layoutedit.planning.totals import learn_total

PHASES = {
    n: PhaseCost(n, {"weights": 1}, 1) for n in ("vae-encode", "textual-inversion", "fine-tune")
}


def _forward(preset: str, objects: int) -> int:
    return learn_total(PHASES, resolve_settings(preset).learn, objects).forward[0]


@pytest.mark.parametrize("objects", [2, 3, 5])
def test_published_fast_halves_the_learning_and_edits_as_published(objects: int) -> None:
    assert 2 * _forward("published-fast", objects) <= _forward("published", objects)
    assert resolve_settings("published-fast").edit == resolve_settings("published").edit
    assert _forward("published", 3) == 4000 and _forward("published-fast", 3) == 1600


def test_shapes_tiny_learns_in_60_evaluations_and_v2_in_its_own_80() -> None:
    assert _forward("shapes-tiny", 3) == 15 * 2 + 15 * 2  # was 150 x 4 + 150 x 2, then 20 + 20
    assert _forward("shapes-tiny-v2", 3) == 20 * 2 + 20 * 2
    tiny, v2 = resolve_settings("shapes-tiny").learn, resolve_settings("shapes-tiny-v2").learn
    # Only the step counts differ: the rates, batches and stages are shapes-tiny's.
    assert v2.model_copy(update={"ti_steps": 15, "ft_steps": 15}) == tiny
