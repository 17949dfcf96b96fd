"""Maps to boxes: thresholds relative to the peak, connected components, IoU."""

import numpy as np
import torch

from acol import box_from_map, box_iou, boxes_from_map, upsample_maps
from acol.core.maps import boxes_at_thresholds, cut_map, largest_region_boxes, quantized_map, score_map


def two_blobs():
    scores = np.zeros((10, 12), dtype=np.float32)
    scores[1:4, 1:3] = 1.0      # small, strong: rows 1-3, columns 1-2
    scores[5:9, 4:11] = 0.6     # large, weaker: rows 5-8, columns 4-10
    return scores


def test_largest_component_box_in_pixel_edge_coordinates():
    assert box_from_map(two_blobs(), 0.5).tolist() == [4, 5, 11, 9]


def test_threshold_is_relative_to_the_peak():
    assert box_from_map(two_blobs(), 0.7).tolist() == [1, 1, 3, 4]
    assert box_from_map(two_blobs() * 10, 0.7).tolist() == [1, 1, 3, 4]


def test_every_component_for_multi_contour_evaluation():
    boxes = boxes_from_map(two_blobs(), 0.5, largest_only=False)
    assert sorted(boxes.tolist()) == [[1, 1, 3, 4], [4, 5, 11, 9]]


def test_diagonal_pixels_are_one_component():
    scores = np.eye(4, dtype=np.float32)
    assert boxes_from_map(scores, 0.5, largest_only=False).tolist() == [[0, 0, 4, 4]]


def test_an_empty_map_gives_no_box():
    assert boxes_from_map(np.zeros((5, 5)), 0.5).shape == (0, 4)
    assert box_from_map(torch.zeros(5, 5), 0.5).tolist() == [0, 0, 0, 0]


def test_iou_by_torchvision():
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert torch.allclose(iou, torch.tensor([[1 / 3, 1.0, 0.0]]))


def test_upsampling_keeps_leading_dimensions_and_the_peak_location():
    maps = torch.zeros(2, 3, 4, 4)
    maps[1, 2, 0, 3] = 1
    big = upsample_maps(maps, (32, 40))
    assert big.shape == (2, 3, 32, 40)
    row, col = divmod(int(big[1, 2].argmax()), 40)
    assert row < 8 and col >= 30


def test_upsampling_is_pytorchs_bicubic_resize():
    torch.manual_seed(0)
    for small, size in ((torch.rand(3, 14, 14), (256, 384)), (torch.rand(2, 5, 7), (3, 40)), (torch.rand(1, 1, 6), (9, 2))):
        expected = torch.nn.functional.interpolate(small[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]
        assert torch.allclose(upsample_maps(small, size), expected, atol=1e-5)


def test_a_map_whose_minimum_is_not_zero_is_renormalized_before_the_cut():
    # A fused map: max of two normalized maps, so nothing is below 0.4 here.
    scores = np.full((4, 6), 0.4, dtype=np.float32)
    scores[1:3, 1:3] = 1.0   # the peak
    scores[1:3, 4:6] = 0.6   # a weaker region
    # wsolevaluation: (s - 0.4) / 0.6 -> the weak region is at 1/3, quantized 85; the cut at
    # t = 0.3 is "> int(0.3 * 255) = 76", so both regions are in it. Cutting at 0.3 x max
    # would mark every pixel (all are >= 0.3) and give one box over the whole map.
    assert sorted(boxes_from_map(scores, 0.3, largest_only=False).tolist()) == [[1, 1, 3, 3], [4, 1, 6, 3]]
    # at t = 0.34 the weak region (85 <= int(86.7) = 86) is out, only the peak remains
    assert boxes_from_map(scores, 0.34, largest_only=False).tolist() == [[1, 1, 3, 3]]


def test_the_cut_is_strictly_above_the_quantized_threshold():
    scores = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)   # quantized 0, 127, 255
    assert cut_map(scores, 0.0).tolist() == [[False, True, True]]   # the minimum is never in
    assert cut_map(scores, 0.49).tolist() == [[False, True, True]]  # 127 > int(124.95)
    assert cut_map(scores, 0.5).tolist() == [[False, False, True]]  # 127 > 127 is false


def test_score_map_is_resized_then_normalized():
    small = torch.tensor([[0.5, 0.5], [0.5, 1.0]])
    scores = score_map(small, (8, 8))
    assert scores.shape == (8, 8)
    assert scores.min() == 0 and scores.max() == 1


def test_boxes_at_every_threshold_are_the_boxes_cut_one_threshold_at_a_time():
    torch.manual_seed(0)
    thresholds = [0.9, 0.0, 0.35, 0.37, 0.5, 0.99, 1.0, 0.05]  # any order, off any grid
    for scores in (score_map(torch.rand(5, 7), (60, 80)), score_map(torch.randn(8, 8).cumsum(0), (64, 48)),
                   np.zeros((10, 10))):
        expected = np.stack([box_from_map_one_cut(scores, t) for t in thresholds])
        assert np.array_equal(boxes_at_thresholds(scores, thresholds), expected)


def box_from_map_one_cut(scores, threshold):
    """The largest 8-connected region's box of one cut, found the plain way."""
    from scipy import ndimage
    labels, count = ndimage.label(cut_map(scores, threshold), structure=np.ones((3, 3)))
    if not count:
        return np.zeros(4, dtype=np.float32)
    rows, cols = np.nonzero(labels == 1 + np.bincount(labels.ravel())[1:].argmax())
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)


def test_boxes_of_many_maps_at_many_levels_at_once_are_the_boxes_cut_one_at_a_time():
    """Noise (hundreds of regions, equal sizes: the first in raster order wins), smooth maps,
    a map with one pixel above the rest, and levels in any order, repeated, empty."""
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    maps = [score_map(torch.rand(6, 9), (37, 51)), score_map(torch.randn(12, 12).cumsum(1), (40, 33)),
            rng.random((23, 31)).astype(np.float32), (rng.random((20, 20)) > 0.5).astype(np.float32)]
    spike = np.zeros((20, 20), np.float32)
    spike[7, 3] = 1
    maps.append(spike)
    thresholds = [0.0, 0.5, 0.05, 0.5, 0.31, 0.99, 1.0, 0.7]
    for scores in maps:
        expected = np.stack([box_from_map_one_cut(scores, t) for t in thresholds])
        quantized = quantized_map(scores)
        boxes = largest_region_boxes(np.stack([quantized, quantized]), [int(t * 255) for t in thresholds])
        assert np.array_equal(boxes[0], expected) and np.array_equal(boxes[1], expected)
    together = largest_region_boxes(np.stack([quantized_map(maps[3]), quantized_map(spike)]), [0, 127])
    assert together[1].tolist() == [[3, 7, 4, 8]] * 2, "one map's regions never join another's"
    assert np.array_equal(together[0], np.stack([box_from_map_one_cut(maps[3], t) for t in (0.0, 0.5)]))
