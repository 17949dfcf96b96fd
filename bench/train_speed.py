"""Training cost: ACoL's step time against the CAM baseline's, and whether the data keeps up.

    python bench/train_speed.py [--steps 12] [--config configs/cub50_acol.yaml] [any train flag]

The recipe (backbone, input size, head width, batch, loader workers, optimizer) is the training
run's: ``--config`` and the flags of ``python -m acol train`` (default: the shipped CUB-50 config).

1. Step time (forward + backward + SGD step) of ACoL (2 branches) and CAM (1 branch) on the same
   backbone and batch, measured interleaved (in turn first) so that machine noise hits both;
   medians and their ratio.
2. Epoch time: one training epoch fed by a fresh loader, made as ``acol.training.train`` makes it each
   epoch (worker start-up and the first batch's wait included), against the same number of
   steps on one batch already in memory (pure compute). The pipeline keeps the model fed when
   the first is within 10% of the second.
3. With ``--trainable-stages N`` (only the last N backbone stages train): the cached path. The
   frozen stages' output for one view of every training image is computed (timed: a run with
   ``--cache-views V`` pays V times that, once), then one epoch on the cache is timed against
   the uncached epoch of 2. An epoch on the cache costs the same whatever the number of views.
"""

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from acol import create_backbone  # noqa: E402
from acol.data.transforms import make_loader  # noqa: E402
from acol.data.feature_cache import compute_feature_cache  # noqa: E402
from acol.training.recipe import (build_datasets, build_model, make_optimizer, set_training_mode,  # noqa: E402
                                 trainable_stages)
from acol.training.train import parse_config  # noqa: E402


def step(model, optimizer, images, labels, features=None):
    """One SGD step; ``features`` (the trainable stages) means ``images`` are cached frozen outputs."""
    output = (model(images, target_class=labels) if features is None
              else model.forward_features(features(images), labels))
    loss = model.loss(output, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.keep_class_weights_nonnegative()


def make(config, backbone, num_classes):
    """The run's model on ``backbone`` and its optimizer (heads at 10x the lr), as acol.training.train makes them."""
    model = build_model(backbone, num_classes, config)
    set_training_mode(model, config)
    return model, make_optimizer(model, config)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="steps timed per model for the step-time ratio")
    parser.add_argument("--epoch-steps", type=int, default=None,
                        help="time this many steps of each epoch and scale to a whole epoch (default: whole epochs)")
    args, train_flags = parser.parse_known_args()
    if "--config" not in train_flags:
        train_flags = ["--config", str(REPO / "configs" / "cub50_acol.yaml"), *train_flags]
    config, _ = parse_config(train_flags)

    acol_backbone, cam_backbone = (create_backbone(config.backbone, weights=config.weights) for _ in range(2))
    dataset, _ = build_datasets(config, acol_backbone.mean, acol_backbone.std)
    # Taken through the run's own loader, which also starts the process its workers are forked
    # from: a training run pays that once (about 3 s), not every epoch.
    images, labels, _ = next(iter(make_loader(dataset, config.batch_size, config.workers, shuffle=True)))
    acol = make(replace(config, num_branches=2), acol_backbone, dataset.num_classes)
    cam = make(replace(config, num_branches=1), cam_backbone, dataset.num_classes)
    step_ratio(config, args.steps, acol, cam, images, labels)
    epoch_steps = len(dataset) // config.batch_size
    timed_steps = min(args.epoch_steps or epoch_steps, epoch_steps)
    fed = epoch_time(config, acol, dataset, images, labels, timed_steps, epoch_steps)
    cached_epoch_time(config, acol, dataset, timed_steps, epoch_steps, fed)


