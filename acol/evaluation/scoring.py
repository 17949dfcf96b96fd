"""Inference and scoring: one pass of the model over a dataset (the true class's maps, the logits),
then every localization and classification figure read off those maps, as clovaai/wsolevaluation
keeps the two apart.

Maps are scored for the *true* class (GT-known), which also gives top-1 localization: when the
prediction is right, the predicted and the true class are the same. Each branch's map is
classified by its own logits (A by A's, B by B's), and the fused map by A's: at inference A's
top-1 is the class whose map drives the erasing, so B's map and the fused map exist only for that
class; the viewer explains the same class (one prediction rule).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..core.maps import score_map
from .metrics import (CAM_THRESHOLDS, IOU_LEVELS, PartAccumulator, LocalizationAccumulator, box_coverage,
                      box_precision, iou_per_threshold, region_overlap)


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
