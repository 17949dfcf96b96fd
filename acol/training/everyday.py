"""The everyday model: ACoL on EfficientNet-Lite0's own 1,000 ImageNet classes, for any photo.

    photo -> EfficientNet-Lite0, ImageNet weights, frozen -> features [1280, 14, 14] (stride 16)
                                   |                                  |
                                   |          A = the network's own ImageNet classifier, read as a
                                   |          1x1 convolution: its logits are the network's, its
                                   |          map is the network's class activation map (CAM)
                                   |                                  |
                                   +-- zero where A's map >= delta <--+
                                             |
                                             +--> B: a 1x1 convolution trained here, the ACoL way

A never changes, so everything B learns from is computed once per run. And because B is linear,
its logits on the erased features are B applied to the *pooled kept features*:

    logit_B = W_B . (sum of the kept cells' features / all cells) + b_B

(an erased cell's features are 0, so it adds only the bias, which pooling keeps whole). So the
cache holds one 1280-vector per photo, view and delta, and B trains in seconds: cross-entropy with
the photo's ImageNet label where the pool has one and A's own prediction elsewhere, optionally
pulled toward A (``anchor_weight``) and toward A's soft outputs (``distill_weight``).

    python -m acol train-everyday --config configs/everyday_lite0.yaml --seed 0 --out runs/everyday_s0
    python -m acol evaluate runs/everyday_s0/model.safetensors ../shared/data/imagenet_val --out runs/eval_everyday_s0
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.backbones import create_backbone
from ..core.checkpoint import save_checkpoint, write_safetensors
from ..core.efficientnet import efficientnet_lite0_imagenet_state_dict
from ..core.maps import normalize_maps
from ..core.model import ACoL
from ..data.feature_cache import FixedViews
from ..data.records import BoxDataset, ImageRecord
from ..data.transforms import make_loader, train_transform
from .config import add_config_flags, config_values

BACKBONE = "efficientnet_lite0_head"
UNLABELLED = -1  # a pool photo without an ImageNet label: B learns A's prediction for it


@dataclass
class EverydayConfig:
    """Everything that defines a run of B's training. Defaults: the shipped recipe."""

    pool: str = "../shared/data/everyday_pool"  # the photos B trains on (README's three CSVs)
    val_data: str = "../shared/data/imagenet_val"  # wsolevaluation-layout photos with boxes, to validate on
    input_size: int = 224             # the square side the network sees, in pixels
    erase_threshold: float = 0.6      # delta: B sees the features erased where A's map >= it
    views: int = 2                    # fixed random crops + flips of every pool photo
    view_seed: int = 0                # the views' crops and flips (the same for every run seed)
    b_init: str = "a"                 # B starts as a copy of A ("a") or from zero weights ("zero")
    nonnegative_b: bool = False       # clip B's class weights to >= 0: its map adds evidence, never subtracts it
    epochs: int = 8                   # passes over the pool's cached views
    batch_size: int = 256             # photo-views per step
    lr: float = 0.01                  # SGD lr (momentum 0.9, cosine to 0)
    anchor_weight: float = 0.0        # L2 pull of B's weights toward A's (keeps B near the pretrained classifier)
    distill_weight: float = 0.0       # share of the loss that matches A's soft outputs instead of the hard label
    temperature: float = 2.0          # distillation temperature
    seed: int = 0                     # shuffling and the views drawn in each epoch
    cache: str = "runs/everyday_cache.safetensors"  # pooled features, shared by runs with the same key
    out: str = "runs/everyday"        # the run folder: model.safetensors, log.json


# ----------------------------------------------------------------------------------------------
# The model


def imagenet_class_names(val_data: str | Path) -> list[str]:
    """The 1,000 class names, line k naming class k (wsolevaluation's ``class_names.txt``)."""
    names = Path(val_data, "class_names.txt").read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise ValueError(f"{val_data}/class_names.txt: expected 1000 class names, got {len(names)}")
    return names


def everyday_model(erase_threshold: float = 0.6, b_init: str = "a") -> ACoL:
    """ACoL whose branch A is EfficientNet-Lite0's ImageNet classifier as a 1x1 convolution on its
    1280-channel features, and whose B starts as a copy of A or from zero."""
    model = ACoL(create_backbone(BACKBONE, weights="imagenet"), num_classes=1000,
                 erase_threshold=erase_threshold, num_branches=2, head="linear")
    state = efficientnet_lite0_imagenet_state_dict()
    weight, bias = state["classifier.weight"][:, :, None, None], state["classifier.bias"]
    for index, head in enumerate(model.heads):
        start = index == 0 or b_init == "a"
        head.class_layer.weight.data.copy_(weight if start else torch.zeros_like(weight))
        head.class_layer.bias.data.copy_(bias if start else torch.zeros_like(bias))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# The pool: 5,864 everyday photos, 1,000 of them with an ImageNet label


