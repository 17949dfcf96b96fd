"""The speed probe (``gpu_finetune.py --probe``, run as a child process): images/s of the training
step on random data with the run's model and optimizer, and one core's cost of the training
transform per image; one JSON line."""

from __future__ import annotations

import json
import time

from .jobs import CONFIG


def probe(args) -> int:
    """``--probe``: images/s of the training step (random data, the run's model and optimizer)
    and one core's cost of the training transform per image; one JSON line."""
    import torch
    from acol import create_backbone
    from acol.data.transforms import train_transform
    from acol.data.datasets import build_dataset
    from acol.core.device import resolve_device
    from acol.core.model import ACoL
    from acol.training.recipe import build_model, make_optimizer, set_training_mode
    from acol.training.train import parse_config
    config, _ = parse_config(["--config", str(CONFIG), "--device", args.device, "--weights", "none",
                              "--input-size", str(args.input_size), "--resize-size", str(args.resize_size),
                              "--batch-size", str(args.batch_size)])
    device = resolve_device(config.device)
    model = build_model(create_backbone(config.backbone, None), 50, config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    set_training_mode(model, config)
    images = torch.randn(config.batch_size, 3, config.input_size, config.input_size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 50, (config.batch_size,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            output = model(images, target_class=labels)
            loss = ACoL.loss(output, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.keep_class_weights_nonnegative()
        return loss.item() + (output.logits[0].argmax(1) == labels).sum().item()

    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    synchronize()
    started = time.perf_counter()
    for _ in range(args.probe_steps):
        step()
    synchronize()
    step_s = (time.perf_counter() - started) / args.probe_steps
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0

    torch.set_num_threads(1)
    dataset = build_dataset(args.data, "train", train_transform(config.input_size, model.backbone.mean,
                                                                model.backbone.std, config.resize_size))
    dataset[0]
    started = time.perf_counter()
    for index in range(0, len(dataset), max(len(dataset) // 24, 1)):
        dataset[index]
    load_s = (time.perf_counter() - started) / len(range(0, len(dataset), max(len(dataset) // 24, 1)))
    print("PROBE " + json.dumps({"images_per_s": config.batch_size / step_s, "step_ms": 1000 * step_s,
                                 "peak_memory_gib": round(peak_gib, 2), "load_ms_per_image": 1000 * load_s}))
    return 0
