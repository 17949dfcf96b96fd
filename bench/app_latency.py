"""How fast the viewer answers, on this machine's CPU (torch's default threads). Prints medians.

    python bench/app_latency.py [--checkpoint PATH] [--repeats 30] [--browser] [--against PATH]

- slider move: ``Explainer.reexplain`` at a new erase threshold (erasing + branch B only);
  budget 30 ms of compute on 2 CPU cores at 224 px;
- new image: ``Explainer.explain`` (resize, normalize, backbone, every branch); budget 150 ms;
- new image: the page's payload (``acol.viewer.payload``: every δ step's B, verdict and boxes), its
  size, and the four panels drawn by ``acol.viewer.drawing`` (what a script's /explain still gets);
- an upload as the server answers it: the file decoded, explained and its payload made, nothing
  cached (budget 150 ms at the checkpoint's own input size), and an example click (a cached answer);
- ``--browser``: in headless Chromium on the page, a slider move (its `input` event) until the
  viewer has drawn it and until the next animation frame (the frame that shows it), a hovered
  cell the same way, and how many requests ten slider moves sent to the server;
- ``--against PATH``: a new image as the page gets it (explained, then its payload) by this and by
  another checkpoint at the same input size, timed interleaved, and the ratio of the two medians
  (the everyday model's 1,000 classes against the bird model's 50, say).

Uses the shipped CUB ACoL checkpoint when present, else a random-init efficientnet_lite0 ACoL at
224 px with head width 512 (the same architecture, so the same cost). The picture is a photo
(``--photo``, default the bundled CC0 cat) or, with ``--photo noise``, smooth noise.
"""

from __future__ import annotations

import argparse
import json
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
from acol.core.checkpoint import save_checkpoint  # noqa: E402
from acol.viewer.drawing import page_pictures, render_panels  # noqa: E402
from acol.evaluation.explain import DEFAULT_CHECKPOINT, Explainer  # noqa: E402
from acol.viewer.answers import AnswerCache, ModelRunner, request_key  # noqa: E402
from acol.data.images import load_rgb_image  # noqa: E402
from acol.core.device import add_device_flag  # noqa: E402
from acol.core.history import history_path, load_history  # noqa: E402
from acol.viewer.learning import learning_payload  # noqa: E402
from acol.viewer.payload import page_payload  # noqa: E402
from acol.viewer.shelf import viewer_explainer  # noqa: E402
from page_timing import browser_rows  # noqa: E402

SLIDER_BUDGET_MS, NEW_IMAGE_BUDGET_MS, UPLOAD_BUDGET_MS = 30, 150, 150
PHOTO = REPO / "assets" / "everyday" / "chelsea.jpg"


def finished(function):
    """``function`` and then, on a GPU, the wait for its kernels: what a caller waits for."""
    def run():
        result = function()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return result
    return run


def median_ms(function, repeats: int) -> float:
    """The median wall time of ``function()`` in milliseconds, after one warm-up call."""
    function = finished(function)
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


