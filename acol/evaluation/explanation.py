"""One image explained by one model: what the pictures of it are drawn from, what a viewer
session keeps between events (``acol.evaluation.explain.Explainer`` makes it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ..core.maps import box_iou, largest_region_boxes, quantized_maps, upsample_maps
from ..core.model import ACoLOutput
from ..data.synthetic import Parts


@dataclass
class Explanation:
    """One image explained by one model: what a viewer session caches between events. Never
    changed in place (a new class or mask makes a new one), so sessions and the viewer's shared
    answers hold the same one, and copying one (Gradio copies a session's first state) is free."""

    model_name: str
    class_names: list[str]
    image: Image.Image         # upright RGB, at most MAX_IMAGE_SIDE: what other models re-run on
    true_boxes: np.ndarray     # [N, 4] xyxy in ``image`` pixels; N = 0 when unknown
    display: np.ndarray        # [H, W, 3] uint8, the picture every map is drawn on
    output: ACoLOutput         # a batch of one, holding the cached backbone features
    probabilities: torch.Tensor  # [num_classes], softmax of branch A's logits
    input_size: int            # the side of the square the model saw the image at: where boxes are cut and scored
    erased_by_hand: bool = False  # branch B's input mask was made by hand, not by thresholding A's map
    true_class: str | None = None  # the image's label when known (an example's)
    image_digest: str | None = None  # the SHA-256 of the file it came from: what answers are cached by
    parts: Parts | None = None  # where its head and body are, when known (a synthetic example), at ``image``'s size

    @property
    def target_class(self) -> int:
        """The class whose map drives the erasing (and whose maps are shown)."""
        return int(self.output.target_class[0])

    @property
    def erase_threshold(self) -> float:
        return float(self.output.erase_threshold)

    @property
    def num_branches(self) -> int:
        return len(self.output.logits)

    def __deepcopy__(self, memo) -> "Explanation":
        return self

    def to(self, device: str | torch.device) -> "Explanation":
        """The same explanation with its tensors on ``device``."""
        return replace(self, output=self.output.to(device), probabilities=self.probabilities.to(device))

    def scored_boxes(self, maps: torch.Tensor, thresholds) -> tuple[np.ndarray, np.ndarray | None]:
        """The box ``acol evaluate`` scores for each map ``[K, h, w]`` at each of ``thresholds``,
        ``[K, T, 4]`` in ``display`` pixels, and its IoU with the best-matching true box, ``[K, T]``
        (None when no true box is known).

        As wsolevaluation: each map is resized to the model's input square, normalized,
        quantized and cut there (``maps.largest_region_boxes``), the true boxes scaled to it; the
        boxes are then scaled to the picture, which leaves their IoU as it was. (Cut at the
        picture's own pixels, the 20 maps of a viewer's payload cost it 2.4 times the pixels.)"""
        side = self.input_size
        resized = upsample_maps(maps.detach().float().cpu(), (side, side)).numpy()
        boxes = largest_region_boxes(quantized_maps(resized), [int(threshold * 255) for threshold in thresholds])
        ious = None
        if len(self.true_boxes):
            at_input = self.true_boxes * np.array([side / self.image.width, side / self.image.height] * 2)
            ious = box_iou(boxes.reshape(-1, 4), at_input).amax(1).view(boxes.shape[:2]).numpy()
        to_display = np.array([self.display.shape[1] / side, self.display.shape[0] / side] * 2)
        return np.round(boxes * to_display), ious

    def display_boxes(self) -> np.ndarray:
        """The true boxes in ``display`` pixels (the display may stretch the image unevenly)."""
        scale = np.array([self.display.shape[1] / self.image.width, self.display.shape[0] / self.image.height] * 2)
        return self.true_boxes * scale
