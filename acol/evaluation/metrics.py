"""WSOL metrics, with clovaai/wsolevaluation's definitions (Choe et al., CVPR 2020).

For each image and each CAM threshold t in 0.00, 0.01, ..., 0.99 the map, resized to the image and
then min-max normalized, is cut at t (``acol.core.maps.cut_map``) and turned into boxes; the image counts as localized at IoU level d when a box reaches
IoU >= d with a ground-truth box.

- GT-known localization: the true class's map, the largest component, one threshold (IoU 50).
- Top-1 / top-5 localization: GT-known and the true class is the top-1 / among the top-5.
- MaxBoxAcc: GT-known at IoU 50 with the largest component, at the best threshold.
- MaxBoxAccV2: the mean over IoU 30, 50, 70 of the best-threshold accuracy, where every
  connected component proposes a box (the best one counts).
"""

from __future__ import annotations

import numpy as np

from ..core.maps import box_iou, component_boxes, cut_map

CAM_THRESHOLDS = np.arange(0, 1, 0.01)
IOU_LEVELS = (30, 50, 70)


def iou_per_threshold(localization_map: np.ndarray, gt_boxes: np.ndarray,
                      thresholds: np.ndarray = CAM_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold: (IoU of the largest component's box, best IoU over all components),
    each the max over the ground-truth boxes. A threshold with no region scores 0."""
    largest_iou = np.zeros(len(thresholds), dtype=np.float32)
    best_iou = np.zeros(len(thresholds), dtype=np.float32)
    if len(gt_boxes) == 0:
        return largest_iou, best_iou
    for i, threshold in enumerate(thresholds):
        boxes, sizes = component_boxes(localization_map, threshold)
        if len(boxes) == 0:
            continue
        ious = box_iou(boxes, gt_boxes).amax(1).numpy()
        largest_iou[i], best_iou[i] = ious[sizes.argmax()], ious.max()
    return largest_iou, best_iou


def region_overlap(map_a: np.ndarray, map_b: np.ndarray, threshold: float) -> float:
    """IoU of the regions two maps mark at ``threshold`` (``cut_map``): how much B repeats A."""
    region_a, region_b = cut_map(map_a, threshold), cut_map(map_b, threshold)
    union = np.logical_or(region_a, region_b).sum()
    return float(np.logical_and(region_a, region_b).sum() / union) if union else 0.0


def boxes_mask(shape: tuple[int, int], gt_boxes: np.ndarray) -> np.ndarray:
    """Bool ``shape`` mask, True inside any of the (xyxy, pixel-edge) ground-truth boxes."""
    inside = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in np.asarray(gt_boxes).round().astype(int):
        inside[max(y0, 0):y1, max(x0, 0):x1] = True
    return inside


def box_coverage(localization_map: np.ndarray, gt_boxes: np.ndarray, threshold: float) -> float:
    """The fraction of the ground-truth box area that the map's region at ``threshold`` covers."""
    return part_coverage(localization_map, boxes_mask(localization_map.shape, gt_boxes), threshold)


def box_precision(localization_map: np.ndarray, gt_boxes: np.ndarray, threshold: float) -> float:
    """The share of the map's region at ``threshold`` that lies inside a ground-truth box: a map
    that "covers more of the object" only helps while its region stays on the object. NaN when
    the region is empty."""
    region = cut_map(localization_map, threshold)
    if not region.any():
        return float("nan")
    return float((region & boxes_mask(localization_map.shape, gt_boxes)).sum() / region.sum())


def box_accuracy(ious: np.ndarray, iou_level: int) -> np.ndarray:
    """From [images, thresholds] IoUs: the percentage of images localized at each threshold."""
    return 100 * (ious >= iou_level / 100).mean(0)


def max_box_acc_v2(best_iou: np.ndarray) -> float:
    """MaxBoxAccV2 from [images, thresholds] best-component IoUs: the mean over IOU_LEVELS of
    the best threshold's accuracy."""
    return float(np.mean([box_accuracy(best_iou, level).max() for level in IOU_LEVELS]))


def resampled_max_box_acc_v2(best_iou: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """MaxBoxAccV2 of many resamplings at once: ``counts`` [draws, images] says how often each
    image was drawn (a weighted mean, so no resampled copy of the curves is ever made)."""
    accuracy = [100 * (counts @ (best_iou >= level / 100)).max(1) / counts.sum(1) for level in IOU_LEVELS]
    return np.mean(accuracy, 0)


def paired_bootstrap(first: np.ndarray, second: np.ndarray, draws: int = 2000, seed: int = 0) -> dict:
    """How sure is a MaxBoxAccV2 margin (``first`` minus ``second``, each [images, thresholds]
    best-component IoUs of the same images in the same order)? Resample the images with
    replacement, the same draw for both maps, and read the margin's spread. It measures the
    luck of which images were evaluated, not training noise: that needs runs with other seeds."""
    if first.shape != second.shape:
        raise ValueError(f"a paired bootstrap needs the same images: {first.shape} vs {second.shape}")
    rng = np.random.default_rng(seed)
    num_images = len(first)
    counts = rng.multinomial(num_images, np.full(num_images, 1 / num_images), size=draws)
    margins = resampled_max_box_acc_v2(first, counts) - resampled_max_box_acc_v2(second, counts)
    low, high = np.percentile(margins, [2.5, 97.5])
    return {"margin": max_box_acc_v2(first) - max_box_acc_v2(second), "interval_95": [float(low), float(high)],
            "draws": draws, "share_at_most_0": 100 * float((margins <= 0).mean())}


def seeded_paired_bootstrap(firsts: list[np.ndarray], seconds: list[np.ndarray], draws: int = 2000,
                            seed: int = 0) -> dict:
    """A MaxBoxAccV2 margin over training seeds and images together. ``firsts[s]`` and
    ``seconds[s]`` are the [images, thresholds] best-component IoUs of seed ``s``'s two models
    (ACoL and its same-recipe CAM, say) on the same images. Each draw resamples the seeds and
    the images with replacement (the same images for every seed and both models); its margin is
    the mean over the drawn seeds. So the interval holds both kinds of luck: which images were
    evaluated, and how training went."""
    if len(firsts) != len(seconds) or not firsts:
        raise ValueError(f"one pair of evaluations per seed: {len(firsts)} against {len(seconds)}")
    if len({array.shape for array in [*firsts, *seconds]}) != 1:
        raise ValueError("every evaluation must score the same images at the same thresholds")
    rng = np.random.default_rng(seed)
    num_images, num_seeds = len(firsts[0]), len(firsts)
    counts = rng.multinomial(num_images, np.full(num_images, 1 / num_images), size=draws)
    per_seed = np.stack([resampled_max_box_acc_v2(first, counts) - resampled_max_box_acc_v2(second, counts)
                         for first, second in zip(firsts, seconds)])  # [seeds, draws]
    drawn_seeds = rng.integers(num_seeds, size=(draws, num_seeds))
    margins = per_seed[drawn_seeds, np.arange(draws)[:, None]].mean(1)
    low, high = np.percentile(margins, [2.5, 97.5])
    seed_margins = [max_box_acc_v2(first) - max_box_acc_v2(second) for first, second in zip(firsts, seconds)]
    return {"margin": float(np.mean(seed_margins)), "seed_margins": seed_margins,
            "interval_95": [float(low), float(high)], "draws": draws,
            "share_at_most_0": 100 * float((margins <= 0).mean())}


class LocalizationAccumulator:
    """Collects per-image IoU curves of one kind of map, then reads every metric off them."""

    def __init__(self, thresholds: np.ndarray = CAM_THRESHOLDS):
        self.thresholds = thresholds
        self.largest_iou: list[np.ndarray] = []
        self.best_iou: list[np.ndarray] = []
        self.top1_correct: list[bool] = []
        self.top5_correct: list[bool] = []

    def add(self, localization_map, gt_boxes, top1_correct: bool, top5_correct: bool) -> None:
        largest, best = iou_per_threshold(localization_map, np.asarray(gt_boxes), self.thresholds)
        self.largest_iou.append(largest)
        self.best_iou.append(best)
        self.top1_correct.append(bool(top1_correct))
        self.top5_correct.append(bool(top5_correct))

    def box_accuracy_curve(self, iou_level: int, all_components: bool) -> np.ndarray:
        """Fraction of images localized at each threshold, in percent."""
        return box_accuracy(np.stack(self.best_iou if all_components else self.largest_iou), iou_level)

    def max_box_acc(self) -> float:
        return float(self.box_accuracy_curve(50, all_components=False).max())

    def max_box_acc_v2(self) -> float:
        return max_box_acc_v2(np.stack(self.best_iou))

    def best_threshold(self) -> float:
        """The CAM threshold that maximizes GT-known localization (choose it on validation)."""
        return float(self.thresholds[self.box_accuracy_curve(50, all_components=False).argmax()])

    def localization_at(self, threshold: float) -> dict[str, float]:
        """GT-known, top-1 and top-5 localization (percent) at one CAM threshold."""
        index = int(np.abs(self.thresholds - threshold).argmin())
        hit = np.stack(self.largest_iou)[:, index] >= 0.5
        return {"gt_known_loc": 100 * float(hit.mean()),
                "top1_loc": 100 * float((hit & np.array(self.top1_correct)).mean()),
                "top5_loc": 100 * float((hit & np.array(self.top5_correct)).mean())}


# ----------------------------------------------------------------------------------------------
# Part-level figures, for data that knows each object's parts (acol.data.synthetic's head and body)


def peak_part(localization_map: np.ndarray, head_mask: np.ndarray, body_mask: np.ndarray) -> str:
    """Where the map's peak (its first maximum in row-major order) lies: "head", "body" or
    "outside" the object. The masks are bool [H, W] at the map's resolution."""
    peak = np.unravel_index(np.argmax(localization_map), np.shape(localization_map))
    return "head" if head_mask[peak] else "body" if body_mask[peak] else "outside"


def part_coverage(localization_map: np.ndarray, part_mask: np.ndarray, threshold: float) -> float:
    """The share of a part's mask inside the map's region at ``threshold`` (``cut_map``);
    0 when the part is not visible at all."""
    part = np.asarray(part_mask, dtype=bool)
    if not part.any():
        return 0.0
    return float((cut_map(localization_map, threshold) & part).sum() / part.sum())


PART_FIGURES = ("peak_on_head", "peak_on_body", "peak_outside", "head_covered", "body_covered")


class PartAccumulator:
    """Per map: where each image's peak lies, and how much of the head and of the body the
    map's region at its CAM threshold covers. ``summary()`` gives PART_FIGURES in percent."""

    def __init__(self, names: list[str], thresholds: list[float]):
        self.names, self.thresholds = list(names), list(thresholds)
        self.rows: dict[str, list[tuple[str, float, float]]] = {name: [] for name in self.names}

    def add(self, maps, head_mask: np.ndarray, body_mask: np.ndarray) -> None:
        """One image: its score maps in ``names`` order, and its head and body masks."""
        head_mask, body_mask = np.asarray(head_mask, dtype=bool), np.asarray(body_mask, dtype=bool)
        for name, threshold, scores in zip(self.names, self.thresholds, maps):
            self.rows[name].append((peak_part(scores, head_mask, body_mask),
                                    part_coverage(scores, head_mask, threshold),
                                    part_coverage(scores, body_mask, threshold)))

    def summary(self) -> dict[str, dict[str, float]]:
        figures = {}
        for name, rows in self.rows.items():
            peaks = np.array([row[0] for row in rows])
            figures[name] = {f"peak_{where}": 100 * float(np.mean(peaks == part)) if rows else 0.0
                             for where, part in (("on_head", "head"), ("on_body", "body"), ("outside", "outside"))}
            figures[name].update(head_covered=100 * float(np.mean([row[1] for row in rows])) if rows else 0.0,
                                 body_covered=100 * float(np.mean([row[2] for row in rows])) if rows else 0.0)
        return figures
