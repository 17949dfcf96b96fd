"""``python -m acol explain IMAGE -o FIG.png``: the viewer's four-panel figure of one image.

    python -m acol explain cat.jpg -o cat_acol.png                    # the model the viewer would pick
    python -m acol explain bird.jpg -o bird_acol.png --checkpoint checkpoints/cub50_acol_efficientnet_lite0.safetensors

As honest as the page: without ``--checkpoint`` the picture goes to the model the viewer would
send it to (``acol.viewer.shelf.route_picture``: the teaching model for its bundled examples, the
everyday model for any other picture), and whatever the model, the viewer's note on a picture it
was not made for (``Explainer.note``) is printed and written on the figure. Explaining is
``acol.evaluation.explain``, the figure ``acol.viewer.drawing``; this is only the command line.
"""

from __future__ import annotations

import argparse
import sys

from ..core.device import add_device_flag
from ..data.images import ImageLoadError, load_rgb_image
from ..evaluation.explain import Explainer
from ..evaluation.words import resolve_class, top_classes
from .drawing import render_panels, write_figure_png
from .shelf import (BUNDLED_EXAMPLES, CHECKPOINTS, CheckpointShelf, Example, ExampleImages, content_digest,
                    page_models, route_picture)


def main(argv: list[str] | None = None) -> int:
    """``python -m acol explain IMAGE -o FIG.png``: the viewer's four-panel figure of one image."""
    parser = argparse.ArgumentParser(prog="python -m acol explain",
                                     description="Write the four-panel ACoL figure of one image "
                                                 "(the same figure the viewer exports).")
    parser.add_argument("image")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--checkpoint", default=None,
                        help="a .safetensors checkpoint (default: the one the viewer would pick from checkpoints/: "
                             "the teaching model for its bundled examples, the everyday model for any other picture)")
    parser.add_argument("--erase-threshold", type=float, default=None,
                        help="erase threshold delta (default: the model's)")
    parser.add_argument("--class", dest="class_", default=None,
                        help="class to explain, by index or name (default: branch A's top-1)")
    parser.add_argument("--box-threshold", type=float, default=None,
                        help="box threshold on the map normalized to [0, 1], as wsolevaluation cuts it "
                             "(default: the checkpoint's)")
    parser.add_argument("--true-box", type=float, nargs=4, action="append", metavar=("X0", "Y0", "X1", "Y1"),
                        help="the object's true box in image pixels, to draw and score (repeatable)")
    add_device_flag(parser)
    args = parser.parse_args(argv)
    try:
        image = load_rgb_image(args.image)
        explainer, example = chosen_model(args.checkpoint, args.image, args.device)
        target = None if args.class_ is None else resolve_class(args.class_, explainer.class_names)
    except (ValueError, ImageLoadError) as error:  # CheckpointError is a ValueError too
        print(f"error: {error}", file=sys.stderr)
        return 1
    true_boxes = args.true_box if args.true_box or example is None else example.true_boxes
    explanation = explainer.explain(image, true_boxes, target, args.erase_threshold,
                                    None if example is None else example.label)
    box_threshold = explainer.default_box_threshold if args.box_threshold is None else args.box_threshold
    note = explainer.note(explanation)
    panels = render_panels(explanation, box_threshold, note)
    try:
        path = write_figure_png(panels, args.output)
    except OSError as error:
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"model: {explainer.name} ({explainer.known_classes})")
    for index, name, probability in top_classes(explanation):
        print(f"{probability:7.1%}  {name}")
    print(panels.caption + (f"\n{note.replace('**', '')}" if note else "") + f"\nwrote {path}")
    return 0


def chosen_model(checkpoint: str | None, image_path: str, device) -> tuple[Explainer, Example | None]:
    """(the explainer, the bundled example the picture is, if it is one): the ``checkpoint``
    given, else the model the viewer would send the picture to."""
    shelf = CheckpointShelf(CHECKPOINTS, device)
    examples = ExampleImages(BUNDLED_EXAMPLES)
    example = examples.find(content_digest(image_path))
    if checkpoint is not None:
        return Explainer.from_checkpoint(checkpoint, device), example
    models = page_models(shelf, examples)
    if not models:
        raise ValueError(f"no checkpoint in {CHECKPOINTS}: give one with --checkpoint")
    return shelf[route_picture(shelf, examples, content_digest(image_path), models[0], False)], example
