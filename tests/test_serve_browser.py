"""`layoutedit serve` as a person uses it: the page in Debian's Chromium, driven by Selenium
with real mouse and key events (see `browser_support`). The app runs in-process on a free
localhost port over the embedded model with the `fast` preset (its edits start from the
objects pasted into their boxes, as the embedded model's own preset does, so a 10-step edit
puts the object where the box says).

Skipped without the `ui` extra, selenium, or Chromium and chromedriver; CI installs them
and sets LAYOUTEDIT_BROWSER_TESTS=required, so there they fail rather than skip.
LAYOUTEDIT_SERVE_SCREENSHOT=<png> saves the page after the drag-and-edit test (the docs'
docs/serve.png).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_support import (
    BROWSER_MISSING,
    LONG,
    REQUIRED,
    WAIT,
    Canvas,
    chrome,
    click,
    fetch,
    object_names,
    text_of,
    wait_status,
    wait_until,
)
from PIL import Image

if BROWSER_MISSING and REQUIRED:
    pytest.fail(f"LAYOUTEDIT_BROWSER_TESTS=required but {BROWSER_MISSING}", pytrace=False)
if BROWSER_MISSING:
    pytest.skip(BROWSER_MISSING, allow_module_level=True)
pytest.importorskip("gradio", reason="the `ui` extra (gradio) is not installed")
pytest.importorskip("gradio_image_annotation", reason="the `ui` extra is not installed")

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from layoutedit.scenes.masks import bounding_box, iou
from layoutedit.scenes.scene import Scene, load_scene
from layoutedit.serve.view import display_factor
from layoutedit.serve.wording import mean_colours
from layoutedit.shapes.world import sample_scene, write_scene_folder

# The embedded model's preset starts from the pasted objects and puts the source back where
# the background stays; the fast preset's learning and 10 steps keep the tests short.
PASTE_START = {
    "init": "paste",
    "paste_strength": 0.4,
    "background_composite": True,
    "composite_feather": 0.0,
    "vacated": "fill",
    "colour_match": True,
    "rank_by": "layout",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app over scenes `demo` (3 objects, opened when a tab loads) and `other` (2)."""
    from layoutedit.config import resolve_settings
    from layoutedit.editor import Editor
    from layoutedit.serve.actions import ServeContext
    from layoutedit.serve.ui import launch, use_own_file_cache

    base = tmp_path_factory.mktemp("browser")
    # As `layoutedit serve` does: its own Gradio cache, apart from other test workers' apps.
    use_own_file_cache(base / "gradio")
    root = base / "root"
    write_scene_folder(sample_scene(0, 3), root / "demo")
    write_scene_folder(sample_scene(1, 2), root / "other")
    (base / "work").mkdir()
    settings = resolve_settings("fast", None, {"edit": PASTE_START})
    ctx = ServeContext(
        editor=Editor(settings=settings, cache_dir=base / "cache"),
        root=root,
        work_root=base / "work",
    )
    server = launch(ctx, port=free_port(), initial_scene="demo", block=False)
    try:
        yield {
            "url": server.local_url,
            "scenes": {name: load_scene(root / name) for name in ("demo", "other")},
            "base": base,
        }
    finally:
        server.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium; the page as it last looked is left in the test's tmp_path
    (`page.png`) for a failure to be read."""
    driver = chrome(tmp_path / "profile")
    try:
        yield driver
    finally:
        try:
            driver.save_screenshot(str(tmp_path / "page.png"))
        finally:
            driver.quit()


def page_size(scene: Scene) -> tuple[int, int]:
    """The size of the source as the page shows it (enlarged a whole factor)."""
    factor = display_factor(scene.size)
    return scene.size[0] * factor, scene.size[1] * factor


def drag_box(
    driver: Any, scene: Scene, name: str, by: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Drag object `name`'s box by `by` scene pixels (from its centre, with the mouse);
    the rectangle (scene px) the box now covers."""
    factor = display_factor(scene.size)
    canvas = Canvas(driver, page_size(scene))
    x0, y0, x1, y1 = bounding_box(scene.labels == scene.names.index(name)) or (0, 0, 0, 0)
    start = ((x0 + x1) / 2 * factor, (y0 + y1) / 2 * factor)
    end = (start[0] + by[0] * factor, start[1] + by[1] * factor)
    canvas.drag(start, end)
    dx, dy = (v / factor for v in canvas.moved_by(start, end))
    return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


