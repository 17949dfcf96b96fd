"""The image transforms ACoL trains and evaluates with (torchvision v2: the boxes follow the
pixels), and the batches: the loader, its collate function, a stratified train/val split."""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DropDegenerateBoxes(v2.Transform):
    """Remove boxes thinner than min_size pixels, e.g. ones a random crop cut away.

    v2.SanitizeBoundingBoxes does this too, but it also wants per-box labels and indexes every
    Mask by box validity, which breaks our image-sized part masks (acol.data.synthetic).
    Expects XYXY boxes, the only format the datasets here produce.
    """

    def __init__(self, min_size: float = 1.0):
        super().__init__()
        self.min_size = min_size

    def transform(self, inpt, params):
        """Filter BoundingBoxes; pass every other input through."""
        if not isinstance(inpt, tv_tensors.BoundingBoxes):
            return inpt
        keep = ((inpt[:, 2] - inpt[:, 0]) >= self.min_size) & ((inpt[:, 3] - inpt[:, 1]) >= self.min_size)
        return tv_tensors.wrap(inpt[keep], like=inpt)


def _to_normalized_float(mean, std) -> list:
    """uint8 0-255 image -> float 0-1 -> (x - mean) / std per channel."""
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def resize_size_for(input_size: int) -> int:
    """The side a picture is resized to before the crop to ``input_size`` (the paper's 256 -> 224):
    also the side training draws synthetic pictures at."""
    return round(input_size * 256 / 224)


def train_transform(input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize_size: int | None = None):
    """The paper's training augmentation: resize to a square, random crop, random flip.

    resize_size defaults to input_size * 256 / 224 (256 -> 224 as in ImageNet training).
    Boxes follow the crop and flip, are clamped to the crop, and dropped if cropped away.
    """
    resize_size = resize_size or resize_size_for(input_size)
    return v2.Compose([
        v2.Resize((resize_size, resize_size), antialias=True),
        v2.RandomCrop(input_size),
        v2.RandomHorizontalFlip(),
        v2.ClampBoundingBoxes(),
        DropDegenerateBoxes(),
        *_to_normalized_float(mean, std),
    ])


def eval_transform(input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Evaluation: resize the whole image to input_size x input_size (wsolevaluation style).

    No crop, so every box stays inside the frame and localization is scored on the full object.
    """
    return v2.Compose([v2.Resize((input_size, input_size), antialias=True), *_to_normalized_float(mean, std)])


def denormalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Undo Normalize on a [3, H, W] tensor and return a uint8 [H, W, 3] array for display."""
    image = image.detach().float().cpu()
    mean = torch.tensor(mean).view(3, 1, 1)
    std = torch.tensor(std).view(3, 1, 1)
    pixels = ((image * std + mean) * 255).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 0).numpy()


def collate_batch(batch):
    """DataLoader collate_fn: (images [B,3,H,W], labels LongTensor [B], list of target dicts).

    Targets stay a list because images hold different numbers of boxes.
    """
    images = torch.stack([image.as_subclass(torch.Tensor) for image, _ in batch])
    labels = torch.tensor([target["label"] for _, target in batch], dtype=torch.long)
    return images, labels, [target for _, target in batch]


def make_loader(dataset, batch_size: int, workers: int, **options) -> DataLoader:
    """A DataLoader of collate_batch batches whose worker processes do not slow training down.

    Workers are forked from a small server process, not from the training process: a fork makes
    every page the trainer writes afterwards a copy-on-write fault, and the first step after each
    fork took 8-11 s instead of 2.7 s (192 px ACoL, 2 cores), about 5% of every epoch. Where there
    is no forkserver (Windows) the platform's default is used. As with spawn, the dataset must
    pickle and a script that uses workers needs its top level under ``if __name__ == "__main__":``.
    ``options`` go to DataLoader (shuffle, sampler, drop_last, generator, ...).
    """
    context = None
    if workers > 0 and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["acol.data.readers"])  # torch and co. imported once, not per worker
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_batch,
                      multiprocessing_context=context, **options)


def split_train_val(dataset, val_fraction: float, seed: int = 0) -> tuple[Subset, Subset]:
    """Split into (train, val) Subsets, stratified by label, the same for the same seed.

    Each class sends round(n * val_fraction) of its n items to val (at least one when
    val_fraction > 0 and the class has two or more items).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    indices_of_label = defaultdict(list)
    for index, label in enumerate(dataset.labels):
        indices_of_label[label].append(index)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in sorted(indices_of_label):
        indices = rng.permutation(indices_of_label[label]).tolist()
        num_val = round(len(indices) * val_fraction)
        if val_fraction > 0 and len(indices) >= 2:
            num_val = max(num_val, 1)
        val += indices[:num_val]
        train += indices[num_val:]
    return Subset(dataset, sorted(train)), Subset(dataset, sorted(val))
