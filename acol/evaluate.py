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

import numpy as np
import torch
from tqdm import tqdm

from .maps import score_map
from .metrics import (CAM_THRESHOLDS, IOU_LEVELS, PART_FIGURES, LocalizationAccumulator, PartAccumulator,
                      box_coverage, box_precision, iou_per_threshold, paired_bootstrap, region_overlap)


def map_names(num_branches: int) -> list[str]:
    """"A", "B", ... for the branches, plus "fused" for ACoL (a CAM model has just "A")."""
    names = [chr(ord("A") + i) for i in range(num_branches)]
    return names + ["fused"] if num_branches > 1 else names


@torch.no_grad()
def run_inference(model, loader, device="cpu", progress: bool = True, features=None,
                  image_size: tuple[int, int] | None = None) -> dict:
    """Per image: the true-class maps (feature resolution), logits per map, label and boxes
    (and ``part_masks``, (head, body) bool masks, when every target has them: synthetic data).

    ``features``: with a loader of cached frozen-stage outputs (``FeatureCache.batches``), the
    module that turns them into backbone features (the trainable stages); ``image_size`` then
    says the size of the images they came from."""
    model.eval()
    maps, logits, labels, boxes, image_ids, part_masks, b_agrees = [], [], [], [], [], [], []
    for inputs, batch_labels, targets in tqdm(loader, desc="inference", disable=not progress):
        inputs, target_class = inputs.to(device), batch_labels.to(device)
        output = (model(inputs, target_class=target_class) if features is None
                  else model.forward_features(features(inputs), target_class=target_class))
        if len(output.logits) > 1:  # B shown what A's own top-1 map left: does it still name A's class?
            own = model.forward_features(output.features, first_class_map=output.class_maps[0])
            b_agrees.append((own.logits[1].argmax(1) == own.logits[0].argmax(1)).cpu())
        per_map = output.localization_maps + ([output.fused_map] if len(output.logits) > 1 else [])
        per_logits = output.logits + ([output.logits[0]] if len(output.logits) > 1 else [])
        maps.append(torch.stack(per_map, 1).cpu())
        logits.append(torch.stack(per_logits, 1).cpu())
        labels.append(batch_labels)
        boxes += [target["boxes"].numpy() for target in targets]
        image_ids += [target["image_id"] for target in targets]
        part_masks += [(t["head_mask"].numpy(), t["body_mask"].numpy()) for t in targets if "head_mask" in t]
        image_size = image_size if features is not None else tuple(inputs.shape[-2:])
    return {"maps": torch.cat(maps), "logits": torch.cat(logits), "labels": torch.cat(labels),
            "boxes": boxes, "image_ids": image_ids, "image_size": image_size, "num_branches": len(model.heads),
            **({"part_masks": part_masks} if part_masks and len(part_masks) == len(boxes) else {}),
            **({"b_agrees_with_a": torch.cat(b_agrees)} if b_agrees else {})}


def _image_maps(inference: dict, i: int) -> np.ndarray:
    """Image i's score maps at input resolution, resized then normalized as wsolevaluation does
    (one image at a time: all at once may not fit in memory)."""
    return np.stack([score_map(m, inference["image_size"]) for m in inference["maps"][i]])


def score_maps(inference: dict, thresholds: np.ndarray = CAM_THRESHOLDS,
               progress: bool = True, jobs: int = 1) -> dict[str, LocalizationAccumulator]:
    """Per map (A, B, fused), every image's box IoU at every CAM threshold: all that the
    localization metrics are read from. ``jobs > 1`` scores chunks of images in that many
    processes (the same curves; at 448 px one ACoL image costs ~0.7 s of one core)."""
    names = map_names(inference["num_branches"])
    labels = inference["labels"]
    top5 = inference["logits"].topk(min(5, inference["logits"].shape[-1]), -1).indices
    top1_correct = (top5[..., 0] == labels[:, None]).numpy()
    top5_correct = (top5 == labels[:, None, None]).any(-1).numpy()
    accumulators = {name: LocalizationAccumulator(thresholds) for name in names}
    if jobs > 1:
        for i, curves in enumerate(_iou_curves_in_processes(inference, thresholds, jobs, progress)):
            for m, (accumulator, (largest, best)) in enumerate(zip(accumulators.values(), curves)):
                accumulator.largest_iou.append(largest)
                accumulator.best_iou.append(best)
                accumulator.top1_correct.append(bool(top1_correct[i, m]))
                accumulator.top5_correct.append(bool(top5_correct[i, m]))
        return accumulators
    for i in tqdm(range(len(inference["maps"])), desc="metrics", disable=not progress):
        for m, (accumulator, scores) in enumerate(zip(accumulators.values(), _image_maps(inference, i))):
            accumulator.add(scores, inference["boxes"][i], top1_correct[i, m], top5_correct[i, m])
    return accumulators


