"""The synthetic teaching set: random-access "birds" (``acol.data.birds`` draws each one).

Item i is generated from (seed, i) alone, so the data set is random-access, needs no files, and
is the same on every run. Items follow acol.data's (image, target) format; target also holds
"head_mask" and "body_mask" (bool [H, W]) which are passed through the transform with the image,
so they stay aligned with it after resizes, crops and flips, and "body_class", the class whose
pattern the body shows. ``Parts`` keeps a picture's head, body and body class in one PNG
(``write_examples``), so a viewer can check what a model's maps found on it.

A set may also hold birds whose head is hidden (``headless_fraction``), their body showing a
random class's pattern, labelled with a class of their own, NO_CREST (``no_crest=True`` adds it to
the class names). Without it one of the crest classes is learned as "a bird, and none of the
other heads": the default answer, whose map lights wherever, never on its own head (seen with 4
classes: one class, A naming it for every bird whose head was painted out, its map on the body).
With a class for "a bird with no crest", the default has a name of its own, and every crest class
must be found by its crest. (Tried first, and not enough: pictures with no bird, or headless birds
labelled at random.)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .birds import HEAD_COLORS, MAX_CLASSES, SyntheticSample, render_sample
from .records import make_boxes, transform_sample

NO_CREST = "no-crest"  # the class of a bird whose head is hidden (headless_fraction)


@dataclass(frozen=True)
class Parts:
    """Where one picture's parts are, at the picture's own resolution, and the name of the class
    whose pattern its body shows (``None`` when the generator did not say)."""

    head: np.ndarray  # bool [H, W]
    body: np.ndarray  # bool [H, W], the visible body (the head excluded)
    body_class: str | None = None

    def at(self, x: float, y: float) -> str:
        """"head", "body" or "outside": the part under pixel ``(x, y)``."""
        row, col = min(int(y), self.head.shape[0] - 1), min(int(x), self.head.shape[1] - 1)
        return "head" if self.head[row, col] else "body" if self.body[row, col] else "outside"

    def resized(self, size: tuple[int, int]) -> "Parts":
        """The parts of the same picture shown at ``size = (width, height)`` (nearest pixel)."""
        def scaled(mask):
            return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
        return Parts(scaled(self.head), scaled(self.body), self.body_class)

    def save(self, path) -> None:
        """One 8-bit PNG: 0 outside, 1 body, 2 head, the body's class in its text (``load`` reads it)."""
        info = PngInfo()
        if self.body_class is not None:
            info.add_text("body_class", self.body_class)
        Image.fromarray(self.body.astype(np.uint8) + 2 * self.head.astype(np.uint8)).save(path, pnginfo=info)

    @classmethod
    def load(cls, path) -> "Parts":
        with Image.open(path) as picture:
            values = np.asarray(picture)
            return cls(values == 2, values == 1, picture.info.get("body_class"))


class SyntheticParts(Dataset):
    """`num_images` synthetic head+body objects of `num_classes` crest classes (at most 8) and,
    with ``no_crest``, the class NO_CREST of headless birds after them.

    Crest labels are balanced: item i has label i % num_classes. Everything else about item i is
    drawn from np.random.default_rng([seed, i]). A share ``headless_fraction`` of the items
    (drawn apart, so the other items are the same pictures whatever the share) show a bird whose
    head is hidden, labelled NO_CREST (the module docstring says why).
    """

    def __init__(self, num_images: int, num_classes: int = 4, image_size: int = 160, seed: int = 0,
                 transform=None, headless_fraction: float = 0.0, no_crest: bool = False):
        if headless_fraction and not no_crest:
            raise ValueError("headless birds need the no-crest class: pass no_crest=True")
        if not 2 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be between 2 and {MAX_CLASSES}, got {num_classes}")
        self.num_images = num_images
        self.num_classes = num_classes
        self.image_size = image_size
        self.seed = seed
        self.transform = transform
        self.headless_fraction = headless_fraction
        self.class_names = [f"{color}-crest" for color in list(HEAD_COLORS)[:num_classes]] + [NO_CREST] * no_crest

    @classmethod
    def for_classes(cls, class_names: list[str], num_images: int, image_size: int = 160, seed: int = 0,
                    transform=None) -> "SyntheticParts":
        """Pictures of a model trained on this generator, with its ``class_names``: its crest
        classes, and the no-crest class when it has one (every bird here has its head)."""
        no_crest = NO_CREST in class_names
        return cls(num_images, len(class_names) - no_crest, image_size, seed, transform, no_crest=no_crest)

    def __len__(self) -> int:
        return self.num_images

    @property
    def labels(self) -> list[int]:
        """The label of every item, without rendering anything."""
        return [self.num_classes if self.headless(index) else index % self.num_classes
                for index in range(self.num_images)]

    def headless(self, index: int) -> bool:
        """Whether item ``index`` is a headless bird (of the no-crest class)."""
        return bool(self.headless_fraction) and \
            np.random.default_rng([self.seed, index, 1]).random() < self.headless_fraction

    def render(self, index: int) -> SyntheticSample:
        """Draw item `index` (untransformed)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng([self.seed, index])
        sample = render_sample(rng, index % self.num_classes, self.num_classes, self.image_size, self.headless(index))
        return replace(sample, label=self.num_classes) if self.headless(index) else sample

    def __getitem__(self, index: int):
        sample = self.render(index)
        image = tv_tensors.Image(torch.from_numpy(sample.image).permute(2, 0, 1))
        boxes = make_boxes([sample.box], *sample.image.shape[:2])
        # uint8 masks: geometric transforms interpolate Masks with nearest-neighbour, not bools.
        masks = {name: tv_tensors.Mask(torch.from_numpy(mask.astype(np.uint8)))
                 for name, mask in (("head_mask", sample.head_mask), ("body_mask", sample.body_mask))}
        image, boxes, masks = transform_sample(self.transform, image, boxes, masks)
        target = {"label": sample.label, "body_class": sample.body_class, "boxes": boxes, "image_id": f"synthetic-{self.seed}-{index}",
                  "path": f"synthetic://seed{self.seed}/{index}"}
        target.update({name: mask.as_subclass(torch.Tensor).bool() for name, mask in masks.items()})
        return image, target


# ----------------------------------------------------------------------------------------------
# Example files for the app and docs


def write_examples(out_dir: str | Path, indices, seed: int = 0, num_classes: int = 4,
                   image_size: int = 160) -> Path:
    """Write the pictures ``indices`` (or ``range(indices)`` for a count) of a seed as PNGs,
    labels.csv (`path,label,x0,y0,x1,y1`, readable by CSVBoxDataset; labels are class names) and
    each picture's parts in ``parts/<name>.png`` (``acol.story.Parts``: its head, its body, the
    class its body's pattern shows), so a viewer can check what a model's maps found on it.
    Returns the CSV path."""
    out_dir = Path(out_dir)
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)
    dataset = SyntheticParts(max(indices) + 1 if not isinstance(indices, int) else indices,
                             num_classes=num_classes, image_size=image_size, seed=seed)
    csv_path = out_dir / "labels.csv"
    with open(csv_path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "x0", "y0", "x1", "y1"])
        for index in range(indices) if isinstance(indices, int) else indices:
            sample = dataset.render(index)
            name = f"synthetic_{seed}_{index:04d}.png"
            Image.fromarray(sample.image).save(out_dir / name)
            Parts(sample.head_mask, sample.body_mask, dataset.class_names[sample.body_class]).save(
                out_dir / "parts" / name)
            writer.writerow([name, dataset.class_names[sample.label], *(f"{v:g}" for v in sample.box)])
    return csv_path
