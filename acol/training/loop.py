"""The training loop's parts: a run's state between epochs (``Run``), one epoch of SGD steps over
it (``train_epoch``), that epoch's totals, and the check that stops a run that diverged (a NaN
loss, or an epoch's mean loss far above chance: a run can diverge without a NaN)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..core.model import ACoL
from ..data.transforms import make_loader
from .config import TrainConfig
from .recipe import learning_rate_scale, set_training_mode


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number, or an epoch's loss went far above chance level."""


# An epoch whose mean loss exceeds this many times the loss of guessing uniformly has diverged,
# even when every step stayed finite (a synthetic run at too high an lr sat at 8x, at chance
# accuracy). A healthy run starts near 1x and falls.
DIVERGED_LOSS_FACTOR = 3.0


def diverged(reason: str, out: Path) -> TrainingDiverged:
    return TrainingDiverged(f"{reason}; stopping. {out} keeps the last good checkpoint, if an earlier "
                            "epoch wrote one (try a lower --lr).")


@dataclass
class Run:
    """One training run's state between epochs (``acol.training.train.start_run`` makes it)."""

    config: TrainConfig
    out: Path
    device: torch.device
    distributed: bool                  # under torchrun, one of several processes
    is_main: bool                      # the process that validates and writes the run folder
    model: ACoL
    trained: torch.nn.Module           # what the steps run: the model, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    train_set: object
    val_set: object
    start_epoch: int = 0               # epochs done before this process started (resumed)
    history: list[dict] = field(default_factory=list)  # the log's rows, one per epoch done
    sampler: object = None             # a DistributedSampler under torchrun
    cache: object = None               # with --cache-views: the training views' FeatureCache
    val_cache: object = None           # ... and the validation images'
    trainable_part: torch.nn.Module | None = None  # ... and the stages that run on them
    val_loader: object = None          # without a cache: the validation images
    steps_per_epoch: int = 0
    logger: object = None              # the main process's RunLogger
    weight_history: object = None      # with --history true: the TrainingHistory recorded into


@dataclass
class EpochTotals:
    """One epoch's training figures, summed over its images: the loss and A's top-1 (the log's
    train_loss and train_top1), and per branch (A, B) its loss and top-1. B's are on the features
    erased by the *label*'s map, as it trains."""

    branches: int
    lr_scale: float                    # the last step's (the epoch's start, if it had no step)
    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    branch_loss_sums: list = field(init=False)
    branch_correct: list = field(init=False)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.branch_loss_sums, self.branch_correct = [0.0] * self.branches, [0] * self.branches

    def add(self, output, loss: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one step's batch."""
        self.seen += len(labels)
        self.correct += (output.logits[0].argmax(1) == labels).sum().item()
        self.loss_sum += loss.item() * len(labels)
        with torch.no_grad():
            for b, branch_logits in enumerate(output.logits):
                self.branch_loss_sums[b] += F.cross_entropy(branch_logits.float(), labels).item() * len(labels)
                self.branch_correct[b] += (branch_logits.argmax(1) == labels).sum().item()

    def progress(self) -> dict:
        """What the progress bar shows."""
        return dict(loss=f"{self.loss_sum / self.seen:.3f}", acc=f"{self.correct / self.seen:.3f}",
                    img_s=f"{self.seen / (time.perf_counter() - self.started):.1f}")

    def all_reduce(self, device) -> None:
        """The totals over every process, so that each judges, and logs, the loss over all of them."""
        totals = torch.tensor([self.loss_sum, self.seen, self.correct, *self.branch_loss_sums, *self.branch_correct],
                              dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        self.loss_sum, self.seen, self.correct, *rest = totals.tolist()
        self.branch_loss_sums, self.branch_correct = rest[:self.branches], rest[self.branches:]

    def row(self, epoch: int, config: TrainConfig, branch_names: list[str]) -> dict:
        """The log's row of epoch ``epoch`` (counted from 0), before validation."""
        seen = max(self.seen, 1)
        return {"epoch": epoch + 1, "train_loss": round(self.loss_sum / seen, 4),
                "train_top1": round(100 * self.correct / seen, 2),
                **{f"train_loss_{b}": round(total / seen, 4) for b, total in zip(branch_names, self.branch_loss_sums)},
                **{f"train_top1_{b}": round(100 * hits / seen, 2) for b, hits in zip(branch_names, self.branch_correct)},
                "images_per_s": round(self.seen / (time.perf_counter() - self.started), 1),
                "lr": config.lr * self.lr_scale}  # the backbone's, frozen or not


def epoch_batches(run: Run, epoch: int):
    """``(batches, forward)``: the epoch's ``(inputs, labels)`` and the forward pass that trains
    on them: the cached frozen-stage outputs and the trainable stages, or the images and the model."""
    config = run.config
    # Seeding by epoch makes shuffling and augmentation the same whether or not we resumed.
    torch.manual_seed(config.seed * 1000 + epoch)
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    if run.cache is not None:  # cached frozen-stage outputs: only the trainable stages run
        batches = run.cache.epoch(config.batch_size, generator)
        return batches, lambda inputs, labels: run.model.forward_features(run.trainable_part(inputs), labels)
    loader = make_loader(run.train_set, config.batch_size, config.workers, shuffle=run.sampler is None,
                         sampler=run.sampler, drop_last=True, generator=generator)
    batches = ((images, labels) for images, labels, _ in loader)
    return batches, lambda images, labels: run.trained(images, target_class=labels)


def train_epoch(run: Run, epoch: int) -> EpochTotals:
    """Epoch ``epoch`` (counted from 0): its SGD steps (the learning rate set before each), then
    its totals over every process; raises ``TrainingDiverged`` as soon as the run diverged."""
    config, model, optimizer, device = run.config, run.model, run.optimizer, run.device
    batches, forward = epoch_batches(run, epoch)
    set_training_mode(model, config)  # the module DDP wraps, if it does
    totals = EpochTotals(config.num_branches, learning_rate_scale(epoch, config))
    bar = tqdm(batches, total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
               disable=not run.is_main, dynamic_ncols=True)
    for step, (inputs, labels) in enumerate(bar):
        if step >= run.steps_per_epoch:
            break
        totals.lr_scale = learning_rate_scale(epoch + step / run.steps_per_epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * totals.lr_scale
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            output = forward(inputs, labels)
            loss = ACoL.loss(output, labels)
        if not torch.isfinite(loss):
            raise diverged(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}", run.out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.keep_class_weights_nonnegative()
        totals.add(output, loss, labels)
        bar.set_postfix(**totals.progress())
    if run.distributed:
        totals.all_reduce(device)
    chance_loss = config.num_branches * math.log(len(run.train_set.class_names))
    if totals.loss_sum / max(totals.seen, 1) > DIVERGED_LOSS_FACTOR * chance_loss:
        raise diverged(f"epoch {epoch + 1}'s mean loss {totals.loss_sum / totals.seen:.2f} is over "
                       f"{DIVERGED_LOSS_FACTOR:g}x chance level ({chance_loss:.2f})", run.out)
    return totals
