"""How fast the viewer answers, on this machine's CPU (torch's default threads). Prints medians.

    python bench/app_latency.py [--checkpoint PATH] [--repeats 30] [--browser] [--against PATH]

- slider move: ``Explainer.reexplain`` at a new erase threshold (erasing + branch B only);
  budget 30 ms of compute on 2 CPU cores at 224 px;
- new image: ``Explainer.explain`` (resize, normalize, backbone, every branch); budget 150 ms;
- each also with drawing the four panels, which the page adds on top of the compute;
- ``--against PATH``: also a new image explained (and drawn) by another checkpoint at the same input
  size, timed interleaved with the first, and the ratio of the two medians (the everyday model's
  1,000 classes against the bird model's 50, say);
- ``--browser``: a slider move's round trip in headless Chromium, from setting δ until branch
  B's panel shows the new picture (network, queue, compute, PNG encoding, download, paint).

Uses the shipped CUB ACoL checkpoint when present, else a random-init efficientnet_lite0 ACoL at
224 px with head width 512 (the same architecture, so the same cost).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from acol import ACoL, create_backbone  # noqa: E402
from acol.checkpoint import save_checkpoint  # noqa: E402
from acol.drawing import page_pictures, render_panels  # noqa: E402
from acol.explain import DEFAULT_CHECKPOINT, Explainer  # noqa: E402

SLIDER_BUDGET_MS, NEW_IMAGE_BUDGET_MS = 30, 150


def median_ms(function, repeats: int) -> float:
    """The median wall time of ``function()`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def stand_in_checkpoint(folder: Path) -> Path:
    """A random-init model with the shipped CUB model's architecture (50 classes, 224 px)."""
    model = ACoL(create_backbone("efficientnet_lite0"), 50, erase_threshold=0.7, head_width=256)
    return save_checkpoint(folder / "stand_in_acol_efficientnet_lite0.safetensors", model.eval(),
                           backbone="efficientnet_lite0", class_names=[f"class {i}" for i in range(50)],
                           input_size=224)


def test_photo(path: Path) -> Path:
    """A 500x375 photo-sized image (CUB's typical size) of smooth noise."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC).save(path)
    return path


def interleaved_median_ms(functions, repeats: int) -> list[float]:
    """``median_ms`` of each function, their calls interleaved so that both see the same load."""
    for function in functions:
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, spent in zip(functions, times):
            start = time.perf_counter()
            function()
            spent.append(time.perf_counter() - start)
    return [1000 * statistics.median(spent) for spent in times]


def browser_round_trip_ms(checkpoint_folder: Path, image: Path, repeats: int) -> float:
    """Median time from setting δ in the page until branch B's panel has a new picture."""
    import socket

    from playwright.sync_api import sync_playwright

    import app
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = app.build_demo(checkpoint_folder)
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    times = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                 args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("input[type=file]").first.set_input_files(str(image))
            page.locator("#branch-b img").wait_for(timeout=60_000)
            number = page.locator("#erase-threshold input[type=number]")
            for index in range(repeats + 1):
                old = page.locator("#branch-b img").get_attribute("src")
                number.fill(f"{0.3 + 0.05 * (index % 10):.2f}")
                start = time.perf_counter()
                number.press("Enter")
                page.wait_for_function(
                    "old => document.querySelector('#branch-b img')?.getAttribute('src') !== old",
                    arg=old, timeout=30_000)
                if index:  # the first move warms up
                    times.append(time.perf_counter() - start)
            browser.close()
    finally:
        demo.close()
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--browser", action="store_true", help="also time a slider move in headless Chromium")
    parser.add_argument("--against", default=None, help="another checkpoint to time a new image against")
    parser.add_argument("--input-size", type=int, default=224,
                        help="run the model at this size (the budgets are set at 224 px; 0 = the checkpoint's)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        checkpoint = Path(args.checkpoint)
        if not checkpoint.is_file():
            print(f"{checkpoint} not found: timing a random-init stand-in of the same architecture")
            checkpoint = stand_in_checkpoint(scratch)
        explainer = Explainer.from_checkpoint(checkpoint)
        if args.input_size:
            explainer = Explainer(explainer.model, {**explainer.config, "input_size": args.input_size}, explainer.name)
        image = Image.open(test_photo(scratch / "photo.png")).convert("RGB")
        explanation = explainer.explain(image)
        deltas = iter(np.tile(np.linspace(0.3, 0.9, 13), 1000))
        print(f"{checkpoint.name}: input {explainer.config['input_size']} px, "
              f"features {tuple(explanation.output.features.shape[-2:])}, torch threads {torch.get_num_threads()}")

        def slider_move():
            return explainer.reexplain(explanation, erase_threshold=next(deltas))

        def new_image():
            return explainer.explain(image)

        def drawn(compute):  # what the page adds: the four pictures with their colour keys
            return lambda: page_pictures(render_panels(compute(), box_threshold=0.2))

        rows = [("slider move: compute", median_ms(slider_move, args.repeats), SLIDER_BUDGET_MS),
                ("slider move: compute + draw", median_ms(drawn(slider_move), args.repeats), None),
                ("new image: compute", median_ms(new_image, args.repeats), NEW_IMAGE_BUDGET_MS),
                ("new image: compute + draw", median_ms(drawn(new_image), args.repeats), None)]
        if args.against:
            other = Explainer.from_checkpoint(args.against)
            other = Explainer(other.model, {**other.config, "input_size": explainer.config["input_size"]}, other.name)
            mine, theirs = interleaved_median_ms([drawn(new_image), drawn(lambda: other.explain(image))], args.repeats)
            rows += [(f"new image + draw, {checkpoint.stem[:22]}", mine, None),
                     (f"new image + draw, {Path(args.against).stem[:22]}", theirs, None)]
            print(f"new image, compute + draw: {mine / theirs:.2f}x {Path(args.against).name}'s time "
                  f"at {explainer.config['input_size']} px (medians of {args.repeats} interleaved runs)")
        if args.browser:
            folder = scratch / "checkpoints"
            folder.mkdir()
            (folder / checkpoint.name).symlink_to(checkpoint.resolve())
            rows.append(("slider move: browser round trip", browser_round_trip_ms(folder, scratch / "photo.png",
                                                                                 max(5, args.repeats // 3)), None))
    for name, milliseconds, budget in rows:
        verdict = "" if budget is None else f"  (budget {budget} ms: {'ok' if milliseconds <= budget else 'OVER'})"
        print(f"  {name:<34} {milliseconds:7.1f} ms{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
