"""The viewer in a real browser: headless Chromium, driven by Playwright."""

import base64
import io
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from conftest import ARTIFACTS, REPO, bundled_examples

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")]


PANELS = ("branch-a", "erased", "branch-b", "fused")


def panel_pixels(page, elem_id: str) -> np.ndarray:
    """A canvas panel's pixels as drawn, [height, width, 3] uint8 (read back as a lossless PNG: the
    canvas's pixels as nested JSON lists took ~15 s a panel through Playwright)."""
    url = panel_picture(page, elem_id)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def panel_picture(page, elem_id: str) -> str:
    """A canvas panel as a data URL: equal strings, equal pictures."""
    return page.evaluate("id => document.querySelector(`canvas[data-panel=\"${id}\"]`).toDataURL()", elem_id)


def move_slider(page, elem_id: str, value: float) -> None:
    """What a hand dragging the slider does: set the range input and send its `input` event
    (once the slider is on the page: a busy machine draws it after the status line)."""
    page.wait_for_selector(f"#{elem_id} input[type=range]", state="attached")
    page.evaluate("""([id, value]) => {
        const range = document.querySelector(`#${id} input[type=range]`);
        range.value = value;
        range.dispatchEvent(new Event("input", {bubbles: true}));
    }""", [elem_id, value])


