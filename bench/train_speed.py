"""Training cost: ACoL's step time against the CAM baseline's, and whether the data keeps up.

    python bench/train_speed.py [--steps 12] [--config configs/cub50_acol.yaml] [any train flag]

The recipe (backbone, input size, head width, batch, loader workers, optimizer) is the training
run's: ``--config`` and the flags of ``python -m acol train`` (default: the shipped CUB-50 config).

1. Step time (forward + backward + SGD step) of ACoL (2 branches) and CAM (1 branch) on the same
   backbone and batch, measured interleaved (in turn first) so that machine noise hits both;
   medians and their ratio.
2. Epoch time: one training epoch fed by a fresh loader, made as ``acol.train`` makes it each
   epoch (worker start-up and the first batch's wait included), against the same number of
   steps on one batch already in memory (pure compute). The pipeline keeps the model fed when
   the first is within 10% of the second.
"""

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from acol import create_backbone  # noqa: E402
from acol.data import make_loader  # noqa: E402
from acol.train import build_datasets, build_model, make_optimizer, parse_config, set_training_mode  # noqa: E402


def step(model, optimizer, images, labels):
    loss = model.loss(model(images, target_class=labels), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.keep_class_weights_nonnegative()


def make(config, backbone, num_classes):
    """The run's model on ``backbone`` and its optimizer (heads at 10x the lr), as acol.train makes them."""
    model = build_model(backbone, num_classes, config)
    set_training_mode(model, config)
    return model, make_optimizer(model, config)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="steps timed per model for the step-time ratio")
    args, train_flags = parser.parse_known_args()
    if "--config" not in train_flags:
        train_flags = ["--config", str(REPO / "configs" / "cub50_acol.yaml"), *train_flags]
    config, _ = parse_config(train_flags)

    acol_backbone, cam_backbone = (create_backbone(config.backbone, weights=config.weights) for _ in range(2))
    dataset, _ = build_datasets(config, acol_backbone.mean, acol_backbone.std)
    # Taken through the run's own loader, which also starts the process its workers are forked
    # from: a training run pays that once (about 3 s), not every epoch.
    images, labels, _ = next(iter(make_loader(dataset, config.batch_size, config.workers, shuffle=True)))
    acol, acol_opt = make(replace(config, num_branches=2), acol_backbone, dataset.num_classes)
    cam, cam_opt = make(replace(config, num_branches=1), cam_backbone, dataset.num_classes)
    for model, optimizer in ((acol, acol_opt), (cam, cam_opt)):
        step(model, optimizer, images, labels)  # warm-up
    times = {"ACoL": [], "CAM": []}
    pair = [("ACoL", acol, acol_opt), ("CAM", cam, cam_opt)]
    for round_index in range(args.steps):
        for name, model, optimizer in pair[::-1] if round_index % 2 else pair:  # neither always goes first
            started = time.perf_counter()
            step(model, optimizer, images, labels)
            times[name].append(time.perf_counter() - started)
    acol_ms, cam_ms = (1000 * statistics.median(times[name]) for name in ("ACoL", "CAM"))
    print(f"step time, batch {config.batch_size} at {config.input_size} px, {config.backbone}, {config.head} head"
          f"{f' {config.head_width} wide' if config.head == 'paper' else ''}"
          f"{', frozen backbone' if config.freeze_backbone else ''} (median of {args.steps}): ACoL {acol_ms:.0f} ms, CAM {cam_ms:.0f} ms, "
          f"ratio {acol_ms / cam_ms:.3f} (target <= 1.15)")

    epoch_steps = len(dataset) // config.batch_size
    started = time.perf_counter()
    for _ in range(epoch_steps):
        step(acol, acol_opt, images, labels)
    compute = time.perf_counter() - started
    started = time.perf_counter()
    for batch_images, batch_labels, _ in make_loader(dataset, config.batch_size, config.workers,
                                                     shuffle=True, drop_last=True):
        step(acol, acol_opt, batch_images, batch_labels)
    fed = time.perf_counter() - started
    print(f"one epoch of ACoL ({epoch_steps} steps): {compute:.1f} s on a batch in memory, {fed:.1f} s fed by "
          f"a fresh loader ({config.workers} worker(s), start-up included): {fed / compute:.3f}x (target <= 1.10)")


if __name__ == "__main__":
    main()