def preview_bytes(driver: Any) -> bytes:
    """The target layout preview as the page shows it."""
    src = driver.find_element(By.CSS_SELECTOR, "#preview img").get_attribute("src")
    return fetch(src)


def test_dragging_a_box_moves_the_object_in_the_edit(
    app: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    driver, scene = browser, app["scenes"]["demo"]
    driver.get(app["url"])
    wait_status(driver, "Opened demo: 3 objects")
    before = preview_bytes(driver)

    # The blue star, dragged with the mouse 10 px right and 21 px up (into the free corner).
    target = drag_box(driver, scene, "blue star", (10, -21))
    said = wait_status(driver, "Moved blue star")
    assert "100 % of its size" in said  # a move, not a resize
    wait_until(lambda: preview_bytes(driver) != before, WAIT, "the layout preview to change")

    click(driver, "edit")
    wait_status(driver, "Edit 1: 1 seed in ", timeout=LONG)  # learns the scene first
    slider = driver.find_elements(By.CSS_SELECTOR, "#compare img")
    assert len(slider) == 2  # before and after

    click(driver, "prepare-downloads")
    links = wait_until(
        lambda: [
            a.get_attribute("href")
            for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")
            if (a.get_attribute("href") or "").endswith(".png")
        ],
        WAIT,
        "the download links",
    )
    with Image.open(BytesIO(fetch(links[0]))) as best:  # the best candidate, seed-0.png
        image = np.asarray(best.convert("RGB"))
    assert image.shape == scene.image.shape

    # The star, found by its colour in the edited picture, lies in the box it was dragged to.
    k = scene.names.index("blue star")
    colour = np.asarray(mean_colours(scene)[k])
    star = np.abs(image.astype(int) - colour).sum(axis=-1) < 60
    found = bounding_box(star)
    assert found is not None
    assert np.allclose(found, target, atol=4), (found, target)
    assert star.sum() > 0.7 * (scene.labels == k).sum()
    # The rest is the source: the background away from the star's old and new places, and
    # the other objects where they were.
    rest = np.ones(scene.labels.shape, dtype=bool)
    old = bounding_box(scene.labels == k) or (0, 0, 0, 0)
    for x0, y0, x1, y1 in (old, target):
        rest[max(0, int(y0) - 3) : int(y1) + 4, max(0, int(x0) - 3) : int(x1) + 4] = False
    background = rest & (scene.labels == scene.background_index)
    diff = np.abs(image.astype(int) - scene.image.astype(int)).mean(axis=-1)
    assert diff[background].mean() < 3, diff[background].mean()
    for j, other in enumerate(mean_colours(scene)):
        if j != k:
            there = np.abs(image.astype(int) - np.asarray(other)).sum(axis=-1) < 60
            assert iou(there, scene.labels == j) > 0.7, scene.names[j]

    shot = os.environ.get("LAYOUTEDIT_SERVE_SCREENSHOT")
    if shot:
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(shot)


def test_upload_mask_rename_learn_and_edit(
    app: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    driver = browser
    world = sample_scene(7, 2)
    photo = tmp_path / "photo.png"
    Image.fromarray(world.image).save(photo)
    driver.get(app["url"])
    wait_status(driver, "Opened demo")

    driver.find_element(
        By.XPATH, "//*[normalize-space(text())='Upload a photo (masked by its colours)']"
    ).click()
    wait_until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"),
        WAIT,
        "the file input",
    )
    driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(photo))
    wait_until(lambda: ".png" in text_of(driver, "photo"), WAIT, "the upload")
    driver.find_element(By.CSS_SELECTOR, "#object-names textarea").send_keys(", ".join(world.names))
    click(driver, "upload")
    wait_status(driver, f"Opened upload 1: 2 objects ({world.names[0]} and {world.names[1]})")

    # Rename the first object in its cell of the objects table: click, Enter, type, Enter.
    wait_until(lambda: object_names(driver) == list(world.names), WAIT, "the names")
    driver.find_element(By.CSS_SELECTOR, '#objects [data-testid="cell-0-2"]').click()
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    # The cell's editor opens a moment after Enter (later still on a busy machine).
    wait_until(
        lambda: driver.switch_to.active_element.get_attribute("value") == world.names[0],
        WAIT,
        "the cell editor",
    )
    editor = driver.switch_to.active_element
    assert editor.get_attribute("value") == world.names[0]
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys("my shape", Keys.ENTER)
    wait_status(driver, f"Renamed {world.names[0]} to my shape")
    assert object_names(driver) == ["my shape", world.names[1]]

    # Learn: the status says how far it is and how long is left, then what it did.
    click(driver, "learn")
    seen = wait_until(
        lambda: (t := driver.find_element(By.ID, "status").text) and "left" in t and t,
        LONG,
        "a progress line with the time left",
    )
    assert "learning 2 objects" in seen and "%" in seen
    wait_status(driver, "Learned 2 objects in ", timeout=LONG)

    # Nudge the picked object (the renamed one) with the arrow keys, then edit.
    assert (
        driver.find_element(By.CSS_SELECTOR, "#picked input").get_attribute("value") == "my shape"
    )
    driver.find_element(By.ID, "status").click()  # the keys go to the page, not a field
    for _ in range(3):
        ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
    said = wait_status(driver, "Moved my shape")
    click(driver, "edit")
    wait_status(driver, "Edit 1: 1 seed in ", timeout=LONG)
    assert "seed 0" in text_of(driver, "candidates")
    assert "% across" in said


