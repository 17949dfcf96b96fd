"""WSOL metrics against cases worked out by hand (clovaai/wsolevaluation's definitions)."""

import numpy as np
import pytest
import torch

from acol.evaluation.report import results_table
from acol.evaluation.scoring import compute_metrics
from acol.evaluation.metrics import (CAM_THRESHOLDS, LocalizationAccumulator, box_coverage, box_precision, iou_per_threshold,
                          max_box_acc_v2, paired_bootstrap, region_overlap, resampled_max_box_acc_v2,
                          seeded_paired_bootstrap)


def painted_map(side: int, box, *patches):
    """A ``side`` x ``side`` map of zeros with each ``(rows, cols, value)`` patch painted on it,
    and its true ``box`` (xyxy)."""
    scores = np.zeros((side, side), dtype=np.float32)
    for rows, cols, value in patches:
        scores[rows, cols] = value
    return scores, np.array([box])


def exact_map():
    """10x10 map: 1 exactly on the box [2, 2, 6, 6], 0.5 on a small far-away patch."""
    return painted_map(10, [2, 2, 6, 6], (slice(2, 6), slice(2, 6), 1.0), (slice(8, 10), slice(8, 10), 0.5))


def half_map():
    """20x20 map covering the top half of the box [0, 0, 10, 10]: IoU 0.5 at every t > 0."""
    return painted_map(20, [0, 0, 10, 10], (slice(0, 5), slice(0, 10), 1.0))


def decoy_map():
    """A large 0.8 blob away from the box and a small 1.0 blob exactly on it."""
    return painted_map(20, [0, 0, 3, 3], (slice(10, 20), slice(10, 20), 0.8), (slice(0, 3), slice(0, 3), 1.0))


def test_iou_per_threshold_by_hand():
    largest, best = iou_per_threshold(*exact_map())
    # wsolevaluation cuts strictly above t: even at t = 0 the map's minimum (the zeros) is out,
    # so the box and the far patch are two regions and the larger one is the box.
    assert np.allclose(largest, 1.0) and np.allclose(best, 1.0)
    uniform = np.ones((10, 10), dtype=np.float32)  # a constant map marks nothing at all
    assert not iou_per_threshold(uniform, exact_map()[1])[1].any()


def test_largest_component_versus_every_component():
    largest, best = iou_per_threshold(*decoy_map())
    low = CAM_THRESHOLDS.searchsorted(0.5)   # both blobs survive: the decoy is the largest
    high = CAM_THRESHOLDS.searchsorted(0.9)  # only the small blob survives
    assert largest[low] == 0 and best[low] == pytest.approx(1.0)
    assert largest[high] == pytest.approx(1.0) and best[high] == pytest.approx(1.0)


def test_max_box_acc_v2_averages_the_best_accuracy_at_iou_30_50_70():
    accumulator = LocalizationAccumulator()
    accumulator.add(*exact_map(), top1_correct=True, top5_correct=True)
    accumulator.add(*half_map(), top1_correct=False, top5_correct=True)
    # exact_map localizes at every level; half_map (IoU 0.5) at 30 and 50 but not 70.
    assert accumulator.max_box_acc_v2() == pytest.approx((100 + 100 + 50) / 3)
    assert accumulator.max_box_acc() == pytest.approx(100)


def test_gt_known_top1_and_top5_localization_at_one_threshold():
    accumulator = LocalizationAccumulator()
    accumulator.add(*exact_map(), top1_correct=True, top5_correct=True)
    accumulator.add(*decoy_map(), top1_correct=False, top5_correct=True)
    at_half = accumulator.localization_at(0.5)   # the decoy's largest region misses
    assert at_half == pytest.approx({"gt_known_loc": 50, "top1_loc": 50, "top5_loc": 50})
    at_09 = accumulator.localization_at(0.9)
    assert at_09 == pytest.approx({"gt_known_loc": 100, "top1_loc": 50, "top5_loc": 100})
    assert accumulator.best_threshold() >= 0.8


def test_region_overlap_and_box_coverage_by_hand():
    a = np.zeros((4, 4)); a[:, :2] = 1     # left half
    b = np.zeros((4, 4)); b[:, 1:3] = 1    # middle half: overlaps a in one column
    assert region_overlap(a, b, 0.5) == pytest.approx(4 / 12)
    assert box_coverage(a, np.array([[0, 0, 4, 4]]), 0.5) == pytest.approx(0.5)


def localized(num_images: int, hits) -> np.ndarray:
    """[images, thresholds] best IoUs: 1 for the images in ``hits`` at every threshold, else 0."""
    best_iou = np.zeros((num_images, len(CAM_THRESHOLDS)), dtype=np.float32)
    best_iou[list(hits)] = 1
    return best_iou


