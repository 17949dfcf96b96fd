"""How sure is a MaxBoxAccV2 margin? A paired bootstrap over the evaluation images.

    python scripts/bootstrap_margin.py ACOL_CHECKPOINT CAM_CHECKPOINT DATA [--split test] [--draws 2000]

Both checkpoints explain the same images (each at its own input size); per image and CAM
threshold we keep the best box IoU over all components (wsolevaluation's MaxBoxAccV2 curves) of
the first model's fused map and the second model's map A. Drawing the images with replacement,
the same draw for both models, gives the spread of the margin that comes from which images were
evaluated. It says nothing about training noise (another seed): that needs more runs.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from acol.checkpoint import load_checkpoint  # noqa: E402
from acol.data import build_dataset, eval_transform, make_loader  # noqa: E402
from acol.evaluate import map_names, run_inference  # noqa: E402
from acol.maps import upsample_maps  # noqa: E402
from acol.metrics import LocalizationAccumulator, max_box_acc_v2  # noqa: E402


def best_iou_curves(checkpoint, data, split) -> tuple[str, np.ndarray]:
    """(map name, [images, thresholds] best-component IoU) of a checkpoint's headline map."""
    model, config = load_checkpoint(checkpoint)
    dataset = build_dataset(data, split, eval_transform(config["input_size"], config["mean"], config["std"]))
    inference = run_inference(model, make_loader(dataset, 32, workers=1))
    names = map_names(inference["num_branches"])
    name = "fused" if "fused" in names else "A"
    accumulator = LocalizationAccumulator()
    for i, boxes in enumerate(inference["boxes"]):
        maps = upsample_maps(inference["maps"][i], inference["image_size"]).numpy()
        accumulator.add(maps[names.index(name)], boxes, top1_correct=True, top5_correct=True)
    return name, np.stack(accumulator.best_iou)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (first_map, first), (second_map, second) = (best_iou_curves(path, args.data, args.split)
                                                for path in (args.first, args.second))
    margin = max_box_acc_v2(first) - max_box_acc_v2(second)
    rng = np.random.default_rng(args.seed)
    draws = np.array([max_box_acc_v2(first[images]) - max_box_acc_v2(second[images])
                      for images in rng.integers(0, len(first), (args.draws, len(first)))])
    low, high = np.percentile(draws, [2.5, 97.5])
    print(f"MaxBoxAccV2 on {len(first)} images: {max_box_acc_v2(first):.1f} ({first_map}) vs "
          f"{max_box_acc_v2(second):.1f} ({second_map}), margin {margin:+.1f}")
    print(f"paired bootstrap, {args.draws} draws: 95% interval [{low:+.1f}, {high:+.1f}]; margin <= 0 in "
          f"{100 * (draws <= 0).mean():.1f}% of draws, >= +3 in {100 * (draws >= 3).mean():.1f}%")


if __name__ == "__main__":
    main()