def _iou_curves(maps: np.ndarray, boxes: list, image_size, thresholds: np.ndarray) -> list:
    """Each image's (largest, best) IoU curves per map, as ``LocalizationAccumulator.add``
    computes them: one chunk of ``score_maps``'s work, run in a worker process."""
    torch.set_num_threads(1)  # one core per worker
    return [[iou_per_threshold(score_map(torch.from_numpy(m), image_size), np.asarray(b), thresholds)
             for m in image_maps] for image_maps, b in zip(maps, boxes)]


def _iou_curves_in_processes(inference: dict, thresholds: np.ndarray, jobs: int, progress: bool):
    """Every image's ``_iou_curves``, in image order, from ``jobs`` processes (forked from a
    fresh server process, never from this one, which may hold CUDA)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    maps = inference["maps"].float().numpy()
    chunks = [chunk for chunk in np.array_split(np.arange(len(maps)), jobs * 4) if len(chunk)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        futures = [pool.submit(_iou_curves, maps[chunk], [inference["boxes"][i] for i in chunk],
                               inference["image_size"], thresholds) for chunk in chunks]
        for future in tqdm(futures, desc=f"metrics ({jobs} processes)", disable=not progress):
            yield from future.result()


def compute_metrics(inference: dict, cam_thresholds: dict[str, float] | None = None,
                    thresholds: np.ndarray = CAM_THRESHOLDS, progress: bool = True,
                    scored: dict[str, LocalizationAccumulator] | None = None) -> dict:
    """Every number, per map. ``cam_thresholds`` (per map name) set the threshold of GT-known
    and top-1/5 localization; a map without one gets its best on this data (choose on the
    validation split, then pass the chosen values for a test split). ``scored``: the maps'
    ``score_maps``, when the caller has them already."""
    scored = score_maps(inference, thresholds, progress) if scored is None else scored
    names, accumulators = list(scored), list(scored.values())
    num_images, boxes = len(inference["maps"]), inference["boxes"]

    # The complementarity figures need each map's CAM threshold, known only now: a second pass.
    cam_thresholds = cam_thresholds or {}
    chosen = [cam_thresholds.get(name, accumulator.best_threshold()) for name, accumulator in zip(names, accumulators)]
    coverage, precision, peak_in_box = (np.zeros((num_images, len(names))) for _ in range(3))
    overlap_a_b = []
    parts = PartAccumulator(names, chosen) if "part_masks" in inference else None
    for i in range(num_images):
        scores = _image_maps(inference, i)
        if parts:
            parts.add(scores, *inference["part_masks"][i])
        for m in range(len(names)):
            coverage[i, m] = box_coverage(scores[m], boxes[i], chosen[m])
            precision[i, m] = box_precision(scores[m], boxes[i], chosen[m])
            peak_in_box[i, m] = _peak_in_box(scores[m], boxes[i])
        if "B" in names:
            overlap_a_b.append(region_overlap(scores[0], scores[1], chosen[0]))

    results = {"num_images": num_images, "maps": {}}
    for m, (name, accumulator, threshold) in enumerate(zip(names, accumulators, chosen)):
        results["maps"][name] = {
            "top1_cls": 100 * float(np.mean(accumulator.top1_correct)),
            "top5_cls": 100 * float(np.mean(accumulator.top5_correct)),
            "cam_threshold": threshold,
            "cam_threshold_chosen_here": name not in cam_thresholds,
            **accumulator.localization_at(threshold),
            "max_box_acc": accumulator.max_box_acc(),
            "max_box_acc_v2": accumulator.max_box_acc_v2(),
            "box_coverage": 100 * float(coverage[:, m].mean()),
            "box_precision": 100 * float(np.nanmean(precision[:, m])) if not np.isnan(precision[:, m]).all() else 0.0,
            "peak_in_box": 100 * float(peak_in_box[:, m].mean()),
            "curves": {f"iou{level}": accumulator.box_accuracy_curve(level, True).round(2).tolist()
                       for level in IOU_LEVELS},
        }
    for name, figures in (parts.summary() if parts else {}).items():
        results["maps"][name].update(figures)
    if overlap_a_b:
        results["region_iou_A_B"] = 100 * float(np.mean(overlap_a_b))
    if "b_agrees_with_a" in inference:
        results["b_names_a_class"] = 100 * float(inference["b_agrees_with_a"].float().mean())
    return results


def _peak_in_box(localization_map: np.ndarray, gt_boxes: np.ndarray) -> bool:
    row, col = np.unravel_index(localization_map.argmax(), localization_map.shape)
    return any(x0 <= col < x1 and y0 <= row < y1 for x0, y0, x1, y1 in gt_boxes)


def save_best_iou(path, image_ids: list[str], scored: dict[str, LocalizationAccumulator]) -> Path:
    """Every image's best-component IoU curve, per map: what MaxBoxAccV2 is read from, kept so
    that another evaluation of the same images can be compared with this one (``--compare``)."""
    np.savez_compressed(path, image_ids=np.array(image_ids), map_names=np.array(list(scored)),
                        **{f"best_iou_{name}": np.stack(accumulator.best_iou) for name, accumulator in scored.items()})
    return Path(path)


class ComparisonError(ValueError):
    """``--compare`` names an evaluation that cannot be paired with this one."""


def best_iou_file(evaluation_dir) -> Path:
    path = Path(evaluation_dir) / "best_iou.npz"
    if not path.is_file():
        raise ComparisonError(f"{path} not found: --compare takes the --out folder of an earlier evaluate run")
    return path


def compare_evaluations(other_dir, image_ids: list[str], scored: dict[str, LocalizationAccumulator],
                        draws: int = 2000) -> dict:
    """This evaluation's final map (fused for ACoL, the one map of CAM) against the final map of
    another evaluation of the same images: the MaxBoxAccV2 margin and its paired-bootstrap spread."""
    with np.load(best_iou_file(other_dir), allow_pickle=False) as other:
        if other["image_ids"].tolist() != list(image_ids):
            raise ComparisonError(f"{other_dir} evaluated other images (or the same in another order) "
                                  f"than this run: {len(other['image_ids'])} against {len(image_ids)}")
        other_map = str(other["map_names"][-1])
        other_best_iou = other[f"best_iou_{other_map}"]
    this_map, accumulator = list(scored.items())[-1]
    if other_best_iou.shape[1] != len(accumulator.thresholds):
        raise ComparisonError(f"{other_dir} scored {other_best_iou.shape[1]} CAM thresholds, this run "
                              f"{len(accumulator.thresholds)}")
    return {"against": str(other_dir), "map": this_map, "other_map": other_map,
            **paired_bootstrap(np.stack(accumulator.best_iou), other_best_iou, draws)}


TABLE_COLUMNS = [("top1_cls", "top-1 cls"), ("gt_known_loc", "GT-known loc"), ("top1_loc", "top-1 loc"),
                 ("top5_loc", "top-5 loc"), ("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"),
                 ("box_coverage", "box covered"), ("box_precision", "precision"), ("peak_in_box", "peak in box"),
                 ("cam_threshold", "CAM thr")]


PART_COLUMNS = [("peak_on_head", "peak on head"), ("peak_on_body", "peak on body"), ("peak_outside", "peak outside"),
                ("head_covered", "head covered"), ("body_covered", "body covered")]


def results_table(results: dict) -> str:
    """A Markdown table, one row per map; a second one of the part figures, when there are any
    (percent of images whose peak lies on the head / body / outside; share of each part's mask
    inside the map's region at its CAM threshold)."""
    lines = ["| map | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
             "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for name, numbers in results["maps"].items():
        lines.append(f"| {name} | " + " | ".join(f"{numbers[key]:.2f}" if key == "cam_threshold"
                                                 else f"{numbers[key]:.1f}" for key, _ in TABLE_COLUMNS) + " |")
    if all(key in numbers for numbers in results["maps"].values() for key in PART_FIGURES):
        lines += ["", "| map | top-1 cls | " + " | ".join(title for _, title in PART_COLUMNS) + " |",
                  "|---" * (len(PART_COLUMNS) + 2) + "|"]
        lines += [f"| {name} | {numbers['top1_cls']:.1f} | " + " | ".join(f"{numbers[key]:.1f}" for key, _ in PART_COLUMNS)
                  + " |" for name, numbers in results["maps"].items()]
        if "B" in results["maps"]:
            lines.append("\nB always sees A's region erased: its top-1 is its accuracy without what A found "
                         "(the head, when A's peak is on it)")
    if "region_iou_A_B" in results:
        lines.append(f"\nIoU of A's and B's regions: {results['region_iou_A_B']:.1f}% "
                     "(low = B found other parts than A)")
    if "b_names_a_class" in results:
        lines.append(f"\nB, shown the features A's top-1 map left, still names A's top-1 class in "
                     f"{results['b_names_a_class']:.1f}% of the images")
    if "comparison" in results:
        comparison = results["comparison"]
        low, high = comparison["interval_95"]
        lines.append(f"\nMaxBoxAccV2 margin over {comparison['against']} ({comparison['map']} map against its "
                     f"{comparison['other_map']}): {comparison['margin']:+.1f}, 95% interval [{low:+.1f}, {high:+.1f}] "
                     f"from {comparison['draws']} paired resamplings of the images; <= 0 in "
                     f"{comparison['share_at_most_0']:.1f}% of them")
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


def ship_checkpoint(path, model, config: dict, results: dict, description: str | None = None) -> Path:
    """Save ``model`` (fp16) with the thresholds chosen on, and the numbers of, ``results``;
    ``description`` replaces the checkpoint's own (kept when None)."""
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
                           recipe=config.get("recipe", {}), metrics=metrics, half=True,
                           description=config.get("description", "") if description is None else description)


def ship_history(history: Path | None, shipped: str | Path) -> Path | None:
    """Copy a run's training history beside its shipped checkpoint ``X.safetensors``, as
    ``X.history.safetensors``, and check the two belong together as shipped. A model shipped
    without one removes the history of the model it replaces there (it would not match)."""
    import shutil

    from .checkpoint import atomic_path, load_checkpoint
    from .history import history_path, load_history
    destination = history_path(shipped)
    if history is None:
        if destination.exists():
            destination.unlink()
            print(f"removed {destination}: the history of the model this one replaced")
        return None
    if Path(history).resolve() != destination.resolve():
        with atomic_path(destination) as temporary:
            shutil.copyfile(history, temporary)
            temporary.chmod(0o644)
    load_history(destination, *load_checkpoint(shipped))
    return destination


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import load_checkpoint
    from .data import eval_transform, make_loader
    from .datasets import build_dataset
    from .device import add_device_flag, resolve_device
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
                             "training history beside the checkpoint (acol.history) is checked and copied "
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
    # Synthetic images are drawn as training drew them: the model's classes, rendered at the size
    # its input is resized from (SYNTHETIC_SPLITS holds each split's seed).
    synthetic = ({"class_names": config["class_names"], "image_size": round(size * 256 / 224)}
                 if args.data == "synthetic" else {})
    dataset = build_dataset(args.data, args.split, eval_transform(size, config["mean"], config["std"]), **synthetic)
    loader = make_loader(dataset, args.batch_size, args.workers)
    if args.erase_threshold is not None:
        model.erase_threshold = args.erase_threshold
    cam_thresholds = {} if args.choose_thresholds else config.get("metrics", {}).get("cam_thresholds", {})
    if args.cam_threshold is not None:
        cam_thresholds = {name: args.cam_threshold for name in map_names(len(model.heads))}
    inference = run_inference(model.to(device), loader, device)
    model.cpu()  # shipped from the CPU
    scored = score_maps(inference, jobs=args.jobs)
    results = compute_metrics(inference, cam_thresholds, scored=scored)
    results.update(checkpoint=str(args.checkpoint), data=str(args.data), split=args.split,
                   input_size=size, erase_threshold=model.erase_threshold)
    comparison_error = None
    if args.compare:
        try:
            results["comparison"] = compare_evaluations(args.compare, inference["image_ids"], scored)
        except ComparisonError as error:
            comparison_error = error  # said after this evaluation is written: nothing is lost

    out = Path(args.out or Path("runs") / f"eval-{Path(args.checkpoint).stem}")
    out.mkdir(parents=True, exist_ok=True)
    save_best_iou(out / "best_iou.npz", inference["image_ids"], scored)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    table = results_table(results)
    (out / "results.md").write_text(table + "\n")
    plot_box_accuracy(results, out / "box_accuracy.png")
    print(table)
    if comparison_error:
        print(f"error: {comparison_error}", file=sys.stderr)
        return 1
    if args.ship:
        from .history import HistoryError, history_path, load_history
        history = history_path(args.checkpoint)  # the run's history.safetensors, if it kept one
        try:
            if not args.force:
                check_replacement(args.ship, config, results)
            if history.exists():  # checked before anything is shipped: a pair that belongs together or nothing
                load_history(history, model, dict(config, input_size=size))
        except (ShipRefused, HistoryError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        ship_checkpoint(args.ship, model, config, results, args.description)
        print(f"shipped {args.ship}")
        shipped_history = ship_history(history if history.exists() else None, args.ship)
        if shipped_history:
            print(f"shipped {shipped_history}")
    print(f"\nwrote {out / 'metrics.json'}, {out / 'results.md'}, {out / 'box_accuracy.png'}, "
          f"{out / 'best_iou.npz'}")
    return 0