def test_resampling_weights_the_images_as_if_they_were_repeated():
    best_iou = np.random.default_rng(0).random((30, len(CAM_THRESHOLDS)))
    counts = np.random.default_rng(1).multinomial(30, np.full(30, 1 / 30), size=4)
    expected = [max_box_acc_v2(np.repeat(best_iou, draw, axis=0)) for draw in counts]
    assert resampled_max_box_acc_v2(best_iou, counts) == pytest.approx(expected)


def test_bootstrap_of_a_map_against_itself_is_exactly_zero():
    best_iou = np.random.default_rng(0).random((40, len(CAM_THRESHOLDS)))
    result = paired_bootstrap(best_iou, best_iou, draws=200)
    assert result["margin"] == 0 and result["interval_95"] == [0, 0] and result["share_at_most_0"] == 100


def test_bootstrap_of_every_image_localized_against_none():
    result = paired_bootstrap(localized(20, range(20)), localized(20, []), draws=200)
    assert result["margin"] == 100 and result["interval_95"] == [100, 100] and result["share_at_most_0"] == 0


def test_bootstrap_pairs_the_images():
    # The first map localizes images 0-9, the second 0-8: in every resampling the first is ahead
    # by image 9's share, and level when image 9 is not drawn ((19/20)^20 = 36% of draws).
    # Drawn independently for each map, the margin would often be negative.
    result = paired_bootstrap(localized(20, range(10)), localized(20, range(9)), draws=2000)
    assert result["margin"] == pytest.approx(5)
    assert result["interval_95"][0] == 0 and result["interval_95"][1] >= 10
    assert result["share_at_most_0"] == pytest.approx(100 * (19 / 20) ** 20, abs=4)


def test_bootstrap_refuses_maps_of_different_images():
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(localized(20, []), localized(21, []))


def test_compute_metrics_reports_every_map_and_the_table():
    maps = torch.zeros(2, 3, 10, 10)
    maps[:, :, 2:6, 2:6] = 1  # every map exact on the box of both images
    inference = {"maps": maps, "labels": torch.tensor([0, 1]),
                 "logits": torch.tensor([[[5.0, 0.0]] * 3, [[5.0, 0.0]] * 3]),
                 "boxes": [np.array([[2, 2, 6, 6]])] * 2, "image_size": (10, 10), "num_branches": 2}
    results = compute_metrics(inference, progress=False)
    assert set(results["maps"]) == {"A", "B", "fused"}
    fused = results["maps"]["fused"]
    assert fused["top1_cls"] == 50 and fused["top1_loc"] == 50 and fused["gt_known_loc"] == 100
    assert fused["max_box_acc_v2"] == pytest.approx(100)
    assert results["region_iou_A_B"] == pytest.approx(100)
    assert "| fused |" in results_table(results)


def test_the_seeded_margin_averages_seeds_and_its_interval_holds_seed_noise():
    ones = localized(10, range(10))
    none = localized(10, [])
    half = localized(10, range(5))
    steady = seeded_paired_bootstrap([ones, ones, ones], [half, half, half])
    assert steady["margin"] == pytest.approx(50) and steady["seed_margins"] == pytest.approx([50, 50, 50])
    # one lucky seed out of three: the same mean margin as above would be 100/3, and the
    # interval must reach down to 0 (a draw of the two unlucky seeds alone)
    lucky = seeded_paired_bootstrap([ones, half, half], [half, half, half])
    assert lucky["margin"] == pytest.approx(50 / 3)
    assert lucky["interval_95"][0] == pytest.approx(0) and lucky["share_at_most_0"] > 10
    with pytest.raises(ValueError, match="one pair"):
        seeded_paired_bootstrap([ones], [none, none])


def test_precision_is_the_share_of_the_region_inside_the_box():
    scores = np.zeros((4, 8), dtype=np.float32)
    scores[:, :4] = 1     # the region: the left half
    assert box_precision(scores, np.array([[0, 0, 2, 4]]), 0.5) == pytest.approx(0.5)   # half of it in the box
    assert box_precision(scores, np.array([[0, 0, 8, 4]]), 0.5) == pytest.approx(1.0)
    assert np.isnan(box_precision(np.ones((4, 4)), np.array([[0, 0, 2, 2]]), 0.5))      # no region at all


# ----------------------------------------------------------------------------------------------
# Part-level figures (synthetic head/body masks)

from acol.evaluation.metrics import PartAccumulator, part_coverage, peak_part  # noqa: E402


