"""Training cost: ACoL's step time against the CAM baseline's, and whether the data keeps up.

    python bench/train_speed.py [--data ../shared/data/cub50] [--input-size 160] [--steps 8]

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
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from acol import ACoL, create_backbone  # noqa: E402
from acol.data import build_dataset, collate_batch, train_transform  # noqa: E402


def step(model, optimizer, images, labels):
    loss = model.loss(model(images, target_class=labels), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make(num_branches, args, num_classes):
    model = ACoL(create_backbone(args.backbone), num_classes, 0.6, num_branches, args.head_width).train()
    return model, torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/cub50"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument("--head-width", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    backbone = create_backbone(args.backbone)
    dataset = build_dataset(args.data, "train", train_transform(args.input_size, backbone.mean, backbone.std))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        collate_fn=collate_batch, drop_last=True)
    images, labels, _ = next(iter(loader))
    acol, acol_opt = make(2, args, dataset.num_classes)
    cam, cam_opt = make(1, args, dataset.num_classes)
    for model, optimizer in ((acol, acol_opt), (cam, cam_opt)):
        step(model, optimizer, images, labels)  # warm-up
    times = {"ACoL": [], "CAM": []}
    for _ in range(args.steps):
        for name, model, optimizer in (("ACoL", acol, acol_opt), ("CAM", cam, cam_opt)):
            started = time.perf_counter()
            step(model, optimizer, images, labels)
            times[name].append(time.perf_counter() - started)
    acol_ms, cam_ms = (1000 * statistics.median(times[name]) for name in ("ACoL", "CAM"))
    print(f"step time, batch {args.batch_size} at {args.input_size} px, {args.backbone}, head width "
          f"{args.head_width} (median of {args.steps}): ACoL {acol_ms:.0f} ms, CAM {cam_ms:.0f} ms, "
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
          f"DataLoader ({args.workers} workers, after start-up): {fed / compute:.3f}x (target <= 1.10)")

if __name__ == "__main__":
    main()