def step_ratio(config, steps: int, acol, cam, images, labels) -> None:
    """ACoL's step time against the CAM baseline's, on one batch in memory, taking turns."""
    for model, optimizer in (acol, cam):
        step(model, optimizer, images, labels)  # warm-up
    times = {"ACoL": [], "CAM": []}
    pair = [("ACoL", *acol), ("CAM", *cam)]
    for round_index in range(steps):
        for name, model, optimizer in pair[::-1] if round_index % 2 else pair:  # neither always goes first
            started = time.perf_counter()
            step(model, optimizer, images, labels)
            times[name].append(time.perf_counter() - started)
    acol_ms, cam_ms = (1000 * statistics.median(times[name]) for name in ("ACoL", "CAM"))
    print(f"step time, batch {config.batch_size} at {config.input_size} px, {config.backbone}, {config.head} head"
          f"{f' {config.head_width} wide' if config.head == 'paper' else ''}"
          f"{', frozen backbone' if config.freeze_backbone else ''}"
          f"{f', last {config.trainable_stages} stage(s) training' if config.trainable_stages is not None else ''} (median of {steps}): ACoL {acol_ms:.0f} ms, CAM {cam_ms:.0f} ms, "
          f"ratio {acol_ms / cam_ms:.3f} (target <= 1.15)")


def epoch_time(config, acol, dataset, images, labels, timed_steps: int, epoch_steps: int) -> float:
    """One epoch of ACoL on a batch in memory against one fed by a fresh loader; returns the
    latter (s)."""
    model, optimizer = acol
    scale = epoch_steps / timed_steps  # 1 unless --epoch-steps: then an epoch is extrapolated
    started = time.perf_counter()
    for _ in range(timed_steps):
        step(model, optimizer, images, labels)
    compute = (time.perf_counter() - started) * scale
    started = time.perf_counter()
    loader = make_loader(dataset, config.batch_size, config.workers, shuffle=True, drop_last=True)
    for _, (batch_images, batch_labels, _) in zip(range(timed_steps), loader):
        step(model, optimizer, batch_images, batch_labels)
    fed = (time.perf_counter() - started) * scale
    if scale != 1:
        print(f"(epochs below: {timed_steps} of {epoch_steps} steps timed, scaled to a whole epoch)")
    print(f"one epoch of ACoL ({epoch_steps} steps): {compute:.1f} s on a batch in memory, {fed:.1f} s fed by "
          f"a fresh loader ({config.workers} worker(s), start-up included): {fed / compute:.3f}x (target <= 1.10)")
    return fed


def cached_epoch_time(config, acol, dataset, timed_steps: int, epoch_steps: int, fed: float) -> None:
    """With a frozen front (``--trainable-stages``): what caching it costs, and an epoch on the cache
    against one uncached (``fed``)."""
    model, optimizer = acol
    stages = trainable_stages(config, model.backbone)
    if stages == len(model.backbone.stages):
        return
    frozen, trainable = model.backbone.split(stages)
    cached_images = torch.utils.data.Subset(dataset, range(min(len(dataset), timed_steps * config.batch_size)))
    started = time.perf_counter()
    cache = compute_feature_cache(frozen, cached_images, 1, config.view_seed, {}, config.batch_size, config.workers)
    per_view = (time.perf_counter() - started) * len(dataset) / len(cached_images)
    set_training_mode(model, config)
    started = time.perf_counter()
    for cached, batch_labels in cache.epoch(config.batch_size, torch.Generator().manual_seed(0)):
        step(model, optimizer, cached, batch_labels, features=trainable)
    cached_epoch = (time.perf_counter() - started) * epoch_steps / (len(cached_images) // config.batch_size)
    print(f"feature cache, last {stages} stage(s) training: caching one view of each of {len(dataset)} images "
          f"took {per_view:.1f} s (a run with --cache-views {config.cache_views or 'V'} pays "
          f"{config.cache_views or 'V'}x that once); one epoch on the cache {cached_epoch:.1f} s against "
          f"{fed:.1f} s uncached: {fed / cached_epoch:.1f}x faster (target >= 5)")

if __name__ == "__main__":
    main()
