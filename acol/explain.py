"""Explain one image: run a checkpoint on it and keep what the pictures of it are drawn from.

This is the computing side of the viewer (``app.py``) and the command line::

    python -m acol explain bird.jpg -o bird_acol.png --erase-threshold 0.5

In code::

    explainer = Explainer.from_checkpoint("checkpoints/cub50_acol_efficientnet_lite0.safetensors")
    explanation = explainer.explain(load_rgb_image("bird.jpg"))           # backbone + every branch
    explanation = explainer.reexplain(explanation, erase_threshold=0.4)    # erasing + branch B only
    write_figure_png(render_panels(explanation, box_threshold=0.2), "bird_acol.png")

An :class:`Explanation` keeps its image's backbone features, so a new erase threshold or class
re-runs only the erasing and the later branches (``ACoL.reexplain``): that is what keeps the
viewer's slider live on a CPU. How an explanation becomes pictures and the exported figure
(``render_panels``, ``write_figure_png``) is ``acol.drawing``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from .checkpoint import CheckpointError, load_checkpoint, read_metadata
from .data import CSVBoxDataset, CUBDataset, ImageLoadError, eval_transform, load_rgb_image
from .drawing import DISPLAY_SIDE, _scaled_size, render_panels, write_figure_png
from .model import ACoL, ACoLOutput

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "cub50_acol_efficientnet_lite0.safetensors"
MAX_IMAGE_SIDE = 1024    # larger uploads are shrunk first: the model only sees input_size pixels
SWEEP_DELTAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_BOX_THRESHOLD = 0.2


# ----------------------------------------------------------------------------------------------
# Running the model


@dataclass
class Explanation:
    """One image explained by one model: what a viewer session caches between events."""

    model_name: str
    class_names: list[str]
    image: Image.Image         # upright RGB, at most MAX_IMAGE_SIDE: what other models re-run on
    true_boxes: np.ndarray     # [N, 4] xyxy in ``image`` pixels; N = 0 when unknown
    display: np.ndarray        # [H, W, 3] uint8, the picture every map is drawn on
    output: ACoLOutput         # a batch of one, holding the cached backbone features
    probabilities: torch.Tensor  # [num_classes], softmax of branch A's logits

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

    def display_boxes(self) -> np.ndarray:
        """The true boxes in ``display`` pixels (the display may stretch the image unevenly)."""
        scale = np.array([self.display.shape[1] / self.image.width, self.display.shape[0] / self.image.height] * 2)
        return self.true_boxes * scale


class Explainer:
    """A loaded checkpoint, ready to explain images; ``name`` is what the viewer calls it."""

    def __init__(self, model: ACoL, config: dict, name: str = "model"):
        self.model = model.eval()
        self.config = config
        self.name = name
        self.class_names = list(config["class_names"])
        self.transform = eval_transform(config["input_size"], config["mean"], config["std"])

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Explainer":
        """Load a ``.safetensors`` checkpoint (raises ``CheckpointError`` on a bad file)."""
        model, config = load_checkpoint(path)
        return cls(model, config, Path(path).stem)

    @property
    def is_acol(self) -> bool:
        """False for a one-branch CAM model, which has no erasing and no branch B."""
        return len(self.model.heads) > 1

    @property
    def default_box_threshold(self) -> float:
        """The box threshold chosen on validation data when the checkpoint records one."""
        chosen = self.config.get("metrics", {}).get("cam_thresholds", {})
        return float(chosen.get("fused", chosen.get("A", DEFAULT_BOX_THRESHOLD)))

    @torch.inference_mode()
    def explain(self, image: Image.Image, true_boxes=None, target_class: int | None = None,
                erase_threshold: float | None = None) -> Explanation:
        """Run the whole model once on an RGB ``image`` of any size.

        ``true_boxes`` ([N, 4] xyxy in ``image`` pixels) are drawn and scored when given.
        ``target_class=None`` explains branch A's top-1 class; ``erase_threshold=None`` uses the
        model's own. The image is resized to the model's square input, as in evaluation.
        """
        true_boxes = np.asarray([] if true_boxes is None else true_boxes, dtype=np.float32).reshape(-1, 4)
        if max(image.size) > MAX_IMAGE_SIDE:
            scale = MAX_IMAGE_SIDE / max(image.size)
            resized = image.resize(_scaled_size(image.size, scale), Image.Resampling.BILINEAR, reducing_gap=2.0)
            true_boxes = true_boxes * np.array([resized.width / image.width, resized.height / image.height] * 2)
            image = resized
        batch = self.transform(pil_to_tensor(image)).unsqueeze(0)
        target = None if target_class is None else torch.tensor([target_class])
        output = self.model(batch, target, erase_threshold)
        display_size = _scaled_size(image.size, DISPLAY_SIDE / max(image.size))
        display = np.asarray(image.resize(display_size, Image.Resampling.BILINEAR))
        return Explanation(self.name, self.class_names, image, true_boxes, display, output,
                           output.logits[0][0].softmax(-1))

    @torch.inference_mode()
    def reexplain(self, explanation: Explanation, target_class: int | None = None,
                  erase_threshold: float | None = None) -> Explanation:
        """The same image with a new class or erase threshold (None keeps the current one).

        Reuses the cached backbone features and branch A's maps; only the erasing and the later
        branches run again. A CAM model has nothing to erase, so only its class can change.
        """
        target = explanation.target_class if target_class is None else target_class
        threshold = explanation.erase_threshold if erase_threshold is None else erase_threshold
        output = self.model.reexplain(explanation.output, torch.tensor([target]), threshold)
        return replace(explanation, output=output)

    def sweep(self, explanation: Explanation, deltas=SWEEP_DELTAS) -> list[Explanation]:
        """The explanation at each erase threshold in ``deltas`` (cheap: re-explains only)."""
        return [self.reexplain(explanation, erase_threshold=delta) for delta in deltas]


def top_classes(explanation: Explanation, k: int = 5) -> list[tuple[int, str, float]]:
    """``(class index, name, probability)`` of the ``k`` most probable classes.

    Probabilities are the softmax of branch A's logits: branch A sees the whole image, so they
    do not change while the erase threshold or the driving class moves (B's logits would).
    """
    probabilities, indices = explanation.probabilities.topk(min(k, len(explanation.probabilities)))
    return [(int(i), explanation.class_names[int(i)], float(p)) for p, i in zip(probabilities, indices)]


def resolve_class(name_or_index: str | int, class_names: list[str]) -> int:
    """A class index from an index, an exact name (any case) or a unique part of a name."""
    text = str(name_or_index).strip()
    if text.isdigit():
        if int(text) < len(class_names):
            return int(text)
        raise ValueError(f"class index {text} out of range: the model has {len(class_names)} classes")
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    matches = [i for i, name in enumerate(lowered) if text.lower() in name]
    if len(matches) == 1:
        return matches[0]
    candidates = [class_names[i] for i in matches] or class_names
    raise ValueError(f"class {text!r} is {'ambiguous' if matches else 'unknown'}; "
                     f"choose one of: {', '.join(candidates[:20])}{' ...' if len(candidates) > 20 else ''}")


# ----------------------------------------------------------------------------------------------
# What the viewer keeps and offers


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
            baseline = explainer.explain(current.image, current.true_boxes, current.target_class)
        return replace(self, baseline=baseline)


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

    def names(self) -> list[str]:
        """Every checkpoint, ACoL models before one-branch CAM baselines."""
        return sorted(self.configs, key=lambda name: (not self.is_acol(name), name))

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
        if name not in self._explainers:
            self._explainers[name] = Explainer.from_checkpoint(self.folder / f"{name}.safetensors")
        return self._explainers[name]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ExampleImages:
    """Example pictures for the viewer, with their true boxes when the folder has them: a
    CUB-layout root (images.txt + bounding_boxes.txt; a few test images of distinct classes), a
    folder with ``labels.csv`` (as ``acol.synthetic.write_examples`` writes), or plain images.

    Gradio hands callbacks a copy of an example, not its path, so boxes are found by content.
    """

    def __init__(self, folders=(), limit: int = 12):
        self.paths: list[str] = []
        self._boxes_by_digest: dict[str, np.ndarray] = {}
        for folder in map(Path, folders):
            for path, boxes in self._find(folder, limit):
                self.paths.append(str(path))
                if len(boxes):
                    self._boxes_by_digest[_digest(path)] = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

    @staticmethod
    def _find(folder: Path, limit: int):
        if (folder / "images.txt").is_file() and (folder / "bounding_boxes.txt").is_file():
            records, seen = [], set()
            for record in CUBDataset(folder, "test").records:  # one image per class
                if record.label not in seen:
                    seen.add(record.label)
                    records.append(record)
            return [(r.path, r.boxes) for r in records[:limit]]
        if (folder / "labels.csv").is_file():
            return [(r.path, r.boxes) for r in CSVBoxDataset(folder, folder / "labels.csv").records[:limit]]
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(path, []) for path in images[:limit]]

    def true_boxes(self, path: str | Path) -> np.ndarray | None:
        """The true boxes of the image file at ``path`` if it is one of the examples."""
        return self._boxes_by_digest.get(_digest(path))


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """``python -m acol explain IMAGE -o FIG.png``: the viewer's four-panel figure of one image."""
    parser = argparse.ArgumentParser(prog="python -m acol explain",
                                     description="Write the four-panel ACoL figure of one image "
                                                 "(the same figure the viewer exports).")
    parser.add_argument("image")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--erase-threshold", type=float, default=None,
                        help="erase threshold delta (default: the model's)")
    parser.add_argument("--class", dest="class_", default=None,
                        help="class to explain, by index or name (default: branch A's top-1)")
    parser.add_argument("--box-threshold", type=float, default=None,
                        help="box threshold as a fraction of the map's peak (default: the checkpoint's)")
    parser.add_argument("--true-box", type=float, nargs=4, action="append", metavar=("X0", "Y0", "X1", "Y1"),
                        help="the object's true box in image pixels, to draw and score (repeatable)")
    args = parser.parse_args(argv)
    try:
        explainer = Explainer.from_checkpoint(args.checkpoint)
        image = load_rgb_image(args.image)
        target = None if args.class_ is None else resolve_class(args.class_, explainer.class_names)
    except (ValueError, ImageLoadError) as error:  # CheckpointError is a ValueError too
        print(f"error: {error}", file=sys.stderr)
        return 1
    explanation = explainer.explain(image, args.true_box, target, args.erase_threshold)
    box_threshold = explainer.default_box_threshold if args.box_threshold is None else args.box_threshold
    panels = render_panels(explanation, box_threshold)
    try:
        path = write_figure_png(panels, args.output)
    except OSError as error:
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return 1
    for index, name, probability in top_classes(explanation):
        print(f"{probability:7.1%}  {name}")
    print(f"{panels.caption}\nwrote {path}")
    return 0
