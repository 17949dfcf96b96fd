"""ACoL: Adversarial Complementary Learning (Zhang et al., CVPR 2018), in one screen of code.

    image -> backbone -> features --------------------------> classifier A -> logits, map A
                             |                                                    |
                             +-- zero where normalized map A >= erase_threshold <-+
                                          |   (or where a given erase_mask says: a hand-made mask)
                                          +-------------------> classifier B -> logits, map B
    fused map = max(normalized map A, normalized map B)

Each classifier ends in a 1x1 convolution with one channel per class, so the channel of a class
*is* its localization map, and global average pooling of it is the class logit. Erasing A's most
discriminative region forces B to find other evidence of the same class; both are trained with
cross-entropy on image labels only, end to end. ``num_branches=1`` is the plain CAM baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .maps import fuse_maps, normalize_maps


class ClassifierHead(nn.Sequential):
    """A branch's classifier. It ends in a 1x1 convolution with one output map per class
    (``class_layer``), so global average pooling of a class's map is the class logit.

    ``kind="paper"``: conv3x3 -> ReLU -> conv3x3 -> ReLU -> conv1x1, as in the paper.
    ``kind="linear"``: ReLU -> conv1x1, the original CAM (Zhou et al., 2016): a class's map is a
    weighted sum of the backbone's channels, at their own sharpness (no 3x3 layer spreads it).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 1024, kind: str = "paper"):
        if kind == "paper":
            layers = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                      nn.Conv2d(width, num_classes, 1)]
        elif kind == "linear":  # not in place: the features are erased and cached afterwards
            layers = [nn.ReLU(), nn.Conv2d(in_channels, num_classes, 1)]
        else:
            raise ValueError(f"unknown head kind {kind!r}: use 'paper' or 'linear'")
        super().__init__(*layers)
        self.kind = kind

    @property
    def class_layer(self) -> nn.Conv2d:
        return self[-1]

    def logits_and_maps(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits [B, classes], class maps [B, classes, h, w])``: global average pooling of each
        class's map is its logit. A linear head makes no map here (None): ReLU -> 1x1 conv -> pooling
        is ReLU -> pooling -> 1x1 conv, so its logits come from the pooled features and
        ``target_map`` makes the one map wanted (1,000 class maps cost a viewer 10 ms a branch)."""
        if self.kind == "linear":
            return self.class_layer(self[0](features).mean((2, 3), keepdim=True)).flatten(1), None
        class_maps = self(features)
        return class_maps.mean((2, 3)), class_maps

    def target_map(self, features: torch.Tensor, target_class: torch.Tensor,
                   class_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Each image's raw map of its ``target_class`` ``[B, h, w]``, picked from ``class_maps``
        when they were made, else (a linear head) its class's weighted sum of the rectified features."""
        if class_maps is not None:
            return class_maps[torch.arange(len(class_maps)), target_class]
        weight, bias = self.class_layer.weight.flatten(1)[target_class], self.class_layer.bias[target_class]
        return torch.einsum("bc,bchw->bhw", weight, self[0](features)) + bias[:, None, None]


