"""What an evaluation writes and says: every image's IoU curves (``best_iou.npz``, kept so that
another evaluation of the same images can be compared with this one: ``--compare``), the margin
over that other one with its paired-bootstrap interval, the Markdown tables and the box-accuracy
plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import IOU_LEVELS, PART_FIGURES, LocalizationAccumulator, paired_bootstrap


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
