"""The readers: datasets of images with class labels and object boxes, read from their metadata.

    CUBDataset       the official CUB-200-2011 text files (also the 50-class cub50 slice)
    WSOLEvalDataset  clovaai/wsolevaluation metadata folders
    CSVBoxDataset    an image folder + one CSV `path,label,x0,y0,x1,y1`

Each is a ``BoxDataset`` (``acol.data.records``: the item format they share); every malformed
line of their metadata is reported as `file:line: problem`. ``acol.data.datasets.build_dataset``
opens any of them, or the synthetic set, by looking at the path.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator, Sequence

from .records import BoxDataset, ImageRecord


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
