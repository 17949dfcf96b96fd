"""``python -m acol story``: does a synthetic model tell ACoL's story? (``acol.evaluation.story``)

    python -m acol story checkpoints/synthetic_acol_efficientnet_lite0_s8.safetensors --split heldout
    python -m acol story CHECKPOINT [CHECKPOINT ...] --seed 12345 --count 400   # fresh pictures
    python -m acol story CHECKPOINT --split examples --count 60 --write-examples assets/examples

Each checkpoint explains every picture as the page does (the whole picture, A's own top-1, the
model's δ and box threshold) and is checked against the generator's part masks: where A's and
B's maps peak, whether B names the true class (on every picture, and on those whose body shows
its own class), whether the page's box finds the bird (IoU >= 0.5). One row per checkpoint.
The pictures are drawn at the side the model's training drew them at (its input size * 256 /
224: 146 px for the teaching model), unless ``--image-size`` says otherwise: at 160 px the
teaching model's B names the class of its own-class bodies less often (82% against 89% on the
held-out seed), so the card gives both.
``--write-examples`` writes the pictures a page should bundle, chosen by their stories with the
(first) checkpoint: a picture per class where the story holds, then ones where it fails for a
reason worth seeing (``acol.evaluation.story.choose_examples``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.checkpoint import CheckpointError
from ..data.datasets import SYNTHETIC_SPLITS
from ..data.synthetic import SyntheticParts, write_examples
from ..data.transforms import resize_size_for
from .explain import Explainer
from .story import choose_examples, stories_of, summarize

COLUMNS = {"a_peak_on_head": "A's peak on the head", "b_peak_on_body": "B's peak on the body",
           "b_right_on_honest_bodies": "B right (own-class bodies)", "b_right": "B right (all)",
           "found": "fused box found (IoU >= 0.5)", "story_holds": "whole story holds"}


def figures_table(rows: dict[str, dict]) -> str:
    """A Markdown table: one row per checkpoint, the story's figures in percent."""
    lines = ["| model | δ | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, figures in rows.items():
        cells = ["" if figures.get(key) is None else f"{figures[key]:.1f}" for key in COLUMNS]
        lines.append(f"| {name} | {figures['erase_threshold']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def row_name(path, rows: dict) -> str:
    """A checkpoint's row: its file's name, or its run folder's for a run's ``model.safetensors``."""
    path = Path(path)
    return path.parent.name if path.stem in ("model", "validated") or path.stem in rows else path.stem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acol story", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="synthetic-data checkpoints (.safetensors)")
    parser.add_argument("--split", choices=sorted(SYNTHETIC_SPLITS), default="heldout",
                        help="the synthetic split whose pictures are checked (its seed and size)")
    parser.add_argument("--seed", type=int, default=None, help="check fresh pictures of this generator seed instead")
    parser.add_argument("--count", type=int, default=None, help="how many pictures (default: the split's size)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="the pictures' side (default: the side the model's training drew them at, "
                             "its input size * 256 / 224: 146 px for the teaching model)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("--write-examples", metavar="DIR", default=None,
                        help="write the pictures the page should bundle (chosen by their stories) to DIR")
    parser.add_argument("--examples", type=int, default=6, help="with --write-examples: how many")
    args = parser.parse_args(argv)
    count, seed = SYNTHETIC_SPLITS[args.split]
    seed, count = (seed if args.seed is None else args.seed), (count if args.count is None else args.count)
    rows = {}
    for path in args.checkpoints:
        try:
            explainer = Explainer.from_checkpoint(path)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        size = args.image_size or resize_size_for(explainer.config["input_size"])
        pictures = SyntheticParts.for_classes(explainer.class_names, count, size, seed=seed)
        stories = stories_of(explainer, pictures)
        rows[row_name(path, rows)] = dict(summarize(stories), erase_threshold=round(explainer.model.erase_threshold, 2),
                                          box_threshold=round(explainer.default_box_threshold, 2))
        if args.write_examples and len(rows) == 1:
            chosen = choose_examples(stories, args.examples)
            write_examples(args.write_examples, chosen, seed, pictures.num_classes, size)
            print(f"wrote pictures {chosen} of seed {seed} to {args.write_examples}")
    print(f"{count} pictures of generator seed {seed}, explained as the page explains them\n")
    print(figures_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"seed": seed, "count": count, "models": rows}, indent=2))
    return 0
