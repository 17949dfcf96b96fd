"""Datasets with class labels and object boxes, plus the image transforms used by ACoL.

Every dataset here (and `acol.data.synthetic.SyntheticParts`) returns items in one format:

    image, target = dataset[i]
    image  : the transformed image; a float tensor [3, H, W] after `train_transform` /
             `eval_transform`, or a `tv_tensors.Image` uint8 tensor when transform=None
    target : {"label": int,
              "boxes": tv_tensors.BoundingBoxes (N, 4) float XYXY, in the returned image's pixels,
              "image_id": str,
              "path": str}

Boxes use the pixel-edge convention: a box covering pixel columns 10..19 is x0=10, x1=20.
Only the class label is used for training (weak supervision); boxes are for evaluation.

Transforms are torchvision v2 transforms called as `transform(image, boxes)`, so a crop or flip
moves the boxes together with the pixels.

Readers:
    CUBDataset       the official CUB-200-2011 text files (also the 50-class cub50 slice)
    WSOLEvalDataset  clovaai/wsolevaluation metadata folders
    CSVBoxDataset    an image folder + one CSV `path,label,x0,y0,x1,y1`

`acol.data.datasets.build_dataset` opens any of them, or the synthetic set, by looking at the path.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# Loading one image


class ImageLoadError(ValueError):
    """An image file is missing, corrupt, truncated or too large. The message names the file."""


# Formats that photos come in. Pillow can open more (EPS runs Ghostscript, for one), and an
# upload must never start a program.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
# 25 megapixels decode to at most ~100 MB (RGBA); larger files are refused before decoding,
# except JPEGs, which decode at 1/2, 1/4 or 1/8 scale for nearly free.
MAX_IMAGE_PIXELS = 25_000_000


def load_rgb_image(path_or_file: str | Path | IO[bytes], max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file fully decoded as an 8-bit RGB PIL image, upright per its EXIF tag.

    Handles grayscale, palette, RGBA (composited on white), CMYK and 16-bit files. A JPEG above
    ``max_pixels`` is decoded at a reduced scale that fits; any other file above it is refused
    before its pixels are read. Any failure raises ImageLoadError naming the file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        name = str(path_or_file)
    else:  # an open file: its name attribute, if any, is the best description we have
        name = str(getattr(path_or_file, "name", "<file object>"))
    try:
        with Image.open(path_or_file, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels and image.format in ("JPEG", "MPO"):
                # Aim at a quarter of the cap: still more pixels than any view needs, and the
                # decoder skips 3/4 of the work (draft picks a scale of at least this size).
                scale = (width * height / (max_pixels / 4)) ** 0.5
                image.draft("RGB", (int(width / scale), int(height / scale)))
            if image.width * image.height > max_pixels:
                raise ImageLoadError(f"image too large: {name} is {width} x {height} pixels, more "
                                     f"than the {max_pixels / 1e6:g}-megapixel limit")
            # load() decodes every byte now, so a truncated file fails here and not in a worker.
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageLoadError:
        raise
    except FileNotFoundError as error:
        raise ImageLoadError(f"image file not found: {name}") from error
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"image too large to decode safely: {name} ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise ImageLoadError(f"cannot decode image {name}: not a {', '.join(IMAGE_FORMATS)} file") from error
    except Exception as error:  # noqa: BLE001  a corrupt file can make a decoder raise anything
        raise ImageLoadError(f"cannot decode image {name}: {type(error).__name__}: {error}") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB without the usual surprises."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # Pillow's own convert clips 16-bit values to 255 (a white image), so rescale instead.
        values = np.asarray(image, dtype=np.float32)
        if image.mode != "F" or values.max() > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Dropping alpha would show whatever colour hides under transparent pixels (often black).
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


# ----------------------------------------------------------------------------------------------
# Shared item plumbing


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


# ----------------------------------------------------------------------------------------------
# Metadata parsing helpers: every malformed line is reported as `file:line: problem`.


def _read_rows(path: Path, num_fields: int, separator: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line of a text table.

    separator=None splits on whitespace, at most num_fields-1 times, so a path in the last
    column may hold spaces (CUB's images.txt). With a separator the line is split from the
    right, so only the first field (wsolevaluation's image path) may hold the separator.
    """
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            line = line.strip()
            if not line:
                continue
            if separator is None:
                fields = line.split(maxsplit=num_fields - 1)
            else:
                fields = line.rsplit(separator, num_fields - 1)
            if len(fields) != num_fields:
                raise ValueError(f"{path}:{line_number}: expected {num_fields} fields, got {line!r}")
            yield line_number, [f.strip() for f in fields]


