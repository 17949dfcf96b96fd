"""One picture's maps replayed through every epoch of a training history (``acol.core.history``).

    replay(model, history, image, class, delta):
        image -> frozen front of the backbone (once) -> features
                     |  for each epoch: that epoch's weights in place of the trained ones
                     +--> trained stages -> A's map -> erased cells (A >= delta) -> B's map
        -> [E, h, w] maps, [E, h, w] erased cells, [E, branches, classes] logits
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from .history import TrainingHistory
from .model import ACoL


@dataclass
class ReplayedMaps:
    """One image's maps after every epoch of a history, at feature resolution, on the model's
    device. A CAM model (one branch) has no erased cells and no B map (None)."""

    epochs: list[int]               # [E], as in the history
    target_class: int               # the class every map is of (and A's erasing follows)
    erase_threshold: float          # delta: a cell is erased where A's normalized map >= it
    a_map: torch.Tensor             # [E, h, w] A's map of target_class, min-max normalized to [0, 1]
    erased: torch.Tensor | None     # [E, h, w] bool: True where B's input was erased (A's map >= delta)
    b_map: torch.Tensor | None      # [E, h, w] B's normalized map of target_class, on the erased features
    logits: torch.Tensor            # [E, branches, num_classes], B's on the erased features
    probabilities: torch.Tensor     # [E, branches, num_classes], softmax of the logits


class _FromFront(nn.Module):
    """The model from the frozen front's output on: the trained stages, then the heads. The
    epoch's weights are swapped in under their ``model.`` names by ``functional_call``."""

    def __init__(self, model: ACoL, trained_stages: int):
        super().__init__()
        self.model, self.trained_stages = model, trained_stages

    def forward(self, front: torch.Tensor, target_class: torch.Tensor, erase_threshold: float):
        _, trained = self.model.backbone.split(self.trained_stages)
        return self.model.forward_features(trained(front), target_class, erase_threshold)


def trained_stage_count(model: ACoL, names: list[str]) -> int:
    """How many of the backbone's last stages hold recorded tensors: the ones to run per epoch.
    The stages before them never changed, so their output is computed once."""
    recorded = {id(t) for name, t in model.state_dict(keep_vars=True).items() if name in set(names)}
    backbone = {id(t) for t in [*model.backbone.parameters(), *model.backbone.buffers()]}
    stages = model.backbone.stages
    in_stages = {id(t) for stage in stages for t in [*stage.parameters(), *stage.buffers()]}
    if recorded & (backbone - in_stages):
        return len(stages)  # a trained tensor outside every stage: run the whole backbone each time
    for index, stage in enumerate(stages):
        if any(id(t) in recorded for t in [*stage.parameters(), *stage.buffers()]):
            return len(stages) - index
    return 0


@torch.no_grad()
def replay(model: ACoL, history: TrainingHistory, image: torch.Tensor, target_class: int,
           erase_threshold: float | None = None) -> ReplayedMaps:
    """The maps of ``image [1, 3, H, W]`` (as the model's eval transform makes it) for class
    ``target_class`` after every epoch of ``history`` (``load_history(..., model)`` checks it is
    this model's), erasing at ``erase_threshold`` (default: the model's delta). The model's own
    weights and mode are as before afterwards.

    The backbone's stages that did not train run once; the rest and the heads run once per epoch
    with that epoch's weights (``torch.func.functional_call``: nothing is copied into the model).
    On the teaching model (its 7 epochs, every stage trained) ``torch.func.vmap`` over the stacked
    weights gained little over this loop (54-56 against 63-66 ms on 2 CPU threads; 77 against 72
    ms on one), so it stays a loop: ``python bench/history_replay.py`` times it."""
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image [1, 3, H, W], got shape {tuple(image.shape)}")
    if not 0 <= target_class < model.num_classes:
        raise ValueError(f"target_class {target_class} is not one of the model's {model.num_classes} classes")
    threshold = model.erase_threshold if erase_threshold is None else erase_threshold
    reference = next(model.parameters())
    device, state = reference.device, model.state_dict()
    count = trained_stage_count(model, history.names)
    frozen, _ = model.backbone.split(count)
    runner = _FromFront(model, count)
    target = torch.tensor([target_class], device=device)
    was_training = model.training
    model.eval()
    try:
        front = frozen(image.to(device, reference.dtype))
        outputs = []
        for index in range(len(history.epochs)):
            weights = {f"model.{name}": tensor.to(device, state[name].dtype)
                       for name, tensor in history.weights(index).items()}
            outputs.append(functional_call(runner, weights, (front, target, threshold)))
    finally:
        model.train(was_training)
    logits = torch.stack([torch.cat(output.logits) for output in outputs])  # [E, branches, classes]
    acol = len(model.heads) > 1
    return ReplayedMaps(
        epochs=list(history.epochs), target_class=target_class, erase_threshold=threshold,
        a_map=torch.cat([output.localization_maps[0] for output in outputs]),
        erased=torch.cat([output.erase_masks[1] for output in outputs]) if acol else None,
        b_map=torch.cat([output.localization_maps[1] for output in outputs]) if acol else None,
        logits=logits, probabilities=logits.softmax(-1))
