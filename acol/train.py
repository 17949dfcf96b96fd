"""Train ACoL (or the CAM baseline, ``--num-branches 1``) with image labels only.

    python -m acol train --data ../shared/data/cub50 --backbone efficientnet_lite0 --epochs 24
    python -m acol train --config run.yaml --epochs 30      # flags override the file
    python -m acol train --resume runs/acol                 # continue a killed run
    python -m acol train --trainable-stages 1 --cache-views 8 ...  # last stage only, cached front
    torchrun --nproc_per_node 2 -m acol train ...           # DistributedDataParallel

A run folder holds ``config.json`` (the resolved config), ``log.csv`` (and TensorBoard events when
tensorboard is installed), ``model.safetensors`` (the latest model, loadable by
``load_checkpoint``) and ``resume.safetensors`` (optimizer, epoch, everything to continue).
With ``--history true`` it also holds ``history.safetensors``: the trained weights before the first
step and after every epoch, in float16, with each epoch's figures (``acol.history``).
Every file is written atomically, so a kill leaves the previous good version in place.

With ``--trainable-stages N`` only the backbone's last N stages train (both branches' losses reach
them); the frozen front keeps its ImageNet weights and BatchNorm statistics, and with
``--cache-views V`` its output for V fixed augmented views of every image is computed once
(``acol.feature_cache``) and epochs run on the cache.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from .backbones import create_backbone
from .checkpoint import atomic_path, model_config, save_checkpoint, write_safetensors
from .data import ImageLoadError, eval_transform, make_loader, train_transform
from .datasets import SYNTHETIC_SPLITS, build_dataset
from .device import resolve_device
from .evaluate import compute_metrics, map_names, run_inference
from .feature_cache import FeatureCache, compute_feature_cache, load_feature_cache, save_feature_cache
from .history import RUN_FILE as HISTORY_FILE, HistoryError, begin_or_continue, save_history, snapshot
from .metrics import CAM_THRESHOLDS
from .model import ACoL


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper's recipe on a small CPU budget."""

    data: str = "synthetic"           # a dataset root/CSV, or "synthetic" for the teaching set
    train_split: str = "train"        # the split trained on
    val_split: str = "test"           # cub50: the 500 "test" images are the validation split
    synthetic_images: int = 2000      # synthetic only: training images (validation: a quarter)
    synthetic_classes: int = 4        # synthetic only: classes (head colours), 2-8
    synthetic_headless: float = 0.0   # synthetic only: share of training birds whose head is hidden (class no-crest)
    backbone: str = "efficientnet_lite0"  # a name in acol.backbones.BACKBONES
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


class RunFolderError(RuntimeError):
    """The run folder cannot be written (full disk, read-only, permissions)."""


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number, or an epoch's loss went far above chance level."""


# An epoch whose mean loss exceeds this many times the loss of guessing uniformly has diverged,
# even when every step stayed finite (a synthetic run at too high an lr sat at 8x, at chance
# accuracy). A healthy run starts near 1x and falls.
DIVERGED_LOSS_FACTOR = 3.0


def diverged(reason: str, out: Path) -> TrainingDiverged:
    return TrainingDiverged(f"{reason}; stopping. {out} keeps the last good checkpoint, if an earlier "
                            "epoch wrote one (try a lower --lr).")


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


def parse_config(argv: list[str] | None) -> tuple[TrainConfig, bool]:
    """Flags > ``--config`` file > the run's saved config (with ``--resume``) > defaults."""
    parser = argparse.ArgumentParser(prog="python -m acol train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON file of TrainConfig fields")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder")
    add_config_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    saved = {}
    if args.resume:
        saved = json.loads((Path(args.resume) / "config.json").read_text())
        saved["out"] = args.resume
    values = config_values(parser, args, TrainConfig, saved)
    if values.get("weights") in ("none", "None", ""):
        values["weights"] = None
    config = TrainConfig(**values)
    if config.freeze_backbone and config.trainable_stages:
        parser.error(f"--freeze-backbone true and --trainable-stages {config.trainable_stages} disagree: "
                     "leave one of them out")
    try:
        resolve_device(config.device)
    except ValueError as error:
        parser.error(str(error))
    return config, bool(args.resume)


