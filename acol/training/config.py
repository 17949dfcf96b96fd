"""A training run's config: every field of ``TrainConfig`` is a flag and a config-file key.

Flags > ``--config`` file (YAML or JSON) > the run's saved config (with ``--resume``) > defaults.
Each field's trailing comment is its flag's help text; a boolean flag takes true/false/yes/no/1/0
and refuses anything else.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper's recipe on a small CPU budget."""

    data: str = "synthetic"           # a dataset root/CSV, or "synthetic" for the teaching set
    train_split: str = "train"        # the split trained on
    val_split: str = "test"           # cub50: the 500 "test" images are the validation split
    synthetic_images: int = 2000      # synthetic only: training images (validation: a quarter)
    synthetic_classes: int = 4        # synthetic only: classes (head colours), 2-8
    synthetic_headless: float = 0.0   # synthetic only: share of training birds whose head is hidden (class no-crest)
    backbone: str = "efficientnet_lite0"  # a name in acol.core.backbones.BACKBONES
    weights: str | None = "imagenet"  # "imagenet", a local file, or None for random init
    num_branches: int = 2             # 1 = CAM baseline, 2 = ACoL
    erase_threshold: float = 0.6      # delta: erase the features where A's normalized map >= it
    head: str = "paper"               # "paper" (conv3x3 x2 -> conv1x1) or "linear" (ReLU -> conv1x1)
    head_width: int = 1024            # the paper head's width ("linear" has no hidden layer)
    nonnegative_class_weights: bool = False  # keep each class layer's weights >= 0
    freeze_backbone: bool = False     # train the heads only, on fixed (ImageNet) features
    trainable_stages: int | None = None  # only the backbone's last N stages train; None = all
    cache_views: int = 0              # with trainable_stages: cache the frozen stages' output for N views an image
    view_seed: int = 0                # the cached views' crops and flips (the same for every run seed)
    feature_cache: str | None = None  # the cache file (default: <out>/feature_cache.safetensors)
    input_size: int = 224             # the square side the network sees, in pixels
    resize_size: int | None = None    # default: input_size * 256 / 224 (the paper's 256 -> 224)
    epochs: int = 30                  # passes over the training set
    batch_size: int = 32              # images per SGD step
    lr: float = 1e-3                  # backbone; the new classifier heads learn 10x faster
    head_lr_multiplier: float = 10.0  # the heads' lr is lr times this
    momentum: float = 0.9             # SGD momentum
    weight_decay: float = 1e-4        # SGD weight decay, every trained parameter
    warmup_epochs: float = 1.0        # linear lr warm-up, then a cosine to 0
    seed: int = 0                     # heads' init, shuffling and augmentation
    workers: int = 1                  # loader processes (on 2 cores one keeps the model fed: bench/train_speed.py)
    device: str = "auto"              # "auto" (CUDA if there is one), "cpu", "cuda:1", ...
    out: str = "runs/acol"            # the run folder
    max_steps_per_epoch: int | None = None  # cut epochs short (tests, smoke runs)
    val_every: int = 1                # validate every N epochs (and always after the last)
    half_checkpoint: bool = True      # store model.safetensors in float16 (half the size)
    history: bool = False             # keep every epoch's trained weights (float16) in <out>/history.safetensors


def parse_bool(text: str) -> bool:
    """A boolean flag's value; anything but a clear yes or no is an error, never False."""
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


_FLAG_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str, "bool": parse_bool}


def field_comments(cls) -> dict[str, str]:
    """Each dataclass field's trailing ``# comment`` in the source: the flags' help text."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if match:
            comments[match[1]] = match[2].strip()
    return comments


def load_config(path: str | Path) -> dict:
    """Read a run config from YAML or JSON."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml
        return yaml.safe_load(text) or {}
    return json.loads(text)


def add_config_flags(parser: argparse.ArgumentParser, config_class) -> None:
    """One ``--flag`` for every field of the dataclass ``config_class``, its comment as help."""
    comments = field_comments(config_class)
    for field in fields(config_class):
        default = "" if field.default is None else f" (default: {field.default})"
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=_FLAG_TYPES[field.type],
                            metavar=field.type.split(" ")[0].upper(),
                            help=comments.get(field.name, "") + default)


def config_values(parser: argparse.ArgumentParser, args, config_class, values: dict | None = None) -> dict:
    """Flags > ``--config`` file > ``values`` (a saved run's) > the dataclass defaults."""
    values = dict(values or {})
    if args.config:
        values.update(load_config(args.config))
    values.update({f.name: getattr(args, f.name) for f in fields(config_class) if getattr(args, f.name) is not None})
    unknown = set(values) - {f.name for f in fields(config_class)}
    if unknown:
        parser.error(f"unknown config keys: {sorted(unknown)}")
    return values

