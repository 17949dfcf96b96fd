"""``python -m acol explain IMAGE -o FIG.png``: the viewer's four-panel figure of one image.

    python -m acol explain bird.jpg -o bird_acol.png --erase-threshold 0.5

Explaining is ``acol.explain``, the figure ``acol.drawing``; this is only the command line.
"""

from __future__ import annotations

import argparse
import sys

from .data import ImageLoadError, load_rgb_image
from .device import add_device_flag
from .drawing import render_panels, write_figure_png
from .explain import DEFAULT_CHECKPOINT, Explainer, resolve_class, top_classes


def main(argv: list[str] | None = None) -> int:
    """``python -m acol explain IMAGE -o FIG.png``: the viewer's four-panel figure of one image."""
    parser = argparse.ArgumentParser(prog="python -m acol explain",
                                     description="Write the four-panel ACoL figure of one image "
                                                 "(the same figure the viewer exports).")
    parser.add_argument("image")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
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
        explainer = Explainer.from_checkpoint(args.checkpoint, args.device)
        image = load_rgb_image(args.image)
        target = None if args.class_ is None else resolve_class(args.class_, explainer.class_names)
    except (ValueError, ImageLoadError) as error:  # CheckpointError is a ValueError too
        print(f"error: {error}", file=sys.stderr)
        return 1
    explanation = explainer.explain(image, args.true_box, target, args.erase_threshold)
    box_threshold = explainer.default_box_threshold if args.box_threshold is None else args.box_threshold
    panels = render_panels(explanation, box_threshold)
    try:
        path = write_figure_png(panels, args.output)
    except OSError as error:
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return 1
    for index, name, probability in top_classes(explanation):
        print(f"{probability:7.1%}  {name}")
    print(f"{panels.caption}\nwrote {path}")
    return 0