def part_masks(shape, head_cells, body_cells):
    head, body = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    for cells, mask in ((head_cells, head), (body_cells, body)):
        for row, col in cells:
            mask[row, col] = True
    return head, body


def test_peak_part_names_the_part_under_the_first_maximum():
    scores = np.array([[0.0, 0.2, 0.1], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]])  # two maxima: (1, 1) first
    head, body = part_masks(scores.shape, [(1, 1)], [(2, 2), (0, 0)])
    assert peak_part(scores, head, body) == "head"
    assert peak_part(scores, body, head) == "body"
    assert peak_part(scores, *part_masks(scores.shape, [(2, 2)], [(0, 1)])) == "outside"


def test_part_coverage_uses_the_wsolevaluation_cut():
    # 8-bit quantized: 0, 229, 255, 51 / 0, 153, 102, 0; at t = 0.5 the region is > 127:
    # (0, 1), (0, 2) and (1, 1).
    scores = np.array([[0.0, 0.9, 1.0, 0.2], [0.0, 0.6, 0.4, 0.0]])
    head, body = part_masks(scores.shape, [(0, 2), (1, 2)], [(0, 0), (0, 1), (0, 3), (1, 0)])
    assert part_coverage(scores, head, 0.5) == 0.5
    assert part_coverage(scores, body, 0.5) == 0.25
    assert part_coverage(scores, body, 0.0) == 0.5  # > 0: (0, 1) and (0, 3)
    assert part_coverage(scores, np.zeros_like(head), 0.5) == 0.0  # a part out of view
    assert part_coverage(np.ones_like(scores), head, 0.0) == 0.0   # a flat map marks nothing


def test_part_accumulator_summarizes_each_map_in_percent():
    head, body = part_masks((2, 2), [(0, 0)], [(0, 1), (1, 1)])
    on_head = np.array([[1.0, 0.0], [0.0, 0.0]])  # region at 0.5: the head only
    on_body = np.array([[0.0, 1.0], [0.0, 0.8]])  # region at 0.5: the whole body
    outside = np.array([[0.0, 0.0], [1.0, 0.0]])
    parts = PartAccumulator(["A", "B"], [0.5, 0.5])
    parts.add([on_head, on_body], head, body)
    parts.add([on_head, outside], head, body)
    summary = parts.summary()
    assert summary["A"] == {"peak_on_head": 100, "peak_on_body": 0, "peak_outside": 0,
                            "head_covered": 100, "body_covered": 0}
    assert summary["B"] == {"peak_on_head": 0, "peak_on_body": 50, "peak_outside": 50,
                            "head_covered": 0, "body_covered": 50}


def test_compute_metrics_adds_part_figures_and_a_second_table_only_when_masks_are_known():
    maps = torch.zeros(2, 3, 10, 10)
    maps[:, 0, 2:4, 2:4] = 1      # A: on the head
    maps[:, 1, 4:8, 2:8] = 1      # B: on the body
    maps[:, 2] = maps[:, :2].amax(1)
    head, body = np.zeros((10, 10), dtype=bool), np.zeros((10, 10), dtype=bool)
    head[2:4, 2:4], body[4:8, 2:8] = True, True
    inference = {"maps": maps, "labels": torch.tensor([0, 1]),
                 "logits": torch.tensor([[[5.0, 0.0]] * 3, [[0.0, 5.0]] * 3]),
                 "boxes": [np.array([[2, 2, 8, 8]])] * 2, "image_size": (10, 10), "num_branches": 2}
    without = compute_metrics(inference, progress=False)
    assert "peak_on_head" not in without["maps"]["A"] and "peak on head" not in results_table(without)

    results = compute_metrics({**inference, "part_masks": [(head, body)] * 2},
                              cam_thresholds={"A": 0.5, "B": 0.5, "fused": 0.5}, progress=False)
    a, b, fused = (results["maps"][name] for name in ("A", "B", "fused"))
    assert (a["peak_on_head"], b["peak_on_body"]) == (100, 100)
    assert b["peak_on_head"] == 0 and a["peak_outside"] == 0
    # The bicubic resize is the identity at the same size, so the regions are the painted blocks.
    assert (a["head_covered"], a["body_covered"]) == (100, 0)
    assert (b["head_covered"], b["body_covered"]) == (0, 100)
    assert (fused["head_covered"], fused["body_covered"]) == (100, 100)
    table = results_table(results)
    assert "| map | top-1 cls | peak on head |" in table and "| B | 100.0 | 0.0 | 100.0 |" in table
    assert "B always sees A's region erased" in table
