"""The viewer in a real browser: headless Chromium, driven by Playwright."""

from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ARTIFACTS, REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")]


def panel_source(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} img").first.get_attribute("src")


def open_page(playwright, viewer_url, elsewhere):
    """A fresh browser on the viewer; every request that leaves the local server lands in
    ``elsewhere`` (the page must run offline)."""
    server = urlparse(viewer_url).netloc
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("request", lambda request: urlparse(request.url).scheme in ("http", "https")
            and urlparse(request.url).netloc != server and elsewhere.append(request.url))
    page.goto(viewer_url)
    return browser, page


def choose_model(page, name):
    page.get_by_label("Model").click()
    page.get_by_role("option", name=name, exact=True).click()


def wait_for_new_source(page, elem_id, old):
    page.wait_for_function(
        "([id, old]) => document.querySelector(`#${id} img`)?.getAttribute('src') !== old",
        arg=[elem_id, old], timeout=30_000)


def test_the_page_opens_explained_a_click_erases_a_cell_and_each_model_has_its_examples(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            for elem_id in ("branch-a", "erased", "branch-b", "fused"):  # no click: the first view is drawn
                expect(page.locator(f"#{elem_id} img")).to_be_visible(timeout=30_000)
            expect(page.locator("#status")).to_contain_text("tiny_synthetic_acol")
            expect(page.locator("#model-about")).to_contain_text("tiny random-init test model")
            verdict = page.locator("#verdict-b").inner_text()
            assert "cells erased (δ = 0.50)" in verdict
            before = {elem_id: panel_source(page, elem_id) for elem_id in ("branch-a", "branch-b")}

            erased = page.locator("#erased img").first  # the picture, then its colour key on the right
            box = erased.bounding_box()
            natural_width, natural_height = erased.evaluate("image => [image.naturalWidth, image.naturalHeight]")
            shown = natural_height  # the display picture is square here, the key adds width only
            x, y = (3.5 * shown / 8), (2.5 * shown / 8)  # the middle of cell (row 2, column 3) of the 8x8 grid
            page.mouse.click(box["x"] + x * box["width"] / natural_width, box["y"] + y * box["height"] / natural_height)
            expect(page.locator("#verdict-b")).to_contain_text("(by hand)", timeout=30_000)
            wait_for_new_source(page, "branch-b", before["branch-b"])
            assert page.locator("#verdict-b").inner_text() != verdict, "B's verdict follows the hand-made mask"
            assert panel_source(page, "branch-a") == before["branch-a"], "branch A does not depend on the mask"
            expect(page.get_by_label("Row")).to_have_value("2")  # the cell clicked, by number
            expect(page.get_by_label("Column")).to_have_value("3")
            page.locator("#reset-mask").click()
            expect(page.locator("#verdict-b")).to_contain_text("(δ = 0.50)", timeout=30_000)

            expect(page.locator("#examples-0")).to_be_visible()  # the synthetic pictures, for the teaching model
            choose_model(page, "tiny_acol")
            expect(page.locator("#examples-1")).to_be_visible(timeout=30_000)  # the tiny CUB root's birds
            expect(page.locator("#examples-0")).to_be_hidden()
            expect(page.locator("#status")).to_contain_text("tiny_acol: ", timeout=30_000)
            expect(page.locator("#model-about")).to_contain_text("3 bird species")
            choose_model(page, "tiny_synthetic_acol")
            expect(page.locator("#examples-0")).to_be_visible(timeout=30_000)
            expect(page.locator("#status")).to_contain_text("tiny_synthetic_acol: ", timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app_first_view.png"), full_page=True)
        finally:
            browser.close()
    assert not elsewhere, f"the page fetched from outside the local server: {elsewhere[:5]}"


def test_upload_move_the_slider_and_the_panels_change(viewer_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    example = sorted((REPO / "assets" / "examples").glob("*.png"))[1]  # a known true box, too
    (tmp_path / "upload.png").write_bytes(example.read_bytes())
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            choose_model(page, "tiny_acol")  # it has a CAM baseline to compare with
            expect(page.locator("#status")).to_contain_text("tiny_acol: ", timeout=30_000)
            shown = panel_source(page, "branch-a")  # the model's own first example
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "upload.png"))
            wait_for_new_source(page, "branch-a", shown)
            expect(page.get_by_text("IoU with true box").first).to_be_visible(timeout=30_000)
            before = {elem_id: panel_source(page, elem_id) for elem_id in ("branch-a", "erased", "branch-b")}

            number = page.locator("#erase-threshold input[type=number]")
            number.fill("0.2")
            number.press("Enter")
            expect(page.get_by_text("δ = 0.20").first).to_be_visible(timeout=30_000)
            wait_for_new_source(page, "branch-b", before["branch-b"])
            assert panel_source(page, "erased") != before["erased"], "the erased-feature mask follows the slider"
            assert panel_source(page, "branch-b") != before["branch-b"], "branch B's map follows the slider"
            assert panel_source(page, "branch-a") == before["branch-a"], "branch A does not depend on δ"

            page.get_by_role("tab", name="Compare with CAM").click()  # opening the tab draws the comparison
            expect(page.locator("#comparison img")).to_be_visible(timeout=30_000)
            compared = panel_source(page, "comparison")
            number.fill("0.5")
            number.press("Enter")
            wait_for_new_source(page, "comparison", compared)  # and, while open, it follows the slider
            page.get_by_role("tab", name="Delta sweep").click()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        finally:
            browser.close()
    assert not elsewhere, f"the page fetched from outside the local server: {elsewhere[:5]}"
