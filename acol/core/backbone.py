"""What a backbone is: a CNN that turns an image into a feature map, the facts about it that a
head and a data pipeline need, its stages, and the registry ``create_backbone`` builds from.

A :class:`Backbone` is an ``nn.Module`` mapping images ``[B, 3, H, W]`` (normalized with its own
``mean``/``std``) to features ``[B, out_channels, H/stride, W/stride]``. It lists its ``stages`` in
forward order, so that training can fine-tune only the last few (``split``): the frozen front
keeps its ImageNet weights, and its output, which never changes, can be computed once and cached
(``acol.data.feature_cache``). The registered backbones are ``acol.core.backbones``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


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

    @torch.no_grad()
    def fold_batchnorm(self) -> "Backbone":
        """For inference alone: every BatchNorm that follows a convolution folded into it
        (``torch.nn.utils.fusion.fuse_conv_bn_eval``), an activation fused with it (timm's
        ``BatchNormAct2d``) kept: the same features to float rounding, in about a fifth less time
        (EfficientNet-Lite0 at 224 px on one core: 42 against 53 ms). Its state dict then no longer
        matches its checkpoint's, so only a model whose weights nothing swaps in is folded (a
        viewer's model without a training history to replay). Returns itself, in eval mode."""
        self.eval()
        for module in self.body.modules():
            children = list(module.named_children())
            for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                    after = [getattr(norm, part) for part in ("drop", "act") if hasattr(norm, part)]
                    setattr(module, norm_name, nn.Sequential(*after))  # empty: the identity
        return self


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


def load_local_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or from a .pth/.pt without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state
