"""The web app's boxes as a person moves them, and what the app says: rectangles to boxes
(moves, resizes that keep proportions and the edges not dragged, free resizes), nudges,
undo/redo, the box actions on a tab's state, stretched boxes in the layout operations, and
the sentences (progress with the time left, captions, the objects table). No Gradio."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from layoutedit.editing.session import EditResult
from layoutedit.errors import UserError
from layoutedit.scenes.layout_edits import Box, apply_operations
from layoutedit.scenes.masks import bounding_box, move_mask
from layoutedit.serve import box_actions, wording
from layoutedit.serve.box_edits import (
    UNDO_LIMIT,
    BoxHistory,
    Snapshot,
    box_from_rect,
    nudge_step,
    nudged,
    object_rects,
)
from layoutedit.serve.boxes import ObjectBox, boxes_of, layout_from_boxes
from layoutedit.serve.session import SessionState, sorted_candidates
from layoutedit.shapes.world import sample_scene, write_scene_folder


def two_objects() -> np.ndarray:
    labels = np.full((40, 40), 2, dtype=np.int16)
    labels[4:12, 4:12] = 0  # 8x8 square
    labels[24:32, 20:36] = 1  # 16x8 bar
    return labels


def bounds_of(labels: np.ndarray, k: int) -> tuple[int, int, int, int] | None:
    return bounding_box(labels == k)


# --- stretched boxes in the layout operations --------------------------------------------------


def test_move_mask_scales_each_axis_on_its_own() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[8:12, 8:12] = True  # 4x4 about (10, 10)
    wide = move_mask(mask, (2.0, 1.0), (10.0, 10.0), (10.0, 10.0))
    assert bounding_box(wide) == (6, 8, 14, 12)
    single = move_mask(mask, np.float32(2.0), (10.0, 10.0), (10.0, 10.0))  # NumPy scalars too
    assert bounding_box(single) == (6, 6, 14, 14)
    assert np.array_equal(
        move_mask(mask, 2.0, (10.0, 10.0), (10.0, 10.0)),
        move_mask(mask, (2.0, 2.0), (10.0, 10.0), (10.0, 10.0)),
    )


def test_a_box_keeps_proportions_unless_stretched() -> None:
    labels = two_objects()
    kept, _ = apply_operations(labels, ["a", "b"], [Box("a", 4, 14, 20, 22)])
    assert bounds_of(kept, 0) == (8, 14, 16, 22)  # 8x8 fits the 16x8 box, centred
    stretched, _ = apply_operations(labels, ["a", "b"], [Box("a", 4, 14, 20, 22, stretch=True)])
    assert bounds_of(stretched, 0) == (4, 14, 20, 22)
    assert np.array_equal(stretched == 1, labels == 1)


# --- rectangles to boxes -------------------------------------------------------------------------


def test_rectangles_of_unmoved_boxes_are_the_objects_bounds() -> None:
    labels = two_objects()
    assert object_rects(labels, boxes_of(labels, 2)) == [(4, 4, 12, 12), (20, 24, 36, 32)]
    labels[labels == 1] = 2
    assert object_rects(labels, boxes_of(labels, 2))[1] is None  # not shown, no box


def test_a_rectangle_of_the_same_size_is_a_move() -> None:
    labels = two_objects()
    start = boxes_of(labels, 2)
    moved = box_from_rect(labels, 0, (20.3, 2, 28.3, 10), start[0])
    assert (moved.sx, moved.sy) == (1.0, 1.0)
    assert moved.cx == pytest.approx(24.3 / 40) and moved.cy == pytest.approx(6 / 40)
    # A click (or the page's rounding) is no change at all.
    assert box_from_rect(labels, 0, (4.4, 3.7, 12.4, 11.7), start[0]) is start[0]


def test_a_corner_resize_keeps_proportions_and_the_opposite_corner() -> None:
    labels = two_objects()
    start = boxes_of(labels, 2)
    # The bottom-right corner of the 8x8 square dragged by (+8, +2): width doubles, so
    # the height does too, and the top-left corner stays at (4, 4).
    box = box_from_rect(labels, 0, (4, 4, 20, 14), start[0])
    assert (box.sx, box.sy) == (2.0, 2.0)
    assert object_rects(labels, [box])[0] == pytest.approx((4, 4, 20, 20))
    # The top-left corner dragged instead: the bottom-right one stays.
    box = box_from_rect(labels, 0, (0, 2, 12, 12), start[0])
    assert object_rects(labels, [box])[0] == pytest.approx((0, 0, 12, 12))


def test_a_side_resize_keeps_proportions_about_the_other_axis_centre() -> None:
    labels = two_objects()
    start = boxes_of(labels, 2)
    # The bar's right side dragged from 36 to 44: 1.5 times as wide, so as high, centred
    # on its old middle row; its left side stays.
    box = box_from_rect(labels, 1, (20, 24, 44, 32), start[1])
    assert (box.sx, box.sy) == (1.5, 1.5)
    assert object_rects(labels, [start[0], box])[1] == pytest.approx((20, 22, 44, 34))


def test_a_free_resize_follows_the_rectangle() -> None:
    labels = two_objects()
    start = boxes_of(labels, 2)
    box = box_from_rect(labels, 0, (4, 4, 20, 14), start[0], keep_proportions=False)
    assert (box.sx, box.sy) == (2.0, 1.25) and not box.keeps_proportions
    out = layout_from_boxes(labels, ["a", "b"], [box, start[1]])
    assert bounds_of(out, 0) == (4, 4, 20, 14)


def test_a_resize_keeps_a_stretched_box_stretched() -> None:
    labels = two_objects()
    stretched = ObjectBox(0.3, 0.2, 2.0, 1.0)  # 16x8 on the page
    x0, y0, x1, y1 = object_rects(labels, [stretched])[0] or (0, 0, 0, 0)
    box = box_from_rect(labels, 0, (x0, y0, x1 + 16, y1), stretched)  # twice as wide
    assert (box.sx, box.sy) == (4.0, 2.0)


def test_nudges_move_by_whole_steps() -> None:
    assert nudge_step((64, 64)) == 1 and nudge_step((512, 384)) == 8
    box = nudged(ObjectBox(0.5, 0.5, 1.5, 1.5), -2, 1, (64, 64))
    assert box == ObjectBox(0.5 - 2 / 64, 0.5 + 1 / 64, 1.5, 1.5)


def test_history_undoes_and_redoes_in_order() -> None:
    history = BoxHistory()
    a, b, c = (Snapshot((ObjectBox(x, 0.5),)) for x in (0.1, 0.2, 0.3))
    history.record(a)  # a -> b
    history.record(b)  # b -> c
    assert history.back(c) == b and history.back(b) == a and history.back(a) is None
    assert history.forward(a) == b
    history.record(b)  # a new change after an undo drops what redo had
    assert history.forward(c) is None
    for _ in range(UNDO_LIMIT + 5):
        history.record(a)
    assert len(history.undo) == UNDO_LIMIT


# --- the box actions on a tab ---------------------------------------------------------------


@pytest.fixture
def tab(tmp_path: Path) -> SessionState:
    from layoutedit.scenes.scene import load_scene

    write_scene_folder(sample_scene(0, 3), tmp_path / "demo")
    state = SessionState()
    state.set_scene("demo", load_scene(tmp_path / "demo"))
    return state


def rect_of(state: SessionState, k: int) -> tuple[float, float, float, float]:
    assert state.base is not None
    rect = object_rects(state.base, state.boxes)[k]
    assert rect is not None
    return rect


def test_a_drag_moves_one_box_and_can_be_undone(tab: SessionState) -> None:
    assert tab.scene is not None
    names = tab.scene.names
    start = list(tab.boxes)
    x0, y0, x1, y1 = rect_of(tab, 1)
    rects = {n: rect_of(tab, k) for k, n in enumerate(names)}
    rects[names[1]] = (x0 + 6, y0 + 20, x1 + 6, y1 + 20)
    rects["a box drawn anew"] = (0, 0, 10, 10)  # ignored
    del rects[names[2]]  # a box removed on the page keeps its place
    summary = box_actions.move_rects(tab, rects)
    assert summary is not None and summary["message"].startswith(f"Moved {names[1]}")
    assert summary["selected"] == names[1] and summary["can_undo"]
    assert tab.boxes[0] == start[0] and tab.boxes[2] == start[2] and tab.boxes[1] != start[1]
    assert box_actions.move_rects(tab, rects) is None  # the page echoing the new state
    moved = tab.target()
    box_actions.undo(tab)
    assert tab.boxes == start
    box_actions.redo(tab)
    assert np.array_equal(tab.target(), moved)
    with pytest.raises(UserError, match="nothing to redo"):
        box_actions.redo(tab)


def test_a_drag_out_of_the_frame_is_refused_and_changes_nothing(tab: SessionState) -> None:
    assert tab.scene is not None
    start = list(tab.boxes)
    far = {tab.scene.names[0]: (200.0, 200.0, 230.0, 230.0)}
    with pytest.raises(UserError, match="out of frame"):
        box_actions.move_rects(tab, far, keep_proportions=False)
    assert tab.boxes == start and not tab.changes.undo


def test_nudge_reset_and_painting_are_undoable(tab: SessionState) -> None:
    assert tab.scene is not None
    start = list(tab.boxes)
    box_actions.select(tab, tab.scene.names[2])
    box_actions.nudge(tab, 1, 0)
    box_actions.nudge(tab, 1, 0)
    assert tab.boxes[2].cx == pytest.approx(start[2].cx + 2 / 64)
    box_actions.reset(tab)
    assert tab.boxes == start
    box_actions.undo(tab)
    assert tab.boxes[2].cx == pytest.approx(start[2].cx + 2 / 64)
    painted = np.asarray(tab.scene.palette, dtype=np.uint8)[tab.scene.labels]
    box_actions.use_painting(tab, painted)
    assert tab.painted is not None
    box_actions.undo(tab)
    assert tab.painted is None and tab.boxes[2].cx == pytest.approx(start[2].cx + 2 / 64)
    with pytest.raises(UserError, match="no object"):
        box_actions.select(tab, "unicorn")


# --- what the app says ---------------------------------------------------------------------


def test_progress_says_the_share_and_the_time_left() -> None:
    line = wording.progress_line("learning 3 objects", 4, 10, elapsed=10.0)
    assert wording.stage_words("textual inversion joint") == "their words"
    assert line == "learning 3 objects: 40 %, about 15 s left"  # 2.5 s a step, 6 to go
    assert wording.progress_line("editing 1 seed", 0, 10, 0.0) == "editing 1 seed: 0 %"
    assert wording.progress_line("x", 10, 10, 30.0) == "x: 100 %"
    # A resumed job: 6 of 10 done but only 2 run now, in 4 s.
    assert wording.progress_line("x", 6, 10, 4.0, counted=2).endswith("about 8.0 s left")
    assert wording.duration(125) == "2 min 5 s"


def test_the_objects_table_shows_photo_and_mask_colours(tab: SessionState) -> None:
    scene = tab.scene
    assert scene is not None
    rows = wording.object_rows(scene)
    assert [r[2] for r in rows] == list(scene.names)
    for k, row in enumerate(rows):
        mean = scene.image[scene.labels == k].mean(axis=0)
        photo = wording.hex_colour(tuple(int(v) for v in np.rint(mean)))
        assert f"background:{photo}" in row[0]
        assert f"background:{wording.hex_colour(scene.objects[k].colour)}" in row[1]
    # The demo's blue star: blue in the photo, red in the mask.
    star = scene.names.index("blue star")
    red, green, blue = wording.mean_colours(scene)[star]
    assert blue > red and blue > green


def test_candidates_rank_as_the_best_is_picked() -> None:
    def cand(seed: int, loss: float, score: float | None) -> Any:
        return SimpleNamespace(seed=seed, loss=loss, layout_score=score, seconds=1.0)

    scored = SimpleNamespace(candidates=[cand(0, 0.1, 0.5), cand(8, 0.3, 0.9), cand(88, 0.2, 0.9)])
    ranked = sorted_candidates(scored)  # type: ignore[arg-type]
    assert [c.seed for c in ranked] == [88, 8, 0]
    assert ranked[0] is EditResult.best(scored)  # type: ignore[arg-type]
    assert wording.caption(1, ranked[0]) == "1. seed 88 · layout match 90 % · 1.0 s"
    plain = SimpleNamespace(candidates=[cand(0, 0.3, None), cand(8, 0.1, None)])
    assert [c.seed for c in sorted_candidates(plain)] == [8, 0]  # type: ignore[arg-type]
    assert "attention loss 0.100" in wording.caption(1, sorted_candidates(plain)[0])  # type: ignore[arg-type]


def test_sentences_name_what_happened(tab: SessionState) -> None:
    assert tab.scene is not None
    said = wording.opened("demo", tab.scene)
    assert "3 objects (blue star, brown square and pink ring)" in said and "64 × 64" in said
    assert wording.learned({"cached": True, "seconds": 0.31}, 3).startswith(
        "The concept came from the cache (0.3 s)"
    )
    assert wording.learned({"cached": False, "seconds": 21.4}, 3).startswith(
        "Learned 3 objects in 21 s"
    )
    assert "nothing was kept" in wording.learned({"cancelled": True}, 3)
    stretched = wording.moved("cat", ObjectBox(0.3, 0.35, 1.2, 0.8))
    assert "120 % of its width and 80 % of its height" in stretched


def test_the_box_editors_boxes_become_scene_rectangles() -> None:
    from layoutedit.serve.view import display_factor, page_rects

    assert display_factor((64, 64)) == 5 and display_factor((480, 640)) == 1
    sent = {
        "image": {"path": "view.png"},
        "boxes": [
            {"xmin": 50, "ymin": 100, "xmax": 150, "ymax": 125, "label": "cat"},
            {"xmin": 20, "ymin": 20, "xmax": 40, "ymax": 40, "label": "cat"},  # a second box
            {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10, "label": ""},  # drawn anew
            {"xmin": 20, "ymin": 40, "xmax": 60, "ymax": 80, "label": "pot", "scaleFactor": 2},
        ],
    }
    rects = page_rects(sent, (64, 64))  # the page shows the scene 5 times enlarged
    assert rects == {"cat": (10.0, 20.0, 30.0, 25.0), "pot": (2.0, 4.0, 6.0, 8.0)}
    assert page_rects(None, (64, 64)) == {}