def build_datasets(config: TrainConfig, mean, std):
    """Training and validation datasets with the paper's augmentation for training."""
    train_tf = train_transform(config.input_size, mean, std, config.resize_size)
    val_tf = eval_transform(config.input_size, mean, std)
    if config.data == "synthetic":
        from .synthetic import SyntheticParts
        size = round(config.input_size * 256 / 224)
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


def save_training_state(path: Path, model: ACoL, optimizer, epoch: int, history: list[dict]) -> None:
    """Model + optimizer + progress in one safetensors file, written atomically."""
    optimizer_state = optimizer.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    metadata = {"format": "acol-train-state/1", "epoch": str(epoch), "history": json.dumps(history),
                "param_groups": json.dumps(optimizer_state["param_groups"])}
    write_safetensors(path, tensors, metadata)


def load_training_state(path: Path, model: ACoL, optimizer) -> tuple[int, list[dict]]:
    """Restore what ``save_training_state`` wrote; returns (epochs done, history)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata()
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    return int(metadata["epoch"]), json.loads(metadata["history"])


VALIDATION_METRICS = ("top1_cls", "gt_known_loc", "max_box_acc_v2")


def validate(model, loader, device, thresholds=CAM_THRESHOLDS[::5], **inference) -> dict:
    """Per-map top-1 classification, GT-known loc at the best threshold and MaxBoxAccV2
    (coarse thresholds, to stay quick); ``inference`` goes to ``run_inference``."""
    results = compute_metrics(run_inference(model, loader, device, progress=False, **inference),
                              thresholds=thresholds, progress=False)
    return {f"val_{name}_{key}": round(numbers[key], 2) for name, numbers in results["maps"].items()
            for key in VALIDATION_METRICS}


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Run (or continue) training; returns the run folder."""
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = resolve_device(config.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
    is_main = not distributed or dist.get_rank() == 0
    out = Path(config.out)
    torch.manual_seed(config.seed)  # the heads' initialization is part of the run
    backbone = create_backbone(config.backbone, config.weights)
    train_set, val_set = build_datasets(config, backbone.mean, backbone.std)
    model = build_model(backbone, len(train_set.class_names), config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    start_epoch, history = 0, []
    if resume and (out / "resume.safetensors").exists():
        start_epoch, history = load_training_state(out / "resume.safetensors", model, optimizer)
        for group, fresh in zip(optimizer.param_groups, make_optimizer(model, config).param_groups):
            group["base_lr"] = fresh["base_lr"]  # a resumed run may be given a new --lr
    if is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(".*.tmp-*"):  # half-written by a run killed while saving
                stale.unlink()
            write_text(out / "config.json", json.dumps(asdict(config), indent=2))
        except OSError as error:
            raise RunFolderError(f"cannot write to the run folder {out}: {error}") from error
    trained = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    sampler = DistributedSampler(train_set, seed=config.seed) if distributed else None
    cache = val_cache = None
    if config.cache_views:
        if distributed:
            raise ValueError("--cache-views trains in one process; leave it out under torchrun")
        frozen, trainable_part = model.backbone.split(trainable_stages(config, model.backbone))
        cache, val_cache = feature_caches(config, frozen, train_set, val_set, device)
        steps_per_epoch = len(cache.labels) // config.batch_size
    else:
        val_loader = make_loader(val_set, config.batch_size, config.workers)
        steps_per_epoch = math.ceil(len(train_set) / config.batch_size / (dist.get_world_size() if distributed else 1))
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    branches = map_names(config.num_branches)[:config.num_branches]  # "A", "B": not "fused"
    columns = (["epoch", "train_loss", "train_top1"] + [f"train_loss_{b}" for b in branches]
               + [f"train_top1_{b}" for b in branches] + ["images_per_s", "lr"]
               + [f"val_{name}_{key}" for name in map_names(config.num_branches) for key in VALIDATION_METRICS])
    logger = RunLogger(out, columns) if is_main else None
    weight_history = None
    if config.history and is_main:  # the model as it is before this run's first step: epoch 0, or the resumed one
        weight_history = begin_or_continue(
            out / HISTORY_FILE, model, history_config(model, config, train_set.class_names), start_epoch,
            history[start_epoch - 1] if 0 < start_epoch <= len(history) else {"epoch": start_epoch}, resume)
        save_run_file(out, start_epoch, lambda: save_history(out / HISTORY_FILE, weight_history))
    for epoch in range(start_epoch, config.epochs):
        # Seeding by epoch makes shuffling and augmentation the same whether or not we resumed.
        torch.manual_seed(config.seed * 1000 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        if cache is not None:  # cached frozen-stage outputs: only the trainable stages run
            batches = cache.epoch(config.batch_size, generator)
            forward = lambda inputs, labels: model.forward_features(trainable_part(inputs), labels)  # noqa: E731
        else:
            loader = make_loader(train_set, config.batch_size, config.workers, shuffle=sampler is None,
                                 sampler=sampler, drop_last=True, generator=generator)
            batches = ((images, labels) for images, labels, _ in loader)
            forward = lambda images, labels: trained(images, target_class=labels)  # noqa: E731
        set_training_mode(model, config)  # the module DDP wraps, if it does
        seen, correct, loss_sum, started = 0, 0, 0.0, time.perf_counter()
        # Per branch (A, B): training loss and top-1. B's are on the features erased by the
        # *label*'s map, as it trains; ``correct`` (the log's train_top1) is A's.
        branch_loss_sums, branch_correct = [0.0] * config.num_branches, [0] * config.num_branches
        lr_scale = learning_rate_scale(epoch, config)  # logged even if the loader yields nothing
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not is_main, dynamic_ncols=True)
        for step, (inputs, labels) in enumerate(bar):
            if step >= steps_per_epoch:
                break
            lr_scale = learning_rate_scale(epoch + step / steps_per_epoch, config)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * lr_scale
            inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                output = forward(inputs, labels)
                loss = ACoL.loss(output, labels)
            if not torch.isfinite(loss):
                raise diverged(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}", out)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.keep_class_weights_nonnegative()
            seen += len(labels)
            correct += (output.logits[0].argmax(1) == labels).sum().item()
            loss_sum += loss.item() * len(labels)
            with torch.no_grad():
                for b, branch_logits in enumerate(output.logits):
                    branch_loss_sums[b] += F.cross_entropy(branch_logits.float(), labels).item() * len(labels)
                    branch_correct[b] += (branch_logits.argmax(1) == labels).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / (time.perf_counter() - started):.1f}")
        if distributed:  # every process judges, and logs, the loss over all of them
            totals = torch.tensor([loss_sum, seen, correct, *branch_loss_sums, *branch_correct],
                                  dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            loss_sum, seen, correct, *rest = totals.tolist()
            branch_loss_sums, branch_correct = rest[:config.num_branches], rest[config.num_branches:]
        chance_loss = config.num_branches * math.log(len(train_set.class_names))
        if loss_sum / max(seen, 1) > DIVERGED_LOSS_FACTOR * chance_loss:
            raise diverged(f"epoch {epoch + 1}'s mean loss {loss_sum / seen:.2f} is over "
                           f"{DIVERGED_LOSS_FACTOR:g}x chance level ({chance_loss:.2f})", out)
        if is_main:
            row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 4),
                   "train_top1": round(100 * correct / max(seen, 1), 2),
                   **{f"train_loss_{b}": round(total / max(seen, 1), 4)
                      for b, total in zip(branches, branch_loss_sums)},
                   **{f"train_top1_{b}": round(100 * hits / max(seen, 1), 2)
                      for b, hits in zip(branches, branch_correct)},
                   "images_per_s": round(seen / (time.perf_counter() - started), 1),
                   "lr": config.lr * lr_scale}  # the backbone's, frozen or not
            if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
                row.update(validate(model, val_loader, device) if val_cache is None else
                           validate(model, val_cache.batches(config.batch_size), device,
                                    features=trainable_part, image_size=(config.input_size,) * 2))
            history.append(row)

            def save_epoch():
                save_checkpoint(out / "model.safetensors", model, backbone=config.backbone,
                                class_names=train_set.class_names, input_size=config.input_size,
                                recipe=asdict(config), metrics={"history": history},
                                half=config.half_checkpoint)
                if weight_history is not None:  # before the training state: a resumed run never lacks an epoch
                    weight_history.append(epoch + 1, snapshot(model, weight_history.names), row)
                    save_history(out / HISTORY_FILE, weight_history)
                save_training_state(out / "resume.safetensors", model, optimizer, epoch + 1, history)
                logger.log(history)
            save_run_file(out, epoch + 1, save_epoch)
            tqdm.write(", ".join(f"{k}={v}" for k, v in row.items()))
        if distributed:
            dist.barrier()
    if is_main:
        logger.close()
    if distributed:
        dist.destroy_process_group()
    return out