class EverydayPool(BoxDataset):
    """The photos of ``everyday_pool``: ``imagenet_samples.csv`` (labelled) and every photo named
    in ``voc_animals_objects.csv`` and ``coco128_objects.csv`` (label ``UNLABELLED``; their object
    boxes are kept, class-agnostic)."""

    def __init__(self, root: str | Path, transform=None):
        self.root, self.transform = Path(root), transform
        self.class_names = [f"class_{k}" for k in range(1000)]
        self.records = []
        for name, label_column in (("imagenet_samples.csv", "label"), ("voc_animals_objects.csv", None),
                                   ("coco128_objects.csv", None)):
            boxes_of, label_of = {}, {}
            with open(self.root / name, newline="", encoding="utf-8") as file:
                for row in csv.DictReader(file):
                    label_of[row["path"]] = int(row[label_column]) if label_column else UNLABELLED
                    boxes = boxes_of.setdefault(row["path"], [])
                    if row["x0"]:
                        boxes.append(tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1")))
            self.records += [ImageRecord(self.root / path, label_of[path], image_id=path, boxes=boxes)
                             for path, boxes in boxes_of.items()]


# ----------------------------------------------------------------------------------------------
# The cache: what B's training needs, computed once


DELTAS = (0.4, 0.5, 0.6, 0.7, 0.8)  # the erase thresholds the cache holds pooled features for


@dataclass
class PooledViews:
    """Per pool photo and view: the kept features pooled for every delta, and A's logits."""

    kept: torch.Tensor     # [photos, views, deltas, 1280] float16: sum of kept cells / all cells
    a_logits: torch.Tensor  # [photos, views, 1000] float16
    labels: torch.Tensor   # [photos] long, UNLABELLED where the pool has no ImageNet label
    deltas: tuple[float, ...]

    def targets(self) -> torch.Tensor:
        """[photos, views]: what B learns (``erasing_targets``) on every view."""
        return erasing_targets(self.labels[:, None], self.a_logits.float())


def erasing_targets(labels: torch.Tensor, a_logits: torch.Tensor) -> torch.Tensor:
    """The class whose A map is erased and which B learns: the label where the pool has one, A's
    own top-1 elsewhere (``UNLABELLED``)."""
    return torch.where(labels >= 0, labels, a_logits.argmax(-1))


@torch.inference_mode()
def pool_views(model: ACoL, dataset, views: int, view_seed: int, batch_size: int = 32,
               workers: int = 1, deltas=DELTAS) -> PooledViews:
    """Run the frozen backbone and A over ``views`` fixed views of every photo of ``dataset``."""
    loader = make_loader(FixedViews(dataset, views, view_seed), batch_size, workers)
    kept, a_logits, labels = [], [], []
    for images, batch_labels, _ in tqdm(loader, desc="pooling the pool's views", dynamic_ncols=True):
        features = model.backbone(images)
        class_map = model.heads[0](features)
        logits = class_map.mean((2, 3))
        target = erasing_targets(batch_labels, logits)
        a_map = normalize_maps(class_map[torch.arange(len(target)), target])
        kept.append(torch.stack([(features * (a_map < delta).unsqueeze(1)).mean((2, 3)) for delta in deltas], 1).half())
        a_logits.append(logits.half())
        labels.append(batch_labels)
    kept, a_logits = torch.cat(kept), torch.cat(a_logits)
    return PooledViews(kept.view(len(dataset), views, *kept.shape[1:]),
                       a_logits.view(len(dataset), views, -1),
                       torch.cat(labels).view(len(dataset), views)[:, 0].clone(), tuple(deltas))


def cached_pool_views(config: EverydayConfig, model: ACoL) -> PooledViews:
    """``pool_views`` read from ``config.cache`` when computed from the same photos and views."""
    key = json.dumps({"pool": str(config.pool), "backbone": BACKBONE, "input_size": config.input_size,
                      "views": config.views, "view_seed": config.view_seed, "deltas": DELTAS}, sort_keys=True)
    path = Path(config.cache)
    if path.is_file():
        from safetensors import safe_open
        with safe_open(str(path), "pt") as file:
            if (file.metadata() or {}).get("key") == key:
                return PooledViews(file.get_tensor("kept"), file.get_tensor("a_logits"),
                                   file.get_tensor("labels"), DELTAS)
    pool = EverydayPool(config.pool, train_transform(config.input_size, model.backbone.mean, model.backbone.std))
    pooled = pool_views(model, pool, config.views, config.view_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, {"kept": pooled.kept, "a_logits": pooled.a_logits, "labels": pooled.labels},
                      {"key": key})
    return pooled


# ----------------------------------------------------------------------------------------------
# Training B


def branch_b_loss(logits: torch.Tensor, targets: torch.Tensor, a_logits: torch.Tensor, b_layer: nn.Conv2d,
                  a_layer: nn.Conv2d, config: EverydayConfig) -> torch.Tensor:
    """Cross-entropy with the target, blended with matching A's soft outputs, plus the pull
    toward A's weights."""
    loss = F.cross_entropy(logits, targets)
    if config.distill_weight:
        t = config.temperature
        soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(a_logits / t, -1),
                        log_target=True, reduction="batchmean") * t * t
        loss = (1 - config.distill_weight) * loss + config.distill_weight * soft
    if config.anchor_weight:
        loss = loss + config.anchor_weight * (b_layer.weight - a_layer.weight).pow(2).sum()
    return loss


