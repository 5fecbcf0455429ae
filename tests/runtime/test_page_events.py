"""The page's event timeline as a person sees it: the slideshow's real events in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edgecnn.runtime.live.web import LiveServer, ServeAddress

from tests.box.test_events import run_slideshow
from tests.runtime.cameras import wait_for
from tests.runtime.test_page import CHROMEDRIVER, CHROMIUM, FLAGS

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and CHROMEDRIVER),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver)")
SCREENSHOT = Path("/tmp/events3-timeline.png")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # "eager": get() returns at DOMContentLoaded; the page's MJPEG <img> never finishes loading
    options.page_load_strategy = "eager"
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def timeline(browser: Any) -> list[str]:
    return [item.text for item in browser.find_elements("css selector", "#timeline li")]


def test_the_page_lists_the_slideshows_events_newest_first(tmp_path: Path, browser: Any) -> None:
    from edgecnn.runtime.box.wiring import EventOptions

    with LiveServer(ServeAddress("127.0.0.1", 0), "show", say=lambda _: None) as page:
        run_slideshow(tmp_path, EventOptions(), page)
        browser.get(page.url)
        wait_for(lambda: len(timeline(browser)) == 3, timeout=20)
        shown = timeline(browser)
        heading = browser.find_element("css selector", "#timeline h3").text
        browser.find_element("id", "timeline").screenshot(str(SCREENSHOT))
    assert heading == "shelf"
    assert [line.split(" ", 1)[1] for line in shown] == ["green \u2192 unknown", "red \u2192 green",
                                                           "- \u2192 red"]
