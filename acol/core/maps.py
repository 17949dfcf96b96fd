"""Localization maps and boxes: normalize, fuse, upsample, threshold into boxes, compare boxes.

Maps are tensors whose last two dimensions are (height, width). Boxes are ``[x0, y0, x1, y1]``
in pixel-edge coordinates: a component covering columns 3..7 gives ``x0 = 3, x1 = 8``.

Cutting a map at a threshold ``t`` follows clovaai/wsolevaluation exactly: the map is resized to
the image (bicubic), *then* min-max normalized, quantized to 8 bits as its OpenCV code does, and
the region is where it is ``> int(t * 255)``. The fused map, a max of two normalized maps, has a
minimum above 0, so this is not the same cut as ``t * max`` of the map as it comes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torchvision.ops import box_iou as _torchvision_box_iou


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalize each map to [0, 1]. A constant map has no peak, so it becomes zeros."""
    flat = maps.flatten(-2)
    low = flat.min(-1, keepdim=True).values
    span = flat.max(-1, keepdim=True).values - low
    normalized = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return normalized.view_as(maps)


def fuse_maps(maps: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """ACoL's fused map: the element-wise max of the (already normalized) branch maps."""
    return torch.stack(list(maps)).amax(0)


@functools.lru_cache(maxsize=64)
def resize_weights(cells: int, pixels: int) -> torch.Tensor:
    """How a bicubic resize spreads ``cells`` values over ``pixels`` along one side: ``[pixels,
    cells]``, each pixel's weight on each cell. PyTorch's own kernel (``F.interpolate``, a = -0.75,
    pixel-centre alignment, borders replicated), read off by resizing each cell's unit impulse."""
    impulses = torch.eye(cells).view(cells, 1, cells)
    return F.interpolate(impulses[:, None], size=(1, pixels), mode="bicubic", align_corners=False)[:, 0, 0].T


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize maps ``[..., h, w]`` to ``size = (H, W)`` bicubically (wsolevaluation's
    ``cv2.INTER_CUBIC``: the same kernel, a = -0.75, and pixel-centre alignment).

    The resize is linear and separable, so it is two small matrix products, ``rows @ map @
    cols.T``, on the maps' own device: a viewer resizes 20 maps at once in under a millisecond
    (``F.interpolate`` took 15-30 ms), with ``F.interpolate``'s values to float rounding."""
    rows = resize_weights(maps.shape[-2], size[0]).to(maps.device)
    cols = resize_weights(maps.shape[-1], size[1]).to(maps.device)
    return rows @ maps.float() @ cols.T


def score_map(localization_map: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """wsolevaluation's score map of one map ``[h, w]``: resized to ``size = (H, W)``, then
    min-max normalized to [0, 1] (a constant map becomes zeros). What boxes are cut from."""
    return normalize_maps(upsample_maps(localization_map, size)).numpy()


def quantized_map(scores) -> np.ndarray | None:
    """A map as wsolevaluation cuts it: min-max normalized and quantized to 0-255 (uint8), or
    None for a constant map, which marks nothing at any threshold."""
    scores = np.array(scores.detach().cpu().numpy() if torch.is_tensor(scores) else scores, dtype=np.float32)
    if not scores.size or scores.max() <= scores.min():
        return None
    return quantized_maps(scores[None])[0]


def quantized_maps(scores: np.ndarray) -> np.ndarray:
    """``quantized_map`` of each map of ``scores [K, H, W]`` (float32, overwritten), a constant
    map all zeros. In place, because a viewer quantizes some 20 picture-sized maps per upload:
    four fresh arrays per step cost it 14 ms on an idle core, and 60 on a busy one, against 7."""
    low, high = scores.min((-2, -1), keepdims=True), scores.max((-2, -1), keepdims=True)
    np.subtract(scores, low, out=scores)
    np.divide(scores, np.maximum(high - low, np.float32(1e-12)), out=scores)
    np.multiply(scores, np.float32(255), out=scores)
    quantized = scores.astype(np.uint8)
    quantized[(high <= low).reshape(-1)] = 0
    return quantized


def cut_map(scores, threshold: float) -> np.ndarray:
    """The region wsolevaluation cuts from a map at ``threshold``: the map min-max normalized,
    quantized to 0-255, and ``> int(threshold * 255)``. A constant map marks nothing."""
    quantized = quantized_map(scores)
    if quantized is None:
        return np.zeros(np.shape(scores), dtype=bool)
    return quantized > int(threshold * 255)


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def component_boxes(localization_map, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One box per 8-connected region of ``cut_map(map, threshold)``, and each region's pixel
    count. Empty arrays when the cut marks nothing (a constant map, say)."""
    return region_boxes(cut_map(localization_map, threshold))


def region_boxes(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One box per 8-connected region of a boolean ``region``, and each region's pixel count."""
    if not region.any():
        return np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64)
    components, count = ndimage.label(region, structure=_EIGHT_CONNECTED)
    boxes = [[cols.start, rows.start, cols.stop, rows.stop] for rows, cols in ndimage.find_objects(components)]
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), np.bincount(components.ravel(), minlength=count + 1)[1:]


def boxes_from_map(localization_map, threshold: float, largest_only: bool = True) -> np.ndarray:
    """Boxes around the regions of ``cut_map(map, threshold)``.

    ``largest_only=True`` keeps the largest connected component (the usual CAM box);
    ``False`` returns one box per component, as MaxBoxAccV2's multi-contour evaluation uses.
    Returns an ``[N, 4]`` float array, ``N = 0`` when the map is all zeros.
    """
    boxes, sizes = component_boxes(localization_map, threshold)
    return boxes[[int(sizes.argmax())]] if largest_only and len(boxes) else boxes


def box_from_map(localization_map, threshold: float) -> np.ndarray:
    """The box ``[x0, y0, x1, y1]`` of the largest region of the cut; zeros if none."""
    return boxes_at_thresholds(localization_map, [threshold])[0]


def boxes_at_thresholds(localization_map, thresholds) -> np.ndarray:
    """``box_from_map(map, t)`` for every ``t`` in ``thresholds``, as ``[T, 4]``: the map is
    normalized and quantized once and every cut boxed in one pass (``largest_region_boxes``)."""
    quantized = quantized_map(localization_map)
    if quantized is None:
        return np.zeros((len(thresholds), 4), dtype=np.float32)
    return largest_region_boxes(quantized[None], [int(t * 255) for t in thresholds])[0]


def largest_region_boxes(quantized: np.ndarray, levels) -> np.ndarray:
    """The box of the largest 8-connected region of ``quantized > level``, for each of the maps
    ``quantized [K, H, W]`` (uint8, as ``quantized_map`` makes them) and each of the ``levels``
    (``int(t * 255)`` for a threshold t): ``[K, len(levels), 4]``, zeros where a cut is empty. Of
    equal regions the first in raster order wins, as ``ndimage.label`` numbers them.

    A viewer wants 21 x 22 of these boxes per image; one ``ndimage.label`` per cut cost 0.2 s,
    relabelling the same pixels for every level. Here every pixel is read once, for all levels:

    1. Runs. Along a row, the pixels above a level form runs. Between neighbours ``a | b`` (the
       row padded with -1 at both ends) a run of level L starts where ``a <= L < b`` and ends
       where ``b <= L < a``, so each pair of neighbours gives the run ends of every level between
       their two values at once.
    2. Regions. Runs of one map and level in adjacent rows that overlap, or touch at a corner, are
       8-connected; scipy's ``connected_components`` of that graph of runs gives the regions.
    3. A region's size is the sum of its runs' lengths, its box their extent.
    """
    unique_levels, level_of = np.unique(np.asarray(levels, dtype=np.int64), return_inverse=True)
    maps, height, width = quantized.shape
    boxes = np.zeros((maps * len(unique_levels), 4), np.float32)
    starts, ends = _runs(quantized, unique_levels)
    if len(starts):  # something lies above some level
        span = width + 1
        row, x0, x1 = starts // span, starts % span, ends % span  # row = (map * levels + level) * H + y
        regions, region_of = _regions(starts, ends, row, x0, x1, span, height)
        _largest_per_cut(boxes, regions, region_of, row, x0, x1, span, (height, width))
    return boxes.reshape(maps, len(unique_levels), 4)[:, level_of]


def _runs(quantized: np.ndarray, unique_levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 of ``largest_region_boxes``: every run of every map above every level, as its start
    and its end, each a sort key (map, level, row, x) packed in one integer (x in 0..width)."""
    maps, height, width = quantized.shape
    count, span = len(unique_levels), width + 1  # a run end x lies in 0..width
    below = np.searchsorted(unique_levels, np.arange(256)).astype(np.int8)  # how many levels lie below v
    crossed = np.zeros((maps, height, width + 2), np.int8)  # per pixel, the row padded with 0 (-1 is below all)
    crossed[:, :, 1:-1] = np.take(below, quantized)
    rise = (crossed[:, :, 1:] - crossed[:, :, :-1]).ravel()  # [K, H, W + 1]: levels crossed between neighbours
    flat = crossed.ravel()

    def run_ends(at, lowest, how_many):
        """The crossing at pair ``at`` of ``how_many`` levels from ``lowest``, one per level, as a
        sort key (map, level, row, x) packed in one integer."""
        level = np.repeat(lowest.astype(np.int64), how_many) + _ramps(how_many)
        at = np.repeat(at, how_many)
        return np.sort(at + height * span * ((at // (height * span)) * (count - 1) + level))
    crossing = np.flatnonzero(rise != 0)  # numpy scans a bool array in about half the time of an int8 one
    levels_crossed = rise[crossing].astype(np.int64)
    up, down = crossing[levels_crossed > 0], crossing[levels_crossed < 0]
    # pair p lies between pixels p + p // span - 1 and p + p // span of the padded rows
    starts = run_ends(up, flat[up + up // span], levels_crossed[levels_crossed > 0])
    ends = run_ends(down, flat[down + down // span + 1], -levels_crossed[levels_crossed < 0])
    return starts, ends


def _regions(starts, ends, row, x0, x1, span: int, height: int) -> tuple[int, np.ndarray]:
    """Step 2: how many regions, and the region of each run. Each run is linked to the runs of
    the next row (same map and level) that touch it; the connected components of that graph are
    the regions."""
    y = row % height
    below_row = (row + 1) * span
    first = np.searchsorted(ends, below_row + x0)                          # ends at or after x0
    last = np.searchsorted(starts, below_row + x1, side="right")           # starts at or before x1
    touching = np.where(y + 1 < height, np.maximum(last - first, 0), 0)
    linked = (np.repeat(np.arange(len(starts)), touching), np.repeat(first, touching) + _ramps(touching))
    graph = coo_matrix((np.ones(len(linked[0]), np.int8), linked), shape=(len(starts),) * 2)
    return connected_components(graph, directed=False)


def _largest_per_cut(boxes: np.ndarray, regions: int, region_of, row, x0, x1, span: int,
                     shape: tuple[int, int]) -> None:
    """Step 3: each region's size (the sum of its runs' lengths) and box (their extent); into
    ``boxes [cuts, 4]``, each cut's largest region's box (of equal ones, the first found)."""
    height, width = shape
    y = row % height
    size = np.bincount(region_of, weights=x1 - x0, minlength=regions)
    box = np.stack([np.full(regions, width), np.full(regions, height), np.zeros(regions, int), np.zeros(regions, int)])
    np.minimum.at(box[0], region_of, x0)
    np.minimum.at(box[1], region_of, y)
    np.maximum.at(box[2], region_of, x1)
    np.maximum.at(box[3], region_of, y + 1)
    first_pixel = np.full(regions, np.iinfo(np.int64).max)
    np.minimum.at(first_pixel, region_of, y * span + x0)
    cut = np.zeros(regions, np.int64)
    cut[region_of] = row // height  # map * levels + level
    order = np.lexsort((first_pixel, -size, cut))  # per cut: the largest first, then the first found
    winners = order[np.r_[True, cut[order][1:] != cut[order][:-1]]]
    boxes[cut[winners]] = box[:, winners].T


def _ramps(lengths: np.ndarray) -> np.ndarray:
    """``0, 1, ..., n - 1`` for each ``n`` in ``lengths``, concatenated."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def box_iou(boxes_a, boxes_b) -> torch.Tensor:
    """Pairwise IoU ``[N, M]`` of two sets of xyxy boxes (torchvision.ops.box_iou)."""
    return _torchvision_box_iou(torch.as_tensor(np.asarray(boxes_a, dtype=np.float32)).reshape(-1, 4),
                                torch.as_tensor(np.asarray(boxes_b, dtype=np.float32)).reshape(-1, 4))