def painted(page) -> None:
    """Wait until the viewer has drawn what it was last asked to (the next animation frame)."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def example_label(path) -> tuple[str, list[float]]:
    """The class an example was made for and its true box (assets/examples/labels.csv): the
    page knows an example by its content, so it names the class and draws the box."""
    import csv
    with open(path.parent / "labels.csv", newline="") as file:
        row = next(row for row in csv.DictReader(file) if row["path"] == path.name)
    return row["label"], [float(row[key]) for key in ("x0", "y0", "x1", "y1")]


def upload_example(page, example, tmp_path) -> None:
    """Once the first view is drawn, upload a copy of an example; return once it is explained."""
    from playwright.sync_api import expect
    expect(page.locator("#status")).to_contain_text("δ = 0.50", timeout=30_000)
    (tmp_path / "upload.png").write_bytes(example.read_bytes())
    page.locator("input[type=file]").first.set_input_files(str(tmp_path / "upload.png"))
    expect(page.locator("#status")).to_contain_text(f"true class: {example_label(example)[0]}", timeout=30_000)


def click_cell(page, row: int, col: int, grid: int = 8) -> None:
    """Click the middle of feature cell (row, col) of the erased panel (a grid x grid map)."""
    box = page.locator('canvas[data-panel="erased"]').bounding_box()
    page.mouse.click(box["x"] + (col + 0.5) * box["width"] / grid, box["y"] + (row + 0.5) * box["height"] / grid)


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
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name=name, exact=True).click()


def test_the_page_opens_explained_a_click_erases_a_cell_and_each_model_has_its_examples(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            for elem_id in PANELS:  # no click: the first view is drawn
                expect(page.locator(f'canvas[data-panel="{elem_id}"]')).to_be_visible(timeout=30_000)
            expect(page.locator("#status")).to_contain_text("tiny_synthetic_acol", timeout=30_000)
            expect(page.locator("#model-about")).to_contain_text("tiny random-init test model")
            verdict = page.locator("#verdict-b").inner_text()
            assert "cells erased (δ = 0.50)" in verdict
            before = {elem_id: panel_picture(page, elem_id) for elem_id in ("branch-a", "branch-b")}

            click_cell(page, row=2, col=3)  # the server runs B on the hand-made mask
            expect(page.locator("#verdict-b")).to_contain_text("(by hand)", timeout=30_000)
            painted(page)
            assert page.locator("#verdict-b").inner_text() != verdict, "B's verdict follows the hand-made mask"
            assert panel_picture(page, "branch-a") == before["branch-a"], "branch A does not depend on the mask"
            expect(page.get_by_label("Row")).to_have_value("2")  # the cell clicked, by number
            expect(page.get_by_label("Column")).to_have_value("3")
            page.locator("#reset-mask").click()  # back to the δ mask: in the browser
            expect(page.locator("#verdict-b")).to_have_text(verdict)
            painted(page)
            assert panel_picture(page, "branch-b") == before["branch-b"]

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


def test_ten_slider_moves_redraw_the_panels_and_send_the_server_nothing(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere, asked = [], []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            expect(page.locator("#status")).to_contain_text("δ = 0.50", timeout=30_000)
            page.wait_for_timeout(1500)  # the page has fetched what it fetches on load
            before = {elem_id: panel_picture(page, elem_id) for elem_id in PANELS}
            page.on("request", lambda request: asked.append(request.url))
            for delta in (0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.25, 0.3, 0.35, 0.3):  # a drag, back and forth
                move_slider(page, "erase-threshold", delta)
                painted(page)
                expect(page.locator("#status")).to_contain_text(f"δ = {delta:.2f}")
                expect(page.locator("#verdict-b")).to_contain_text(f"(δ = {delta:.2f})")
            assert panel_picture(page, "erased") != before["erased"], "a lower δ erases more cells"
            assert panel_picture(page, "branch-b") != before["branch-b"], "branch B's map follows δ"
            assert panel_picture(page, "branch-a") == before["branch-a"], "branch A does not depend on δ"
            move_slider(page, "box-threshold", 0.8)
            painted(page)
            expect(page.locator("#status")).to_contain_text("box above 0.80")
            page.wait_for_timeout(500)  # anything the moves would have sent has been sent by now
        finally:
            browser.close()
    assert asked == [], f"slider moves asked the server: {asked[:5]}"
    assert not elsewhere, f"the page fetched from outside the local server: {elsewhere[:5]}"


def test_hovering_a_cell_outlines_it_in_all_four_panels_and_reads_its_values(viewer_url, tiny_checkpoints, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from acol.evaluation.explain import Explainer
    example = bundled_examples()[2]
    explained = Explainer.from_checkpoint(tiny_checkpoints / "tiny_synthetic_acol.safetensors").explain(
        Image.open(example).convert("RGB"), erase_threshold=0.5)
    row, col = 2, 3
    output = explained.output
    a, b, fused = (float(output.localization_maps[0][0, row, col]), float(output.localization_maps[1][0, row, col]),
                   float(output.fused_map[0, row, col]))
    erased = bool(output.erase_masks[1][0, row, col])
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            upload_example(page, example, tmp_path)
            box = page.locator('canvas[data-panel="branch-b"]').bounding_box()
            page.mouse.move(box["x"] + (col + 0.5) * box["width"] / 8, box["y"] + (row + 0.5) * box["height"] / 8)
            painted(page)
            words = page.locator("#cell-values").inner_text()
            values = dict(part.split(" ") for part in words.split(": ", 1)[1].split(" · ") if " " in part)
            assert words.startswith(f"cell (row {row}, column {col})")
            for name, expected in (("A", a), ("B", b), ("fused", fused)):
                assert abs(float(values[name]) - expected) <= 0.006, (name, words)  # 0-255 steps, 2 decimals
            assert ("erased" if erased else "kept") in words
            for elem_id in PANELS:  # the outline: white, just inside the cell's top-left corner
                pixels = panel_pixels(page, elem_id)
                height, width = pixels.shape[:2]
                x0, y0 = -(-col * width // 8), -(-row * height // 8)
                assert pixels[y0 + 1, x0 + 4].tolist() == [255, 255, 255], elem_id
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app_hover.png"), full_page=True)
        finally:
            browser.close()
    assert not elsewhere


def test_the_browsers_panels_are_acol_drawings_panels(viewer_url, tiny_checkpoints, tmp_path):
    """One state (an uploaded example at δ = 0.3, box above 0.45) drawn by the browser and by
    acol.drawing. The browser gets the photo as JPEG (quality 90) and the maps as bytes per cell
    (0-255), so pixels may differ a little: on average by at most 2 of 255 per channel, 99.9% of
    them by at most 16 (JPEG's error at sharp edges)."""
    from playwright.sync_api import expect, sync_playwright

    from acol.viewer.drawing import render_panels
    from acol.evaluation.explain import Explainer
    example = bundled_examples()[1]
    explainer = Explainer.from_checkpoint(tiny_checkpoints / "tiny_synthetic_acol.safetensors")
    label, true_box = example_label(example)
    explained = explainer.reexplain(explainer.explain(Image.open(example).convert("RGB"), [true_box],
                                                      erase_threshold=0.5, true_class=label), erase_threshold=0.3)
    panels = render_panels(explained, 0.45)
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            upload_example(page, example, tmp_path)
            move_slider(page, "erase-threshold", 0.3)
            move_slider(page, "box-threshold", 0.45)
            painted(page)
            expect(page.locator("#status")).to_contain_text("δ = 0.30")
            expect(page.locator("#status")).to_contain_text("box above 0.45")
            for elem_id, drawn in zip(PANELS, (panels.branch_a, panels.erased, panels.branch_b, panels.fused)):
                browser_drawn = panel_pixels(page, elem_id).astype(np.int16)
                assert browser_drawn.shape == drawn.shape, elem_id
                difference = np.abs(browser_drawn - drawn.astype(np.int16))
                assert difference.mean() <= 2, (elem_id, difference.mean())
                assert np.percentile(difference, 99.9) <= 16, (elem_id, np.percentile(difference, 99.9))
            assert panels.caption.split(" · box above")[0] in page.locator("#status").inner_text()
        finally:
            browser.close()
    assert not elsewhere


def test_upload_then_the_tabs_draw_only_when_opened(viewer_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    example = bundled_examples()[1]  # a known true box, too
    (tmp_path / "upload.png").write_bytes(example.read_bytes())
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            choose_model(page, "tiny_acol")  # it has a CAM baseline to compare with
            expect(page.locator("#status")).to_contain_text("tiny_acol: ", timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "upload.png"))
            expect(page.locator("#status")).to_contain_text("IoU with true box", timeout=30_000)
            expect(page.locator("#comparison img")).to_have_count(0)  # not drawn while its tab is closed

            page.get_by_role("tab", name="Compare with CAM").click()  # opening the tab draws the comparison
            expect(page.locator("#comparison img")).to_be_visible(timeout=30_000)
            page.get_by_role("tab", name="Delta sweep").click()
            expect(page.get_by_role("tabpanel").locator("img")).to_be_visible(timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        finally:
            browser.close()
    assert not elsewhere, f"the page fetched from outside the local server: {elsewhere[:5]}"


def learning_pictures(page) -> dict:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll("canvas[data-learn]")]
        .map(canvas => [canvas.dataset.learn, canvas.toDataURL()]))""")


def viewer_state(page, expression: str):
    """A value of the viewer's own state (``view`` in viewer.js), e.g. "view.payload.story"."""
    return page.evaluate(f"() => (view => {expression})(document.querySelector('[data-by-hand]').acolView)")


