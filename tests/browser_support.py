"""Driving `layoutedit serve` in a real browser for the tests: Debian's Chromium through its
chromedriver (apt-get install chromium chromium-driver; nothing here downloads a browser),
with real pointer and key events sent by WebDriver.

`BROWSER_MISSING` says why the browser tests cannot run here (None when they can); with
`LAYOUTEDIT_BROWSER_TESTS=required` (CI sets it) a missing browser fails them instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("LAYOUTEDIT_BROWSER_TESTS") == "required"
WAIT = 300.0
"""Seconds to wait for the page to answer: safety stops, not speed checks (a busy machine
may take minutes to load the page or open a scene)."""
LONG = 900.0
"""Seconds to wait for learning or an edit."""


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "no Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
    return None


BROWSER_MISSING = _missing()


def chrome(profile: Path, width: int = 1500, height: int = 1250) -> Any:
    """A headless Chromium window of `width` x `height` CSS px (device pixel ratio 1)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something true; its value. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def text_of(driver: Any, elem_id: str) -> str:
    """The visible text of the element `elem_id` ('' while it is not on the page)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, elem_id)
    return str(found[0].text) if found else ""


def texts_of_css(driver: Any, selector: str) -> list[str]:
    """The first line of visible text of each element `selector` matches (a table cell's
    menu button adds a line of its own)."""
    from selenium.webdriver.common.by import By

    return [
        (str(e.text).strip().splitlines() or [""])[0]
        for e in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


def object_names(driver: Any) -> list[str]:
    """The names in the objects table, top to bottom."""
    return texts_of_css(driver, '#objects [role="gridcell"][data-col="2"]')


def wait_status(driver: Any, starts: str, timeout: float = WAIT) -> str:
    """Wait until the status sentence contains `starts`; the sentence."""
    return str(
        wait_until(
            lambda: (t := text_of(driver, "status")) and starts in t and t,
            timeout,
            f"the status to say {starts!r} (it says {text_of(driver, 'status')!r})",
        )
    )


def click(driver: Any, elem_id: str) -> None:
    """Click the element `elem_id` (a Gradio button's id is on the button itself)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, elem_id).click()


class Canvas:
    """The box editor's canvas: maps the picture it shows (page-image pixels) to the window.

    The editor fits the picture in its canvas, centred (its view is never zoomed or panned
    in these tests).
    """

    def __init__(self, driver: Any, image_size: tuple[int, int]) -> None:
        self.driver = driver
        rect = driver.execute_script(
            "const r = document.querySelector('#boxes canvas').getBoundingClientRect();"
            "return [r.left, r.top, r.width, r.height];"
        )
        left, top, width, height = (float(v) for v in rect)
        image_h, image_w = image_size
        self.scale = min(width / image_w, height / image_h)
        self.left = left + (width - image_w * self.scale) / 2
        self.top = top + (height - image_h * self.scale) / 2

    def point(self, x: float, y: float) -> tuple[int, int]:
        """Window coordinates of the picture's pixel position (x, y)."""
        return round(self.left + x * self.scale), round(self.top + y * self.scale)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
        """Press the mouse at picture position `start`, move in steps to `end`, release."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        (x0, y0), (x1, y1) = self.point(*start), self.point(*end)
        builder = ActionBuilder(self.driver, duration=20)
        pointer = builder.pointer_action
        pointer.move_to_location(x0, y0)
        pointer.pointer_down()
        for i in range(1, steps + 1):
            pointer.move_to_location(
                round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps)
            )
        pointer.pointer_up()
        builder.perform()

    def moved_by(self, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
        """The picture-pixel move a drag from `start` to `end` really makes (whole window
        pixels, as the mouse moves)."""
        (x0, y0), (x1, y1) = self.point(*start), self.point(*end)
        return (x1 - x0) / self.scale, (y1 - y0) / self.scale


def fetch(url: str) -> bytes:
    """GET `url` from the app (localhost)."""
    import httpx

    response = httpx.get(url, timeout=60)
    response.raise_for_status()
    return response.content
