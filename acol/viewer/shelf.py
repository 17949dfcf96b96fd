"""What the viewer offers: the checkpoints of one folder, and example pictures for each of them.

- ``CheckpointShelf``: the ``.safetensors`` checkpoints found at start-up (a page request never
  names a path), loaded on the shelf's device; ``load_all`` loads them at start-up, ``to`` moves
  them (the page precomputes its examples on the CPU, then moves the models to the GPU). An
  everyday model's branch A is listed as its own CAM baseline, sharing the loaded weights.
- ``ExampleImages``: example folders, each belonging to the models whose class names include all
  its labels, with their true boxes and labels. Gradio hands callbacks a copy of a file, so an
  example is known by its content (``content_digest``), never by its path.

Nothing here imports Gradio.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import CheckpointError, read_metadata
from ..core.device import resolve_device
from ..core.history import history_path
from ..data.readers import CSVBoxDataset, CUBDataset
from ..data.synthetic import Parts
from ..evaluation.explain import DEFAULT_BOX_THRESHOLD, Explainer, is_everyday

REPO = Path(__file__).resolve().parents[2]
CHECKPOINTS = REPO / "checkpoints"
BUNDLED_EXAMPLES = (REPO / "assets" / "examples", REPO / "assets" / "everyday")  # the teaching model's, the everyday model's
BRANCH_A = "_branch_A"  # the name suffix of an everyday model's branch A, listed as its CAM baseline
HISTORY_SUFFIX = ".history.safetensors"  # a model's training history beside it: not a model


class CheckpointShelf:
    """The ``.safetensors`` checkpoints of a folder, each loaded once (on first use, or all at
    once with ``load_all``) onto the shelf's device and then kept."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        self.folder = Path(folder)
        self.device = resolve_device(device)
        self.configs = {}
        for path in sorted(self.folder.glob("*.safetensors")):
            if path.name.endswith(HISTORY_SUFFIX):
                continue
            try:
                self.configs[path.stem] = json.loads(read_metadata(path)["config"])
            except (ValueError, KeyError):  # unreadable: listed, and explained when chosen
                self.configs[path.stem] = {}
        self._explainers: dict[str, Explainer] = {}
        # The everyday model's CAM baseline is its own branch A (the pretrained network's CAM):
        # listed as a one-branch model of its own, it shares the loaded ACoL model's weights.
        self.branch_a_of = {f"{name}{BRANCH_A}": name for name, config in self.configs.items() if is_everyday(config)}
        for cam, name in self.branch_a_of.items():
            config = self.configs[name]
            self.configs[cam] = {**config, "model": {**config["model"], "num_branches": 1},
                                 "description": f"Branch A of {name} alone: EfficientNet-Lite0's own ImageNet "
                                                "classifier, so its map is the pretrained network's CAM.",
                                 "metrics": {"cam_thresholds": {"A": config.get("metrics", {}).get(
                                     "cam_thresholds", {}).get("A", DEFAULT_BOX_THRESHOLD)}}}

    def everyday(self) -> str | None:
        """The everyday model, which explains uploads unless the user picked another (None if absent)."""
        return next((name for name in self.names() if is_everyday(self.configs[name]) and self.is_acol(name)), None)

    def names(self, preferred_classes=None) -> list[str]:
        """Every checkpoint, ACoL models before one-branch CAM baselines; within each, those whose
        class names include all of ``preferred_classes`` (the bundled examples' labels: the
        teaching model) first."""
        def order(name):
            known = set(self.configs[name].get("class_names", ()))
            return not self.is_acol(name), bool(preferred_classes) and not known >= set(preferred_classes), name
        return sorted(self.configs, key=order)

    def class_names(self, name: str) -> list[str]:
        """The class names ``name``'s config lists (none for an unreadable file), without loading it."""
        return list(self.configs.get(name, {}).get("class_names", ()))

    def is_acol(self, name: str) -> bool:
        return self.configs.get(name, {}).get("model", {}).get("num_branches", 2) > 1

    def baselines_for(self, name: str) -> list[str]:
        """The CAM checkpoints whose classes are the same as ``name``'s."""
        classes = self.configs.get(name, {}).get("class_names")
        return [other for other in self.names()
                if not self.is_acol(other) and self.configs[other].get("class_names") == classes]

    def load_all(self) -> "CheckpointShelf":
        """Load every readable checkpoint now (a broken one says what is wrong when chosen)."""
        for name in self.configs:
            try:
                self[name]
            except CheckpointError:
                pass
        return self

    def copy_on_cpu(self) -> "CheckpointShelf":
        """A shelf of copies of the loaded models, on the CPU (what loads later loads there). One
        deep copy of them all, so models that share weights (the everyday model's branch A) still
        share them."""
        copied = copy.copy(self)
        copied._explainers = copy.deepcopy(self._explainers)
        return copied.to("cpu")

    def to(self, device: str | torch.device) -> "CheckpointShelf":
        """Move every loaded model, and those loaded later, to ``device``."""
        self.device = resolve_device(device)
        for explainer in self._explainers.values():
            explainer.to(self.device)
        return self

    def __getitem__(self, name: str) -> Explainer:
        # Only the files listed at start-up: a name from a page request never becomes a path.
        if name not in self.configs:
            raise CheckpointError(f"no checkpoint named {name!r} in this viewer's folder")
        if name not in self._explainers and name in self.branch_a_of:
            acol = self[self.branch_a_of[name]]
            self._explainers[name] = Explainer(acol.model.branch_a_alone(), self.configs[name], name, acol.device)
        if name not in self._explainers:
            self._explainers[name] = viewer_explainer(self.folder / f"{name}.safetensors", self.device)
        return self._explainers[name]