def _parse_number(text: str, kind, path: Path, line_number: int):
    """int(text) or float(text), turning a failure into `file:line` ValueError."""
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{path}:{line_number}: expected a number, got {text!r}") from None


def _parse_box(fields: Sequence[str], path: Path, line_number: int) -> tuple[float, float, float, float]:
    """Four XYXY numbers; the box must not be inverted."""
    x0, y0, x1, y1 = (_parse_number(f, float, path, line_number) for f in fields)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{path}:{line_number}: box has x1 < x0 or y1 < y0: {fields}")
    return x0, y0, x1, y1


def _read_mapping(path: Path, key_kind=str, value_kind=str) -> dict:
    """Read a two-column whitespace table `key value` into a dict, converting both columns."""
    def convert(text, kind, line_number):
        return text if kind is str else _parse_number(text, kind, path, line_number)

    return {convert(key, key_kind, n): convert(value, value_kind, n) for n, (key, value) in _read_rows(path, 2)}


# ----------------------------------------------------------------------------------------------
# CUB-200-2011


def cub_readable_name(folder_name: str) -> str:
    """'001.Black_footed_Albatross' -> 'Black footed Albatross'."""
    return re.sub(r"^\d+\.", "", folder_name).replace("_", " ")


class CUBDataset(BoxDataset):
    """CUB-200-2011 in its official layout (root holds images.txt, ..., and images/).

    split: "train" (train_test_split flag 1), "test" (flag 0) or "all". Labels are the class ids
    that occur in image_class_labels.txt, remapped in id order to 0..K-1 (the same mapping for
    every split). Boxes come from bounding_boxes.txt (x, y, w, h) converted to XYXY.
    """

    def __init__(self, root: str | Path, split: str = "train", transform=None):
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.transform = transform

        image_paths = _read_mapping(self.root / "images.txt")
        class_of_image = _read_mapping(self.root / "image_class_labels.txt", value_kind=int)
        is_train = _read_mapping(self.root / "train_test_split.txt", value_kind=int)
        class_folder = _read_mapping(self.root / "classes.txt", key_kind=int)
        boxes = self._read_boxes(self.root / "bounding_boxes.txt")

        used_class_ids = sorted(set(class_of_image.values()))
        missing = [c for c in used_class_ids if c not in class_folder]
        if missing:
            raise ValueError(f"{self.root / 'classes.txt'}: no name for class ids {missing}")
        label_of_class = {class_id: label for label, class_id in enumerate(used_class_ids)}
        self.class_folders = [class_folder[c] for c in used_class_ids]
        self.class_names = [cub_readable_name(folder) for folder in self.class_folders]

        wanted_flag = {"train": 1, "test": 0}.get(split)
        self.records = []
        for image_id, relative_path in image_paths.items():
            for table, name in ((class_of_image, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
                if image_id not in table:
                    raise ValueError(f"{self.root / name}: no entry for image id {image_id}")
            if wanted_flag is not None and is_train[image_id] != wanted_flag:
                continue
            self.records.append(ImageRecord(
                path=self.root / "images" / relative_path,
                label=label_of_class[class_of_image[image_id]],
                image_id=image_id,
                boxes=boxes.get(image_id, []),
            ))

    @staticmethod
    def _read_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
        """bounding_boxes.txt: `id x y width height` -> {id: [(x0, y0, x1, y1)]}."""
        boxes = defaultdict(list)
        for line_number, (image_id, *xywh) in _read_rows(path, 5):
            x, y, w, h = (_parse_number(v, float, path, line_number) for v in xywh)
            if w < 0 or h < 0:
                raise ValueError(f"{path}:{line_number}: negative box width or height")
            boxes[image_id].append((x, y, x + w, y + h))
        return boxes


# ----------------------------------------------------------------------------------------------
# clovaai/wsolevaluation metadata


class WSOLEvalDataset(BoxDataset):
    """A wsolevaluation metadata folder (one per split) plus the folder its image paths start from.

    metadata_dir holds image_ids.txt (one image path per line), class_labels.txt (`path,label`),
    localization.txt (`path,x0,y0,x1,y1`, one line per box, optional) and optionally
    class_names.txt (one name per line, line k naming label k). image_sizes.txt is not needed:
    sizes come from the decoded images.
    """

    def __init__(self, data_root: str | Path, metadata_dir: str | Path, transform=None):
        self.data_root = Path(data_root)
        self.metadata_dir = Path(metadata_dir)
        self.transform = transform

        ids_file = self.metadata_dir / "image_ids.txt"
        image_paths = [fields[0] for _, fields in _read_rows(ids_file, 1)]
        labels_file = self.metadata_dir / "class_labels.txt"
        label_of = {p: _parse_number(label, int, labels_file, n)
                    for n, (p, label) in _read_rows(labels_file, 2, separator=",")}
        boxes_of = defaultdict(list)
        boxes_file = self.metadata_dir / "localization.txt"
        if boxes_file.is_file():
            for n, (p, *xyxy) in _read_rows(boxes_file, 5, separator=","):
                boxes_of[p].append(_parse_box(xyxy, boxes_file, n))

        self.records = []
        for image_path in image_paths:
            if image_path not in label_of:
                raise ValueError(f"{labels_file}: no label for image {image_path!r} listed in {ids_file}")
            self.records.append(ImageRecord(self.data_root / image_path, label_of[image_path],
                                            image_id=image_path, boxes=boxes_of.get(image_path, [])))

        names_file = self.metadata_dir / "class_names.txt"
        if names_file.is_file():
            self.class_names = [fields[0] for _, fields in _read_rows(names_file, 1)]
        else:
            self.class_names = [f"class_{k}" for k in range(max(label_of.values(), default=-1) + 1)]
        _check_labels_in_range(self.labels, len(self.class_names), labels_file)


def _check_labels_in_range(labels: list[int], num_classes: int, source: Path) -> None:
    """Fail early on labels a classifier head with num_classes outputs could not predict."""
    bad = sorted({label for label in labels if not 0 <= label < num_classes})
    if bad:
        raise ValueError(f"{source}: labels {bad} outside 0..{num_classes - 1}")


# ----------------------------------------------------------------------------------------------
# Generic CSV


class CSVBoxDataset(BoxDataset):
    """An image folder plus a CSV with header `path,label,x0,y0,x1,y1` (paths relative to root).

    One row per box; an image with several boxes has several rows (same label), an image with
    no box has one row with the four box fields empty. Labels are class names (mapped to
    indices in sorted name order) or, if every label is an integer, the class indices
    themselves (class_names are then "class_0", ...). Images keep first-appearance order.
    """

    COLUMNS = ("path", "label", "x0", "y0", "x1", "y1")

    def __init__(self, root: str | Path, csv_path: str | Path, transform=None):
        self.root = Path(root)
        self.csv_path = Path(csv_path)
        self.transform = transform

        raw_label_of: dict[str, str] = {}
        boxes_of: dict[str, list] = {}
        with open(self.csv_path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            missing = [c for c in self.COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{self.csv_path}:1: header lacks columns {missing}; "
                                 f"expected {','.join(self.COLUMNS)}")
            for row in reader:
                n = reader.line_num
                path, label = (row["path"] or "").strip(), (row["label"] or "").strip()
                if not path or not label:
                    raise ValueError(f"{self.csv_path}:{n}: empty path or label")
                if raw_label_of.setdefault(path, label) != label:
                    raise ValueError(f"{self.csv_path}:{n}: {path!r} has label {label!r} "
                                     f"but earlier {raw_label_of[path]!r}")
                box_fields = [(row[c] or "").strip() for c in self.COLUMNS[2:]]
                boxes = boxes_of.setdefault(path, [])  # a row without box still registers the image
                if any(box_fields):
                    if not all(box_fields):
                        raise ValueError(f"{self.csv_path}:{n}: box fields must be all filled or all empty")
                    boxes.append(_parse_box(box_fields, self.csv_path, n))

        raw_labels = set(raw_label_of.values())
        if all(re.fullmatch(r"\d+", label) for label in raw_labels):
            self.class_names = [f"class_{k}" for k in range(max(map(int, raw_labels), default=-1) + 1)]
            label_index = {label: int(label) for label in raw_labels}
        else:
            self.class_names = sorted(raw_labels)
            label_index = {name: k for k, name in enumerate(self.class_names)}
        self.records = [ImageRecord(self.root / path, label_index[label], image_id=path, boxes=boxes_of[path])
                        for path, label in raw_label_of.items()]


# ----------------------------------------------------------------------------------------------
# Transforms


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


def train_transform(input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize_size: int | None = None):
    """The paper's training augmentation: resize to a square, random crop, random flip.

    resize_size defaults to input_size * 256 / 224 (256 -> 224 as in ImageNet training).
    Boxes follow the crop and flip, are clamped to the crop, and dropped if cropped away.
    """
    resize_size = resize_size or round(input_size * 256 / 224)
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


# ----------------------------------------------------------------------------------------------
# Convenience


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