def test_two_tabs_editing_two_scenes_keep_their_own_state(
    app: dict[str, Any], browser: Any
) -> None:
    driver = browser
    demo, other = app["scenes"]["demo"], app["scenes"]["other"]
    driver.get(app["url"])
    wait_status(driver, "Opened demo: 3 objects")
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    second = driver.current_window_handle
    driver.get(app["url"])
    wait_status(driver, "Opened demo")
    field = driver.find_element(By.CSS_SELECTOR, "#scene-name input")
    field.clear()
    field.send_keys("other", Keys.ENTER)
    click(driver, "open")
    wait_status(driver, f"Opened other: 2 objects ({other.names[0]} and {other.names[1]})")
    other_preview = preview_bytes(driver)

    # Tab one moves a box of its scene; tab two's page and state stay as they were.
    driver.switch_to.window(first)
    drag_box(driver, demo, demo.names[1], (6, 6))
    wait_status(driver, f"Moved {demo.names[1]}")
    demo_preview = preview_bytes(driver)
    driver.switch_to.window(second)
    assert text_of(driver, "status").startswith("Opened other")
    assert preview_bytes(driver) == other_preview
    assert object_names(driver) == list(other.names)

    # Tab two moves its own box; undo in tab one takes back only tab one's move.
    drag_box(driver, other, other.names[0], (-5, 5))
    wait_status(driver, f"Moved {other.names[0]}")
    moved_other = preview_bytes(driver)
    driver.switch_to.window(first)
    assert preview_bytes(driver) == demo_preview
    click(driver, "undo")
    wait_status(driver, "Undone")
    driver.switch_to.window(second)
    assert preview_bytes(driver) == moved_other
    click(driver, "undo")
    wait_status(driver, "Undone")
    assert preview_bytes(driver) == other_preview
