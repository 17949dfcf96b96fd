"""Localization maps and boxes: normalize, fuse, upsample, threshold into boxes, compare boxes.

Maps are tensors whose last two dimensions are (height, width). Boxes are ``[x0, y0, x1, y1]``
in pixel-edge coordinates: a component covering columns 3..7 gives ``x0 = 3, x1 = 8``.

Cutting a map at a threshold ``t`` follows clovaai/wsolevaluation exactly: the map is resized to
the image (bicubic), *then* min-max normalized, quantized to 8 bits as its OpenCV code does, and
the region is where it is ``> int(t * 255)``. The fused map, a max of two normalized maps, has a
minimum above 0, so this is not the same cut as ``t * max`` of the map as it comes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
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


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize maps ``[..., h, w]`` to ``size = (H, W)`` bicubically (wsolevaluation's
    ``cv2.INTER_CUBIC``: the same kernel, a = -0.75, and pixel-centre alignment)."""
    lead = maps.shape[:-2]
    resized = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=size,
                            mode="bicubic", align_corners=False)
    return resized.reshape(*lead, *size)


def score_map(localization_map: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """wsolevaluation's score map of one map ``[h, w]``: resized to ``size = (H, W)``, then
    min-max normalized to [0, 1] (a constant map becomes zeros). What boxes are cut from."""
    return normalize_maps(upsample_maps(localization_map, size)).numpy()


def quantized_map(scores) -> np.ndarray | None:
    """A map as wsolevaluation cuts it: min-max normalized and quantized to 0-255 (uint8), or
    None for a constant map, which marks nothing at any threshold."""
    scores = np.asarray(scores.detach().cpu() if torch.is_tensor(scores) else scores, dtype=np.float32)
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 0.0)
    if high <= low:
        return None
    return ((scores - low) / (high - low) * 255).astype(np.uint8)


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


def largest_region_box(region: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the largest 8-connected region of a non-empty boolean ``region`` (the first of
    equals, as ``boxes_from_map``), without boxing every region (most are a few pixels)."""
    components, _ = ndimage.label(region, structure=_EIGHT_CONNECTED)
    largest = components == 1 + np.bincount(components.ravel())[1:].argmax()
    rows, cols = np.flatnonzero(largest.any(1)), np.flatnonzero(largest.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


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
    """``box_from_map(map, t)`` for every ``t`` in ``thresholds``, as ``[T, 4]``, fast enough
    for a viewer's box slider: the map is normalized and quantized once, and since a higher
    threshold cuts a region inside a lower one's, each cut looks only inside the last one's extent."""
    quantized = quantized_map(localization_map)
    boxes = np.zeros((len(thresholds), 4), dtype=np.float32)
    top, left = 0, 0
    window = quantized
    for index in np.argsort(thresholds) if quantized is not None else ():
        region = window > int(thresholds[index] * 255)
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        if not rows.size:
            break  # empty here, so at every higher threshold too
        window = window[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        top, left = top + rows[0], left + cols[0]
        x0, y0, x1, y1 = largest_region_box(region[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        boxes[index] = [left + x0, top + y0, left + x1, top + y1]
    return boxes


def box_iou(boxes_a, boxes_b) -> torch.Tensor:
    """Pairwise IoU ``[N, M]`` of two sets of xyxy boxes (torchvision.ops.box_iou)."""
    return _torchvision_box_iou(torch.as_tensor(np.asarray(boxes_a, dtype=np.float32)).reshape(-1, 4),
                                torch.as_tensor(np.asarray(boxes_b, dtype=np.float32)).reshape(-1, 4))
