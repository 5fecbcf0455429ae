"""The review grid as a person uses it: headless Chromium at desktop and phone size labels queued frames
by click and by keyboard; the files must land in DATA/CLASS/. Screenshots go to the test's folder, or to
docs/review-{desktop,phone}.png with EDGECNN_SCREENSHOTS=docs (then look at them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import pytest
from edgecnn.runtime.live.review_desk import ReviewDesk
from edgecnn.runtime.live.web import LiveServer, ServeAddress

from tests.runtime.cameras import wait_for
from tests.runtime.test_page import browser  # noqa: F401 - a fixture
from tests.runtime.test_review_api import make_queue

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
DOCS = Path(__file__).parents[2] / "docs"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def cards(driver: Any) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('.frame')].map(f => f.dataset.id)")


@pytest.mark.parametrize("size", sorted(SIZES))
def test_review_grid_labels_by_click_and_keyboard(browser: Any, tmp_path: Path, size: str) -> None:  # noqa: F811
    from edgecnn.runtime.live.web import HEADERS
    from edgecnn.runtime.live.web_retrain import retrain_routes
    from edgecnn.runtime.live.web_review import review_routes
    from selenium.webdriver.common.by import By

    review, data = tmp_path / "review", tmp_path / "data"
    jpegs = make_queue(review, 5)  # frames 0..4; the grid shows 4 first
    desk = ReviewDesk(review, data)
    desk.classes = ("cup", "mug")
    server = LiveServer(ServeAddress("127.0.0.1", 0), source="cup", token="t0k", say=lambda m: None,
                        routes=(*review_routes(desk), *retrain_routes(desk, HEADERS)))
    browser.set_window_size(*SIZES[size])
    with server:
        browser.get(f"http://127.0.0.1:{server.port}/review?token=t0k")
        wait_for(lambda: len(cards(browser)) == 5 and browser.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"), timeout=20)
        shot = (DOCS if os.environ.get("EDGECNN_SCREENSHOTS") == "docs" else tmp_path) / f"review-{size}.png"
        browser.save_screenshot(str(shot))
        assert cv2.imread(str(shot)).shape[1] >= SIZES[size][0] - 20
        first = cards(browser)
        browser.find_element(By.CSS_SELECTOR, "#classes button[data-label='mug']").click()  # selected: 1st
        wait_for(lambda: len(cards(browser)) == 4)
        browser.find_elements(By.CSS_SELECTOR, ".frame")[1].click()  # pick the (new) second card
        browser.find_element(By.ID, "new-name").send_keys("teapot")
        browser.find_element(By.CSS_SELECTOR, "#new-class button").click()
        wait_for(lambda: len(cards(browser)) == 3)
        browser.find_element(By.TAG_NAME, "body").send_keys("1")  # keyboard: class 1, "cup"
        wait_for(lambda: len(cards(browser)) == 2)
        assert "labelled cup" in browser.find_element(By.ID, "message").text
        assert cards(browser) == [first[1], first[4]]  # mug: 1st, teapot: 3rd, cup: 4th (newest first)
        retrain_says_404(browser, shot.with_name(f"review-retrain-404-{size}.png"))
    labelled = sorted(str(p.relative_to(data)) for p in data.rglob("*.jpg"))
    assert labelled == [f"cup/{jpegs[1].name}", f"mug/{jpegs[4].name}", f"teapot/{jpegs[2].name}"]
    assert len(list(review.rglob("*.jpg"))) == 2 and len(list(data.rglob("*.json"))) == 3


def panel(driver: Any) -> str:
    return driver.find_element("id", "retrain-panel").text


def retrain_says_404(driver: Any, shot: Path) -> None:
    """The model is one file, not a bundle folder (desk.retrain_job None): a click says why, from the 404."""
    assert not driver.find_element("id", "retrain-panel").is_displayed()
    driver.find_element("id", "retrain").click()  # raises if the fixed answer bar covers it on a phone
    wait_for(lambda: "cannot retrain" in panel(driver))
    assert "not a bundle folder" in panel(driver)
    assert "error" in driver.find_element("id", "retrain-panel").get_attribute("class")
    assert driver.find_element("id", "retrain").is_enabled()
    driver.save_screenshot(str(shot))


@pytest.mark.parametrize("review", [True, False])
def test_the_live_page_links_to_the_review_only_with_review(browser: Any, tmp_path: Path,  # noqa: F811
                                                            review: bool) -> None:
    from edgecnn.runtime.live.web_review import review_routes
    from selenium.common.exceptions import TimeoutException

    make_queue(tmp_path / "review", 1)
    routes = tuple(review_routes(ReviewDesk(tmp_path / "review"))) if review else ()
    browser.set_window_size(*SIZES["desktop"])
    with LiveServer(ServeAddress("127.0.0.1", 0), source="cup", token="t0k", say=lambda m: None,
                    routes=routes) as server:
        # no camera: the MJPEG picture never ends loading, so the page's load is not waited for
        browser.set_page_load_timeout(3)
        try:
            browser.get(f"http://127.0.0.1:{server.port}/?token=t0k")
        except TimeoutException:
            pass
        finally:
            browser.set_page_load_timeout(20)
        wait_for(lambda: browser.execute_script("return Boolean(document.getElementById('review-link'))"))
        link = browser.find_element("id", "review-link")
        if review:
            wait_for(lambda: link.is_displayed())
            assert link.get_attribute("href").endswith("/review?token=t0k")
            link.click()
            wait_for(lambda: len(cards(browser)) == 1)
        else:
            wait_for(lambda: browser.execute_script("return performance.getEntriesByType('resource')"
                                                    ".some(e => e.name.includes('api/review'))"))
            assert not link.is_displayed()