def erase_features(features: torch.Tensor, localization_map: torch.Tensor, erase_threshold: float,
                   erase_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the feature positions where the normalized ``localization_map [B, h, w]`` is
    ``>= erase_threshold``, or where a given ``erase_mask`` (bool, a hand-made one) says.
    Returns ``(erased_features, erase_mask)``, mask True where erased."""
    erase_mask = localization_map >= erase_threshold if erase_mask is None else erase_mask.to(torch.bool)
    return features * (~erase_mask).unsqueeze(1).to(features.dtype), erase_mask


@dataclass
class ACoLOutput:
    """Everything one forward pass knows; ``branch`` lists run A, B, (C, ...)."""

    logits: list[torch.Tensor]             # per branch [B, num_classes]
    class_maps: list[torch.Tensor | None]  # per branch [B, num_classes, h, w], raw 1x1-conv output; None: linear head
    localization_maps: list[torch.Tensor]  # per branch [B, h, w], target class, normalized to [0, 1]
    erase_masks: list[torch.Tensor]        # per branch [B, h, w] bool: True where its input was erased
    fused_map: torch.Tensor                # [B, h, w], max of the normalized branch maps
    target_class: torch.Tensor             # [B], the class whose maps drive erasing
    features: torch.Tensor                 # [B, C, h, w] backbone features, cached for re-erasing
    erase_threshold: float

    def to(self, device: str | torch.device) -> "ACoLOutput":
        """The same output with every tensor on ``device`` (the CPU, where pictures are drawn)."""
        def moved(value):
            return value.to(device) if torch.is_tensor(value) else [item if item is None else item.to(device)
                                                                    for item in value]
        return ACoLOutput(*(moved(getattr(self, field.name)) if field.name != "erase_threshold" else self.erase_threshold
                            for field in fields(self)))


class ACoL(nn.Module):
    """A backbone with ``num_branches`` adversarial classifiers (1 = CAM, 2 = ACoL)."""

    def __init__(self, backbone: Backbone, num_classes: int, erase_threshold: float = 0.6,
                 num_branches: int = 2, head_width: int = 1024, head: str = "paper",
                 nonnegative_class_weights: bool = False):
        super().__init__()
        if num_branches < 1:
            raise ValueError(f"num_branches must be >= 1, got {num_branches}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.erase_threshold = erase_threshold
        self.head, self.head_width = head, head_width
        self.heads = nn.ModuleList(ClassifierHead(backbone.out_channels, num_classes, head_width, head)
                                   for _ in range(num_branches))
        self.nonnegative_class_weights = nonnegative_class_weights
        self.keep_class_weights_nonnegative()

    def forward(self, images: torch.Tensor, target_class: torch.Tensor | None = None,
                erase_threshold: float | None = None) -> ACoLOutput:
        """Run all branches. ``target_class`` is the label in training; at inference leave it None
        to erase by branch A's top-1 prediction, or pass the class you want explained."""
        return self.forward_features(self.backbone(images), target_class, erase_threshold)

    def forward_features(self, features: torch.Tensor, target_class: torch.Tensor | None = None,
                         erase_threshold: float | None = None,
                         first_class_map: torch.Tensor | None = None,
                         erase_mask: torch.Tensor | None = None) -> ACoLOutput:
        """The heads and the erasing, from backbone features (``first_class_map`` reuses A's class
        maps, when made). ``erase_mask [B, h, w]`` (bool, True = erase), when given, replaces A's
        thresholded map as what branch B sees erased: a viewer's hand-made mask."""
        threshold = self.erase_threshold if erase_threshold is None else erase_threshold
        branch_input = features
        erased = torch.zeros(features.shape[0], *features.shape[2:], dtype=torch.bool,
                             device=features.device)
        logits, class_maps, localization_maps, erase_masks = [], [], [], []
        for index, head in enumerate(self.heads):
            reuse = index == 0 and first_class_map is not None
            branch_logits, class_map = ((first_class_map.mean((2, 3)), first_class_map) if reuse
                                        else head.logits_and_maps(branch_input))
            if target_class is None:  # inference: explain what branch A predicts
                target_class = branch_logits.argmax(1)
            localization_map = normalize_maps(head.target_map(branch_input, target_class, class_map))
            erase_masks.append(erased)
            # The next branch sees everything found so far erased (masks are not differentiable).
            branch_input, newly_erased = erase_features(branch_input, localization_map.detach(), threshold,
                                                        erase_mask if index == 0 else None)
            erased = erased | newly_erased
            logits.append(branch_logits)
            class_maps.append(class_map)
            localization_maps.append(localization_map)
        return ACoLOutput(logits, class_maps, localization_maps, erase_masks,
                          fuse_maps(localization_maps), target_class, features, threshold)

    def reexplain(self, output: ACoLOutput, target_class: torch.Tensor | None = None,
                  erase_threshold: float | None = None, erase_mask: torch.Tensor | None = None) -> ACoLOutput:
        """Fast path for a viewer: new threshold, class or hand-made ``erase_mask``, reusing the
        backbone features and branch A's maps; only the erasing and the later branches run again."""
        return self.forward_features(output.features, target_class, erase_threshold,
                                     first_class_map=output.class_maps[0], erase_mask=erase_mask)

    def branch_a_alone(self) -> "ACoL":
        """A one-branch CAM model sharing this one's backbone and branch A (no copy): the CAM
        baseline of a model whose A is a pretrained classifier, as in ``acol.training.everyday``."""
        cam = ACoL(self.backbone, self.num_classes, self.erase_threshold, 1, self.head_width, self.head,
                   self.nonnegative_class_weights)
        cam.heads[0] = self.heads[0]
        return cam.eval()

    def erased_branch(self, features: torch.Tensor, erase_masks: torch.Tensor, target_class: int,
                      branch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch ``branch``'s map of ``target_class`` ``[K, h, w]`` (raw, unnormalized) and its
        logits ``[K, num_classes]`` on one image's ``features [1, C, h, w]`` erased by each of
        ``erase_masks [K, h, w]`` (bool, True = erased): what the branch says at every step of a
        viewer's δ slider, at once.

        A ``linear`` head is ReLU -> conv1x1, and an erased cell's features are zero, so its map
        there is the class layer's bias and elsewhere its map on the full features: one pass
        serves every mask, exactly. Being linear, its logits (the maps' means) are the class
        layer applied to the mean of the kept cells' features, plus the bias: no other class's
        map is made (for 1,000 classes that map cost a viewer 10 ms a picture). Any other head
        runs once on the K erased copies, batched.
        """
        head = self.heads[branch]
        keep = ~erase_masks.to(torch.bool)
        if self.head == "linear":
            cells = head[0](features)[0].flatten(1)                     # [C, h * w], after the ReLU
            weight, bias = head.class_layer.weight.flatten(1), head.class_layer.bias  # [classes, C]
            kept = keep.flatten(1).to(cells.dtype)                      # [K, h * w]
            logits = (kept @ cells.T) @ weight.T / kept.shape[1] + bias
            target_map = (weight[target_class] @ cells).view(keep.shape[1:]) + bias[target_class]
            return torch.where(keep, target_map, bias[target_class]), logits
        class_maps = head(features * keep.unsqueeze(1).to(features.dtype))
        return class_maps[:, target_class], class_maps.mean((2, 3))

    @torch.no_grad()
    def keep_class_weights_nonnegative(self) -> None:
        """With ``nonnegative_class_weights``, clip the class layers' negative weights to 0; the
        trainer calls this after every step. A map is then a sum of feature activations, never a
        difference, so a channel that fires on the whole object can only add to it (Bae et al.,
        ECCV 2020, clamp them at test time; clamping while training keeps logits and maps alike)."""
        if self.nonnegative_class_weights:
            for head in self.heads:
                head.class_layer.weight.clamp_(min=0)

    @staticmethod
    def loss(output: ACoLOutput, labels: torch.Tensor) -> torch.Tensor:
        """The sum of every branch's cross-entropy with the image label."""
        return sum(F.cross_entropy(branch_logits, labels) for branch_logits in output.logits)
