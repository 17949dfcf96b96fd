"""The one format every dataset's items come in, and the base class the readers share.

Every dataset (the readers of ``acol.data.readers`` and ``acol.data.synthetic.SyntheticParts``)
returns::

    image, target = dataset[i]
    image  : the transformed image; a float tensor [3, H, W] after `train_transform` /
             `eval_transform`, or a `tv_tensors.Image` uint8 tensor when transform=None
    target : {"label": int,
              "boxes": tv_tensors.BoundingBoxes (N, 4) float XYXY, in the returned image's pixels,
              "image_id": str,
              "path": str}

Boxes use the pixel-edge convention: a box covering pixel columns 10..19 is x0=10, x1=20.
Only the class label is used for training (weak supervision); boxes are for evaluation.
Transforms (``acol.data.transforms``) are torchvision v2 transforms called as
`transform(image, boxes)`, so a crop or flip moves the boxes together with the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .images import load_rgb_image


def make_boxes(boxes_xyxy, height: int, width: int) -> tv_tensors.BoundingBoxes:
    """Wrap an (N, 4) list/array of XYXY pixel boxes (N may be 0) for an image of size H x W."""
    data = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
    return tv_tensors.BoundingBoxes(data, format="XYXY", canvas_size=(height, width))


def transform_sample(transform, image: tv_tensors.Image, boxes, masks: dict | None = None):
    """Apply a v2 transform jointly to an image, its boxes and optional {name: Mask} masks.

    Returns (image, boxes, masks); with transform=None the inputs come back unchanged.
    """
    if transform is None:
        return image, boxes, masks
    if masks:
        return transform(image, boxes, masks)
    image, boxes = transform(image, boxes)
    return image, boxes, masks


@dataclass
class ImageRecord:
    """What a reader knows about one image before decoding it."""

    path: Path
    label: int
    image_id: str
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)


class BoxDataset(Dataset):
    """Base class: a list of ImageRecord plus class names; decodes and transforms on access.

    Subclasses parse their metadata into `self.records` and `self.class_names`.
    """

    records: list[ImageRecord]
    class_names: list[str]
    transform = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        """Number of classes (labels run 0..num_classes-1)."""
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        """The label of every item, in order, without decoding any image."""
        return [record.label for record in self.records]

    def __getitem__(self, index: int):
        record = self.records[index]
        image = tv_tensors.Image(v2.functional.pil_to_tensor(load_rgb_image(record.path)))
        boxes = make_boxes(record.boxes, *image.shape[-2:])
        image, boxes, _ = transform_sample(self.transform, image, boxes)
        target = {"label": record.label, "boxes": boxes, "image_id": record.image_id, "path": str(record.path)}
        return image, target
