"""The page in headless Chromium, for ``bench/app_latency.py --browser``: how long a slider move,
a hovered cell and an epoch move take until the viewer has drawn them and until the next animation
frame (the frame that shows them), and how many requests they sent to the server."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from acol.core.history import history_path  # noqa: E402


MOVE_AND_PAINT = """async ([id, value, cell]) => {
    // One slider move (or, with a cell, a hover) as a hand makes it; resolves with the ms until the
    // viewer drew it and until the next animation frame began (the frame that shows it).
    const view = document.querySelector("[data-by-hand]").acolView, start = performance.now();
    if (cell) {
        const canvas = document.querySelector('canvas[data-panel="fused"]'), box = canvas.getBoundingClientRect();
        canvas.dispatchEvent(new PointerEvent("pointermove", {clientX: box.left + box.width * cell[1],
                                                             clientY: box.top + box.height * cell[0]}));
    } else {
        const range = document.querySelector(`#${id} input[type=range]`);
        range.value = value;
        range.dispatchEvent(new Event("input", {bubbles: true}));
    }
    while (view.paintedAt < start) await new Promise(requestAnimationFrame);
    const drawn = view.paintedAt - start;
    const frame = await new Promise(requestAnimationFrame) - start;
    return [drawn, frame];
}"""


MOVE_EPOCH = """async (index) => {
    // One move of the Epoch slider ("How it learned"); resolves with the ms until drawn (its
    // listener draws at once) and until the next animation frame began.
    const slider = document.querySelector("input[data-epoch]"), start = performance.now();
    slider.value = index;
    slider.dispatchEvent(new Event("input", {bubbles: true}));
    const drawn = performance.now() - start;
    const frame = await new Promise(requestAnimationFrame) - start;
    return [drawn, frame];
}"""


def browser_times(checkpoint_folder: Path, image: Path, moves: int) -> dict:
    """Medians (ms) of a slider move and of a hover in the page, each until drawn and until its
    frame, and the requests the moves sent; each δ drawn for the first time (nothing cached)."""
    import socket

    from playwright.sync_api import sync_playwright

    import app
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = app.build_demo(checkpoint_folder)
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                 args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")  # no examples here: it asks for a photo
            page.locator("input[type=file]").first.set_input_files(str(image))
            page.wait_for_function("() => document.querySelector('#status')?.textContent.includes('δ =')",
                                   timeout=60_000)
            page.wait_for_timeout(2000)  # the upload's follow-up events are done
            asked = []
            page.on("request", lambda request: asked.append(request.url))
            slider = [page.evaluate(MOVE_AND_PAINT, ["erase-threshold", 0.05 * step, None])
                      for step in range(1, moves + 1)]
            hover = [page.evaluate(MOVE_AND_PAINT, [None, None, [0.1 + 0.8 * index / moves, 0.5]])
                     for index in range(moves)]
            epochs = int(page.evaluate("() => document.querySelector('input[data-epoch]')?.max || 0"))
            epoch = [page.evaluate(MOVE_EPOCH, index) for index in [*range(epochs + 1), *range(epochs - 1, -1, -1)]
                     if epochs]  # each epoch drawn the first time, then copied on the way back
            page.wait_for_timeout(500)
            browser.close()
    finally:
        demo.close()
    timed_moves = (("slider", slider), ("hover", hover)) + ((("epoch", epoch),) if epoch else ())
    medians = {f"{name} {what}": statistics.median(times[index] for times in timed)
               for name, timed in timed_moves for index, what in enumerate(("drawn", "frame"))}
    return {**medians, "requests": len(asked), "moves": moves}


def browser_rows(scratch: Path, checkpoint: Path, photo: Path) -> list[tuple]:
    """``--browser``: a slider move, a hover and an epoch move in headless Chromium, each until
    drawn and until its frame, on a page that offers this checkpoint alone."""
    folder = scratch / "checkpoints"
    folder.mkdir()
    (folder / checkpoint.name).symlink_to(checkpoint.resolve())
    if history_path(checkpoint).is_file():  # "How it learned" for it, on the page
        (folder / history_path(checkpoint).name).symlink_to(history_path(checkpoint).resolve())
    times = browser_times(folder, photo, 10)
    rows = [(f"browser: slider move -> {what}", times[f"slider {what}"], None) for what in ("drawn", "frame")]
    rows += [(f"browser: hover -> {what}", times[f"hover {what}"], None) for what in ("drawn", "frame")]
    rows += [(f"browser: epoch move -> {what}", times[f"epoch {what}"], None) for what in ("drawn", "frame")
             if f"epoch {what}" in times]
    print(f"  browser: {times['requests']} requests to the server over {times['moves']} slider moves "
          f"and {times['moves']} hovers")
    return rows