def save_run_file(out: Path, epoch: int, save) -> None:
    """Call ``save()``, turning a failed write into a ``RunFolderError`` that says how to go on."""
    try:
        save()
    except OSError as error:
        raise RunFolderError(f"{error}. Stopped after epoch {epoch}: {out} keeps the last "
                             f"checkpoint written in full. Fix the folder (space, permissions), "
                             f"then continue with --resume {out}.") from error


def history_config(model: ACoL, config: TrainConfig, class_names: list[str]) -> dict:
    """The run's model as its checkpoint's config describes it: what its history's fingerprint
    is read from (``acol.history.fingerprint``)."""
    return {"model": model_config(model, config.backbone), "class_names": list(class_names),
            "input_size": config.input_size}


def feature_caches(config: TrainConfig, frozen, train_set, val_set, device) -> tuple[FeatureCache, FeatureCache]:
    """The training views' cache (read from ``config.feature_cache`` when it was computed from
    the same data, backbone and views; computed and saved there otherwise) and the validation
    images' (computed, one view each: the evaluation transform)."""
    key = {"data": str(config.data), "split": config.train_split, "num_images": len(train_set),
           "backbone": config.backbone, "weights": str(config.weights), "input_size": config.input_size,
           "resize_size": config.resize_size, "trainable_stages": config.trainable_stages,
           "views": config.cache_views, "view_seed": config.view_seed}
    if config.data == "synthetic":
        key.update(synthetic_classes=config.synthetic_classes, synthetic_headless=config.synthetic_headless)
    path = Path(config.feature_cache or Path(config.out) / "feature_cache.safetensors")
    cache = load_feature_cache(path, key)
    if cache is None:
        cache = compute_feature_cache(frozen, train_set, config.cache_views, config.view_seed, key,
                                      config.batch_size, config.workers, device, desc="caching training views")
        save_feature_cache(path, cache)
    else:
        tqdm.write(f"feature cache: {path} ({tuple(cache.views.shape)})")
    val_cache = compute_feature_cache(frozen, val_set, 1, 0, {}, config.batch_size, config.workers, device,
                                      desc="caching validation images")
    return cache, val_cache


def write_text(path: Path, text: str) -> None:
    """Replace a small text file atomically (a kill leaves the old or the new one, never half)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


class RunLogger:
    """log.csv, rewritten from the run's whole history each epoch (so a resumed run's log holds
    each epoch once), and TensorBoard scalars when tensorboard is installed."""

    def __init__(self, out: Path, columns: list[str]):
        self.path, self.columns = out / "log.csv", columns
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def log(self, history: list[dict]) -> None:
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=self.columns, restval="")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.path, table.getvalue())
        if self.tensorboard is not None:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def main(argv: list[str] | None = None) -> int:
    config, resume = parse_config(argv)
    try:
        out = train(config, resume)
    except (TrainingDiverged, RunFolderError, ImageLoadError, HistoryError) as error:
        # An image that failed in a DataLoader worker arrives wrapped in the worker's traceback;
        # its last line is the message that names the file.
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        return 1
    print(f"run folder: {out}")
    return 0