def train_branch_b(model: ACoL, pooled: PooledViews, config: EverydayConfig) -> list[dict]:
    """Train B's 1x1 layer on the pooled erased features (A and the backbone stay as they are)."""
    if config.erase_threshold not in pooled.deltas:
        raise ValueError(f"erase_threshold {config.erase_threshold} is not cached; choose one of {pooled.deltas}")
    delta = pooled.deltas.index(config.erase_threshold)
    a_layer, b_layer = model.heads[0].class_layer, model.heads[1].class_layer
    kept = pooled.kept[:, :, delta].float()
    targets, a_logits = pooled.targets(), pooled.a_logits.float()
    generator = torch.Generator().manual_seed(config.seed)
    clip = (lambda: b_layer.weight.data.clamp_(min=0)) if config.nonnegative_b else (lambda: None)
    clip()
    optimizer = torch.optim.SGD(b_layer.parameters(), lr=config.lr, momentum=0.9)
    steps_per_epoch = len(kept) // config.batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps_per_epoch)
    history = []
    with torch.enable_grad():
        for epoch in range(config.epochs):
            order = torch.randperm(len(kept), generator=generator)
            view = torch.randint(kept.shape[1], (len(kept),), generator=generator)
            total, right = 0.0, 0
            for step in range(steps_per_epoch):
                chosen = order[step * config.batch_size:(step + 1) * config.batch_size]
                inputs = kept[chosen, view[chosen]]
                logits = F.linear(inputs, b_layer.weight.flatten(1), b_layer.bias)
                loss = branch_b_loss(logits, targets[chosen, view[chosen]], a_logits[chosen, view[chosen]],
                                     b_layer, a_layer, config)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                clip()
                scheduler.step()
                total += loss.item()
                right += int((logits.argmax(1) == targets[chosen, view[chosen]]).sum())
            history.append({"epoch": epoch + 1, "loss": round(total / steps_per_epoch, 4),
                            "train_b_right": round(100 * right / (steps_per_epoch * config.batch_size), 2)})
            tqdm.write(", ".join(f"{k}={v}" for k, v in history[-1].items()))
    return history


# ----------------------------------------------------------------------------------------------
# The command


DESCRIPTION = ("The everyday model: EfficientNet-Lite0's own ImageNet classifier is branch A (its map is "
               "the pretrained network's CAM), and branch B, trained the ACoL way on 5,864 everyday photos, "
               "sees the features with A's region erased. It knows the 1,000 ImageNet classes.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acol train-everyday", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON file of EverydayConfig fields")
    add_config_flags(parser, EverydayConfig)
    args = parser.parse_args(argv)
    config = EverydayConfig(**config_values(parser, args, EverydayConfig))
    if config.b_init not in ("a", "zero"):
        parser.error(f"--b-init is 'a' or 'zero', got {config.b_init!r}")
    torch.manual_seed(config.seed)
    model = everyday_model(config.erase_threshold, config.b_init)
    history = train_branch_b(model, cached_pool_views(config, model), config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.safetensors", model, backbone=BACKBONE,
                    class_names=imagenet_class_names(config.val_data), input_size=config.input_size,
                    recipe=asdict(config), metrics={"history": history}, half=True, description=DESCRIPTION)
    (out / "log.json").write_text(json.dumps({"config": asdict(config), "history": history}, indent=2))
    print(f"run folder: {out}; validate it with: python -m acol evaluate {out / 'model.safetensors'} "
          f"{config.val_data} --out runs/eval_{out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
