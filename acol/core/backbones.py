"""Backbones: the registry of CNNs that turn an image into a feature map (``create_backbone``).

Every constructor returns a :class:`Backbone` (``acol.core.backbone``: what one is, its stages).
ACoL's classifiers sit on top of it, so the backbone must keep some spatial resolution: the
paper's trick is to remove late poolings so the maps are 14x14 or 28x28 instead of 7x7.

``weights`` follows torchvision's convention: ``None`` means random init, ``"imagenet"`` the
ImageNet weights (offline where possible), and a path loads a local state dict.

Registered here: ``vgg16`` and ``resnet50`` (torchvision's, as ACoL and wsolevaluation modify
them), ``tiny`` (tests), and the EfficientNet-Lite0 family (``acol.core.efficientnet``).

    >>> backbone = create_backbone("tiny")
    >>> backbone.out_channels, backbone.stride
    (64, 8)
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from . import efficientnet  # noqa: F401  (registers the EfficientNet-Lite0 backbones)
from .backbone import BACKBONES, Backbone, load_local_state_dict, register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    """Build the backbone registered as ``name`` with ``weights`` (None, "imagenet" or a path)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](weights=weights)


def _torchvision_weights(model_fn, weights_enum, weights, strip_prefix: str = ""):
    """A torchvision model with ImageNet weights (downloaded by torchvision) or local ones."""
    if weights is None:
        return model_fn(weights=None)
    if weights == "imagenet":
        return model_fn(weights=weights_enum.DEFAULT)  # needs the internet or torch's cache
    model = model_fn(weights=None)
    state = {k.removeprefix(strip_prefix): v for k, v in load_local_state_dict(weights).items()}
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


@register_backbone("tiny")
def tiny(weights=None) -> Backbone:
    """A small random-init CNN (stride 8, 64 channels) for tests and the synthetic teaching set."""
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    body = nn.Sequential(*block(3, 16, 2), *block(16, 32, 2), *block(32, 64, 2), *block(64, 64, 1))
    if weights is not None:
        body.load_state_dict(load_local_state_dict(weights))
    return Backbone(body, out_channels=64, stride=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                    stages=_sequential_stages(body, [3, 6, 9, 12]))
