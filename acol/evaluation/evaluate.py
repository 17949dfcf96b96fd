"""Evaluate a checkpoint: classification, localization and ACoL's complementarity, per map.

    python -m acol evaluate checkpoints/cub50_acol_efficientnet_lite0.safetensors ../shared/data/cub50
    python -m acol evaluate CAM_CHECKPOINT DATA --out runs/eval_cam
    python -m acol evaluate ACOL_CHECKPOINT DATA --compare runs/eval_cam   # margin over CAM, with its 95% interval

Inference (one pass of the model) and metrics (on the saved maps) are kept apart, as in
clovaai/wsolevaluation. Maps are scored for the *true* class (GT-known), which also gives top-1
localization: when the prediction is right, the predicted and the true class are the same.
Each branch's map is classified by its own logits (A by A's, B by B's), and the fused map by
A's: at inference A's top-1 is the class whose map drives the erasing, so B's map and the fused
map exist only for that class; the viewer explains the same class (one prediction rule).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.checkpoint import load_checkpoint
from ..core.device import add_device_flag, resolve_device
from ..core.history import HistoryError
from ..data.datasets import build_dataset
from ..data.transforms import eval_transform, make_loader, resize_size_for
from .report import ComparisonError, best_iou_file, compare_evaluations, plot_box_accuracy, results_table, save_best_iou
from .scoring import compute_metrics, map_names, run_inference, score_maps
from .shipping import ShipRefused, check_shipping, ship_checkpoint, ship_history


def command_line() -> argparse.ArgumentParser:
    """The command's flags (``--help`` says what each does)."""
    parser = argparse.ArgumentParser(prog="python -m acol evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="a CUB-layout root, wsolevaluation metadata folder or CSV")
    parser.add_argument("--split", default="test", help="split to evaluate (cub50: test = validation)")
    parser.add_argument("--cam-threshold", type=float, default=None,
                        help="CAM threshold for GT-known/top-1 loc, for every map; default: the "
                             "checkpoint's (chosen on validation), else the best on this data")
    parser.add_argument("--choose-thresholds", action="store_true",
                        help="choose every map's CAM threshold on this data, ignoring the checkpoint's "
                             "(re-validating a shipped model)")
    parser.add_argument("--erase-threshold", type=float, default=None,
                        help="erase threshold at inference (default: the checkpoint's)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes scoring the maps (the CPU-bound part: every CAM threshold of every map)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/eval-<checkpoint>)")
    parser.add_argument("--ship", metavar="PATH", default=None,
                        help="also write a float16 copy of the checkpoint whose config records the "
                             "erase threshold, the CAM thresholds and these (validation) numbers; "
                             "refused if PATH holds a model that scored better on the same split. A "
                             "training history beside the checkpoint (acol.core.history) is checked and copied "
                             "to PATH with .safetensors replaced by .history.safetensors")
    parser.add_argument("--force", action="store_true", help="--ship even over a better checkpoint")
    parser.add_argument("--description", default=None,
                        help="with --ship: a short text stored in the shipped config (what it was trained "
                             "on, its figures, what its maps do); default: the checkpoint's own")
    add_device_flag(parser)
    parser.add_argument("--compare", metavar="EVAL_DIR", default=None,
                        help="the --out folder of another model's evaluation on the same images (the "
                             "CAM baseline's, say): report the MaxBoxAccV2 margin of this model's final "
                             "map over that one's, with a 95%% interval from a paired bootstrap")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = command_line()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    try:
        if args.compare:
            best_iou_file(args.compare)  # now, not after minutes of inference
    except ComparisonError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    model, config = load_checkpoint(args.checkpoint)
    size = args.input_size or config["input_size"]
    inference = infer(args, model, config, size, device)
    scored = score_maps(inference, jobs=args.jobs)
    results = compute_metrics(inference, cam_thresholds(args, config, len(model.heads)), scored=scored)
    results.update(checkpoint=str(args.checkpoint), data=str(args.data), split=args.split,
                   input_size=size, erase_threshold=model.erase_threshold)
    comparison_error = None
    if args.compare:
        try:
            results["comparison"] = compare_evaluations(args.compare, inference["image_ids"], scored)
        except ComparisonError as error:
            comparison_error = error  # said after this evaluation is written: nothing is lost

    out = write_evaluation(Path(args.out or Path("runs") / f"eval-{Path(args.checkpoint).stem}"), inference, scored,
                           results)
    if comparison_error:
        print(f"error: {comparison_error}", file=sys.stderr)
        return 1
    if args.ship and not ship(args, model, config, results, size):
        return 1
    print(f"\nwrote {out / 'metrics.json'}, {out / 'results.md'}, {out / 'box_accuracy.png'}, "
          f"{out / 'best_iou.npz'}")
    return 0


def infer(args, model, config: dict, size: int, device) -> dict:
    """``run_inference`` of the checkpoint's model (at ``--erase-threshold``, when given) on the
    data, at input size ``size``; the model is back on the CPU afterwards (shipped from there)."""
    # Synthetic images are drawn as training drew them: the model's classes, rendered at the size
    # its input is resized from (SYNTHETIC_SPLITS holds each split's seed).
    synthetic = ({"class_names": config["class_names"], "image_size": resize_size_for(size)}
                 if args.data == "synthetic" else {})
    dataset = build_dataset(args.data, args.split, eval_transform(size, config["mean"], config["std"]), **synthetic)
    loader = make_loader(dataset, args.batch_size, args.workers)
    if args.erase_threshold is not None:
        model.erase_threshold = args.erase_threshold
    inference = run_inference(model.to(device), loader, device)
    model.cpu()  # shipped from the CPU
    return inference


def cam_thresholds(args, config: dict, num_branches: int) -> dict[str, float]:
    """Each map's CAM threshold for GT-known and top-1 loc: ``--cam-threshold`` for every map, else
    the checkpoint's (none with ``--choose-thresholds``); a map without one gets its best here."""
    if args.cam_threshold is not None:
        return {name: args.cam_threshold for name in map_names(num_branches)}
    return {} if args.choose_thresholds else config.get("metrics", {}).get("cam_thresholds", {})


def write_evaluation(out: Path, inference: dict, scored: dict, results: dict) -> Path:
    """The evaluation's files in ``out`` (IoU curves, metrics.json, the tables, the plot); the
    tables printed."""
    out.mkdir(parents=True, exist_ok=True)
    save_best_iou(out / "best_iou.npz", inference["image_ids"], scored)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    table = results_table(results)
    (out / "results.md").write_text(table + "\n")
    plot_box_accuracy(results, out / "box_accuracy.png")
    print(table)
    return out


def ship(args, model, config: dict, results: dict, size: int) -> bool:
    """``--ship``: the checkpoint and its training history shipped together, or nothing (False,
    said)."""
    try:
        history = check_shipping(args.ship, args.checkpoint, model, config, results, size, args.force)
    except (ShipRefused, HistoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return False
    ship_checkpoint(args.ship, model, config, results, args.description)
    print(f"shipped {args.ship}")
    shipped_history = ship_history(history, args.ship)
    if shipped_history:
        print(f"shipped {shipped_history}")
    return True
