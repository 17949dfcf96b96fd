"""Open a dataset by looking at what it is: "synthetic", a CSV, a CUB folder or wsolevaluation metadata.

The one place that knows every reader: ``acol.data.readers``'s (CUB, wsolevaluation, CSV) and
the synthetic teaching set's (``acol.data.synthetic``, which is built on ``acol.data.records``).
It lives apart from both so that the readers need not know the synthetic set exists, and no
import goes both ways. ``python -m acol evaluate CHECKPOINT DATA`` and ``python -m acol train
--data`` open their data here (train builds its synthetic set itself, sized by its config).
"""

from __future__ import annotations

from pathlib import Path

from .readers import CSVBoxDataset, CUBDataset, WSOLEvalDataset
from .synthetic import SyntheticParts

# split -> (num_images, seed). Training uses seeds 0 (train) and 1 (validation); assets/examples
# are seed 2; "heldout" (seed 3) is never seen by training nor by choosing CAM thresholds.
SYNTHETIC_SPLITS = {"train": (2000, 0), "test": (500, 1), "examples": (60, 2), "heldout": (500, 3)}


def build_dataset(kind_or_root: str | Path, split: str = "train", transform=None, data_root: str | Path | None = None,
                  **synthetic_options):
    """Open a dataset by looking at what `kind_or_root` is.

    - "synthetic": SyntheticParts with the sizes/seeds in SYNTHETIC_SPLITS; ``synthetic_options``
      (num_classes, image_size) go to it, or ``class_names`` (a model's) say its classes
    - a .csv file, or a folder holding `<split>.csv`: CSVBoxDataset (images relative to the CSV's folder)
    - a folder with images.txt and bounding_boxes.txt: CUBDataset(folder, split)
    - a wsolevaluation metadata folder (image_ids.txt, class_labels.txt), or a folder holding
      `metadata/<split>/` or `<split>/` with them: WSOLEvalDataset, images relative to
      data_root (default: the folder given)
    """
    if str(kind_or_root) == "synthetic":
        if split not in SYNTHETIC_SPLITS:
            raise ValueError(f"synthetic splits are {list(SYNTHETIC_SPLITS)}, got {split!r}")
        num_images, seed = SYNTHETIC_SPLITS[split]
        if "class_names" in synthetic_options:  # a model's: its crest classes and its no-crest class
            options = dict(synthetic_options)
            return SyntheticParts.for_classes(options.pop("class_names"), num_images, seed=seed, transform=transform,
                                              **options)
        return SyntheticParts(num_images, seed=seed, transform=transform, **synthetic_options)

    root = Path(kind_or_root)
    if root.suffix.lower() == ".csv" and root.is_file():
        return CSVBoxDataset(root.parent, root, transform)
    if (root / f"{split}.csv").is_file():
        return CSVBoxDataset(root, root / f"{split}.csv", transform)
    if (root / "images.txt").is_file() and (root / "bounding_boxes.txt").is_file():
        return CUBDataset(root, split, transform)
    for metadata_dir in (root, root / "metadata" / split, root / split):
        if (metadata_dir / "image_ids.txt").is_file() and (metadata_dir / "class_labels.txt").is_file():
            return WSOLEvalDataset(data_root or root, metadata_dir, transform)
    raise ValueError(f"cannot tell the dataset layout of {root}: expected 'synthetic', a .csv, a CUB folder "
                     "(images.txt + bounding_boxes.txt) or wsolevaluation metadata (image_ids.txt + class_labels.txt)")
