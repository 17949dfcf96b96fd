"""One image explained by one model: what the pictures of it are drawn from, what a viewer
session keeps between events (``acol.evaluation.explain.Explainer`` makes it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

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

    def display_boxes(self) -> np.ndarray:
        """The true boxes in ``display`` pixels (the display may stretch the image unevenly)."""
        scale = np.array([self.display.shape[1] / self.image.width, self.display.shape[0] / self.image.height] * 2)
        return self.true_boxes * scale