def test_how_it_learned_opens_at_epoch_0_its_slider_asks_nothing_and_its_charts_read_on_a_phone(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere, asked = [], []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            expect(page.locator("[data-learning]")).to_be_visible(timeout=30_000)
            expect(page.locator("[data-learn-cam]")).to_be_visible()  # the teaching model's CAM has a history too
            # It opens before training, so the student sees the maps start from nothing.
            expect(page.locator("[data-by-hand]")).to_have_attribute("data-epoch", "0")
            expect(page.locator('[data-text="epoch-words"]')).to_contain_text("before training (epoch 0)")
            page.wait_for_timeout(1500)
            opened = learning_pictures(page)
            page.on("request", lambda request: asked.append(request.url))
            seen = []
            for epoch in (0, 1, 2, 3):
                move_slider_in(page, "input[data-epoch]", epoch)
                expect(page.locator("[data-by-hand]")).to_have_attribute("data-epoch", str(epoch))
                words = page.locator('[data-text="epoch-words"]').inner_text()
                assert words.startswith("before training (epoch 0)" if epoch == 0 else f"after epoch {epoch}:")
                seen.append(learning_pictures(page))
            assert seen[0] == opened, "the view opened at epoch 0"
            assert seen[0]["a"] != seen[-1]["a"] and seen[0]["b"] != seen[-1]["b"], "the maps change with the epoch"

            charts = viewer_state(page, "view.charts")
            assert [chart["name"] for chart in charts] == ["loss", "accuracy"]
            for chart in charts:  # numbers on both axes, and every series drawn its own way
                assert chart["xTicks"] == ["0", "1", "2", "3"], chart
                assert len(chart["yTicks"]) >= 3 and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in chart["yTicks"])
                styles = {(series["color"], series["dash"], series["marker"]) for series in chart["series"]}
                assert len(styles) == len(chart["series"]) == 3, chart["series"]  # A, B and the CAM baseline
                assert len({series["color"] for series in chart["series"]}) == 3
                assert len({series["marker"] for series in chart["series"]}) == 3
            assert charts[1]["yTicks"][-1] == "100", "accuracy in percent, up to 100"

            page.set_viewport_size({"width": 400, "height": 800})  # a phone: redrawn at its new size
            page.wait_for_function("""() => document.querySelector('[data-by-hand]').acolView.charts
                .every(chart => chart.cssWidth <= 400)""")
            ratio = page.evaluate("() => window.devicePixelRatio")
            for chart in viewer_state(page, "view.charts"):
                assert chart["fontPx"] >= 11, "numbers at least 11 CSS px tall on a phone"
                assert chart["pixelWidth"] == round(chart["cssWidth"] * ratio), "drawn at its shown size"
                assert chart["xTicks"] and chart["yTicks"]
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("[data-learning]").screenshot(path=str(ARTIFACTS / "app_learning_400.png"))
        finally:
            browser.close()
    assert asked == [], f"moving the epoch asked the server: {asked[:5]}"
    assert not elsewhere


