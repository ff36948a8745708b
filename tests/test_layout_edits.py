"""Layout operations on label grids (pure numpy, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutedit.errors import UserError
from layoutedit.scenes.layout_edits import (
    Box,
    Move,
    Scale,
    Swap,
    ToFront,
    apply_operations,
    centroid,
    parse_flags,
    parse_operation,
    parse_step,
)

NAMES = ("cat", "pot")


def _grid() -> np.ndarray:
    """100 x 80 (H x W): cat a 10x20 block at x 10..29, y 10..19; pot 10x10 at x 50..59,
    y 60..69; background 2."""
    grid = np.full((100, 80), 2, dtype=np.int16)
    grid[10:20, 10:30] = 0
    grid[60:70, 50:60] = 1
    return grid


def _box(grid: np.ndarray, k: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(grid == k)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_move_in_pixels_and_fractions() -> None:
    out, _ = apply_operations(_grid(), NAMES, [Move("cat", 40, -5)])
    assert _box(out, 0) == (50, 5, 70, 15)
    assert _box(out, 1) == (50, 60, 60, 70)  # the pot did not move
    frac, _ = apply_operations(_grid(), NAMES, [parse_operation("move", "cat=+0.5,-0.05")])
    assert np.array_equal(frac, out)  # 0.5 of the width 80 = 40 px; 0.05 of 100 = 5 px


def test_scale_about_the_centroid_keeps_the_centre() -> None:
    out, _ = apply_operations(_grid(), NAMES, [Scale("pot", 0.6)])
    assert (out == 1).sum() == 36
    assert centroid(out == 1) == pytest.approx(centroid(_grid() == 1))
    big, _ = apply_operations(_grid(), NAMES, [Scale("pot", 2)])
    assert _box(big, 1) == (45, 55, 65, 75)


def test_swap_exchanges_centroids() -> None:
    grid = _grid()
    out, _ = apply_operations(grid, NAMES, [Swap("cat", "pot")])
    assert centroid(out == 0) == pytest.approx(centroid(grid == 1))
    assert centroid(out == 1) == pytest.approx(centroid(grid == 0))
    assert (out == 0).sum() == 200 and (out == 1).sum() == 100


def test_box_fits_keeping_the_aspect() -> None:
    out, _ = apply_operations(_grid(), NAMES, [Box("cat", 0, 0, 40, 40)])
    # 20x10 scaled by min(40/20, 40/10) = 2 -> 40x20, centred in the box vertically.
    assert _box(out, 0) == (0, 10, 40, 30)
    frac, _ = apply_operations(_grid(), NAMES, [parse_operation("box", "cat=0.0,0.0,0.5,0.4")])
    assert np.array_equal(frac, out)


def test_to_front_changes_the_draw_order() -> None:
    ops = [Move("pot", -25, -50)]  # the pot over the cat's right end
    under, _ = apply_operations(_grid(), NAMES, [*ops])
    over, _ = apply_operations(_grid(), NAMES, [*ops, ToFront("cat")])
    assert (over == 0).sum() == 200 and (under == 0).sum() < 200


def test_state_keeps_hidden_parts_for_later_steps() -> None:
    grid, state = apply_operations(_grid(), NAMES, [Move("pot", -25, -50)])
    uncovered, _ = apply_operations(grid, NAMES, [Move("pot", 0, 50)], state=state)
    assert (uncovered == 0).sum() == 200  # the cat is whole again


def test_parse_flags_orders_box_swap_scale_move_to_front() -> None:
    ops = parse_flags(move=["cat=+4,0"], to_front=["cat"], swap=["cat,pot"], scale=["pot=0.5"])
    assert [type(op).__name__ for op in ops] == ["Swap", "Scale", "Move", "ToFront"]
    assert parse_step("scale pot=0.8") == Scale("pot", 0.8)
    assert parse_step("--to-front cat") == ToFront("cat")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("move", "cat=+4", "2 numbers"),
        ("move", "cat=four,2", "2 numbers"),
        ("move", "+4,2", "NAME=VALUES"),
        ("scale", "pot=0", "greater than 0"),
        ("scale", "pot=-1", "greater than 0"),
        ("scale", "pot=big", "must be a number"),
        ("swap", "cat", "name two objects"),
        ("box", "cat=0.5,0.5,0.1,0.9", "x0 < x1"),
        ("box", "cat=1,2,3", "4 numbers"),
        ("rotate", "cat=90", "unknown layout operation"),
    ],
)
def test_malformed_operations_are_one_line_user_errors(flag: str, value: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        parse_operation(flag, value)
    assert "\n" not in info.value.line()
    if flag != "rotate":  # the value quoted as typed, name included
        assert repr(value) in info.value.line()


def test_unknown_object_names_the_scene_objects() -> None:
    with pytest.raises(UserError, match="no object 'dog'; it has cat, pot"):
        apply_operations(_grid(), NAMES, [Move("dog", 1, 1)])
    with pytest.raises(UserError, match="two different"):
        apply_operations(_grid(), NAMES, [Swap("cat", "cat")])


def test_pushed_out_of_frame_is_refused_with_the_object_and_operation() -> None:
    with pytest.raises(UserError) as info:
        apply_operations(_grid(), NAMES, [parse_operation("move", "pot=+900,0")])
    assert info.value.line() == (
        "pot pushed out of frame by --move pot=+900,+0 (only 0 % of it would stay in the image)"
    )
    with pytest.raises(UserError, match="pushed out of frame"):
        apply_operations(_grid(), NAMES, [Scale("pot", 20)])
    # A small overhang is fine.
    apply_operations(_grid(), NAMES, [Move("pot", 21, 0)])


def test_an_object_hidden_behind_another_is_refused() -> None:
    with pytest.raises(UserError, match=r"cat would be hidden.*--to-front cat"):
        apply_operations(_grid(), NAMES, [Box("pot", 5, 5, 35, 35)])


@settings(max_examples=40, deadline=None)
@given(dx=st.integers(-10, 10), dy=st.integers(-10, 10))
def test_a_move_and_its_inverse_give_back_the_grid(dx: int, dy: int) -> None:
    grid = _grid()
    out, state = apply_operations(grid, NAMES, [Move("cat", dx, dy)])
    back, _ = apply_operations(out, NAMES, [Move("cat", -dx, -dy)], state=state)
    assert np.array_equal(back, grid)