class _OneModel(dict):
    """A shelf of one explainer, for ``ModelRunner``."""

    def __init__(self, explainer: Explainer):
        super().__init__({explainer.name: explainer})


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--browser", action="store_true", help="also time a slider move in headless Chromium")
    parser.add_argument("--against", default=None, help="another checkpoint to time a new image against")
    parser.add_argument("--input-size", type=int, default=0,
                        help="run the model at this size (0 = the checkpoint's own, what users get)")
    parser.add_argument("--photo", default=str(PHOTO), help="the picture to explain ('noise': smooth noise)")
    add_device_flag(parser, default="cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        checkpoint = Path(args.checkpoint)
        if not checkpoint.is_file():
            print(f"{checkpoint} not found: timing a random-init stand-in of the same architecture")
            checkpoint = stand_in_checkpoint(scratch)
        explainer = viewer_explainer(checkpoint, args.device)  # as the page runs it
        if args.input_size:
            explainer = Explainer(explainer.model, {**explainer.config, "input_size": args.input_size}, explainer.name,
                                  explainer.device)
        photo = test_photo(scratch / "photo.png") if args.photo == "noise" else Path(args.photo)
        image = load_rgb_image(photo)
        explanation = explainer.explain(image)
        print(f"{checkpoint.name}: input {explainer.config['input_size']} px, "
              f"features {tuple(explanation.output.features.shape[-2:])}, torch threads {torch.get_num_threads()}")
        rows = server_rows(explainer, explanation, image, photo, args.repeats)
        if history_path(checkpoint).is_file():  # "How it learned": every epoch replayed for the picture
            history = load_history(history_path(checkpoint), explainer.model, explainer.config)
            rows.append(("new image: how it learned", median_ms(
                lambda: learning_payload(explainer, explanation, history), args.repeats), None))
        if args.against:
            rows += against_rows(explainer, checkpoint, args, image)
        if args.browser:
            rows += browser_rows(scratch, checkpoint, photo)
    for name, milliseconds, budget in rows:
        verdict = "" if budget is None else f"  (budget {budget} ms: {'ok' if milliseconds <= budget else 'OVER'})"
        print(f"  {name:<34} {milliseconds:7.1f} ms{verdict}")
    return 0


def server_rows(explainer: Explainer, explanation, image, photo: Path, repeats: int) -> list[tuple]:
    """The server's side: an upload (decoded, explained, its payload), an example click (a cached
    answer), a slider move and a new image computed and drawn, the page's payload."""
    deltas = iter(np.tile(np.linspace(0.3, 0.9, 13), 1000))

    def slider_move():
        return explainer.reexplain(explanation, erase_threshold=next(deltas))

    def new_image():
        return explainer.explain(image)

    def drawn(compute):  # what a script's /explain adds: the four pictures with their colour keys
        return lambda: page_pictures(render_panels(compute(), box_threshold=0.2))

    def payload():  # what the page gets instead: every slider step, drawn in the browser
        return page_payload(explanation, explainer.model, explainer.model.erase_threshold, 0.2)

    runner = ModelRunner(_OneModel(explainer))

    def upload():  # what the server does for an upload it has not seen: decode, explain, payload
        return runner.run("explain", explainer.name, load_rgb_image(photo), delta=explainer.model.erase_threshold,
                          payload=True)
    cache = AnswerCache(64 << 20)
    key = request_key("a digest", explainer.name, None, explainer.model.erase_threshold, True)
    cache.get(key, upload)
    rows = [("upload: decode + explain + payload", median_ms(upload, repeats), UPLOAD_BUDGET_MS),
            ("example click: cached answer", median_ms(lambda: cache.get(key, upload), repeats), None),
            ("slider move: compute", median_ms(slider_move, repeats), SLIDER_BUDGET_MS),
            ("slider move: compute + draw", median_ms(drawn(slider_move), repeats), None),
            ("new image: compute", median_ms(new_image, repeats), NEW_IMAGE_BUDGET_MS),
            ("new image: compute + draw", median_ms(drawn(new_image), repeats), None),
            ("new image: page payload", median_ms(payload, repeats), None)]
    print(f"  page payload: {len(json.dumps(payload())) / 1024:.0f} KB")
    return rows


def against_rows(explainer: Explainer, checkpoint: Path, args, image) -> list[tuple]:
    """``--against``: an upload as the page gets it (explained, then its payload) by this and by
    the other checkpoint at the same input size, timed interleaved."""
    other = viewer_explainer(args.against, args.device)
    other = Explainer(other.model, {**other.config, "input_size": explainer.config["input_size"]}, other.name,
                      other.device)

    def as_the_page_gets_it(who):  # an upload: explained, then its payload
        return lambda: page_payload(who.explain(image), who.model, who.model.erase_threshold, 0.2)
    mine, theirs = interleaved_median_ms([as_the_page_gets_it(explainer), as_the_page_gets_it(other)], args.repeats)
    print(f"  an upload (explain + payload) takes {mine / theirs:.2f}x {Path(args.against).name}'s time "
          f"at {explainer.config['input_size']} px (medians of {args.repeats} interleaved runs)")
    return [(f"upload, {checkpoint.stem[:26]}", mine, None), (f"upload, {Path(args.against).stem[:26]}", theirs, None)]


if __name__ == "__main__":
    sys.exit(main())