def move_slider_in(page, selector: str, value) -> None:
    page.evaluate("""([selector, value]) => {
        const range = document.querySelector(selector);
        range.value = value;
        range.dispatchEvent(new Event("input", {bubbles: true}));
    }""", [selector, value])


B_CANVASES = ('canvas[data-panel="branch-b"]', 'canvas[data-panel="fused"]', 'canvas[data-learn="b"]',
              'canvas[data-learn="cam"]')  # every view of what B found (the fused map and CAM's map too)


def test_the_lesson_walks_from_first_to_last_step_and_hides_b_until_a_guess(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere, asked = [], []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            page.set_viewport_size({"width": 400, "height": 800})  # a phone: it must read well there too
            expect(page.locator("#status")).to_contain_text("δ = 0.50", timeout=30_000)
            expect(page.locator("#lesson-invite")).to_be_visible()  # a first visit is invited, not sent
            page.wait_for_timeout(1500)
            verdict = page.locator("#verdict-b").inner_text()
            page.on("request", lambda request: asked.append(request.url))
            page.locator("[data-invite-start]").click()
            card = page.locator("[data-lesson]")
            expect(card).to_be_visible()
            expect(card).to_contain_text("step 1 of 8")
            expect(card).to_contain_text("This picture is labelled")
            page.keyboard.press("ArrowRight")  # step 2: δ and the erased cells
            expect(card).to_contain_text("erases")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lesson_400.png"))
            card.get_by_role("button", name="Next →").click()  # step 3: the question
            expect(card).to_contain_text("Where will B look now?")
            # Nothing on the page shows what B found: its panels, the fused map, How it learned's B and
            # CAM maps, B's verdict, the values under the pointer, the story's words, B's training words.
            for selector in B_CANVASES:
                expect(page.locator(selector)).to_be_hidden()
            assert page.locator("#verdict-b").inner_text() != verdict
            assert " says " not in page.locator("#verdict-b").inner_text()
            expect(page.locator("#story-line")).to_be_hidden()
            expect(page.locator('[data-text="epoch-words"]')).to_be_hidden()
            erased = page.locator('canvas[data-panel="erased"]')  # the guess: a cell, clicked where a student sees it
            size = erased.bounding_box()
            page.mouse.move(size["x"] + 5.5 * size["width"] / 8, size["y"] + 5.5 * size["height"] / 8)
            painted(page)
            hovered = page.locator("#cell-values").inner_text()
            assert hovered.startswith("cell (row 5, column 5): A ") and not re.search(r"\bB \d", hovered), hovered
            erased.click(position={"x": 5.5 * size["width"] / 8, "y": 5.5 * size["height"] / 8})
            # A click marks the guess (the student may change it); the answer waits for Next.
            expect(card).to_contain_text("Your guess: ")
            expect(card).to_contain_text("(row 5, column 5)")
            expect(card).to_contain_text("step 3 of 8")
            painted(page)
            marks = viewer_state(page, "view.marks")
            assert [mark["cell"] for mark in marks] == [[5, 5]] and "erased" in marks[0]["panels"], marks
            for selector in B_CANVASES:
                expect(page.locator(selector)).to_be_hidden()
            card.get_by_role("button", name="Next →").click()  # step 4: B's answer
            expect(card).to_contain_text("step 4 of 8")
            text = card.inner_text()
            assert "right on it" in text or "away" in text, text
            for selector in B_CANVASES:
                expect(page.locator(selector)).to_be_visible()
            assert page.locator("#verdict-b").inner_text() == verdict, "a guess is no hand-made mask"
            peak = viewer_state(page, "view.payload.states[view.payload.steps["  # at the model's δ
                                "view.payload.deltas.indexOf(view.payload.model_delta)].state].b_peak")
            marks = viewer_state(page, "view.marks")
            assert [mark["cell"] for mark in marks] == [peak, [5, 5]], "B's peak and the guess, outlined"
            for step in range(5, 9):
                card.get_by_role("button", name="Next →").click()
                expect(card).to_contain_text(f"step {step} of 8")
            expect(page.locator("[data-by-hand]")).to_have_attribute("data-epoch", "3")  # the end of training
            card.get_by_role("button", name="Finish").click()
            expect(card).to_be_hidden()
            page.locator("#lesson-button").click()  # again, and left at step 2 with Escape
            page.keyboard.press("ArrowRight")
            expect(card).to_contain_text("step 2 of 8")
            page.keyboard.press("Escape")
            expect(card).to_be_hidden()
            expect(page.locator(".lesson-focus")).to_have_count(0)
            expect(page.locator(".lesson-hidden")).to_have_count(0)
            page.wait_for_timeout(500)
        finally:
            browser.close()
    assert asked == [], f"the lesson asked the server: {asked[:5]}"
    assert not elsewhere


def test_the_lesson_walks_the_picture_shown_an_example_an_upload_or_a_cam_models(viewer_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    examples = bundled_examples()
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            expect(page.locator("#status")).to_contain_text("δ = 0.50", timeout=30_000)
            opened = page.locator("#status").inner_text().split("true class: ")[1].split(" ·")[0]
            index = next(i for i, path in enumerate(examples) if example_label(path)[0] != opened)
            label = example_label(examples[index])[0]
            page.locator("#examples-0 .gallery-item").nth(index).click()  # another example, another class
            expect(page.locator("#status")).to_contain_text(f"true class: {label}", timeout=30_000)
            page.locator("#lesson-button").click()
            card = page.locator("[data-lesson]")
            expect(card).to_contain_text(f"This picture is labelled {label}.")
            assert viewer_state(page, "view.payload.class_name") in card.inner_text()
            page.keyboard.press("ArrowRight")
            expect(card).to_contain_text("step 2 of 8")

            upload = next(path for path in examples if example_label(path)[0] != label)
            (tmp_path / "upload.png").write_bytes(upload.read_bytes())  # while the lesson is open: it starts again
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "upload.png"))
            expect(page.locator("#status")).to_contain_text(f"true class: {example_label(upload)[0]}", timeout=30_000)
            expect(card).to_contain_text("step 1 of 8")
            expect(card).to_contain_text(f"This picture is labelled {example_label(upload)[0]}.")
            page.keyboard.press("Escape")

            choose_model(page, "tiny_synthetic_cam")  # one branch: A's map, then no B, said plainly
            expect(page.locator("#status")).to_contain_text("tiny_synthetic_cam: ", timeout=30_000)
            page.locator("#lesson-button").click()
            expect(card).to_contain_text("step 1 of 2")
            expect(card).to_contain_text("This picture is labelled")
            page.keyboard.press("ArrowRight")
            expect(card).to_contain_text("step 2 of 2")
            expect(card).to_contain_text("one branch")
            expect(card).to_contain_text("Pick an ACoL model")
            expect(page.locator("[data-learn-b]").first).to_be_hidden()  # its history has no erasing, no B
        finally:
            browser.close()
    assert not elsewhere


