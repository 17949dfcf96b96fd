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
step and after every epoch, in float16, with each epoch's figures (``acol.core.history``).
Every file is written atomically, so a kill leaves the previous good version in place.

With ``--trainable-stages N`` only the backbone's last N stages train (both branches' losses reach
them); the frozen front keeps its ImageNet weights and BatchNorm statistics, and with
``--cache-views V`` its output for V fixed augmented views of every image is computed once
(``acol.data.feature_cache``) and epochs run on the cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..core.backbones import create_backbone
from ..core.checkpoint import save_checkpoint
from ..core.device import resolve_device
from ..core.history import RUN_FILE as HISTORY_FILE, HistoryError, save_history
from ..data.feature_cache import FeatureCache, compute_feature_cache, load_feature_cache, save_feature_cache
from ..data.images import ImageLoadError
from ..data.transforms import make_loader
from ..evaluation.metrics import CAM_THRESHOLDS
from ..evaluation.scoring import compute_metrics, map_names, run_inference
from .config import TrainConfig, add_config_flags, config_values
from .loop import EpochTotals, Run, TrainingDiverged, train_epoch
from .recipe import build_datasets, build_model, make_optimizer, trainable_stages
from .recording import begin_or_continue, history_config, snapshot
from .run_folder import (RunFolderError, RunLogger, load_training_state, prepare_run_folder, save_run_file,
                         save_training_state)


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Run (or continue) training; returns the run folder."""
    run = start_run(config, resume)
    for epoch in range(run.start_epoch, config.epochs):
        totals = train_epoch(run, epoch)
        if run.is_main:
            end_epoch(run, epoch, totals)
        if run.distributed:
            dist.barrier()
    if run.is_main:
        run.logger.close()
    if run.distributed:
        dist.destroy_process_group()
    return run.out


def start_processes(config: TrainConfig) -> tuple[torch.device, bool, bool]:
    """``(device, distributed, is_main)``: under torchrun, this process's place in the group."""
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = resolve_device(config.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
    return device, distributed, not distributed or dist.get_rank() == 0


def start_run(config: TrainConfig, resume: bool) -> Run:
    """The run before its next epoch: its model, optimizer and data (a resumed run's as they were
    after its last epoch), its run folder, log and training history."""
    device, distributed, is_main = start_processes(config)
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
        prepare_run_folder(out, config)
    run = Run(config, out, device, distributed, is_main, model,
              torch.nn.parallel.DistributedDataParallel(model) if distributed else model, optimizer,
              train_set, val_set, start_epoch, history)
    feed(run)
    if is_main:
        run.logger = RunLogger(out, log_columns(config))
    if config.history and is_main:  # the model as it is before this run's first step: epoch 0, or the resumed one
        run.weight_history = begin_or_continue(
            out / HISTORY_FILE, model, history_config(model, config, train_set.class_names), start_epoch,
            history[start_epoch - 1] if 0 < start_epoch <= len(history) else {"epoch": start_epoch}, resume)
        save_run_file(out, start_epoch, lambda: save_history(out / HISTORY_FILE, run.weight_history))
    return run


def feed(run: Run) -> None:
    """How ``run``'s epochs get their data: a sampler under torchrun; the feature caches (with
    ``--cache-views``) or the validation loader; how many steps an epoch takes."""
    config = run.config
    run.sampler = DistributedSampler(run.train_set, seed=config.seed) if run.distributed else None
    if config.cache_views:
        if run.distributed:
            raise ValueError("--cache-views trains in one process; leave it out under torchrun")
        frozen, run.trainable_part = run.model.backbone.split(trainable_stages(config, run.model.backbone))
        run.cache, run.val_cache = feature_caches(config, frozen, run.train_set, run.val_set, run.device)
        run.steps_per_epoch = len(run.cache.labels) // config.batch_size
    else:
        run.val_loader = make_loader(run.val_set, config.batch_size, config.workers)
        processes = dist.get_world_size() if run.distributed else 1
        run.steps_per_epoch = math.ceil(len(run.train_set) / config.batch_size / processes)
    if config.max_steps_per_epoch:
        run.steps_per_epoch = min(run.steps_per_epoch, config.max_steps_per_epoch)


def log_columns(config: TrainConfig) -> list[str]:
    """The columns of log.csv: the training figures, each branch's, then the validation's."""
    branches = map_names(config.num_branches)[:config.num_branches]  # "A", "B": not "fused"
    return (["epoch", "train_loss", "train_top1"] + [f"train_loss_{b}" for b in branches]
            + [f"train_top1_{b}" for b in branches] + ["images_per_s", "lr"]
            + [f"val_{name}_{key}" for name in map_names(config.num_branches) for key in VALIDATION_METRICS])


def end_epoch(run: Run, epoch: int, totals: EpochTotals) -> None:
    """The main process's end of an epoch: its log row (validated when it is time), and the run
    folder's files written."""
    config = run.config
    row = totals.row(epoch, config, map_names(config.num_branches)[:config.num_branches])
    if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
        row.update(validate(run.model, run.val_loader, run.device) if run.val_cache is None else
                   validate(run.model, run.val_cache.batches(config.batch_size), run.device,
                            features=run.trainable_part, image_size=(config.input_size,) * 2))
    run.history.append(row)
    save_run_file(run.out, epoch + 1, lambda: save_epoch(run, epoch + 1, row))
    tqdm.write(", ".join(f"{k}={v}" for k, v in row.items()))


def save_epoch(run: Run, epochs_done: int, row: dict) -> None:
    """The run folder after ``epochs_done`` epochs: the model, the training history, the state a
    resumed run continues from, the log."""
    config, out = run.config, run.out
    save_checkpoint(out / "model.safetensors", run.model, backbone=config.backbone,
                    class_names=run.train_set.class_names, input_size=config.input_size,
                    recipe=asdict(config), metrics={"history": run.history}, half=config.half_checkpoint)
    if run.weight_history is not None:  # before the training state: a resumed run never lacks an epoch
        run.weight_history.append(epochs_done, snapshot(run.model, run.weight_history.names), row)
        save_history(out / HISTORY_FILE, run.weight_history)
    save_training_state(out / "resume.safetensors", run.model, run.optimizer, epochs_done, run.history)
    run.logger.log(run.history)


VALIDATION_METRICS = ("top1_cls", "gt_known_loc", "max_box_acc_v2")


def validate(model, loader, device, thresholds=CAM_THRESHOLDS[::5], **inference) -> dict:
    """Per-map top-1 classification, GT-known loc at the best threshold and MaxBoxAccV2
    (coarse thresholds, to stay quick); ``inference`` goes to ``run_inference``."""
    results = compute_metrics(run_inference(model, loader, device, progress=False, **inference),
                              thresholds=thresholds, progress=False)
    return {f"val_{name}_{key}": round(numbers[key], 2) for name, numbers in results["maps"].items()
            for key in VALIDATION_METRICS}


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
