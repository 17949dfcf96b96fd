"""Training cost: ACoL's step time against the CAM baseline's, and whether the data keeps up.

    python bench/train_speed.py [--steps 8] [--config configs/cub50_acol.yaml] [any train flag]

The recipe (backbone, input size, head width, batch, loader workers, optimizer) is the training
run's: ``--config`` and the flags of ``python -m acol train`` (default: the shipped CUB-50 config).

1. Step time (forward + backward + SGD step) of ACoL (2 branches) and CAM (1 branch) on the same
   backbone and batch, measured interleaved so that machine noise hits both; medians and ratio.
2. Time of ``--steps`` training steps fed by the real DataLoader against the same number of steps
   on one batch already in memory (pure compute): the pipeline keeps the model fed when the
   first is within 10% of the second.
"""

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from acol import ACoL, create_backbone  # noqa: E402
from acol.data import collate_batch  # noqa: E402
from acol.train import build_datasets, make_optimizer, parse_config  # noqa: E402


def step(model, optimizer, images, labels):
    loss = model.loss(model(images, target_class=labels), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make(config, num_classes):
    """The run's model (from its pretrained backbone) and optimizer (heads at 10x the lr)."""
    model = ACoL(create_backbone(config.backbone, weights=config.weights), num_classes,
                 config.erase_threshold, config.num_branches, config.head_width).train()
    return model, make_optimizer(model, config)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    args, train_flags = parser.parse_known_args()
    if "--config" not in train_flags:
        train_flags = ["--config", str(REPO / "configs" / "cub50_acol.yaml"), *train_flags]
    config, _ = parse_config(train_flags)

    backbone = create_backbone(config.backbone)
    dataset, _ = build_datasets(config, backbone.mean, backbone.std)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
                        collate_fn=collate_batch, drop_last=True)
    images, labels, _ = next(iter(loader))
    acol, acol_opt = make(replace(config, num_branches=2), dataset.num_classes)
    cam, cam_opt = make(replace(config, num_branches=1), dataset.num_classes)
    for model, optimizer in ((acol, acol_opt), (cam, cam_opt)):
        step(model, optimizer, images, labels)  # warm-up
    times = {"ACoL": [], "CAM": []}
    for _ in range(args.steps):
        for name, model, optimizer in (("ACoL", acol, acol_opt), ("CAM", cam, cam_opt)):
            started = time.perf_counter()
            step(model, optimizer, images, labels)
            times[name].append(time.perf_counter() - started)
    acol_ms, cam_ms = (1000 * statistics.median(times[name]) for name in ("ACoL", "CAM"))
    print(f"step time, batch {config.batch_size} at {config.input_size} px, {config.backbone}, head width "
          f"{config.head_width} (median of {args.steps}): ACoL {acol_ms:.0f} ms, CAM {cam_ms:.0f} ms, "
          f"ratio {acol_ms / cam_ms:.3f} (target <= 1.15)")

    started = time.perf_counter()
    for _ in range(args.steps):
        step(acol, acol_opt, images, labels)
    compute = time.perf_counter() - started
    batches = iter(loader)
    step(acol, acol_opt, *next(batches)[:2])  # workers start and fill their queue: not timed
    started = time.perf_counter()
    for _ in range(args.steps):
        step(acol, acol_opt, *next(batches)[:2])
    fed = time.perf_counter() - started
    print(f"{args.steps} ACoL steps: {compute:.1f} s on a batch in memory, {fed:.1f} s fed by the "
          f"DataLoader ({config.workers} worker(s), after start-up): {fed / compute:.3f}x (target <= 1.10)")


if __name__ == "__main__":
    main()