def test_an_example_clicked_at_moved_sliders_opens_there_answered_from_the_start_up_answers(viewer_demo):
    """A teacher moves δ and the box threshold, then the class clicks an example: the sliders
    only choose the view the example's payload opens on, so the server answers from what it
    computed at start-up. Then another class is chosen from the dropdown, at the same δ."""
    from playwright.sync_api import expect, sync_playwright
    answers, example = viewer_demo.acol_page.answers, Path(viewer_demo.acol_page.examples.groups[0].paths[1])
    label, _ = example_label(example)
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_demo.url, elsewhere)
        try:
            expect(page.locator("#status")).to_contain_text("δ = 0.50", timeout=30_000)
            move_slider(page, "erase-threshold", 0.6)
            move_slider(page, "box-threshold", 0.35)
            painted(page)
            computed = answers.misses
            page.locator("#examples-0 .gallery-item").nth(1).click()
            status = page.locator("#status")
            expect(status).to_contain_text(f"true class: {label}", timeout=30_000)
            expect(status).to_contain_text("δ = 0.60")
            expect(status).to_contain_text("box above 0.35")
            expect(page.locator("#verdict-b")).to_contain_text("(δ = 0.60)")
            assert answers.misses == computed, "the click was answered from the start-up answers"

            page.get_by_label("Class that drives the erasing (top-5 of branch A)").click()
            other = page.get_by_role("option").nth(2)
            name = other.inner_text().strip().rsplit(" (", 1)[0]
            other.click()
            expect(status).to_contain_text(f"tiny_synthetic_acol: {name} (", timeout=30_000)
            expect(page.locator("#verdict-b")).to_contain_text("(δ = 0.60)")
        finally:
            browser.close()
    assert not elsewhere


