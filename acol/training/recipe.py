"""What a run trains: its data (the paper's augmentation for training), its model (frozen stages
compute no gradients), its optimizer (the new heads learn faster) and its learning-rate schedule."""

from __future__ import annotations

import math

import torch

from ..core.model import ACoL
from ..data.datasets import SYNTHETIC_SPLITS, build_dataset
from ..data.transforms import eval_transform, resize_size_for, train_transform
from .config import TrainConfig


def build_datasets(config: TrainConfig, mean, std):
    """Training and validation datasets with the paper's augmentation for training."""
    train_tf = train_transform(config.input_size, mean, std, config.resize_size)
    val_tf = eval_transform(config.input_size, mean, std)
    if config.data == "synthetic":
        from ..data.synthetic import SyntheticParts
        size = resize_size_for(config.input_size)
        # Every run seed trains on the same pictures: a seed changes the initialization, the
        # order and the augmentation, never the data, so no seed ever trains on the validation,
        # example or held-out pictures (their generator seeds are SYNTHETIC_SPLITS'). Only the
        # training pictures may hold headless birds: every validation bird has a head to find.
        no_crest = config.synthetic_headless > 0
        return (SyntheticParts(config.synthetic_images, config.synthetic_classes, size, SYNTHETIC_SPLITS["train"][1],
                               train_tf, headless_fraction=config.synthetic_headless, no_crest=no_crest),
                SyntheticParts(max(config.synthetic_images // 4, 8), config.synthetic_classes, size,
                               SYNTHETIC_SPLITS["test"][1], val_tf, no_crest=no_crest))
    return (build_dataset(config.data, config.train_split, train_tf),
            build_dataset(config.data, config.val_split, val_tf))


def learning_rate_scale(progress: float, config: TrainConfig) -> float:
    """Linear warm-up, then a cosine from 1 to 0; ``progress`` is in epochs."""
    if progress < config.warmup_epochs:
        return (progress + 1e-3) / config.warmup_epochs
    span = max(config.epochs - config.warmup_epochs, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min((progress - config.warmup_epochs) / span, 1.0)))


def trainable_stages(config: TrainConfig, backbone) -> int:
    """How many of the backbone's last stages train: ``freeze_backbone`` means none."""
    if config.freeze_backbone:
        if config.trainable_stages:
            raise ValueError(f"--freeze-backbone true and --trainable-stages {config.trainable_stages} "
                             "disagree: leave one of them out")
        return 0
    count = len(backbone.stages) if config.trainable_stages is None else config.trainable_stages
    backbone.split(count)  # raises a clear error for a count this backbone does not have
    return count


def build_model(backbone, num_classes: int, config: TrainConfig) -> ACoL:
    """The run's model on ``backbone``; frozen stages stop computing gradients at all."""
    backbone.requires_grad_(False)
    for stage in backbone.trainable_modules(trainable_stages(config, backbone)):
        stage.requires_grad_(True)
    return ACoL(backbone, num_classes, config.erase_threshold, config.num_branches, config.head_width,
                config.head, config.nonnegative_class_weights)


def set_training_mode(model: ACoL, config: TrainConfig) -> None:
    """``model.train()``, but frozen stages keep their pretrained BatchNorm statistics."""
    model.train()
    trainable = model.backbone.trainable_modules(trainable_stages(config, model.backbone))
    for stage in model.backbone.stages[:len(model.backbone.stages) - len(trainable)]:
        stage.eval()


def make_optimizer(model: ACoL, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; the freshly initialized heads get ``head_lr_multiplier`` x the lr.
    Frozen stages are left out."""
    groups = [{"params": model.heads.parameters(), "base_lr": config.lr * config.head_lr_multiplier}]
    trainable = [p for stage in model.backbone.trainable_modules(trainable_stages(config, model.backbone))
                 for p in stage.parameters()]
    if trainable:
        groups.insert(0, {"params": trainable, "base_lr": config.lr})
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)
