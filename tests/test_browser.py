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


def test_upload_move_the_slider_and_the_panels_change(viewer_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    example = sorted((REPO / "assets" / "examples").glob("*.png"))[0]  # a known true box, too
    (tmp_path / "upload.png").write_bytes(example.read_bytes())
    server = urlparse(viewer_url).netloc
    elsewhere = []  # every request that leaves the local server: the page must run offline
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("request", lambda request: urlparse(request.url).scheme in ("http", "https")
                    and urlparse(request.url).netloc != server and elsewhere.append(request.url))
            page.goto(viewer_url)
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "upload.png"))
            for elem_id in ("branch-a", "erased", "branch-b", "fused"):
                expect(page.locator(f"#{elem_id} img")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("IoU with true box").first).to_be_visible(timeout=30_000)
            before = {elem_id: panel_source(page, elem_id) for elem_id in ("branch-a", "erased", "branch-b")}

            number = page.locator("#erase-threshold input[type=number]")
            number.fill("0.2")
            number.press("Enter")
            expect(page.get_by_text("δ = 0.20").first).to_be_visible(timeout=30_000)
            page.wait_for_function(
                "([id, old]) => document.querySelector(`#${id} img`)?.getAttribute('src') !== old",
                arg=["branch-b", before["branch-b"]], timeout=30_000)
            assert panel_source(page, "erased") != before["erased"], "the erased-feature mask follows the slider"
            assert panel_source(page, "branch-b") != before["branch-b"], "branch B's map follows the slider"
            assert panel_source(page, "branch-a") == before["branch-a"], "branch A does not depend on δ"

            page.get_by_role("tab", name="Compare with CAM").click()  # opening the tab draws the comparison
            expect(page.locator("#comparison img")).to_be_visible(timeout=30_000)
            compared = panel_source(page, "comparison")
            number.fill("0.5")
            number.press("Enter")
            page.wait_for_function(
                "([id, old]) => document.querySelector(`#${id} img`)?.getAttribute('src') !== old",
                arg=["comparison", compared], timeout=30_000)  # and, while open, it follows the slider
            page.get_by_role("tab", name="Delta sweep").click()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        finally:
            browser.close()
    assert not elsewhere, f"the page fetched from outside the local server: {elsewhere[:5]}"