def show_story(page, **story) -> None:
    """Draw the page's payload again with its story's facts replaced (the tiny models' stories
    are whatever their random maps make them)."""
    page.evaluate("""story => {
        const element = document.querySelector("[data-by-hand]"), payload = element.acolView.payload;
        return element.acolShow({...payload, story: {...payload.story, ...story}});
    }""", story)


def test_the_story_is_said_where_it_holds_and_where_it_does_not(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere = []
    failing = "Here the story does not hold: B found the head too: A's erasing left part of the head, and B used it."
    holding = "Here the story holds: A looks at the head, B at the body, B still says red-crest."
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            expect(page.locator("#status")).to_contain_text("δ = 0.50", timeout=30_000)
            story = viewer_state(page, "view.payload.story")
            assert set(story) >= {"holds", "parts_known", "words"}
            # The story's words are on the page where the picture's parts are known.
            if story["parts_known"]:
                expect(page.locator("#story-line")).to_be_visible()
            else:
                expect(page.locator("#story-line")).to_be_hidden()

            show_story(page, holds=False, parts_known=True, b_part="head", words=failing)
            expect(page.locator("#story-line")).to_be_visible()
            expect(page.locator("#story-line")).to_contain_text("Here the story does not hold: B found the head too")
            card = page.locator("[data-lesson]")
            page.locator("#lesson-button").click()
            for step in range(3):  # to B's answer, with no guess
                page.keyboard.press("ArrowRight")
            expect(card).to_contain_text("step 4 of 8")
            expect(card).to_contain_text("Here the story does not hold: B found the head too")
            assert "other evidence" not in card.inner_text(), "never the story where it does not hold"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lesson_story_fails.png"))
            for step in range(4):
                page.keyboard.press("ArrowRight")
            expect(card).to_contain_text("step 8 of 8")
            expect(card).to_contain_text("does not hold")  # said again at the end
            page.keyboard.press("Escape")

            show_story(page, holds=True, parts_known=True, b_part="body", words=holding)
            expect(page.locator("#story-line")).to_contain_text(holding)
            page.locator("#lesson-button").click()
            for step in range(3):
                page.keyboard.press("ArrowRight")
            expect(card).to_contain_text("step 4 of 8")
            expect(card).to_contain_text("B found other evidence of the same class")
            page.keyboard.press("ArrowRight")
            expect(card).to_contain_text(holding)  # the fused step sums it up
            page.keyboard.press("Escape")

            show_story(page, parts_known=False)  # parts unknown: the lesson says it, not the page
            expect(page.locator("#story-line")).to_be_hidden()
        finally:
            browser.close()
    assert not elsewhere


def test_a_sessions_state_stays_the_same_size_through_every_kind_of_event(viewer_demo, tmp_path):
    """Gradio keeps a copy of a component an event updated (or skipped) in the session, and each
    later event that read or set it stored that copy once more: a model change, an upload, a
    class, a baseline and a tab each round grew the session by four or five components (app.py,
    session_copies_keep_their_ids)."""
    from playwright.sync_api import expect, sync_playwright
    sessions = viewer_demo.state_holder.session_data
    known = set(sessions)
    sizes = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_demo.url, [])
        status = page.locator("#status")
        try:
            expect(status).to_contain_text("tiny_synthetic_acol: ", timeout=30_000)
            for seed in range(3):
                choose_model(page, "tiny_acol")  # it has a CAM baseline
                expect(status).to_contain_text("tiny_acol: ", timeout=30_000)
                photo = tmp_path / f"photo{seed}.png"
                Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 72, 3), dtype=np.uint8)).save(photo)
                page.locator("input[type=file]").first.set_input_files(str(photo))
                expect(page.locator("#verdict-b")).to_contain_text("δ = ", timeout=30_000)
                page.get_by_label("Class that drives the erasing (top-5 of branch A)").click()
                other = page.get_by_role("option").nth(seed % 2 + 1)
                name = other.inner_text().strip().rsplit(" (", 1)[0]
                other.click()
                expect(status).to_contain_text(f"tiny_acol: {name} (", timeout=30_000)
                page.get_by_role("tab", name="Compare with CAM").click()
                page.get_by_label("CAM baseline").click()
                page.get_by_role("option", name="tiny_cam", exact=True).click()
                expect(page.locator("#comparison img")).to_be_visible(timeout=30_000)
                page.get_by_role("tab", name="How to read the views").click()
                choose_model(page, "tiny_synthetic_acol")
                expect(status).to_contain_text("tiny_synthetic_acol: ", timeout=30_000)
                page.wait_for_timeout(1000)  # every event has been answered
                (session,) = [sessions[key] for key in set(sessions) - known]
                sizes.append(len(session.blocks_config.blocks))
        finally:
            browser.close()
    assert sizes[2] == sizes[1] == sizes[0], sizes


