"""Evaluate a checkpoint: classification, localization and ACoL's complementarity, per map.

    python -m acol evaluate checkpoints/cub50_acol_efficientnet_lite0.safetensors ../shared/data/cub50

Inference (one pass of the model) and metrics (on the saved maps) are kept apart, as in
clovaai/wsolevaluation. Maps are scored for the *true* class (GT-known), which also gives top-1
localization: when the prediction is right, the predicted and the true class are the same.
Each map is classified by its own logits: branch A by A's, B by B's, the fused map by their sum.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .maps import upsample_maps
from .metrics import (CAM_THRESHOLDS, IOU_LEVELS, LocalizationAccumulator, box_coverage,
                      region_overlap)


def map_names(num_branches: int) -> list[str]:
    """"A", "B", ... for the branches, plus "fused" for ACoL (a CAM model has just "A")."""
    names = [chr(ord("A") + i) for i in range(num_branches)]
    return names + ["fused"] if num_branches > 1 else names


@torch.no_grad()
def run_inference(model, loader, device="cpu", progress: bool = True) -> dict:
    """Per image: the true-class maps (feature resolution), logits per map, label and boxes."""
    model.eval()
    maps, logits, labels, boxes, image_size = [], [], [], [], None
    for images, batch_labels, targets in tqdm(loader, desc="inference", disable=not progress):
        output = model(images.to(device), target_class=batch_labels.to(device))
        per_map = output.localization_maps + ([output.fused_map] if len(output.logits) > 1 else [])
        per_logits = output.logits + ([sum(output.logits)] if len(output.logits) > 1 else [])
        maps.append(torch.stack(per_map, 1).cpu())
        logits.append(torch.stack(per_logits, 1).cpu())
        labels.append(batch_labels)
        boxes += [target["boxes"].numpy() for target in targets]
        image_size = tuple(images.shape[-2:])
    return {"maps": torch.cat(maps), "logits": torch.cat(logits), "labels": torch.cat(labels),
            "boxes": boxes, "image_size": image_size, "num_branches": len(model.heads)}


def compute_metrics(inference: dict, cam_thresholds: dict[str, float] | None = None,
                    thresholds: np.ndarray = CAM_THRESHOLDS, progress: bool = True) -> dict:
    """Every number, per map. ``cam_thresholds`` (per map name) set the threshold of GT-known
    and top-1/5 localization; a map without one gets its best on this data (choose on the
    validation split, then pass the chosen values for a test split)."""
    names = map_names(inference["num_branches"])
    num_images, boxes = len(inference["maps"]), inference["boxes"]

    def image_maps(i: int) -> np.ndarray:  # one image at a time: all maps at once may not fit in memory
        return upsample_maps(inference["maps"][i], inference["image_size"]).numpy()

    labels = inference["labels"]
    top5 = inference["logits"].topk(min(5, inference["logits"].shape[-1]), -1).indices
    top1_correct = (top5[..., 0] == labels[:, None]).numpy()
    top5_correct = (top5 == labels[:, None, None]).any(-1).numpy()
    accumulators = [LocalizationAccumulator(thresholds) for _ in names]
    for i in tqdm(range(num_images), desc="metrics", disable=not progress):
        for m, (accumulator, scores) in enumerate(zip(accumulators, image_maps(i))):
            accumulator.add(scores, boxes[i], top1_correct[i, m], top5_correct[i, m])

    # The complementarity figures need each map's CAM threshold, known only now: a second pass.
    cam_thresholds = cam_thresholds or {}
    chosen = [cam_thresholds.get(name, accumulator.best_threshold()) for name, accumulator in zip(names, accumulators)]
    coverage, peak_in_box, overlap_a_b = np.zeros((num_images, len(names))), np.zeros((num_images, len(names))), []
    for i in range(num_images):
        scores = image_maps(i)
        for m in range(len(names)):
            coverage[i, m] = box_coverage(scores[m], boxes[i], chosen[m])
            peak_in_box[i, m] = _peak_in_box(scores[m], boxes[i])
        if "B" in names:
            overlap_a_b.append(region_overlap(scores[0], scores[1], chosen[0]))

    results = {"num_images": num_images, "maps": {}}
    for m, (name, accumulator, threshold) in enumerate(zip(names, accumulators, chosen)):
        results["maps"][name] = {
            "top1_cls": 100 * float(top1_correct[:, m].mean()),
            "top5_cls": 100 * float(top5_correct[:, m].mean()),
            "cam_threshold": threshold,
            "cam_threshold_chosen_here": name not in cam_thresholds,
            **accumulator.localization_at(threshold),
            "max_box_acc": accumulator.max_box_acc(),
            "max_box_acc_v2": accumulator.max_box_acc_v2(),
            "box_coverage": 100 * float(coverage[:, m].mean()),
            "peak_in_box": 100 * float(peak_in_box[:, m].mean()),
            "curves": {f"iou{level}": accumulator.box_accuracy_curve(level, True).round(2).tolist()
                       for level in IOU_LEVELS},
        }
    if overlap_a_b:
        results["region_iou_A_B"] = 100 * float(np.mean(overlap_a_b))
    return results


def _peak_in_box(localization_map: np.ndarray, gt_boxes: np.ndarray) -> bool:
    row, col = np.unravel_index(localization_map.argmax(), localization_map.shape)
    return any(x0 <= col < x1 and y0 <= row < y1 for x0, y0, x1, y1 in gt_boxes)


TABLE_COLUMNS = [("top1_cls", "top-1 cls"), ("gt_known_loc", "GT-known loc"), ("top1_loc", "top-1 loc"),
                 ("top5_loc", "top-5 loc"), ("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"),
                 ("box_coverage", "box covered"), ("peak_in_box", "peak in box"), ("cam_threshold", "CAM thr")]


def results_table(results: dict) -> str:
    """A Markdown table, one row per map."""
    lines = ["| map | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
             "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for name, numbers in results["maps"].items():
        lines.append(f"| {name} | " + " | ".join(f"{numbers[key]:.2f}" if key == "cam_threshold"
                                                 else f"{numbers[key]:.1f}" for key, _ in TABLE_COLUMNS) + " |")
    if "region_iou_A_B" in results:
        lines.append(f"\nIoU of A's and B's regions: {results['region_iou_A_B']:.1f}% "
                     "(low = B found other parts than A)")
    return "\n".join(lines)


def plot_box_accuracy(results: dict, path: str | Path) -> Path:
    """Box accuracy (all components) against the CAM threshold, one panel per IoU level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, len(IOU_LEVELS), figsize=(4 * len(IOU_LEVELS), 3.4), sharey=True)
    for axis, level in zip(axes, IOU_LEVELS):
        for name, numbers in results["maps"].items():
            axis.plot(np.linspace(0, 1, len(numbers["curves"][f"iou{level}"]), endpoint=False),
                      numbers["curves"][f"iou{level}"], label=name)
        axis.set(title=f"IoU >= {level / 100:.1f}", xlabel="CAM threshold")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("box accuracy (%)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


class ShipRefused(RuntimeError):
    """``--ship`` would replace a checkpoint that did better on the same validation data."""


def check_replacement(path, config: dict, results: dict) -> None:
    """Refuse to ship over a checkpoint whose final map (fused, or CAM's) scored a higher
    MaxBoxAccV2 on the same split of the same classes: an evaluation of a diverged run once
    replaced a good shipped model that way. ``--force`` skips this check."""
    from .checkpoint import CheckpointError, read_metadata
    if not Path(path).exists():
        return
    try:
        shipped = json.loads(read_metadata(path)["config"])
        validation = shipped["metrics"]["validation"]
        final_map = list(validation["maps"])[-1]
        before = validation["maps"][final_map]["max_box_acc_v2"]
    except (CheckpointError, KeyError, IndexError, TypeError, json.JSONDecodeError):
        return  # no numbers to compare with
    now = results["maps"].get(final_map, {}).get("max_box_acc_v2")
    comparable = validation["split"] == results["split"] and shipped.get("class_names") == config["class_names"]
    if comparable and now is not None and now < before:
        raise ShipRefused(f"not shipping over {path}: it scored MaxBoxAccV2 {before:.2f} ({final_map} map, "
                          f"split {results['split']!r}) and this model {now:.2f}. Ship elsewhere, or pass "
                          "--force to replace it anyway.")


def ship_checkpoint(path, model, config: dict, results: dict) -> Path:
    """Save ``model`` (fp16) with the thresholds chosen on, and the numbers of, ``results``."""
    from .checkpoint import save_checkpoint
    summary = {name: {key: round(value, 2) for key, value in numbers.items() if isinstance(value, float)}
               for name, numbers in results["maps"].items()}
    metrics = {"cam_thresholds": {name: numbers["cam_threshold"] for name, numbers in results["maps"].items()},
               "validation": {"data": results["data"], "split": results["split"], "maps": summary,
                              **({"region_iou_A_B": round(results["region_iou_A_B"], 2)}
                                 if "region_iou_A_B" in results else {})},
               "history": config.get("metrics", {}).get("history", [])}
    return save_checkpoint(path, model, backbone=config["model"]["backbone"],
                           class_names=config["class_names"], input_size=results["input_size"],
                           recipe=config.get("recipe", {}), metrics=metrics, half=True)


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import load_checkpoint
    from .data import build_dataset, eval_transform, make_loader
    parser = argparse.ArgumentParser(prog="python -m acol evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="a CUB-layout root, wsolevaluation metadata folder or CSV")
    parser.add_argument("--split", default="test", help="split to evaluate (cub50: test = validation)")
    parser.add_argument("--cam-threshold", type=float, default=None,
                        help="CAM threshold for GT-known/top-1 loc, for every map; default: the "
                             "checkpoint's (chosen on validation), else the best on this data")
    parser.add_argument("--erase-threshold", type=float, default=None,
                        help="erase threshold at inference (default: the checkpoint's)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None, help="output folder (default: runs/eval-<checkpoint>)")
    parser.add_argument("--ship", metavar="PATH", default=None,
                        help="also write a float16 copy of the checkpoint whose config records the "
                             "erase threshold, the CAM thresholds and these (validation) numbers; "
                             "refused if PATH holds a model that scored better on the same split")
    parser.add_argument("--force", action="store_true", help="--ship even over a better checkpoint")
    args = parser.parse_args(argv)

    model, config = load_checkpoint(args.checkpoint)
    size = args.input_size or config["input_size"]
    dataset = build_dataset(args.data, args.split, eval_transform(size, config["mean"], config["std"]))
    loader = make_loader(dataset, args.batch_size, args.workers)
    if args.erase_threshold is not None:
        model.erase_threshold = args.erase_threshold
    cam_thresholds = config.get("metrics", {}).get("cam_thresholds", {})
    if args.cam_threshold is not None:
        cam_thresholds = {name: args.cam_threshold for name in map_names(len(model.heads))}
    results = compute_metrics(run_inference(model, loader), cam_thresholds)
    results.update(checkpoint=str(args.checkpoint), data=str(args.data), split=args.split,
                   input_size=size, erase_threshold=model.erase_threshold)

    out = Path(args.out or Path("runs") / f"eval-{Path(args.checkpoint).stem}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    table = results_table(results)
    (out / "results.md").write_text(table + "\n")
    plot_box_accuracy(results, out / "box_accuracy.png")
    print(table)
    if args.ship:
        try:
            if not args.force:
                check_replacement(args.ship, config, results)
        except ShipRefused as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        ship_checkpoint(args.ship, model, config, results)
        print(f"shipped {args.ship}")
    print(f"\nwrote {out / 'metrics.json'}, {out / 'results.md'}, {out / 'box_accuracy.png'}")
    return 0
