"""The feature cache: run the frozen front of the backbone once per run, not once per epoch.

When only the last stage(s) of the backbone train (``--trainable-stages``), most of a step's time
goes to layers whose output never changes. So, once per run:

    each training image --(view v: a fixed random crop + flip)--> frozen stages --> float16 cache
                                                                  [images, views, C, h, w]
    each epoch: one cached view per image --> trainable stages --> classifiers A and B

The views are the ordinary training augmentation, drawn from a seed of their own
(``view_seed``), so view ``v`` of image ``i`` is the same picture in every run and every process:
runs with other seeds can share one cache file, and ``FixedViews`` gives the uncached path the
very same views (tests/test_feature_cache.py checks that both give the same loss and gradients).
Validation images have a single view, the evaluation transform.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.data import Dataset
from tqdm import tqdm

from ..core.checkpoint import write_safetensors
from .transforms import make_loader

FORMAT = "acol-feature-cache/1"


class FixedViews(Dataset):
    """``num_views`` fixed augmented views of every item of ``dataset``: item ``i * num_views + v``
    is view ``v`` of image ``i``, drawn with torch's RNG seeded from ``(view_seed, i, v)`` alone
    (the transform's crop and flip come from torch's global RNG)."""

    def __init__(self, dataset, num_views: int, view_seed: int = 0):
        self.dataset, self.num_views, self.view_seed = dataset, num_views, view_seed

    def __len__(self) -> int:
        return len(self.dataset) * self.num_views

    def __getitem__(self, index: int):
        image_index, view = divmod(index, self.num_views)
        torch.manual_seed(hash((self.view_seed, image_index, view)) % (2 ** 63))
        return self.dataset[image_index]


@dataclass
class FeatureCache:
    """The frozen stages' outputs of every image's views, and the labels."""

    views: torch.Tensor   # [images, views, C, h, w] float16
    labels: torch.Tensor  # [images] long
    targets: list[dict]   # per image: boxes, image_id, ... (of its first view), for validation
    key: dict             # what the cache was computed from; a cache is reused only for the same

    def epoch(self, batch_size: int, generator: torch.Generator):
        """One epoch of ``(frozen features float32, labels)`` batches: every image once, in a
        random order, each as one of its views drawn at random. The last partial batch is
        dropped, as the uncached loader does."""
        num_images, num_views = self.views.shape[:2]
        order = torch.randperm(num_images, generator=generator)
        view = torch.randint(num_views, (num_images,), generator=generator)
        for start in range(0, num_images - batch_size + 1, batch_size):
            chosen = order[start:start + batch_size]
            yield self.views[chosen, view[chosen]].float(), self.labels[chosen]

    def batches(self, batch_size: int):
        """``(features, labels, targets)`` of view 0 of every image in order: what
        ``acol.evaluation.scoring.run_inference`` takes in place of a loader."""
        for start in range(0, len(self.labels), batch_size):
            end = start + batch_size
            yield self.views[start:end, 0].float(), self.labels[start:end], self.targets[start:end]


@torch.inference_mode()
def compute_feature_cache(frozen, dataset, num_views: int, view_seed: int, key: dict,
                          batch_size: int = 32, workers: int = 1, device="cpu",
                          desc: str = "feature cache", dtype=torch.float16) -> FeatureCache:
    """Run ``frozen`` over ``num_views`` fixed views of every image of ``dataset``, kept as
    ``dtype`` (float16 halves the memory; tests use float32 to compare exactly)."""
    frozen.eval()
    loader = make_loader(FixedViews(dataset, num_views, view_seed), batch_size, workers)
    outputs, labels, targets = [], [], []
    for images, batch_labels, batch_targets in tqdm(loader, desc=desc, dynamic_ncols=True):
        outputs.append(frozen(images.to(device)).to(dtype).cpu())
        labels.append(batch_labels)
        targets += batch_targets
    views = torch.cat(outputs)
    views = views.view(len(dataset), num_views, *views.shape[1:])
    labels = torch.cat(labels).view(len(dataset), num_views)[:, 0].clone()
    return FeatureCache(views, labels, targets[::num_views], key)


def save_feature_cache(path: str | Path, cache: FeatureCache) -> Path:
    """Write the cache's tensors (safetensors) with its key in the metadata. Targets are not
    kept: a cache loaded from disk serves training, whose batches need labels only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, {"views": cache.views.contiguous(), "labels": cache.labels},
                      {"format": FORMAT, "key": json.dumps(cache.key, sort_keys=True)})
    return path


def load_feature_cache(path: str | Path, key: dict) -> FeatureCache | None:
    """The cache at ``path`` if it exists and was computed from exactly ``key``, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as file:
            metadata = file.metadata() or {}
    except Exception:  # noqa: BLE001  an unreadable cache is recomputed, never trusted
        return None
    if metadata.get("format") != FORMAT or metadata.get("key") != json.dumps(key, sort_keys=True):
        return None
    tensors = load_file(str(path))
    return FeatureCache(tensors["views"], tensors["labels"], [], key)
