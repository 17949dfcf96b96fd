"""What only a serving viewer needs: how the server stays small, responsive and confined.

``acol.explain`` explains one image; a server explains images for many users all day, on a small
CPU host, from requests it cannot trust. Read top to bottom:

- ``ViewerCache``: one browser tab's memory between events (its explanation, with the backbone
  features a slider move reuses, and the CAM baseline's), so an event recomputes only what moved.
- ``call_with_timeout``: a request runs in a small, shared pool of threads and is abandoned with
  ``RequestTimeout`` past its time limit, so one slow upload cannot hold a user's page forever.
- glibc allocator tuning (``map_large_blocks_separately``, ``trim_freed_memory``,
  ``keep_trimming_freed_memory``): large blocks are returned when freed and the rest trimmed
  every few seconds, so memory stays flat under load instead of growing with every request.
- ``CheckpointShelf`` and ``ExampleImages``: what the page offers. Only the checkpoints listed at
  start-up can be chosen (a page request never names a path), each loaded on first use; each
  example folder belongs to the models whose class names include all its labels, and the
  examples' true boxes are found by the file's content, as Gradio hands callbacks a copy.

``app.py`` builds its page from these; nothing here imports Gradio.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError, read_metadata
from .data import CSVBoxDataset, CUBDataset
from .explain import DEFAULT_BOX_THRESHOLD, Explainer, Explanation, is_everyday


# ----------------------------------------------------------------------------------------------
# One session's memory


@dataclass
class ViewerCache:
    """One viewer session's memory between events (the app keeps one per browser tab in a
    ``gr.State``): the current explanation, with its backbone features, and the CAM baseline's
    explanation of the same image and class for the comparison view."""

    explanation: Explanation | None = None
    baseline: Explanation | None = None

    def with_baseline(self, explainer: Explainer) -> "ViewerCache":
        """This cache holding ``explainer``'s explanation of the same image and class (the CAM
        model runs only when the cached one is of another model or class)."""
        current, baseline = self.explanation, self.baseline
        if (baseline is None or baseline.model_name != explainer.name
                or baseline.target_class != current.target_class):
            baseline = explainer.explain(current.image, current.true_boxes, current.target_class,
                                         true_class=current.true_class)
        return replace(self, baseline=baseline)


# ----------------------------------------------------------------------------------------------
# A time limit for each request


class RequestTimeout(TimeoutError):
    """A viewer request that ran past its time limit."""


_request_workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="acol-request")


def call_with_timeout(timeout_s: float, function, *args, **kwargs):
    """``function(*args, **kwargs)``, or RequestTimeout if it has not returned in ``timeout_s``.

    Python cannot stop a thread, so an abandoned call still runs to its end in the background;
    the two workers bound how many can, and later requests wait for a free one within their own
    time limit (when the machine is swamped they time out too, rather than pile up).
    """
    future = _request_workers.submit(function, *args, **kwargs)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        future.cancel()  # still queued: never start it
        raise RequestTimeout(f"gave up after {timeout_s:g} s: the server is busy or the image too "
                             "slow to decode; try again or try a smaller image") from None


# ----------------------------------------------------------------------------------------------
# Memory that goes back to the system (glibc)


def _glibc_call(name: str, *args) -> bool:
    """``name(*args)`` from glibc, True if it reports success; False where there is no glibc
    (macOS, musl), whose allocators need none of this."""
    try:
        return bool(getattr(ctypes.CDLL(None), name)(*args))
    except (AttributeError, OSError):
        return False


def trim_freed_memory() -> bool:
    """Give the pages of memory this process has freed back to the system (glibc's
    ``malloc_trim``): glibc keeps freed heap memory for reuse, so a server that draws and frees
    pictures all day holds more than it uses. Once the load stops, this gives back 20-50 MB."""
    return _glibc_call("malloc_trim", 0)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's <malloc.h>
LARGE_BLOCK = 1 << 20        # bytes
TRIM_THRESHOLD = 128 << 10   # glibc's default, before it raised it while the model loaded


def map_large_blocks_separately(threshold_bytes: int = LARGE_BLOCK) -> bool:
    """Have glibc serve every block of ``threshold_bytes`` or more (decoded uploads, backbone
    activations) from its own memory map, returned to the system the moment it is freed, and
    keep no more than 128 KB free at the top of each heap.

    By default glibc raises the first threshold each time such a block is freed (from 128 KB up
    to 32 MB) and the second with it (to twice that), so the large, short-lived blocks of the
    server's many worker threads end up in their heaps, which grow in steps and never shrink:
    +8 KB a request over a 5-minute, 16-user soak (bench/app_load.py). With both fixed, the
    same soak stayed flat (+0.9 KB a request, within the ~20 MB the load makes RSS wobble) and
    went back to its starting RSS when the load stopped. Fixing only the first left +6 KB a
    request; a 4 MB top, +5.7. The price is fresh pages for every large block: the soak's
    server answered about a quarter fewer requests (~6,000 against ~8,000 in 300 s), and at a
    128 KB first threshold a third fewer.
    """
    return (_glibc_call("mallopt", M_MMAP_THRESHOLD, threshold_bytes)
            and _glibc_call("mallopt", M_TRIM_THRESHOLD, TRIM_THRESHOLD))


_trimmer: threading.Thread | None = None


def keep_trimming_freed_memory(every_s: float = 10.0) -> threading.Thread:
    """Run ``trim_freed_memory`` every ``every_s`` seconds in one daemon thread per process."""
    global _trimmer
    if _trimmer is None:
        def trim_forever():
            while True:
                time.sleep(every_s)
                trim_freed_memory()
        _trimmer = threading.Thread(target=trim_forever, name="acol-trim-freed-memory", daemon=True)
        _trimmer.start()
    return _trimmer

# ----------------------------------------------------------------------------------------------
# What the viewer offers


BRANCH_A = "_branch_A"  # the name suffix of an everyday model's branch A, listed as its CAM baseline


class CheckpointShelf:
    """The ``.safetensors`` checkpoints of a folder, each loaded on first use and then kept."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.configs = {}
        for path in sorted(self.folder.glob("*.safetensors")):
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

    def __getitem__(self, name: str) -> Explainer:
        # Only the files listed at start-up: a name from a page request never becomes a path.
        if name not in self.configs:
            raise CheckpointError(f"no checkpoint named {name!r} in this viewer's folder")
        if name not in self._explainers and name in self.branch_a_of:
            acol = self[self.branch_a_of[name]]
            self._explainers[name] = Explainer(acol.model.branch_a_alone(), self.configs[name], name)
        if name not in self._explainers:
            self._explainers[name] = Explainer.from_checkpoint(self.folder / f"{name}.safetensors")
        return self._explainers[name]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


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