def test_trained_with_delta_shows_each_sibling_beside_the_model_and_choosing_asks_nothing(viewer_url):
    """The teaching model's siblings trained at other δ (tiny_synthetic_acol.deltas: 0.3 and 0.8)
    each draw A, the erased cells, B and the fused box beside the model's own (0.5); choosing one
    sends no request, and during the lesson's guess none of their B views shows."""
    from playwright.sync_api import expect, sync_playwright
    elsewhere, asked = [], []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            section = page.locator("[data-deltas]")
            expect(section).to_be_visible(timeout=30_000)
            expect(section.locator("[data-delta-choices] label")).to_have_text(["0.30", "0.50 (this model)", "0.80"])
            expect(section).to_have_attribute("data-shipped", "0.50")
            expect(section).to_have_attribute("data-chosen", "0.30")
            expect(section.locator('[data-text="delta-chosen-words"]')).to_contain_text("(δ = 0.30)")
            page.wait_for_timeout(1000)
            drawn = lambda: page.evaluate("""() => document.querySelector(
                '[data-delta-row="chosen"] canvas[data-delta="mask"]').toDataURL()""")
            before = drawn()
            page.on("request", lambda request: asked.append(request.url))
            section.get_by_label("0.80").check()
            expect(section).to_have_attribute("data-chosen", "0.80")
            expect(section.locator('[data-text="delta-chosen-words"]')).to_contain_text("(δ = 0.80)")
            assert drawn() != before, "a higher training δ erases fewer cells"
            page.wait_for_timeout(500)
            assert asked == [], f"choosing a training δ asked the server: {asked[:5]}"
            page.locator("#lesson-button").click()
            for _ in range(2):
                page.keyboard.press("ArrowRight")
            expect(page.locator("[data-lesson-progress]")).to_contain_text("step 3 of")
            for row in ("shipped", "chosen"):
                for panel in ("b", "fused"):
                    figure = section.locator(f'[data-delta-row="{row}"] canvas[data-delta="{panel}"]').locator("..")
                    expect(figure).to_have_class(re.compile("lesson-hidden"))
                expect(section.locator(f'[data-text="delta-{row}-words"]')).to_be_hidden()
        finally:
            browser.close()
    assert not elsewhere


def test_the_delta_slider_says_it_erases_now_and_names_the_delta_b_trained_with(viewer_url):
    from playwright.sync_api import expect, sync_playwright
    elsewhere = []
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, viewer_url, elsewhere)
        try:
            slider = page.locator("#erase-threshold")
            expect(slider).to_contain_text("now, while explaining", timeout=30_000)
            expect(slider).to_contain_text("(B trained with δ = 0.50)")  # tiny_synthetic_acol's
            choose_model(page, "tiny_synthetic_cam")
            expect(slider).to_contain_text("(a one-branch CAM model erases nothing)", timeout=30_000)
            expect(slider).not_to_contain_text("B trained with")
        finally:
            browser.close()
    assert not elsewhere