def viewer_explainer(checkpoint: str | Path, device: str | torch.device = "cpu") -> Explainer:
    """A checkpoint as the viewer runs it: its BatchNorms folded into their convolutions
    (``Backbone.fold_batchnorm``), unless a training history lies beside it, whose weights "How it
    learned" swaps in by their names."""
    explainer = Explainer.from_checkpoint(checkpoint, device)
    if not history_path(checkpoint).is_file():
        explainer.model.backbone.fold_batchnorm()
    return explainer


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def content_digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes: what identifies an example, and a cached answer's image."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class ExampleGroup:
    """One example folder: its pictures and the class names they were made for (None for a
    folder of plain images, which names none)."""

    folder: Path
    paths: list[str]
    class_names: list[str] | None

    def belongs_to(self, model_class_names) -> bool:
        """Whether a model with these class names was made for these examples: it knows every
        class the folder names (a CUB root names all of its classes; plain images, none)."""
        return self.class_names is None or set(self.class_names) <= set(model_class_names)


@dataclass(frozen=True)
class Example:
    """What is known of one example picture: its group, true boxes ([N, 4], N = 0 when unknown),
    label (None when its folder names none) and, for a synthetic picture, where its head and
    body are (``parts/<name>.png`` beside it, as ``acol.data.synthetic.write_examples`` writes)."""

    group: int
    true_boxes: np.ndarray
    label: str | None
    parts: Parts | None = None


class ExampleImages:
    """Example pictures for the viewer, in groups by folder, with their true boxes when the
    folder has them: a CUB-layout root (images.txt + bounding_boxes.txt; a few test images of
    distinct classes), a folder with ``labels.csv`` (as ``acol.data.synthetic.write_examples``
    writes), or plain images. A group belongs to the models whose class names include all of the
    folder's (``for_model``), so no example is run through a model that was not made for it."""

    def __init__(self, folders=(), limit: int = 12):
        self.groups: list[ExampleGroup] = []
        self._by_digest: dict[str, Example] = {}
        for folder in map(Path, folders):
            found, class_names = self._find(folder, limit)
            if not found:
                continue
            for path, boxes, label in found:
                parts_file = Path(path).parent / "parts" / f"{Path(path).stem}.png"
                self._by_digest.setdefault(content_digest(path), Example(
                    len(self.groups), np.asarray(boxes, dtype=np.float32).reshape(-1, 4), label,
                    Parts.load(parts_file) if parts_file.is_file() else None))
            self.groups.append(ExampleGroup(folder, [str(path) for path, *_ in found], class_names))

    @property
    def paths(self) -> list[str]:
        """Every example, group by group."""
        return [path for group in self.groups for path in group.paths]

    @staticmethod
    def _find(folder: Path, limit: int):
        """``([(path, boxes, label name or None), ...], the folder's class names or None)``."""
        if (folder / "images.txt").is_file() and (folder / "bounding_boxes.txt").is_file():
            dataset, records, seen = CUBDataset(folder, "test"), [], set()
            for record in dataset.records:  # one image per class
                if record.label not in seen:
                    seen.add(record.label)
                    records.append(record)
            return [(r.path, r.boxes, dataset.class_names[r.label]) for r in records[:limit]], dataset.class_names
        if (folder / "labels.csv").is_file():
            dataset = CSVBoxDataset(folder, folder / "labels.csv")
            return ([(r.path, r.boxes, dataset.class_names[r.label]) for r in dataset.records[:limit]],
                    dataset.class_names)
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(path, [], None) for path in images[:limit]], None

    def for_model(self, model_class_names) -> list[int]:
        """The indices of the groups made for a model with these class names."""
        return [index for index, group in enumerate(self.groups) if group.belongs_to(model_class_names)]

    def find(self, digest: str | None) -> Example | None:
        """The example whose file has this content digest, else None (an upload)."""
        return None if digest is None else self._by_digest.get(digest)


def page_models(shelf: CheckpointShelf, examples: ExampleImages) -> list[str]:
    """The viewer's models in its order: ACoL models first, the teaching one (the model made for
    the first example folder, the bundled synthetic pictures) first of all."""
    return shelf.names(examples.groups[0].class_names if examples.groups else None)


def route_picture(shelf: CheckpointShelf, examples: ExampleImages, digest: str | None, model_name: str,
                  model_picked: bool) -> str:
    """The model that explains a new picture (the viewer's rule, and ``explain``'s without
    ``--checkpoint``): the chosen one if the user picked it or the picture is one of its examples;
    otherwise (an upload while the page's first model is shown, say) the everyday model, made for
    any photo."""
    everyday = shelf.everyday()
    if model_picked or everyday is None or digest is None:
        return model_name
    example = examples.find(digest)
    made_for = examples.for_model(shelf.class_names(model_name))
    return model_name if example is not None and example.group in made_for else everyday