class ExampleImages:
    """Example pictures for the viewer, in groups by folder, with their true boxes when the
    folder has them: a CUB-layout root (images.txt + bounding_boxes.txt; a few test images of
    distinct classes), a folder with ``labels.csv`` (as ``acol.synthetic.write_examples``
    writes), or plain images. A group belongs to the models whose class names include all of the
    folder's (``for_model``), so no example is run through a model that was not made for it.

    Gradio hands callbacks a copy of an example, not its path, so boxes are found by content.
    """

    def __init__(self, folders=(), limit: int = 12):
        self.groups: list[ExampleGroup] = []
        self._boxes_by_digest: dict[str, np.ndarray] = {}
        self._label_by_digest: dict[str, str] = {}
        self._group_by_digest: dict[str, int] = {}
        for folder in map(Path, folders):
            found, class_names = self._find(folder, limit)
            if not found:
                continue
            for path, boxes, label in found:
                digest = _digest(path)
                self._group_by_digest.setdefault(digest, len(self.groups))
                if label is not None:
                    self._label_by_digest.setdefault(digest, label)
                if len(boxes):
                    self._boxes_by_digest[digest] = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
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

    def group_of(self, path: str | Path | None) -> int | None:
        """The group the image file at ``path`` is an example of (by content), else None."""
        return None if path is None else self._group_by_digest.get(_digest(path))

    def true_boxes(self, path: str | Path) -> np.ndarray | None:
        """The true boxes of the image file at ``path`` if it is one of the examples."""
        return self._boxes_by_digest.get(_digest(path))

    def true_class(self, path: str | Path) -> str | None:
        """The class name the image file at ``path`` is labelled with if it is one of the examples."""
        return self._label_by_digest.get(_digest(path))


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
